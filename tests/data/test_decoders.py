"""Tests for data/decoders.py: records built from numpy masks decode back exactly."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from data import decoders
from data import records
from tests.data import fake_records


def _in_dataset_map(fn, serialized):
  """Runs `fn` inside `tf.data.Dataset.map` (graph mode) on one record."""
  dataset = tf.data.Dataset.from_tensors(serialized).map(fn)
  return next(iter(dataset))


def test_panoptic_example_round_trip_pixel_exact():
  example, arrays = fake_records.image_example(crowd_segments=(2,))
  serialized = example.SerializeToString()
  decoded = decoders.decode_panoptic_example(serialized)
  np.testing.assert_array_equal(decoded['image'], arrays['image'])
  np.testing.assert_array_equal(decoded['category_mask'],
                                arrays['category_mask'])
  np.testing.assert_array_equal(decoded['instance_mask'],
                                arrays['instance_mask'])
  np.testing.assert_array_equal(decoded['segment_class_ids'],
                                arrays['segment_class_ids'])
  np.testing.assert_array_equal(decoded['segment_is_crowd'],
                                arrays['segment_is_crowd'])
  np.testing.assert_array_equal(
      decoded['segment_ids'], 1000 + np.arange(len(arrays['segment_class_ids'])))
  assert decoded['source_id'].numpy() == b'img0'
  assert decoded['filename'].numpy() == b'img0.png'
  assert (int(decoded['height']), int(decoded['width'])) == (24, 32)
  for key in ('category_mask', 'instance_mask', 'segment_class_ids',
              'segment_is_crowd', 'height'):
    assert decoded[key].dtype == tf.int32
  assert decoded['image'].dtype == tf.uint8


def test_instance_indices_above_255_survive():
  """The uint16 instance PNG keeps indices > 255 (COCO has up to ~100, videos more)."""
  height, width = 20, 20
  instance = np.arange(1, height * width + 1, dtype=np.uint16).reshape(
      height, width)
  category = (instance % 7 + 1).astype(np.uint8)
  n = height * width
  example = records.panoptic_example(
      image_bytes=records.encode_png(np.zeros((height, width, 3), np.uint8)),
      image_format='png', height=height, width=width, source_id='big',
      filename='big.png', category_mask=category, instance_mask=instance,
      segment_ids=range(n), segment_class_ids=[1] * n,
      segment_is_crowd=[0] * n)
  decoded = decoders.decode_panoptic_example(example.SerializeToString())
  np.testing.assert_array_equal(decoded['instance_mask'], instance)
  assert int(tf.reduce_max(decoded['instance_mask'])) == 400


def test_eager_and_dataset_map_agree():
  example, _ = fake_records.image_example(image_format='jpeg')
  serialized = example.SerializeToString()
  eager = decoders.decode_panoptic_example(serialized)
  mapped = _in_dataset_map(decoders.decode_panoptic_example, serialized)
  assert eager.keys() == mapped.keys()
  for key in eager:
    np.testing.assert_array_equal(eager[key], mapped[key], err_msg=key)


def test_jpeg_decodes_like_pil():
  ys, xs = np.mgrid[0:24, 0:32]
  image = np.stack([ys * 10, xs * 8, 255 - ys * 5 - xs * 3], -1).astype(np.uint8)
  example, _ = fake_records.image_example(image=image, image_format='jpeg')
  decoded = decoders.decode_panoptic_example(example.SerializeToString())
  jpeg = fake_records.encode_image(image, 'jpeg')
  reference = np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB'))
  # JPEG decoders differ slightly (IDCT rounding, chroma upsampling).
  difference = np.abs(decoded['image'].numpy().astype(int) -
                      reference.astype(int))
  assert difference.mean() < 2.0 and difference.max() <= 8


def test_grayscale_image_becomes_three_channels():
  gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
  example, _ = fake_records.image_example(image=gray)
  decoded = decoders.decode_panoptic_example(example.SerializeToString())
  assert decoded['image'].shape == (24, 32, 3)
  for c in range(3):
    np.testing.assert_array_equal(decoded['image'][..., c], gray)


def test_image_size_mismatch_names_the_record():
  _, arrays = fake_records.image_example()
  wrong_image = records.encode_png(np.zeros((10, 10, 3), np.uint8))
  example = records.panoptic_example(
      image_bytes=wrong_image, image_format='png', height=24, width=32,
      source_id='bad-record-7', filename='x.png',
      category_mask=arrays['category_mask'],
      instance_mask=arrays['instance_mask'],
      segment_ids=range(11), segment_class_ids=arrays['segment_class_ids'],
      segment_is_crowd=arrays['segment_is_crowd'])
  with pytest.raises(tf.errors.InvalidArgumentError, match='bad-record-7'):
    decoders.decode_panoptic_example(example.SerializeToString())


def test_video_example_round_trip_pixel_exact():
  example, arrays = fake_records.video_example(num_frames=4,
                                               first_frame_index=10)
  serialized = example.SerializeToString()
  for decoded in (decoders.decode_video_example(serialized),
                  _in_dataset_map(decoders.decode_video_example, serialized)):
    np.testing.assert_array_equal(decoded['frames'], arrays['frames'])
    np.testing.assert_array_equal(decoded['category_masks'],
                                  arrays['category_masks'])
    np.testing.assert_array_equal(decoded['instance_masks'],
                                  arrays['instance_masks'])
    assert decoded['frames'].dtype == tf.uint8
    assert decoded['instance_masks'].dtype == tf.int32
    assert decoded['video_id'].numpy() == b'vid0'
    assert list(decoded['frame_names'].numpy()) == [
        b'00010', b'00011', b'00012', b'00013']
    assert int(decoded['first_frame_index']) == 10
    assert int(decoded['num_frames']) == 4


def test_decode_video_frames_picks_the_asked_frames():
  example, arrays = fake_records.video_example(num_frames=5)
  video = decoders.parse_video_example(example.SerializeToString())
  frames, categories, instances = decoders.decode_video_frames(
      video, tf.constant([3, 0, 3]))
  np.testing.assert_array_equal(frames, arrays['frames'][[3, 0, 3]])
  np.testing.assert_array_equal(categories, arrays['category_masks'][[3, 0, 3]])
  np.testing.assert_array_equal(instances, arrays['instance_masks'][[3, 0, 3]])


def test_video_frames_dataset_streams_frames_in_order():
  example, arrays = fake_records.video_example(num_frames=3,
                                               first_frame_index=7)
  video = decoders.parse_video_example(example.SerializeToString())
  frames = list(decoders.video_frames_dataset(video))
  assert [int(f['frame_index']) for f in frames] == [7, 8, 9]
  for t, frame in enumerate(frames):
    decoded = decoders.decode_video_frame(frame)
    np.testing.assert_array_equal(decoded['image'], arrays['frames'][t])
    np.testing.assert_array_equal(decoded['instance_mask'],
                                  arrays['instance_masks'][t])
    assert frame['video_id'].numpy() == b'vid0'
