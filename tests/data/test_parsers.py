"""Tests for data/parsers.py: geometry, random ids, crowd, video clips, undoing the resize."""

import numpy as np
import pytest
import tensorflow as tf

from data import decoders
from data import parsers
from tests.data import fake_records


def _decoded(**kwargs):
  example, arrays = fake_records.image_example(**kwargs)
  return decoders.decode_panoptic_example(example.SerializeToString()), arrays


def _parse_in_map(parser, serialized, seed, decode=decoders.decode_panoptic_example):
  """Decodes and parses inside `tf.data.Dataset.map` with a fixed seed."""
  dataset = tf.data.Dataset.from_tensors((serialized, seed)).map(
      lambda s, sd: parser(decode(s), seed=sd))
  return next(iter(dataset))


def _stored_label_map(decoded, image_info, image_size, mask_size):
  """The stored (class, segment index) label under the parser's geometry."""
  return parsers.masks_to_label_map(
      decoded['category_mask'], decoded['instance_mask'], image_info,
      image_size, mask_size).numpy()


def _id_mapping(stored, parsed):
  """{stored segment index: set of parsed ids at its pixels} (non-void)."""
  mapping = {}
  for index, new_id in zip(stored[..., 1].ravel(), parsed[..., 1].ravel()):
    if index > 0:
      mapping.setdefault(int(index), set()).add(int(new_id))
  return mapping


# Geometry -----------------------------------------------------------------


def test_compute_image_info_known_values():
  info = parsers.compute_image_info(tf.constant([100, 200]), (64, 64))
  np.testing.assert_allclose(info, [[100, 200], [32, 64], [0.32, 0.32], [0, 0]],
                             rtol=1e-6)
  # Scale 2: target 128, factor min(1.28, 0.64) = 0.64 -> (64, 128); the
  # slack is (0, 64) and half of it is the offset.
  info = parsers.compute_image_info(tf.constant([100, 200]), (64, 64), 2.0,
                                    tf.constant([0.5, 0.5]))
  np.testing.assert_allclose(info, [[100, 200], [64, 128], [0.64, 0.64], [0, 32]],
                             rtol=1e-6)


GEOMETRY_CASES = [
    # (original size, output size, mask size, scale, offset fraction)
    ((60, 90), (64, 64), (32, 32), 1.0, (0.0, 0.0)),
    ((101, 77), (64, 64), (32, 32), 1.0, (0.0, 0.0)),
    ((48, 80), (32, 48), (16, 24), 2.7, (0.3, 0.9)),
    ((90, 70), (64, 64), (64, 64), 1.5, (0.6, 0.2)),
    ((120, 160), (32, 32), (16, 16), 0.6, (0.5, 0.5)),
]


def _reference_window(x, info, output_size, method):
  """The slow way: `tf.image.resize` the whole image, crop the window, pad."""
  scaled = tf.cast(info[1], tf.int32)
  offset = tf.cast(info[3], tf.int32)
  x = tf.image.resize(x, scaled, method=method)
  x = x[offset[0]:offset[0] + output_size[0], offset[1]:offset[1] + output_size[1]]
  return tf.image.pad_to_bounding_box(x, 0, 0, *output_size)


@pytest.mark.parametrize('flip', [False, True])
@pytest.mark.parametrize('case', GEOMETRY_CASES)
def test_window_sampling_equals_flip_resize_then_crop(case, flip):
  original, output, mask, scale, fraction = case
  rng = np.random.default_rng(0)
  image = tf.constant(rng.integers(0, 256, size=original + (3,)), tf.uint8)
  masks = tf.constant(rng.integers(0, 50, size=original + (2,)), tf.int32)
  info = parsers.compute_image_info(tf.constant(original), output, scale,
                                    tf.constant(fraction))
  fast_image = parsers.pad_to_size(
      parsers.resize_and_crop_image(image, info, output, tf.constant(flip)),
      output)
  fast_label = parsers.masks_to_label_map(masks[..., 0], masks[..., 1], info,
                                          output, mask, tf.constant(flip))
  if flip:
    image, masks = image[:, ::-1], masks[:, ::-1]
  reference = _reference_window(tf.cast(image, tf.float32) / 255.0, info,
                                output, 'bilinear')
  np.testing.assert_allclose(fast_image, reference, atol=1e-5)
  reference = _reference_window(masks, info, output, 'nearest')
  if mask != output:
    reference = tf.image.resize(reference, mask, method='nearest')
  np.testing.assert_array_equal(fast_label, reference)


