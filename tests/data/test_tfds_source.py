"""Tests for the TFDS source of data/pipeline.py with `tfds.testing.mock_data`.

TFDS's random mock examples are not self-consistent (image and panoptic image
sizes differ), so `as_dataset_fn` serves hand-built examples with known masks in
the feature layout of `coco/2017_panoptic`.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data import decoders
from data import parsers
from data import pipeline
from tests.data import fake_records


def _tfds_example(seed, height=24, width=32):
  """A `coco/2017_panoptic`-shaped example and the masks it should decode to."""
  rng = np.random.default_rng(seed)
  category, instance, class_ids = fake_records.block_masks(height, width, (3, 4),
                                                           rng, num_classes=133)
  num = len(class_ids)
  # COCO-like segment ids: large, unordered; objects listed in index order.
  segment_ids = rng.choice(np.arange(1, 2**24), size=num, replace=False)
  id_map = np.where(instance > 0, segment_ids[np.maximum(instance, 1) - 1], 0)
  rgb = np.stack([id_map % 256, id_map // 256 % 256, id_map // 65536], -1)
  is_crowd = np.zeros(num, bool)
  is_crowd[1] = True
  example = {
      'image': fake_records.class_colour_image(category),
      'image/filename': f'{seed:012d}.jpg',
      'image/id': seed,
      'panoptic_image': rgb.astype(np.uint8),
      'panoptic_image/filename': f'{seed:012d}.png',
      'panoptic_objects': {
          'id': segment_ids.astype(np.int64),
          'area': np.bincount(instance.ravel(), minlength=num + 1)[1:].astype(
              np.int64),
          'bbox': np.zeros((num, 4), np.float32),
          'label': (class_ids - 1).astype(np.int64),  # TFDS labels are 0-based.
          'is_crowd': is_crowd,
      },
  }
  expected = {'category_mask': category, 'instance_mask': instance,
              'segment_class_ids': class_ids, 'segment_is_crowd': is_crowd}
  return example, expected


NUM_EXAMPLES = 6
EXAMPLES = [_tfds_example(seed) for seed in range(NUM_EXAMPLES)]


def _as_dataset(self, split, *args, **kwargs):
  del split, args, kwargs
  features = self.info.features
  return tf.data.Dataset.from_generator(
      lambda: (example for example, _ in EXAMPLES),
      output_signature=tf.nest.map_structure(
          lambda f: tf.TensorSpec(f.shape, f.dtype),
          features.get_tensor_info()))


@pytest.fixture
def mocked_coco():
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES,
                              as_dataset_fn=_as_dataset):
    yield


def test_tfds_features_map_to_the_decoded_dict(mocked_coco):
  del mocked_coco
  dataset = tfds.load('coco/2017_panoptic', split='validation')
  for example, (_, expected) in zip(dataset, EXAMPLES):
    decoded = pipeline.tfds_panoptic_to_decoded(example)
    np.testing.assert_array_equal(decoded['instance_mask'],
                                  expected['instance_mask'])
    np.testing.assert_array_equal(decoded['category_mask'],
                                  expected['category_mask'])
    np.testing.assert_array_equal(decoded['segment_class_ids'],
                                  expected['segment_class_ids'])
    np.testing.assert_array_equal(decoded['segment_is_crowd'],
                                  expected['segment_is_crowd'].astype(int))
    assert decoded['instance_mask'].dtype == tf.int32
    assert decoded['image'].dtype == tf.uint8


def test_tfds_conversion_has_the_keys_of_the_tfrecord_decoder(mocked_coco):
  del mocked_coco
  example, _ = fake_records.image_example()
  from_records = decoders.decode_panoptic_example(example.SerializeToString())
  dataset = tfds.load('coco/2017_panoptic', split='validation')
  from_tfds = pipeline.tfds_panoptic_to_decoded(next(iter(dataset)))
  assert from_tfds.keys() == from_records.keys()
  for key in from_records:
    assert from_tfds[key].dtype == from_records[key].dtype, key
    assert from_tfds[key].shape.rank == from_records[key].shape.rank, key


def test_tfds_conversion_eager_and_in_dataset_map_agree(mocked_coco):
  del mocked_coco
  dataset = tfds.load('coco/2017_panoptic', split='validation')
  eager = [pipeline.tfds_panoptic_to_decoded(e) for e in dataset]
  mapped = list(dataset.map(pipeline.tfds_panoptic_to_decoded))
  for a, b in zip(eager, mapped):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_build_tfds_dataset_train_and_eval(mocked_coco):
  del mocked_coco
  train = pipeline.build_tfds_dataset(
      'train', parsers.TrainParser(image_size=(32, 32), mask_size=(16, 16)),
      global_batch_size=4, is_training=True, seed=0)
  for spec in tf.nest.flatten(train.element_spec):
    assert spec.shape.is_fully_defined(), spec
  inputs, labels = next(iter(train))
  assert inputs['images'].shape == (4, 32, 32, 3)
  assert labels['label_map'].shape == (4, 16, 16, 2)

  evaluation = pipeline.build_tfds_dataset(
      'validation',
      parsers.EvalParser(image_size=(32, 32), mask_size=(16, 16),
                         max_original_size=(32, 32), max_segments=16),
      global_batch_size=4, is_training=False)
  batches = list(evaluation)
  assert [int(b[1]['valid'].numpy().sum()) for b in batches] == [4, 2]
  first = batches[0][1]
  np.testing.assert_array_equal(first['original_label_map'][0, :24, :32, 1],
                                EXAMPLES[0][1]['instance_mask'])
  np.testing.assert_array_equal(np.nonzero(first['segment_is_crowd'][0])[0], [2])
