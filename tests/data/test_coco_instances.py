"""Tests for data/coco_instances.py: COCO instance JSON -> panoptic records."""

import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util
import pytest

from data import coco_instances
from data import records
from data import source_files
from tests.data import record_reading


def _rle(mask, compressed=True):
  """COCO RLE of a bool mask: compressed (string counts) or uncompressed."""
  if compressed:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode()}
  flat = mask.astype(np.uint8).ravel(order='F')
  counts, current, run = [], 0, 0
  for value in flat:
    if value != current:
      counts.append(run)
      current, run = value, 0
    run += 1
  counts.append(run)
  return {'size': list(mask.shape), 'counts': counts}


def _write_json(path, payload):
  with open(path, 'w') as f:
    json.dump(payload, f)
  return str(path)


def test_real_coco_things_round_trip_exactly(fixtures_dir, tmp_path):
  """The fixture's thing segments, given as instance RLEs, come back exactly."""
  root = os.path.join(fixtures_dir, 'coco_panoptic_real')
  with open(os.path.join(root, 'panoptic_examples.json')) as f:
    panoptic = json.load(f)
  things = [c for c in panoptic['categories'] if c['isthing']]
  thing_ids = {c['id'] for c in things}
  annotations, expected = [], {}
  for annotation in panoptic['annotations']:
    ids = record_reading.rgb_ids(
        os.path.join(root, 'panoptic_examples', annotation['file_name']))
    expected[annotation['image_id']] = (ids, [])
    for segment in annotation['segments_info']:
      if segment['category_id'] not in thing_ids:
        continue
      mask = ids == segment['id']
      annotations.append({
          'id': segment['id'], 'image_id': annotation['image_id'],
          'category_id': segment['category_id'],
          'iscrowd': segment['iscrowd'], 'area': int(mask.sum()),
          'segmentation': _rle(mask, compressed=not segment['iscrowd'])})
      expected[annotation['image_id']][1].append(segment)
  instances_json = _write_json(tmp_path / 'instances.json', {
      'images': panoptic['images'], 'annotations': annotations,
      'categories': things})
  prefix = str(tmp_path / 'out' / 'P')
  summary = coco_instances.convert(instances_json,
                                   os.path.join(root, 'input_images'), prefix,
                                   num_shards=2)
  assert summary['examples_written'] == 2
  assert summary['segments'] == len(annotations)
  class_of_category = {c['id']: i + 1 for i, c in enumerate(things)}
  for example in record_reading.read_image_records(prefix):
    ids, segments = expected[int(example[records.IMAGE_SOURCE_ID])]
    assert example[records.SEGMENT_IDS] == [s['id'] for s in segments]
    assert example[records.SEGMENT_IS_CROWD] == [s['iscrowd'] for s in segments]
    instance_mask = example[records.INSTANCE_MASK]
    category_mask = example[records.CATEGORY_MASK]
    covered = np.zeros(ids.shape, bool)
    for index, segment in enumerate(segments, start=1):
      pixels = ids == segment['id']
      np.testing.assert_array_equal(instance_mask == index, pixels)
      assert (category_mask[pixels] ==
              class_of_category[segment['category_id']]).all()
      covered |= pixels
    # Stuff and void of the panoptic ground truth are unannotated: void.
    assert (instance_mask[~covered] == 0).all()
    assert (category_mask[~covered] == 0).all()
  table = records.read_categories(summary['categories_json'])
  assert len(table) == 80 and all(row['isthing'] == 1 for row in table)
  assert [row['id'] for row in table] == [c['id'] for c in things]