def test_image_and_masks_stay_aligned_under_jitter_and_flip():
  """The red channel encodes the class: wherever the label is a block interior,
  the image there must show that class's colour (catches off-by-one sizes)."""
  decoded, _ = _decoded(height=60, width=90, grid=(3, 5))
  parser = parsers.TrainParser(image_size=(64, 64), mask_size=(64, 64),
                               scale_range=(0.5, 2.5), color_jitter=0.0,
                               max_instances=101, crowd_to_void=False)
  total = 0
  for s in range(8):
    inputs, labels = parser(decoded, seed=tf.constant([s, 7]))
    red = np.round(inputs['images'][..., 0].numpy() * 255)
    classes = labels['label_map'][..., 0].numpy()
    # Interior: the 3x3 neighbourhood has one class (bilinear blurs edges).
    padded = np.pad(classes, 1, mode='edge')
    same = np.ones_like(classes, bool)
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        same &= padded[1 + dy:65 + dy, 1 + dx:65 + dx] == classes
    valid = np.zeros_like(same)
    scaled = labels['image_info'][1].numpy() - labels['image_info'][3].numpy()
    valid[:int(min(scaled[0], 64)) - 1, :int(min(scaled[1], 64)) - 1] = True
    interior = same & valid
    total += interior.sum()
    np.testing.assert_allclose(red[interior], classes[interior] * 10, atol=1)
  assert total > 2000


def test_padding_is_void_and_black():
  decoded, _ = _decoded(height=32, width=64, grid=(2, 2))
  parser = parsers.TrainParser(image_size=(64, 64), mask_size=(32, 32),
                               scale_range=(1.0, 1.0), color_jitter=0.0,
                               hflip=False)
  inputs, labels = parser(decoded, seed=tf.constant([1, 2]))
  np.testing.assert_allclose(labels['image_info'][1], [32, 64])
  assert np.all(labels['label_map'][16:].numpy() == 0)
  assert np.all(inputs['images'][32:].numpy() == 0)
  assert np.any(labels['label_map'][:16, :, 1].numpy() > 0)


def test_train_parser_output_spec():
  decoded, _ = _decoded()
  inputs, labels = parsers.TrainParser(image_size=(48, 40), mask_size=(24, 20))(
      decoded, seed=tf.constant([3, 4]))
  assert inputs['images'].shape == (48, 40, 3)
  assert inputs['images'].dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(inputs['images']))
  assert float(tf.reduce_max(inputs['images'])) <= 1.0
  assert labels['label_map'].shape == (24, 20, 2)
  assert labels['label_map'].dtype == tf.int32
  assert labels['image_info'].shape == (4, 2)
  assert labels['source_id'].numpy() == b'img0'


# Eager == tf.data.Dataset.map ---------------------------------------------


@pytest.mark.parametrize('color_jitter', [0.0, 1.0])
def test_train_parser_eager_and_dataset_map_agree(color_jitter):
  example, _ = fake_records.image_example(height=40, width=56, crowd_segments=(3,))
  serialized = example.SerializeToString()
  parser = parsers.TrainParser(image_size=(32, 32), mask_size=(16, 16),
                               color_jitter=color_jitter)
  seed = tf.constant([11, 5], tf.int64)
  eager = parser(decoders.decode_panoptic_example(serialized), seed=seed)
  mapped = _parse_in_map(parser, serialized, seed)
  np.testing.assert_allclose(eager[0]['images'], mapped[0]['images'],
                             atol=1e-6)
  for key in ('label_map', 'image_info', 'source_id'):
    np.testing.assert_array_equal(eager[1][key], mapped[1][key], err_msg=key)


