"""Tests for data/pipeline.py: static batches, eval padding, sharding, errors, video streaming."""

import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from data import parsers
from data import pipeline
from tasks import config
from tests.data import fake_records

IMAGE_SIZE, MASK_SIZE = (32, 32), (16, 16)


def _write_image_shards(directory, num_files, per_file):
  """`num_files` shards of `per_file` records; source ids say 'f<file>-<record>'."""
  for f in range(num_files):
    examples = [
        fake_records.image_example(height=24 + 2 * r, width=32, seed=f * 10 + r,
                                   source_id=f'f{f}-{r}')[0]
        for r in range(per_file)
    ]
    fake_records.write_records(
        os.path.join(directory, f'train-{f:05d}-of-{num_files:05d}.tfrecord'),
        examples)
  return os.path.join(directory, 'train-*.tfrecord')


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
  return _write_image_shards(str(tmp_path_factory.mktemp('shards')), 4, 5)


def _train_parser():
  return parsers.TrainParser(image_size=IMAGE_SIZE, mask_size=MASK_SIZE)


def _eval_parser():
  return parsers.EvalParser(image_size=IMAGE_SIZE, mask_size=MASK_SIZE,
                            max_original_size=(40, 40), max_segments=16)


def _source_ids(dataset):
  ids = []
  for _, labels in dataset:
    valid = labels['valid'].numpy()
    ids.extend(s.decode() for s in labels['source_id'].numpy()[valid])
  return ids


def test_training_batches_have_static_shapes(shards):
  dataset = pipeline.build_dataset(shards, _train_parser(), global_batch_size=6,
                                   is_training=True, seed=1)
  for spec in tf.nest.flatten(dataset.element_spec):
    assert spec.shape.is_fully_defined(), spec
  inputs_spec, labels_spec = dataset.element_spec
  assert inputs_spec['images'].shape == (6, 32, 32, 3)
  assert labels_spec['label_map'].shape == (6, 16, 16, 2)
  assert labels_spec['image_info'].shape == (6, 4, 2)
  # 20 records, batch 6: repeats forever, never a short batch.
  for inputs, labels in dataset.take(8):
    assert inputs['images'].shape[0] == 6
    assert labels['label_map'].dtype == tf.int32


def test_training_is_reproducible_with_a_seed(shards):
  def first_batches(seed):
    dataset = pipeline.build_dataset(shards, _train_parser(), 4, True,
                                     seed=seed, shuffle_buffer=8)
    return [(b[1]['source_id'].numpy(), b[1]['label_map'].numpy())
            for b in dataset.take(3)]

  run_a, run_b, other = first_batches(3), first_batches(3), first_batches(4)
  for (ids_a, maps_a), (ids_b, maps_b) in zip(run_a, run_b):
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(maps_a, maps_b)
  assert any(not np.array_equal(a[0], o[0]) for a, o in zip(run_a, other))


def test_training_draws_fresh_ids_each_epoch(tmp_path):
  pattern = fake_records.write_records(
      str(tmp_path / 'one.tfrecord'),
      [fake_records.image_example(source_id='only')[0]])
  parser = parsers.TrainParser(image_size=(24, 32), mask_size=(24, 32),
                               scale_range=(1.0, 1.0), hflip=False,
                               color_jitter=0.0)
  dataset = pipeline.build_dataset(pattern, parser, 1, True, seed=0)
  maps = [labels['label_map'].numpy()[0] for _, labels in dataset.take(2)]
  np.testing.assert_array_equal(maps[0][..., 0], maps[1][..., 0])
  assert not np.array_equal(maps[0][..., 1], maps[1][..., 1])


def test_eval_pads_the_last_batch_and_marks_it_invalid(shards):
  dataset = pipeline.build_dataset(shards, _eval_parser(), global_batch_size=8,
                                   is_training=False)
  for spec in tf.nest.flatten(dataset.element_spec):
    assert spec.shape.is_fully_defined(), spec
  batches = list(dataset)
  assert len(batches) == 3  # ceil(20 / 8)
  valid = [b[1]['valid'].numpy() for b in batches]
  assert [v.sum() for v in valid] == [8, 8, 4]
  assert not valid[2][4:].any()
  padded = batches[2]
  assert np.all(padded[0]['images'].numpy()[4:] == 0)
  assert np.all(padded[1]['original_label_map'].numpy()[4:] == 0)
  # Every record exactly once, in the same order on every pass.
  expected = [f'f{f}-{r}' for f in range(4) for r in range(5)]
  first_pass = _source_ids(dataset)
  assert sorted(first_pass) == expected
  assert _source_ids(dataset) == first_pass


def test_sharding_over_two_input_pipelines_gives_disjoint_files(shards):
  seen = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(num_input_pipelines=2,
                                         input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=2)
    dataset = pipeline.build_dataset(shards, _eval_parser(), 8, False,
                                     input_context=context)
    assert dataset.element_spec[0]['images'].shape[0] == 4  # Per replica.
    ids = _source_ids(dataset)
    seen.append({i.split('-')[0] for i in ids})
    assert len(ids) == 10
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == {'f0', 'f1', 'f2', 'f3'}


def test_training_shards_are_disjoint_too(shards):
  seen = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(2, pipeline_id, 2)
    dataset = pipeline.build_dataset(shards, _train_parser(), 4, True,
                                     input_context=context, seed=0)
    ids = set()
    for _, labels in dataset.take(10):
      ids |= {s.decode().split('-')[0] for s in labels['source_id'].numpy()}
    seen.append(ids)
  assert len(seen[0]) == 2 and len(seen[1]) == 2
  assert not seen[0] & seen[1]


