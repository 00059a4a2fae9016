"""Tests for data/coco_panoptic.py on the real COCO panoptic fixture (REFERENCE §7)."""

import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from data import coco_panoptic
from data import records
from data import source_files
from tests.data import record_reading

COCO = 'coco_panoptic_real'


def _fixture_paths(fixtures_dir):
  root = os.path.join(fixtures_dir, COCO)
  return (os.path.join(root, 'panoptic_examples.json'),
          os.path.join(root, 'panoptic_examples'),
          os.path.join(root, 'input_images'),
          os.path.join(root, 'panoptic_coco_categories.json'))


def _copy_fixture(fixtures_dir, tmp_path):
  """A writable copy of the fixture in tmp_path (to break it on purpose)."""
  annotations_json, panoptic_dir, image_dir, _ = _fixture_paths(fixtures_dir)
  root = tmp_path / 'coco'
  shutil.copytree(panoptic_dir, root / 'panoptic')
  shutil.copytree(image_dir, root / 'images')
  with open(annotations_json) as f:
    annotations = json.load(f)
  return root, annotations


def _write_json(path, payload):
  with open(path, 'w') as f:
    json.dump(payload, f)
  return str(path)


def test_fixture_round_trip_is_pixel_exact(fixtures_dir, tmp_path):
  annotations_json, panoptic_dir, image_dir, _ = _fixture_paths(fixtures_dir)
  prefix = str(tmp_path / 'out' / 'coco')
  summary = coco_panoptic.convert(annotations_json, panoptic_dir, image_dir,
                                  prefix, num_shards=2)
  with open(annotations_json) as f:
    annotations = json.load(f)
  class_of_category = {c['id']: i + 1
                       for i, c in enumerate(annotations['categories'])}
  examples = record_reading.read_image_records(prefix)
  assert len(record_reading.shard_paths(prefix)) == 2
  assert len(examples) == 2 == summary['examples_written']
  by_source = {e[records.IMAGE_SOURCE_ID].decode(): e for e in examples}
  files = {i['id']: i['file_name'] for i in annotations['images']}
  num_crowd = 0
  for annotation in annotations['annotations']:
    example = by_source[str(annotation['image_id'])]
    assert example[records.IMAGE_FORMAT] == b'jpeg'
    record_reading.assert_matches_source(
        example, annotation,
        os.path.join(panoptic_dir, annotation['file_name']),
        os.path.join(image_dir, files[annotation['image_id']]),
        class_of_category)
    num_crowd += sum(example[records.SEGMENT_IS_CROWD])
  assert num_crowd == summary['crowd_segments'] > 0  # the fixture has crowds

  table = records.read_categories(summary['categories_json'])
  assert summary['categories_json'] == prefix + '.categories.json'
  assert len(table) == 133
  assert [row['class_id'] for row in table] == list(range(1, 134))
  for row, category in zip(table, annotations['categories']):
    assert (row['id'], row['name'], row['isthing'], row['color']) == (
        category['id'], category['name'], category['isthing'],
        category['color'])
  assert sum(row['isthing'] for row in table) == 80


def test_categories_json_flag_when_the_json_lacks_categories(fixtures_dir,
                                                             tmp_path):
  annotations_json, panoptic_dir, image_dir, categories_json = _fixture_paths(
      fixtures_dir)
  with open(annotations_json) as f:
    annotations = json.load(f)
  del annotations['categories']
  bare_json = _write_json(tmp_path / 'bare.json', annotations)
  with pytest.raises(ValueError, match=r'bare\.json has no "categories"'):
    coco_panoptic.convert(bare_json, panoptic_dir, image_dir,
                          str(tmp_path / 'a'), num_shards=1)
  summary = coco_panoptic.convert(bare_json, panoptic_dir, image_dir,
                                  str(tmp_path / 'b'), num_shards=1,
                                  categories_json=categories_json)
  with open(categories_json) as f:
    expected = json.load(f)
  table = records.read_categories(summary['categories_json'])
  assert [(r['id'], r['name']) for r in table] == [
      (c['id'], c['name']) for c in expected]
  assert summary['examples_written'] == 2


def _break_missing_image(root, annotations):
  path = root / 'images' / annotations['images'][0]['file_name']
  os.remove(path)
  return path, 'missing_file'