def test_overlaps_go_to_the_smaller_annotation(tmp_path):
  height, width = 12, 16
  image_dir = tmp_path / 'images'
  image_dir.mkdir()
  Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(
      image_dir / 'a.png')
  big = np.zeros((height, width), bool)
  big[1:11, 1:11] = True  # area 100
  small = np.zeros((height, width), bool)
  small[4:8, 4:8] = True  # area 16, inside big
  twin = small.copy()  # same area as `small`: the later one (twin) wins
  crowd = np.zeros((height, width), bool)
  crowd[0:12, 12:16] = True  # area 48, touches nothing else
  polygon = [[9.0, 9.0, 15.0, 9.0, 15.0, 12.0, 9.0, 12.0]]
  polygon_mask = mask_util.decode(mask_util.merge(
      mask_util.frPyObjects(polygon, height, width))).astype(bool)
  annotations = [
      {'id': 31, 'image_id': 1, 'category_id': 7, 'segmentation': _rle(small)},
      {'id': 32, 'image_id': 1, 'category_id': 5, 'segmentation': _rle(big)},
      {'id': 33, 'image_id': 1, 'category_id': 7, 'segmentation': _rle(twin)},
      {'id': 34, 'image_id': 1, 'category_id': 5, 'iscrowd': 1,
       'segmentation': _rle(crowd, compressed=False)},
      {'id': 35, 'image_id': 1, 'category_id': 7, 'segmentation': polygon},
  ]
  instances_json = _write_json(tmp_path / 'instances.json', {
      'images': [{'id': 1, 'file_name': 'a.png', 'height': height,
                  'width': width},
                 {'id': 2, 'file_name': 'a.png', 'height': height,
                  'width': width}],
      'annotations': annotations,
      'categories': [{'id': 5, 'name': 'cat'}, {'id': 7, 'name': 'dog'}]})
  prefix = str(tmp_path / 'P')
  summary = coco_instances.convert(instances_json, str(image_dir), prefix,
                                   num_shards=1)
  first, second = record_reading.read_image_records(prefix)
  # Draw order by decreasing area: big(100), crowd(48), polygon, small, twin.
  owner = np.zeros((height, width), np.int64)
  areas = {32: big.sum(), 34: crowd.sum(), 35: polygon_mask.sum(),
           31: small.sum(), 33: twin.sum()}
  masks = {31: small, 32: big, 33: twin, 34: crowd, 35: polygon_mask}
  for annotation_id in sorted(areas, key=lambda a: (-areas[a], a)):
    owner[masks[annotation_id]] = annotation_id
  # 31 is entirely under its twin 33 (equal area, later in the JSON): dropped.
  assert first[records.SEGMENT_IDS] == [32, 33, 34, 35]
  assert first[records.SEGMENT_CLASS_IDS] == [1, 2, 1, 2]
  assert first[records.SEGMENT_IS_CROWD] == [0, 0, 1, 0]
  index_of = {0: 0, 32: 1, 33: 2, 34: 3, 35: 4}
  class_of = {0: 0, 32: 1, 33: 2, 34: 1, 35: 2}
  np.testing.assert_array_equal(first[records.INSTANCE_MASK],
                                np.vectorize(index_of.get)(owner))
  np.testing.assert_array_equal(first[records.CATEGORY_MASK],
                                np.vectorize(class_of.get)(owner))
  assert (first[records.INSTANCE_MASK][4:8, 4:8] == 2).all()  # small on top
  assert summary['empty_segments_dropped'] == 1
  # An image without annotations is kept, all void.
  assert second[records.SEGMENT_IDS] == []
  assert (second[records.INSTANCE_MASK] == 0).all()


@pytest.mark.parametrize('change, reason', [
    ({'category_id': 99}, 'unknown_category'),
    ({'segmentation': [[1.0, 1.0, 3.0, 3.0]]}, 'bad_annotation'),
    ({'segmentation': {'size': [5, 5], 'counts': [25]}}, 'bad_annotation'),
])
def test_bad_annotations(tmp_path, change, reason):
  Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'a.png')
  Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'b.png')
  good = {'id': 1, 'image_id': 2, 'category_id': 3,
          'segmentation': [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0]]}
  bad = dict(good, id=2, image_id=1, **change)
  instances_json = _write_json(tmp_path / 'instances.json', {
      'images': [{'id': 1, 'file_name': 'a.png', 'height': 6, 'width': 8},
                 {'id': 2, 'file_name': 'b.png', 'height': 6, 'width': 8}],
      'annotations': [bad, good],
      'categories': [{'id': 3, 'name': 'thing'}]})
  with pytest.raises(source_files.BadExampleError,
                     match=r'a\.png \(annotation id 2\)') as info:
    coco_instances.convert(instances_json, str(tmp_path),
                           str(tmp_path / 'x' / 'P'), num_shards=1)
  assert info.value.reason == reason
  summary = coco_instances.convert(instances_json, str(tmp_path),
                                   str(tmp_path / 'y' / 'P'), num_shards=1,
                                   skip_bad=True)
  assert summary['skipped'] == {reason: 1}
  assert summary['examples_written'] == 1


