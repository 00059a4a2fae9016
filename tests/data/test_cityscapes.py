"""Tests for data/cityscapes.py on the real Cityscapes panoptic fixture (REFERENCE §7)."""

import json
import os
import shutil

from cityscapesscripts.helpers import labels as cs_labels
import pytest

from data import cityscapes
from data import records
from data import source_files
from tests.data import record_reading

STEM = 'dummy_000000_000000'


def _fixture_paths(fixtures_dir):
  root = os.path.join(fixtures_dir, 'cityscapes_panoptic_real')
  name = 'cityscapes_panoptic_dummy_trainId'
  return (os.path.join(root, 'gtFine', name + '.json'),
          os.path.join(root, 'gtFine', name),
          os.path.join(root, 'leftImg8bit'))


def test_train_id_classes_match_cityscapesscripts():
  expected = sorted((l.trainId, l.name, l.color, l.hasInstances)
                    for l in cs_labels.labels if 0 <= l.trainId < 19)
  table = cityscapes.train_id_categories()
  assert [(c['id'], c['name'], tuple(c['color']), bool(c['isthing']))
          for c in table] == expected
  assert [c['id'] for c in table if c['isthing']] == list(range(11, 19))


def test_fixture_round_trip_from_city_subfolder(fixtures_dir, tmp_path):
  annotations_json, panoptic_dir, image_dir = _fixture_paths(fixtures_dir)
  # The dataset keeps images in city subfolders: leftImg8bit/<split>/<city>/.
  city_dir = tmp_path / 'leftImg8bit' / 'val' / 'dummy'
  city_dir.mkdir(parents=True)
  image_path = city_dir / f'{STEM}_leftImg8bit.png'
  shutil.copy(os.path.join(image_dir, f'{STEM}_leftImg8bit.png'), image_path)
  prefix = str(tmp_path / 'out' / 'cityscapes')
  summary = cityscapes.convert(annotations_json, panoptic_dir,
                               str(tmp_path / 'leftImg8bit' / 'val'), prefix,
                               num_shards=1)
  assert summary['examples_written'] == 1
  (example,) = record_reading.read_image_records(prefix)
  with open(annotations_json) as f:
    (annotation,) = json.load(f)['annotations']
  class_of_train_id = {train_id: train_id + 1 for train_id in range(19)}
  record_reading.assert_matches_source(
      example, annotation,
      os.path.join(panoptic_dir, annotation['file_name']), str(image_path),
      class_of_train_id)
  assert example[records.IMAGE_FORMAT] == b'png'
  assert example[records.IMAGE_SOURCE_ID] == STEM.encode()
  # The fixture's crowd region of cars (id 26) is a crowd segment of class car.
  crowd = example[records.SEGMENT_IDS].index(26)
  assert example[records.SEGMENT_IS_CROWD][crowd] == 1
  assert example[records.SEGMENT_CLASS_IDS][crowd] == 13 + 1
  # Road is trainId 0: class 1, not void.
  road = example[records.SEGMENT_IDS].index(7)
  assert example[records.SEGMENT_CLASS_IDS][road] == 1

  table = records.read_categories(summary['categories_json'])
  assert [(r['class_id'], r['id'], r['name']) for r in table] == [
      (t + 1, t, name) for t, name, _ in cityscapes.TRAIN_ID_CLASSES]
  assert [r['isthing'] for r in table] == [0] * 11 + [1] * 8


def test_missing_image_names_the_expected_file(fixtures_dir, tmp_path):
  annotations_json, panoptic_dir, _ = _fixture_paths(fixtures_dir)
  empty = tmp_path / 'leftImg8bit'
  empty.mkdir()
  with pytest.raises(source_files.BadExampleError) as info:
    cityscapes.convert(annotations_json, panoptic_dir, str(empty),
                       str(tmp_path / 'a' / 'P'), num_shards=1)
  assert info.value.path == str(empty / f'{STEM}_leftImg8bit.png')
  assert info.value.reason == 'missing_file'
  summary = cityscapes.convert(annotations_json, panoptic_dir, str(empty),
                               str(tmp_path / 'b' / 'P'), num_shards=1,
                               skip_bad=True)
  assert summary['examples_written'] == 0
  assert summary['skipped'] == {'missing_file': 1}


def test_duplicate_image_names_are_an_error(fixtures_dir, tmp_path):
  _, _, image_dir = _fixture_paths(fixtures_dir)
  for city in ('a', 'b'):
    (tmp_path / city).mkdir()
    shutil.copy(os.path.join(image_dir, f'{STEM}_leftImg8bit.png'),
                tmp_path / city)
  with pytest.raises(ValueError, match='the same image name twice'):
    cityscapes.index_images(str(tmp_path))