def test_eval_parser_eager_and_dataset_map_agree():
  example, _ = fake_records.image_example(height=40, width=56)
  serialized = example.SerializeToString()
  parser = parsers.EvalParser(image_size=(32, 32), mask_size=(16, 16),
                              max_original_size=(64, 64), max_segments=20)
  eager = parser(decoders.decode_panoptic_example(serialized))
  mapped = _parse_in_map(parser, serialized, tf.constant([0, 0]))
  np.testing.assert_allclose(eager[0]['images'], mapped[0]['images'], atol=1e-6)
  for key in eager[1]:
    np.testing.assert_array_equal(eager[1][key], mapped[1][key], err_msg=key)


def test_color_jitter_eager_and_map_agree_and_stay_in_range():
  rng = np.random.default_rng(0)
  image = tf.constant(rng.uniform(size=(8, 8, 3)), tf.float32)
  seeds = tf.constant([[i, 3] for i in range(6)], tf.int64)
  eager = tf.stack([parsers.color_jitter(image, 1.0, s) for s in seeds])
  mapped = tf.stack(list(tf.data.Dataset.from_tensor_slices(seeds).map(
      lambda s: parsers.color_jitter(image, 1.0, s))))
  np.testing.assert_allclose(eager, mapped, atol=1e-6)
  assert float(tf.reduce_min(eager)) >= 0.0
  assert float(tf.reduce_max(eager)) <= 1.0
  changed = [not np.allclose(e, image) for e in eager.numpy()]
  assert sum(changed) >= 3  # Applied with p = 0.8.


# Fresh random ids (REFERENCE §1) -------------------------------------------


def test_random_ids_are_a_bijection_that_preserves_the_segmentation():
  decoded, arrays = _decoded(height=40, width=48, grid=(4, 4))
  parser = parsers.TrainParser(image_size=(32, 32), mask_size=(32, 32),
                               scale_range=(1.0, 2.0), color_jitter=0.0,
                               hflip=False, max_instances=101,
                               crowd_to_void=False)
  mappings = []
  for s in range(2):
    _, labels = parser(decoded, seed=tf.constant([s, 99]))
    parsed = labels['label_map'].numpy()
    stored = _stored_label_map(decoded, labels['image_info'], (32, 32),
                               (32, 32))
    # Classes are untouched; void stays void.
    np.testing.assert_array_equal(parsed[..., 0], stored[..., 0])
    assert np.all(parsed[stored[..., 1] == 0, 1] == 0)
    mapping = _id_mapping(stored, parsed)
    # One id per segment, distinct across segments, all in [1, K].
    assert all(len(ids) == 1 for ids in mapping.values())
    ids = [next(iter(v)) for v in mapping.values()]
    assert len(set(ids)) == len(ids)
    assert all(1 <= i <= 101 for i in ids)
    mappings.append({k: next(iter(v)) for k, v in mapping.items()})
  # Two samples of the same image get different ids.
  common = mappings[0].keys() & mappings[1].keys()
  assert len(common) >= 4
  assert any(mappings[0][k] != mappings[1][k] for k in common)


def test_segments_beyond_k_become_void():
  decoded, _ = _decoded(height=36, width=36, grid=(6, 6))  # 35 segments.
  parser = parsers.TrainParser(image_size=(36, 36), mask_size=(36, 36),
                               scale_range=(1.0, 1.0), color_jitter=0.0,
                               hflip=False, max_instances=10)
  _, labels = parser(decoded, seed=tf.constant([0, 1]))
  parsed = labels['label_map'].numpy()
  ids = np.unique(parsed[..., 1])
  assert set(ids) - {0} and set(ids) <= set(range(0, 11))
  assert len(ids) == 11  # void + the first 10 segments by index.
  stored = decoded['instance_mask'].numpy()
  # Segments 1..10 keep an id, 11.. are void in both channels.
  assert np.all(parsed[(stored >= 1) & (stored <= 10), 1] > 0)
  assert np.all(parsed[stored > 10] == 0)