def _break_corrupt_image(root, annotations):
  path = root / 'images' / annotations['images'][0]['file_name']
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 3])
  return path, 'unreadable_image'


def _break_unknown_segment_id(root, annotations):
  annotation = annotations['annotations'][0]
  annotation['segments_info'] = annotation['segments_info'][1:]
  return root / 'panoptic' / annotation['file_name'], 'unknown_segment_id'


def _break_size_mismatch(root, annotations):
  path = root / 'panoptic' / annotations['annotations'][0]['file_name']
  image = Image.open(path)
  image.crop((0, 0, image.width - 1, image.height)).save(path)
  return path, 'size_mismatch'


@pytest.mark.parametrize('break_fn', [
    _break_missing_image, _break_corrupt_image, _break_unknown_segment_id,
    _break_size_mismatch])
def test_bad_input_names_the_file_or_is_skipped(fixtures_dir, tmp_path,
                                                break_fn):
  root, annotations = _copy_fixture(fixtures_dir, tmp_path)
  bad_path, reason = break_fn(root, annotations)
  annotations_json = _write_json(root / 'annotations.json', annotations)
  args = (annotations_json, str(root / 'panoptic'), str(root / 'images'))
  with pytest.raises(source_files.BadExampleError) as info:
    coco_panoptic.convert(*args, str(tmp_path / 'a' / 'P'), num_shards=1)
  assert info.value.path == str(bad_path)
  assert info.value.reason == reason
  assert str(bad_path) in str(info.value)

  summary = coco_panoptic.convert(*args, str(tmp_path / 'b' / 'P'),
                                  num_shards=1, skip_bad=True)
  assert summary['examples_written'] == 1
  assert summary['skipped'] == {reason: 1}
  assert len(record_reading.read_image_records(str(tmp_path / 'b' / 'P'))) == 1


def test_json_segment_without_pixels_is_dropped_not_an_error(fixtures_dir,
                                                             tmp_path):
  root, annotations = _copy_fixture(fixtures_dir, tmp_path)
  annotation = annotations['annotations'][0]
  annotation['segments_info'].insert(
      0, {'id': 1234567, 'category_id': 1, 'iscrowd': 0, 'area': 10,
          'bbox': [0, 0, 1, 1]})
  annotations_json = _write_json(root / 'annotations.json', annotations)
  prefix = str(tmp_path / 'P')
  summary = coco_panoptic.convert(annotations_json, str(root / 'panoptic'),
                                  str(root / 'images'), prefix, num_shards=1)
  assert summary['empty_segments_dropped'] == 1
  example = [e for e in record_reading.read_image_records(prefix)
             if e[records.IMAGE_SOURCE_ID].decode() == str(
                 annotation['image_id'])][0]
  assert 1234567 not in example[records.SEGMENT_IDS]
  class_of_category = {c['id']: i + 1
                       for i, c in enumerate(annotations['categories'])}
  record_reading.assert_matches_source(example, annotation,
                        str(root / 'panoptic' / annotation['file_name']),
                        str(root / 'images' / annotations['images'][0][
                            'file_name']), class_of_category)


def test_segments_to_masks_known_values():
  ids = np.array([[0, 7, 7], [300, 300, 65536]], np.int64)
  segments_info = [{'id': 65536, 'category_id': 9, 'iscrowd': 1},
                   {'id': 7, 'category_id': 5},
                   {'id': 300, 'category_id': 9}]
  category, instance, seg_ids, class_ids, crowd, dropped = (
      coco_panoptic.segments_to_masks(ids, segments_info, {5: 1, 9: 2},
                                      'x.png'))
  np.testing.assert_array_equal(category, [[0, 1, 1], [2, 2, 2]])
  np.testing.assert_array_equal(instance, [[0, 2, 2], [3, 3, 1]])
  assert (seg_ids, class_ids, crowd, dropped) == ([65536, 7, 300], [2, 1, 2],
                                                  [1, 0, 0], 0)
  with pytest.raises(source_files.BadExampleError,
                     match='x.png.*category_id 4'):
    coco_panoptic.segments_to_masks(ids, [{'id': 7, 'category_id': 4}],
                                    {5: 1}, 'x.png')
