"""Test helpers: read converter outputs back into numpy, independently of data/pipeline."""

import os

import numpy as np
from PIL import Image
import tensorflow as tf

from data import records
from data import writer

_IMAGE_FEATURES = {
    records.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    records.IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string),
    records.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_SOURCE_ID: tf.io.FixedLenFeature([], tf.string),
    records.IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string),
    records.CATEGORY_MASK: tf.io.FixedLenFeature([], tf.string),
    records.INSTANCE_MASK: tf.io.FixedLenFeature([], tf.string),
    records.SEGMENT_IDS: tf.io.VarLenFeature(tf.int64),
    records.SEGMENT_CLASS_IDS: tf.io.VarLenFeature(tf.int64),
    records.SEGMENT_IS_CROWD: tf.io.VarLenFeature(tf.int64),
}

_VIDEO_CONTEXT = {
    records.VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
    records.VIDEO_FIRST_FRAME_INDEX: tf.io.FixedLenFeature([], tf.int64),
    records.VIDEO_NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    records.IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string),
}

_VIDEO_LISTS = {
    key: tf.io.FixedLenSequenceFeature([], tf.string)
    for key in (records.IMAGE_ENCODED, records.FRAME_NAME,
                records.CATEGORY_MASK, records.INSTANCE_MASK)
}


def shard_paths(output_prefix):
  return sorted(tf.io.gfile.glob(writer.shard_pattern(output_prefix)))


def _raw_records(output_prefix):
  for path in shard_paths(output_prefix):
    for raw in tf.data.TFRecordDataset(path):
      yield raw


def read_image_records(output_prefix):
  """Every image record of `P`'s shards as a dict of numpy values."""
  out = []
  for raw in _raw_records(output_prefix):
    parsed = tf.io.parse_single_example(raw, _IMAGE_FEATURES)
    example = {}
    for key, value in parsed.items():
      if isinstance(value, tf.SparseTensor):
        example[key] = tf.sparse.to_dense(value).numpy().tolist()
      else:
        example[key] = value.numpy()
    example[records.CATEGORY_MASK] = records.decode_png(
        example[records.CATEGORY_MASK])
    example[records.INSTANCE_MASK] = records.decode_png(
        example[records.INSTANCE_MASK])
    out.append(example)
  return out


def read_video_records(output_prefix):
  """Every video record as (context dict, lists dict with decoded masks)."""
  out = []
  for raw in _raw_records(output_prefix):
    context, lists = tf.io.parse_single_sequence_example(
        raw, context_features=_VIDEO_CONTEXT, sequence_features=_VIDEO_LISTS)
    context = {k: v.numpy() for k, v in context.items()}
    lists = {k: list(v.numpy()) for k, v in lists.items()}
    lists[records.CATEGORY_MASK] = [
        records.decode_png(m) for m in lists[records.CATEGORY_MASK]]
    lists[records.INSTANCE_MASK] = [
        records.decode_png(m) for m in lists[records.INSTANCE_MASK]]
    out.append((context, lists))
  return out


def rgb_ids(path):
  """An RGB id PNG as int64 ids R + 256G + 256²B (an independent reader)."""
  rgb = np.asarray(Image.open(path).convert('RGB'), dtype=np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def assert_matches_source(example, annotation, png_path, image_path,
                          class_of_category):
  """The record's masks say exactly what the source PNG and JSON say."""
  ids = rgb_ids(png_path)
  category_mask = example[records.CATEGORY_MASK]
  instance_mask = example[records.INSTANCE_MASK]
  assert category_mask.dtype == np.uint8 and instance_mask.dtype == np.uint16
  assert category_mask.shape == ids.shape == instance_mask.shape
  present = [s for s in annotation['segments_info'] if (ids == s['id']).any()]
  # Index i+1 is the i-th segment of segments_info that has pixels.
  assert example[records.SEGMENT_IDS] == [s['id'] for s in present]
  assert example[records.SEGMENT_CLASS_IDS] == [
      class_of_category[s['category_id']] for s in present]
  assert example[records.SEGMENT_IS_CROWD] == [s['iscrowd'] for s in present]
  for index, segment in enumerate(present, start=1):
    pixels = ids == segment['id']
    np.testing.assert_array_equal(instance_mask == index, pixels)
    assert (category_mask[pixels] == class_of_category[segment['category_id']]
           ).all()
  np.testing.assert_array_equal(instance_mask == 0, ids == 0)
  np.testing.assert_array_equal(category_mask == 0, ids == 0)
  with open(image_path, 'rb') as f:
    assert example[records.IMAGE_ENCODED] == f.read()
  height, width = ids.shape
  assert (example[records.IMAGE_HEIGHT], example[records.IMAGE_WIDTH]) == (
      height, width)
  assert example[records.IMAGE_FILENAME].decode() == os.path.basename(
      image_path)
  assert example[records.IMAGE_SOURCE_ID].decode() == str(
      annotation['image_id'])