def test_crowd_segments_become_void():
  decoded, _ = _decoded(height=24, width=32, crowd_segments=(2, 5))
  stored = decoded['instance_mask'].numpy()
  kwargs = dict(image_size=(24, 32), mask_size=(24, 32), scale_range=(1.0, 1.0),
                color_jitter=0.0, hflip=False)
  _, labels = parsers.TrainParser(crowd_to_void=True, **kwargs)(
      decoded, seed=tf.constant([0, 3]))
  parsed = labels['label_map'].numpy()
  crowd = np.isin(stored, [2, 5])
  assert crowd.any()
  assert np.all(parsed[crowd] == 0)
  assert np.all(parsed[(stored > 0) & ~crowd, 1] > 0)
  _, labels = parsers.TrainParser(crowd_to_void=False, **kwargs)(
      decoded, seed=tf.constant([0, 3]))
  assert np.all(labels['label_map'].numpy()[crowd, 1] > 0)


def test_assign_random_ids_rejects_ids_that_do_not_fit_the_bits():
  with pytest.raises(ValueError, match='instance_bits'):
    parsers.TrainParser(max_instances=256)
  parsers.TrainParser(max_instances=256, instance_bits=9)


# Evaluation ----------------------------------------------------------------


def test_eval_parser_labels_and_original_ground_truth():
  decoded, arrays = _decoded(height=40, width=56, crowd_segments=(4,))
  parser = parsers.EvalParser(image_size=(32, 32), mask_size=(16, 16),
                              max_original_size=(48, 64), max_segments=20)
  inputs, labels = parser(decoded)
  assert inputs['images'].shape == (32, 32, 3)
  original = labels['original_label_map'].numpy()
  assert original.shape == (48, 64, 2)
  np.testing.assert_array_equal(original[:40, :56, 0], arrays['category_mask'])
  np.testing.assert_array_equal(original[:40, :56, 1], arrays['instance_mask'])
  assert np.all(original[40:] == 0) and np.all(original[:, 56:] == 0)
  crowd = labels['segment_is_crowd'].numpy()
  assert crowd.shape == (21,)
  np.testing.assert_array_equal(np.nonzero(crowd)[0], [4])
  classes = labels['segment_class_ids'].numpy()
  np.testing.assert_array_equal(classes[1:12], arrays['segment_class_ids'])
  assert classes[0] == 0 and np.all(classes[12:] == 0)
  # Stored indices at mask size, no random ids.
  stored = _stored_label_map(decoded, labels['image_info'], (32, 32), (16, 16))
  np.testing.assert_array_equal(labels['label_map'], stored)


def test_eval_parser_too_large_image_names_the_record():
  decoded, _ = _decoded(height=40, width=56, source_id='huge-42')
  parser = parsers.EvalParser(image_size=(32, 32), mask_size=(16, 16),
                              max_original_size=(32, 32))
  with pytest.raises(tf.errors.InvalidArgumentError, match='huge-42'):
    parser(decoded)


def test_image_info_undoes_the_resize_exactly_on_aligned_blocks():
  # 128 x 96 -> scale 0.5 -> 64 x 48 in a 64 x 64 input, mask 32 x 32: every
  # mask pixel covers 4 x 4 original pixels, and the blocks are 32 x 32.
  decoded, arrays = _decoded(height=128, width=96, grid=(4, 3))
  parser = parsers.EvalParser(image_size=(64, 64), mask_size=(32, 32),
                              max_original_size=(128, 128))
  _, labels = parser(decoded)
  np.testing.assert_allclose(labels['image_info'][2], [0.5, 0.5])
  restored = parsers.label_map_to_original(labels['label_map'],
                                           labels['image_info'], (64, 64))
  assert restored.shape == (128, 96, 2)
  np.testing.assert_array_equal(restored[..., 0], arrays['category_mask'])
  np.testing.assert_array_equal(restored[..., 1], arrays['instance_mask'])


def test_image_info_undoes_a_jittered_crop_inside_the_window():
  decoded, arrays = _decoded(height=90, width=70, grid=(3, 2))
  parser = parsers.TrainParser(image_size=(64, 64), mask_size=(64, 64),
                               scale_range=(1.5, 1.5), color_jitter=0.0,
                               hflip=False, crowd_to_void=False)
  _, labels = parser(decoded, seed=tf.constant([5, 5]))
  info = labels['image_info'].numpy()
  assert info[3].max() > 0  # The crop moved.
  restored = parsers.label_map_to_original(labels['label_map'], info,
                                           (64, 64)).numpy()
  # Original pixels that land inside the crop window come back with their class.
  ys = (np.arange(90) + 0.5) * info[2, 0] - info[3, 0]
  xs = (np.arange(70) + 0.5) * info[2, 1] - info[3, 1]
  inside = ((ys >= 0) & (ys < 64))[:, None] & ((xs >= 0) & (xs < 64))[None, :]
  agree = restored[..., 0] == arrays['category_mask']
  assert inside.sum() > 1000
  assert agree[inside].mean() > 0.97