def test_image_size_differing_from_the_json_is_bad(tmp_path):
  Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / 'a.jpg')
  instances_json = _write_json(tmp_path / 'instances.json', {
      'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 8, 'width': 6}],
      'annotations': [], 'categories': [{'id': 3, 'name': 'thing'}]})
  with pytest.raises(source_files.BadExampleError,
                     match=r'a\.jpg: size \(height, width\) \(6, 8\) differs '
                     r'from the size in the annotations JSON \(8, 6\)'):
    coco_instances.convert(instances_json, str(tmp_path),
                           str(tmp_path / 'x' / 'P'), num_shards=1)


def _expected_owner(coco, annotations, size):
  """pycocotools' `annToMask` of every annotation, painted largest first.

  Returns `(owner, areas)`: owner `[H, W]` = 1 + position in `annotations` of
  the annotation on top (the smaller one; equal areas: the later in the JSON),
  0 where none.
  """
  masks = [coco.annToMask(a).astype(bool) for a in annotations]
  areas = [int(m.sum()) for m in masks]
  owner = np.zeros(size, np.int64)
  for position in sorted(range(len(masks)), key=lambda i: (-areas[i], i)):
    owner[masks[position]] = position + 1
  return owner, areas


@pytest.mark.parametrize('split', ['train2017', 'val2017'])
def test_real_coco_photos_match_pycocotools(fixtures_dir, tmp_path, split):
  """100 real COCO photos: polygons, multi-part polygons and crowd RLEs.

  Each record's masks are pycocotools' `annToMask` of its annotations with the
  smaller objects on top; crowd annotations are crowd segments; class ids map
  back to COCO's category ids through `P.categories.json`; image sizes and
  bytes are kept.
  """
  from pycocotools import coco as coco_api  # pylint: disable=g-import-not-at-top
  root = os.path.join(fixtures_dir, 'coco_instances_real')
  annotations_json = os.path.join(root, 'annotations', f'instances_{split}.json')
  with open(annotations_json) as f:
    payload = json.load(f)
  coco = coco_api.COCO(annotations_json)
  prefix = str(tmp_path / 'records' / split)
  summary = coco_instances.convert(annotations_json, os.path.join(root, split),
                                   prefix, num_shards=2)
  assert summary['examples_written'] == len(payload['images']) == 50
  table = records.read_categories(summary['categories_json'])
  category_of_class = {row['class_id']: row['id'] for row in table}
  assert len(table) == 80 and sorted(category_of_class) == list(range(1, 81))
  assert sorted(category_of_class.values()) == sorted(
      c['id'] for c in payload['categories'])  # COCO's ids, 1..90 with gaps
  examples = {int(e[records.IMAGE_SOURCE_ID]): e
              for e in record_reading.read_image_records(prefix)}
  assert sorted(examples) == sorted(image['id'] for image in payload['images'])
  crowd_seen = 0
  for image in payload['images']:
    example = examples[image['id']]
    size = (image['height'], image['width'])
    assert (example[records.IMAGE_HEIGHT], example[records.IMAGE_WIDTH]) == size
    assert example[records.IMAGE_FILENAME] == image['file_name'].encode()
    with open(os.path.join(root, split, image['file_name']), 'rb') as f:
      assert example[records.IMAGE_ENCODED] == f.read()  # the JPEG, untouched
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image['id'], iscrowd=None))
    owner, _ = _expected_owner(coco, annotations, size)
    visible = sorted(set(np.unique(owner).tolist()) - {0})
    instance_mask = example[records.INSTANCE_MASK]
    category_mask = example[records.CATEGORY_MASK]
    assert instance_mask.shape == category_mask.shape == size
    assert example[records.SEGMENT_IDS] == [
        annotations[p - 1]['id'] for p in visible]
    for index, position in enumerate(visible, start=1):
      annotation = annotations[position - 1]
      pixels = owner == position
      np.testing.assert_array_equal(instance_mask == index, pixels,
                                    err_msg=f'annotation {annotation["id"]}')
      class_id = example[records.SEGMENT_CLASS_IDS][index - 1]
      assert category_of_class[class_id] == annotation['category_id']
      assert (category_mask[pixels] == class_id).all()
      assert example[records.SEGMENT_IS_CROWD][index - 1] == annotation['iscrowd']
      crowd_seen += annotation['iscrowd']
    assert (instance_mask[owner == 0] == 0).all()
    assert (category_mask[owner == 0] == 0).all()
  assert crowd_seen == 5  # every crowd region of the split keeps some pixels
