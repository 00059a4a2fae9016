"""Synthetic COCO-panoptic-format records shared by the training/evaluation tests."""

import os

import pytest

from data import coco_panoptic
from data import synthetic


def make_synthetic_records(root: str, num_train: int = 32, num_val: int = 4,
                           image_size: int = 64) -> dict:
  """Generates the built-in synthetic set and converts it; returns the paths."""
  synthetic.make_synthetic(root, num_train=num_train, num_val=num_val,
                           image_size=image_size, seed=0)
  for split in ('train', 'val'):
    coco_panoptic.convert(
        os.path.join(root, 'annotations', f'panoptic_{split}.json'),
        os.path.join(root, 'panoptic', split), os.path.join(root, 'images', split),
        os.path.join(root, 'tfrecords', split), num_shards=2)
  records = os.path.join(root, 'tfrecords')
  return {
      'root': root,
      'train': os.path.join(records, 'train-*'),
      'val': os.path.join(records, 'val-*'),
      'categories': os.path.join(records, 'train.categories.json'),
  }


@pytest.fixture(scope='session')
def synthetic_records(tmp_path_factory):
  return make_synthetic_records(str(tmp_path_factory.mktemp('synthetic')))


def data_bindings(records: dict) -> list:
  """Gin bindings pointing the tiny experiments at `records`."""
  return [f"TRAIN_FILE_PATTERN = '{records['train']}'",
          f"EVAL_FILE_PATTERN = '{records['val']}'",
          f"CATEGORIES_JSON = '{records['categories']}'"]