def test_image_info_undo_on_odd_sizes_is_nearly_exact():
  decoded, arrays = _decoded(height=101, width=77, grid=(3, 3))
  parser = parsers.EvalParser(image_size=(64, 64), mask_size=(32, 32),
                              max_original_size=(128, 128))
  _, labels = parser(decoded)
  restored = parsers.label_map_to_original(labels['label_map'],
                                           labels['image_info'], (64, 64))
  agree = restored.numpy()[..., 1] == arrays['instance_mask']
  assert agree.mean() > 0.95  # Only block edges move (mask at 1/3 scale).


# Video ---------------------------------------------------------------------


def _video(num_frames=6, **kwargs):
  example, arrays = fake_records.video_example(num_frames=num_frames, **kwargs)
  serialized = example.SerializeToString()
  return serialized, decoders.parse_video_example(serialized), arrays


def _current_frame(labels):
  return int(labels['source_id'].numpy().decode().split('/')[1])


def test_video_clip_past_frames_and_ids_shared_across_frames():
  serialized, video, arrays = _video(num_frames=6)
  parser = parsers.VideoTrainParser(image_size=(16, 24), mask_size=(16, 24),
                                    past_frame_offsets=(-2, -1),
                                    past_drop_rate=0.0, scale_range=(1.0, 1.0),
                                    hflip=False, max_instances=255)
  seen = set()
  for s in range(24):
    inputs, labels = parser(video, seed=tf.constant([s, 1]))
    t = _current_frame(labels)
    seen.add(t)
    current = labels['label_map'].numpy()
    past = inputs['past_label_maps'].numpy()
    assert past.shape == (2, 16, 24, 2)
    # The class channel tells which frame each map came from (class = t + 1).
    for p, offset in enumerate((-2, -1)):
      if t + offset < 0:  # Before the video starts: all void, never frame 0.
        assert not past[p].any()
      else:
        assert set(np.unique(past[p, ..., 0])) == {0, t + offset + 1}
    assert set(np.unique(current[..., 0])) == {0, t + 1}
    # One id per stored instance, the same in every frame of the clip.
    mapping = {}
    frames = [t - 2, t - 1, t]
    for label, frame in zip([past[0], past[1], current], frames):
      if frame < 0:
        continue
      for index, new_id in zip(arrays['instance_masks'][frame].ravel(),
                               label[..., 1].ravel()):
        if index:
          mapping.setdefault(int(index), set()).add(int(new_id))
    assert all(len(v) == 1 for v in mapping.values())
    ids = [next(iter(v)) for v in mapping.values()]
    assert len(set(ids)) == len(ids) and min(ids) >= 1 and max(ids) <= 255
  assert {0, 1} <= seen and len(seen) >= 4


def test_video_frame_dropout_rate():
  serialized, _, _ = _video(num_frames=4, height=8, width=8)
  parser = parsers.VideoTrainParser(image_size=(8, 8), mask_size=(8, 8),
                                    past_drop_rate=0.3, hflip=False,
                                    scale_range=(1.0, 1.0))
  num = 300
  dataset = tf.data.Dataset.zip((
      tf.data.Dataset.from_tensors(serialized).repeat(num),
      tf.data.Dataset.random(seed=4).batch(2).take(num)))
  def clip(s, sd):
    inputs, labels = parser(decoders.parse_video_example(s), seed=sd)
    return inputs['past_label_maps'], labels['source_id']

  dropped = total = 0
  for past, source_id in dataset.map(clip):
    t = int(source_id.numpy().decode().split('/')[1])
    for p, offset in enumerate((-2, -1)):
      if t + offset >= 0:  # Frames before the start are void, not dropped.
        total += 1
        # Every source frame has objects, so an all-void map is a dropped one.
        dropped += int(not past[p].numpy().any())
  expected, std = 0.3 * total, np.sqrt(total * 0.3 * 0.7)
  assert abs(dropped - expected) < 4 * std, (dropped, expected)


