"""Input pipelines: sharded TFRecord files (or TFDS) -> decoded -> parsed -> batches.

`build_dataset` is the one entry point for training and image evaluation:

  files (sorted; sharded per host; shuffled in training) -> interleaved TFRecord
  reads -> [training: shuffle, repeat, one stateless seed per example] ->
  decode + parse -> batch -> prefetch

Batches have static shapes (`element_spec` fully defined): training drops the
remainder; evaluation pads the last batch with all-zero examples and marks them
with `labels['valid'] = False`. Under `tf.distribute`, call it from the dataset
function with the `tf.distribute.InputContext`: each input pipeline (host) reads
its own shard of the files and yields per-replica batches.

`build_video_eval_dataset` streams video records frame by frame for online
video inference; `build_tfds_dataset` reads COCO panoptic from TFDS into the same
decoded dict as the TFRecords; `measure_throughput` times any of them.
"""

import time
from typing import Callable, Dict, Optional, Sequence, Union

import gin
import tensorflow as tf

from data import decoders
from data import parsers

AUTOTUNE = tf.data.AUTOTUNE


def match_files(file_pattern: Union[str, Sequence[str]]) -> list:
  """Sorted files matching a pattern (or each of several patterns).

  Raises:
    ValueError: the pattern is empty.
    FileNotFoundError: a pattern matches no file; the message names it.
  """
  patterns = [file_pattern] if isinstance(file_pattern, str) else list(
      file_pattern)
  if not patterns or not all(patterns):
    raise ValueError(f'file_pattern {file_pattern!r} is empty.')
  files = []
  for pattern in patterns:
    matched = tf.io.gfile.glob(pattern)
    if not matched:
      raise FileNotFoundError(f'file_pattern {pattern!r} matches no files.')
    files.extend(matched)
  return sorted(set(files))


def _per_replica_batch_size(global_batch_size, input_context):
  if input_context is None:
    return global_batch_size
  return input_context.get_per_replica_batch_size(global_batch_size)


def _host_seed(seed, input_context):
  """Distinct, reproducible seeds per input pipeline (None stays None)."""
  if seed is None or input_context is None:
    return seed
  return seed + 1000003 * input_context.input_pipeline_id


def _add_valid(inputs, labels):
  return inputs, dict(labels, valid=tf.constant(True))


def _pad_to_full_batches(dataset: tf.data.Dataset,
                         batch_size: int) -> tf.data.Dataset:
  """Batches an evaluation dataset, padding the last batch with invalid examples.

  Every element gets `labels['valid'] = True`; `batch_size - 1` all-zero
  elements with `valid = False` are appended, and `drop_remainder=True` keeps
  exactly `ceil(n / batch_size)` batches of static shape.
  """
  dataset = dataset.map(_add_valid)
  for spec in tf.nest.flatten(dataset.element_spec):
    if not spec.shape.is_fully_defined():
      raise ValueError(f'evaluation padding needs static shapes; the parser '
                       f'returned {spec}.')
  padding = tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype),
                                  dataset.element_spec)
  if batch_size > 1:
    dataset = dataset.concatenate(
        tf.data.Dataset.from_tensors(padding).repeat(batch_size - 1))
  return dataset.batch(batch_size, drop_remainder=True)