def test_fewer_files_than_pipelines_shards_records(tmp_path):
  pattern = _write_image_shards(str(tmp_path), 1, 6)
  ids = []
  for pipeline_id in range(2):
    context = tf.distribute.InputContext(2, pipeline_id, 2)
    dataset = pipeline.build_dataset(pattern, _eval_parser(), 2, False,
                                     input_context=context)
    ids.append(set(_source_ids(dataset)))
  assert len(ids[0]) == len(ids[1]) == 3
  assert not ids[0] & ids[1]


def test_missing_or_empty_file_pattern_errors(tmp_path):
  missing = str(tmp_path / 'nothing-*.tfrecord')
  with pytest.raises(FileNotFoundError, match='nothing-'):
    pipeline.build_dataset(missing, _train_parser(), 2, True)
  with pytest.raises(ValueError, match='empty'):
    pipeline.build_dataset('', _train_parser(), 2, True)


def test_video_training_and_streaming_evaluation(tmp_path):
  videos = [fake_records.video_example(num_frames=n, video_id=f'v{i}')
            for i, n in enumerate((4, 3))]
  pattern = fake_records.write_records(str(tmp_path / 'videos.tfrecord'),
                                       [v[0] for v in videos])
  train_parser = parsers.VideoTrainParser(image_size=(16, 24), mask_size=(8, 12))
  dataset = pipeline.build_dataset(pattern, train_parser, 3, True, video=True,
                                   seed=0)
  inputs_spec, labels_spec = dataset.element_spec
  assert inputs_spec['past_label_maps'].shape == (3, 2, 8, 12, 2)
  assert labels_spec['label_map'].shape == (3, 8, 12, 2)
  next(iter(dataset))

  eval_parser = parsers.VideoEvalParser(image_size=(16, 24), mask_size=(8, 12),
                                        max_original_size=(16, 24))
  stream = pipeline.build_video_eval_dataset(pattern, eval_parser)
  for spec in tf.nest.flatten(stream.element_spec):
    assert spec.shape.is_fully_defined(), spec
  order = []
  for inputs, labels in stream:
    assert inputs['images'].shape == (1, 16, 24, 3)
    video_id = labels['video_id'].numpy()[0].decode()
    t = int(labels['frame_index'].numpy()[0])
    order.append((video_id, t))
    arrays = videos[int(video_id[1])][1]
    np.testing.assert_array_equal(labels['original_label_map'][0, ..., 1],
                                  arrays['instance_masks'][t])
  assert order == [('v0', 0), ('v0', 1), ('v0', 2), ('v0', 3), ('v1', 0),
                   ('v1', 1), ('v1', 2)]
  with pytest.raises(ValueError, match='build_video_eval_dataset'):
    pipeline.build_dataset(pattern, eval_parser, 1, False, video=True)


def test_measure_throughput_and_gin_configured_benchmark(shards):
  dataset = pipeline.build_dataset(shards, _eval_parser(), 4, False)
  result = pipeline.measure_throughput(dataset, num_batches=3,
                                       warmup_batches=1)
  assert result['batch_size'] == 4 and result['num_batches'] == 3
  assert result['examples_per_sec'] > 0
  with pytest.raises(ValueError, match='ended after 5 batches'):
    pipeline.measure_throughput(dataset, num_batches=10)

  config.parse_gin([], ['TrainParser.image_size = (16, 16)',
                        'TrainParser.mask_size = (8, 8)'], finalize=False)
  result = pipeline.benchmark_training_input(shards, global_batch_size=2,
                                             num_batches=2, warmup_batches=1)
  assert result['image_size'] == [16, 16] and result['mask_size'] == [8, 8]
  assert result['examples_per_sec'] > 0


def test_gin_scoped_build_dataset_as_the_training_loop_calls_it(shards):
  """`tasks/train_lib.py` calls build_dataset under gin scope 'train' / 'eval'."""
  config.parse_gin([], [
      f"train/build_dataset.file_pattern = '{shards}'",
      'train/build_dataset.parser = @train/TrainParser()',
      'train/build_dataset.seed = 0',
      'train/TrainParser.image_size = (24, 24)',
      'train/TrainParser.mask_size = (12, 12)',
      f"eval/build_dataset.file_pattern = '{shards}'",
      'eval/build_dataset.parser = @eval/EvalParser()',
      'eval/EvalParser.image_size = (24, 24)',
      'eval/EvalParser.mask_size = (12, 12)',
      'eval/EvalParser.max_original_size = (40, 40)',
  ], finalize=False)
  with gin.config_scope('train'):
    train = pipeline.build_dataset(global_batch_size=4, is_training=True)
  with gin.config_scope('eval'):
    evaluation = pipeline.build_dataset(global_batch_size=4, is_training=False)
  assert train.element_spec[1]['label_map'].shape == (4, 12, 12, 2)
  assert evaluation.element_spec[1]['original_label_map'].shape == (4, 40, 40, 2)
  assert 'valid' in evaluation.element_spec[1]


def test_training_iterator_checkpoint_resumes_exactly(shards, tmp_path):
  dataset = pipeline.build_dataset(shards, _train_parser(), 4, True, seed=5,
                                   shuffle_buffer=8)
  iterator = iter(dataset)
  next(iterator)
  checkpoint = tf.train.Checkpoint(iterator=iterator)
  path = checkpoint.save(str(tmp_path / 'ckpt'))
  expected = next(iterator)
  checkpoint.restore(path)
  resumed = next(iterator)
  np.testing.assert_array_equal(resumed[1]['source_id'], expected[1]['source_id'])
  np.testing.assert_array_equal(resumed[1]['label_map'], expected[1]['label_map'])
  np.testing.assert_allclose(resumed[0]['images'], expected[0]['images'])