def test_video_train_parser_eager_and_dataset_map_agree():
  serialized, video, _ = _video(num_frames=5)
  parser = parsers.VideoTrainParser(image_size=(16, 16), mask_size=(8, 8),
                                    color_jitter=1.0)
  seed = tf.constant([8, 9], tf.int64)
  eager = parser(video, seed=seed)
  mapped = _parse_in_map(parser, serialized, seed,
                         decode=decoders.parse_video_example)
  np.testing.assert_allclose(eager[0]['images'], mapped[0]['images'], atol=1e-6)
  np.testing.assert_array_equal(eager[0]['past_label_maps'],
                                mapped[0]['past_label_maps'])
  for key in ('label_map', 'image_info', 'source_id'):
    np.testing.assert_array_equal(eager[1][key], mapped[1][key], err_msg=key)


def test_video_eval_parser_one_frame():
  _, video, arrays = _video(num_frames=3, first_frame_index=4)
  frames = list(decoders.video_frames_dataset(video))
  parser = parsers.VideoEvalParser(image_size=(32, 48), mask_size=(16, 24),
                                   max_original_size=(20, 30))
  inputs, labels = parser(frames[1])
  assert inputs['images'].shape == (32, 48, 3)
  assert int(labels['frame_index']) == 5
  assert labels['video_id'].numpy() == b'vid0'
  original = labels['original_label_map'].numpy()
  np.testing.assert_array_equal(original[:16, :24, 1], arrays['instance_masks'][1])
  assert np.all(original[16:] == 0)
  restored = parsers.label_map_to_original(labels['label_map'],
                                           labels['image_info'], (32, 48))
  np.testing.assert_array_equal(restored[..., 1], arrays['instance_masks'][1])


def test_pad_value_and_antialias_match_tf_image_resize_eagerly_and_in_map():
  """The authors' inputs: antialiased resize, padding 0.3 (transform_configs)."""
  rng = np.random.default_rng(0)
  image = tf.constant(rng.integers(0, 256, size=(96, 128, 3)), tf.uint8)
  image_info = parsers.compute_image_info(tf.shape(image)[:2], (64, 64))

  def preprocess(image):
    window = parsers.resize_and_crop_image(image, image_info, (64, 64),
                                           antialias=True)
    return parsers.pad_to_size(window, (64, 64), 0.3)

  expected = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (48, 64),
                             antialias=True).numpy()
  eager = preprocess(image).numpy()
  mapped = next(iter(tf.data.Dataset.from_tensors(image).map(preprocess))).numpy()
  np.testing.assert_array_equal(eager, mapped)
  np.testing.assert_allclose(eager[:48], expected, atol=1e-6)
  np.testing.assert_allclose(eager[48:], 0.3)
  plain = parsers.resize_and_crop_image(image, image_info, (64, 64)).numpy()
  assert np.abs(plain - expected).max() > 0.05  # Shrinking: antialias matters.
  np.testing.assert_array_equal(parsers.pad_to_size(plain, (64, 64)).numpy()[48:], 0)


def test_parsers_take_the_authors_pad_value_and_antialias():
  decoded, _ = _decoded(height=48, width=96)
  for parser in (parsers.EvalParser((64, 64), (32, 32), pad_value=0.3,
                                    antialias=True),
                 parsers.TrainParser((64, 64), (32, 32), scale_range=(1.0, 1.0),
                                     color_jitter=0.0, hflip=False,
                                     pad_value=0.3, antialias=True)):
    inputs, labels = parser(decoded, seed=tf.constant([1, 2]))
    rows = int(labels['image_info'][1, 0])
    np.testing.assert_allclose(inputs['images'].numpy()[rows:], 0.3)
    expected = tf.image.resize(tf.cast(decoded['image'], tf.float32) / 255.0,
                               (rows, 64), antialias=True)
    np.testing.assert_allclose(inputs['images'].numpy()[:rows], expected,
                               atol=1e-5)