def _parse_and_batch(dataset: tf.data.Dataset,
                     decode_fn: Callable[[tf.Tensor], Dict[str, tf.Tensor]],
                     parser: Callable, batch_size: int, is_training: bool,
                     shuffle_buffer: int, seed: Optional[int]
                     ) -> tf.data.Dataset:
  """The part shared by the TFRecord and TFDS sources, after reading records."""
  if is_training:
    deterministic = seed is not None
    dataset = dataset.shuffle(shuffle_buffer, seed=seed).repeat()
    # One stateless seed per example: augmentation is reproducible given
    # `seed`, and the same eagerly and in tf.data (parsers.py).
    example_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip((dataset, example_seeds))
    dataset = dataset.map(
        lambda record, example_seed: parser(decode_fn(record),
                                            seed=example_seed),
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    dataset = dataset.batch(batch_size, drop_remainder=True)
  else:
    dataset = dataset.map(lambda record: parser(decode_fn(record)),
                          num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = _pad_to_full_batches(dataset, batch_size)
  return dataset.prefetch(AUTOTUNE)


@gin.configurable
def build_dataset(file_pattern: Union[str, Sequence[str]],
                  parser: Callable,
                  global_batch_size: int,
                  is_training: bool,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  shuffle_buffer: int = 1000,
                  cycle_length: int = 16,
                  seed: Optional[int] = None,
                  video: bool = False) -> tf.data.Dataset:
  """Batched `(inputs, labels)` from TFRecord shards.

  Args:
    file_pattern: glob (or list of globs) of TFRecord files in the schema of
      `data/records.py`.
    parser: `parsers.TrainParser`/`EvalParser` (image records) or
      `parsers.VideoTrainParser` (video records); called as
      `parser(decoded, seed=...)`.
    global_batch_size: batch size over all replicas.
    is_training: shuffle files and records, repeat forever, random seeds per
      example, drop the remainder; else one deterministic pass (files
      interleaved in a fixed order), last batch padded (`labels['valid']`).
    input_context: from `tf.distribute`; the files are sharded over its input
      pipelines (records instead, if there are fewer files than pipelines)
      and batches are per replica.
    shuffle_buffer: records in the shuffle buffer (training).
    cycle_length: files read concurrently.
    seed: makes training reproducible (file order, record order, augmentation);
      None = nondeterministic and a little faster.
    video: the records are videos (`tf.train.SequenceExample`): decoded with
      `decoders.parse_video_example` for `VideoTrainParser`. Training only;
      streaming evaluation is `build_video_eval_dataset`.

  Returns:
    A dataset of `(inputs, labels)` dicts with batch dimension
    `per_replica_batch_size` and fully defined shapes.

  Raises:
    ValueError: empty `file_pattern`, or `video` evaluation.
    FileNotFoundError: `file_pattern` matches no file.
  """
  if video and not is_training:
    raise ValueError('video evaluation streams frames: use '
                     'build_video_eval_dataset.')
  files = match_files(file_pattern)
  batch_size = _per_replica_batch_size(global_batch_size, input_context)
  seed = _host_seed(seed, input_context)
  decode_fn = (decoders.parse_video_example if video
               else decoders.decode_panoptic_example)

  dataset = tf.data.Dataset.from_tensor_slices(files)
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  shard_files = num_pipelines > 1 and len(files) >= num_pipelines
  if shard_files:
    dataset = dataset.shard(num_pipelines, input_context.input_pipeline_id)
  if is_training:
    dataset = dataset.shuffle(len(files), seed=seed,
                              reshuffle_each_iteration=True)
  dataset = dataset.interleave(
      tf.data.TFRecordDataset,
      cycle_length=min(cycle_length, len(files)),
      num_parallel_calls=AUTOTUNE,
      deterministic=not is_training or seed is not None)
  if num_pipelines > 1 and not shard_files:
    dataset = dataset.shard(num_pipelines, input_context.input_pipeline_id)
  return _parse_and_batch(dataset, decode_fn, parser, batch_size, is_training,
                          shuffle_buffer, seed)


@gin.configurable
def build_video_eval_dataset(
    file_pattern: Union[str, Sequence[str]],
    parser: parsers.VideoEvalParser,
    input_context: Optional[tf.distribute.InputContext] = None
) -> tf.data.Dataset:
  """Streams the frames of each video record in order, one frame per batch.

  Files are read in sorted order, records in file order, frames in record
  order; every element is a batch of one frame (`[1, ...]`, static shapes) from
  `VideoEvalParser`. Only the current record is held (encoded) in host memory;
  the evaluator carries its predictions for the past frames and resets its
  state where `labels['video_id']` changes. With an `input_context`, each
  input pipeline streams its own share of the files (whole videos stay on one
  host).

  Args:
    file_pattern: glob (or list of globs) of video TFRecord files.
    parser: a `parsers.VideoEvalParser`.
    input_context: from `tf.distribute`, to shard the files.

  Returns:
    A dataset of `(inputs, labels)` with batch dimension 1.

  Raises:
    ValueError / FileNotFoundError: as `match_files`; also when an
      `input_context` has more pipelines than there are files.
  """
  files = match_files(file_pattern)
  dataset = tf.data.Dataset.from_tensor_slices(files)
  if input_context is not None and input_context.num_input_pipelines > 1:
    if len(files) < input_context.num_input_pipelines:
      raise ValueError(
          f'file_pattern {file_pattern!r} has {len(files)} files for '
          f'{input_context.num_input_pipelines} input pipelines; video '
          'evaluation shards whole files.')
    dataset = dataset.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  dataset = dataset.flat_map(tf.data.TFRecordDataset)
  dataset = dataset.map(decoders.parse_video_example)
  dataset = dataset.flat_map(decoders.video_frames_dataset)
  dataset = dataset.map(parser, num_parallel_calls=AUTOTUNE,
                        deterministic=True)
  return dataset.batch(1, drop_remainder=True).prefetch(AUTOTUNE)


def tfds_panoptic_to_decoded(example: Dict[str, tf.Tensor]
                             ) -> Dict[str, tf.Tensor]:
  """TFDS `coco/2017_panoptic` features to the dict of `decode_panoptic_example`.

  TFDS gives the panoptic PNG as RGB (segment id = R + 256 G + 256^2 B,
  REFERENCE §7) and `panoptic_objects` with `id`, `label` (0..132 in the
  category list's order) and `is_crowd`. Object i becomes segment index i + 1
  with contiguous class `label + 1`; pixels whose id is 0 or not among the
  objects are void.

  Args:
    example: a TFDS example with `image`, `image/id`, `image/filename`,
      `panoptic_image`, `panoptic_objects`.

  Returns:
    The keys and dtypes of `decoders.decode_panoptic_example`.
  """
  image = example['image']
  rgb = tf.cast(example['panoptic_image'], tf.int32)
  id_map = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
  objects = example['panoptic_objects']
  segment_ids = tf.cast(objects['id'], tf.int32)
  class_ids = tf.cast(objects['label'], tf.int32) + 1
  is_crowd = tf.cast(objects['is_crowd'], tf.int32)

  # Look each pixel's id up among the objects' ids: sort them, add a sentinel
  # larger than any id (ids are < 2^24) so the lookup never runs off the end.
  order = tf.argsort(segment_ids)
  sorted_ids = tf.concat([tf.gather(segment_ids, order), [2**31 - 1]], 0)
  order = tf.concat([order, [-1]], 0)
  flat_ids = tf.reshape(id_map, [-1])
  position = tf.searchsorted(sorted_ids, flat_ids, side='left')
  found = tf.logical_and(tf.gather(sorted_ids, position) == flat_ids,
                         flat_ids > 0)
  flat_index = tf.where(found, tf.gather(order, position) + 1, 0)
  instance_mask = tf.reshape(flat_index, tf.shape(id_map))
  category_mask = tf.gather(tf.concat([[0], class_ids], 0), instance_mask)

  source_id = tf.strings.as_string(example['image/id'])
  image_shape = tf.shape(image)
  check = tf.debugging.assert_equal(
      image_shape[:2], tf.shape(id_map),
      message=tf.strings.join(
          ['TFDS image ', source_id, ': panoptic_image size != image size']))
  with tf.control_dependencies([check]):
    image = tf.identity(image)
  return {
      'image': image,
      'category_mask': category_mask,
      'instance_mask': instance_mask,
      'segment_ids': segment_ids,
      'segment_class_ids': class_ids,
      'segment_is_crowd': is_crowd,
      'source_id': source_id,
      'filename': example['image/filename'],
      'height': image_shape[0],
      'width': image_shape[1],
  }


@gin.configurable
def build_tfds_dataset(split: str,
                       parser: Callable,
                       global_batch_size: int,
                       is_training: bool,
                       name: str = 'coco/2017_panoptic',
                       data_dir: Optional[str] = None,
                       input_context: Optional[tf.distribute.InputContext] = None,
                       shuffle_buffer: int = 1000,
                       seed: Optional[int] = None) -> tf.data.Dataset:
  """Like `build_dataset`, reading a prepared TFDS COCO panoptic dataset.

  Args:
    split: TFDS split, e.g. 'train', 'validation[:10%]'.
    parser: as for `build_dataset` (image parsers).
    global_batch_size: batch size over all replicas.
    is_training: as for `build_dataset`.
    name: TFDS name with config; its features must be those of
      `coco/2017_panoptic`.
    data_dir: TFDS data directory (None: TFDS's default). The dataset must
      already be prepared there (`tfds build`); this does not download.
    input_context: TFDS shards its files over the input pipelines.
    shuffle_buffer: records in the shuffle buffer (training).
    seed: as for `build_dataset`.

  Returns:
    A dataset of `(inputs, labels)` as `build_dataset` gives.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(name, data_dir=data_dir)
  read_config = tfds.ReadConfig(input_context=input_context,
                                shuffle_seed=_host_seed(seed, input_context))
  dataset = builder.as_dataset(split=split, shuffle_files=is_training,
                               read_config=read_config)
  batch_size = _per_replica_batch_size(global_batch_size, input_context)
  return _parse_and_batch(dataset, tfds_panoptic_to_decoded, parser,
                          batch_size, is_training, shuffle_buffer,
                          _host_seed(seed, input_context))


def measure_throughput(dataset: tf.data.Dataset, num_batches: int,
                       warmup_batches: int = 2) -> Dict[str, float]:
  """Times `num_batches` batches of `dataset` after `warmup_batches`.

  Args:
    dataset: batched; the batch size is read from the first batch.
    num_batches: batches to time.
    warmup_batches: batches read first and not timed (at least 1: it builds
      the pipeline and gives the batch size).

  Returns:
    {'examples_per_sec', 'batches_per_sec', 'batch_size', 'num_batches',
     'seconds'}.

  Raises:
    ValueError: the dataset ends before `warmup_batches + num_batches`.
  """
  iterator = iter(dataset)
  read = 0
  try:
    first = next(iterator)
    read += 1
    batch_size = int(tf.nest.flatten(first)[0].shape[0])
    for _ in range(max(warmup_batches, 1) - 1):
      next(iterator)
      read += 1
    start = time.perf_counter()
    for _ in range(num_batches):
      next(iterator)
      read += 1
    seconds = time.perf_counter() - start
  except StopIteration as e:
    raise ValueError(f'dataset ended after {read} batches; asked for '
                     f'{max(warmup_batches, 1) + num_batches}.') from e
  return {
      'examples_per_sec': num_batches * batch_size / seconds,
      'batches_per_sec': num_batches / seconds,
      'batch_size': batch_size,
      'num_batches': num_batches,
      'seconds': seconds,
  }


@gin.configurable
def benchmark_training_input(file_pattern: Union[str, Sequence[str]],
                             global_batch_size: int = 32,
                             num_batches: int = 50,
                             warmup_batches: int = 5,
                             video: bool = False) -> Dict[str, object]:
  """Throughput of the training pipeline as gin configures it.

  Builds `parsers.TrainParser()` (or `VideoTrainParser()` for `video`) and
  `build_dataset(..., is_training=True)`, both taking their gin bindings, and
  runs `measure_throughput`. `tools/benchmark_input.py` prints the result.

  Returns:
    The `measure_throughput` dict plus `image_size`, `mask_size` and
    `file_pattern`.
  """
  parser = parsers.VideoTrainParser() if video else parsers.TrainParser()
  dataset = build_dataset(file_pattern, parser, global_batch_size,
                          is_training=True, video=video)
  result = measure_throughput(dataset, num_batches, warmup_batches)
  result.update(image_size=list(parser.image_size),
                mask_size=list(parser.mask_size),
                file_pattern=file_pattern)
  return result
