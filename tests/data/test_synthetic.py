"""Tests for data/synthetic.py: determinism, content spec, real formats end to end."""

import filecmp
import json
import os
import time

import numpy as np
from PIL import Image
import pytest

from data import coco_panoptic
from data import records
from data import synthetic
from tests.data import record_reading

SIZE = 64
THING_IDS = {c['id'] for c in synthetic.THING_CATEGORIES}
STUFF_IDS = {c['id'] for c in synthetic.STUFF_CATEGORIES}


@pytest.fixture(scope='module')
def scenes():
  return [synthetic.render_image(np.random.default_rng([7, i]), SIZE)
          for i in range(150)]


def _all_files(root):
  found = []
  for directory, _, names in os.walk(root):
    found.extend(os.path.relpath(os.path.join(directory, n), root)
                 for n in names)
  return sorted(found)


def test_categories_spec():
  assert len(synthetic.THING_CATEGORIES) >= 3
  assert len(synthetic.STUFF_CATEGORIES) >= 2
  assert {c['name'] for c in synthetic.THING_CATEGORIES} >= {
      'disc', 'square', 'triangle'}
  ids = [c['id'] for c in synthetic.CATEGORIES]
  assert len(set(ids)) == len(ids)


def test_same_seed_same_bytes_and_order_independent(tmp_path):
  for name in ('a', 'b'):
    synthetic.make_synthetic(str(tmp_path / name), num_train=6, num_val=3,
                             seed=3, video=True, num_videos=1,
                             num_val_videos=1, num_frames=4)
  files = _all_files(tmp_path / 'a')
  assert files == _all_files(tmp_path / 'b')
  assert len(files) == 2 * 9 + 2 + 2 * (4 + 4) + 2
  _, mismatch, errors = filecmp.cmpfiles(tmp_path / 'a', tmp_path / 'b', files,
                                         shallow=False)
  assert not mismatch and not errors
  # Image 4 written on its own equals image 4 of the split (per-image seeds).
  alone = tmp_path / 'alone'
  for folder in ('images', 'panoptic'):
    os.makedirs(alone / folder / 'train')
  synthetic.write_image_example(4, output_dir=str(alone), split='train',
                                image_size=SIZE, seed=3)
  for folder in ('images', 'panoptic'):
    name = os.path.join(folder, 'train', '000000000005.png')
    assert filecmp.cmp(alone / name, tmp_path / 'a' / name, shallow=False)
  # Another seed gives other images.
  synthetic.make_synthetic(str(tmp_path / 'c'), num_train=6, num_val=0,
                           seed=4)
  name = os.path.join('images', 'train', '000000000001.png')
  assert not filecmp.cmp(tmp_path / 'a' / name, tmp_path / 'c' / name,
                         shallow=False)


def test_scene_content_spec(scenes):
  thing_classes, stuff_classes = set(), set()
  num_with_void, num_occluded = 0, 0
  for scene in scenes:
    things = scene.segments[2:]
    assert 1 <= len(things) <= 6
    assert all(t['category_id'] in THING_IDS for t in things)
    assert [s['category_id'] for s in scene.segments[:2]] == [
        synthetic.SKY_ID, synthetic.GROUND_ID]
    thing_classes.update(t['category_id'] for t in things if t['area'] > 0)
    stuff_classes.update(s['category_id'] for s in scene.segments[:2]
                         if s['area'] > 0)
    assert any(t['area'] > 0 for t in things)  # the top thing is visible
    num_with_void += int((scene.segment_map == 0).any())
    num_occluded += int(any(t['area'] < t['full_area'] for t in things))
    areas = np.bincount(scene.segment_map.ravel(),
                        minlength=len(scene.segments) + 1)
    assert [s['area'] for s in scene.segments] == areas[1:].tolist()
    assert scene.image.shape == (SIZE, SIZE, 3)
    assert scene.image.dtype == np.uint8
  assert thing_classes == THING_IDS
  assert stuff_classes == STUFF_IDS
  assert 0.2 * len(scenes) < num_with_void < 0.9 * len(scenes)
  assert num_occluded > 0.3 * len(scenes)


def test_things_are_sized_and_coloured_at_random():
  rng = np.random.default_rng(0)
  radii, disc_colours = [], []
  for _ in range(100):
    for thing in synthetic.sample_things(rng, SIZE):
      radii.append(thing.radius / SIZE)
      if thing.category_id == 1:
        disc_colours.append(thing.texture['colors'][0])
  assert 0.12 <= min(radii) and max(radii) <= 0.30
  assert max(radii) - min(radii) > 0.12
  # Colour says nothing about the class: discs come in every colour.
  assert np.std(disc_colours, axis=0).min() > 50


def test_shapes_differ_by_shape():
  yy, xx = np.mgrid[0:64, 0:64] + 0.5
  u, v = xx - 32.0, yy - 32.0
  masks = {s: synthetic.shape_mask(s, u, v, 16.0) for s in synthetic.SHAPES}
  areas = {s: int(m.sum()) for s, m in masks.items()}
  assert areas['disc'] == pytest.approx(np.pi * 16**2, rel=0.03)
  assert areas['ring'] == pytest.approx(np.pi * 16**2 * (1 - 0.55**2), rel=0.05)
  assert areas['square'] == pytest.approx((2 * 0.85 * 16)**2, rel=0.1)
  assert areas['triangle'] == pytest.approx(
      3 * np.sqrt(3) / 4 * (1.2 * 16)**2, rel=0.05)
  assert not masks['ring'][32, 32] and masks['disc'][32, 32]
  for a in synthetic.SHAPES:
    for b in synthetic.SHAPES:
      if a < b:
        assert (masks[a] != masks[b]).sum() > 40


def test_coco_panoptic_files_and_converter_round_trip(tmp_path):
  root = str(tmp_path / 'synthetic')
  synthetic.make_synthetic(root, num_train=12, num_val=2, seed=1)
  annotations_json = os.path.join(root, 'annotations', 'panoptic_train.json')
  with open(annotations_json) as f:
    annotations = json.load(f)
  assert len(annotations['images']) == len(annotations['annotations']) == 12
  for annotation in annotations['annotations']:
    ids = record_reading.rgb_ids(os.path.join(root, 'panoptic', 'train',
                                              annotation['file_name']))
    info = annotation['segments_info']
    assert set(np.unique(ids).tolist()) - {0} == {s['id'] for s in info}
    for segment in info:
      ys, xs = np.nonzero(ids == segment['id'])
      assert segment['area'] == len(ys)
      assert segment['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                 ys.max() - ys.min() + 1]
  prefix = str(tmp_path / 'records' / 'train')
  summary = coco_panoptic.convert(annotations_json,
                                  os.path.join(root, 'panoptic', 'train'),
                                  os.path.join(root, 'images', 'train'),
                                  prefix, num_shards=2)
  assert summary['examples_written'] == 12 and not summary['skipped']
  class_of_category = {c['id']: i + 1
                       for i, c in enumerate(synthetic.CATEGORIES)}
  files = {i['id']: i['file_name'] for i in annotations['images']}
  by_source = {e[records.IMAGE_SOURCE_ID].decode(): e
               for e in record_reading.read_image_records(prefix)}
  for annotation in annotations['annotations']:
    example = by_source[str(annotation['image_id'])]
    assert example[records.IMAGE_FORMAT] == b'png'
    record_reading.assert_matches_source(
        example, annotation,
        os.path.join(root, 'panoptic', 'train', annotation['file_name']),
        os.path.join(root, 'images', 'train', files[annotation['image_id']]),
        class_of_category)
  table = records.read_categories(summary['categories_json'])
  assert [(r['name'], r['isthing']) for r in table] == [
      (c['name'], c['isthing']) for c in synthetic.CATEGORIES]


def test_videos_move_enter_leave_and_occlude():
  entered = left = occluded = moved = 0
  for index in range(12):
    scenes = synthetic.render_video(np.random.default_rng([2, index]), SIZE, 20)
    num_things = len(scenes[0].segments) - 2
    visible = np.array([[s['area'] > 0 for s in scene.segments[2:]]
                        for scene in scenes])  # [frames, things]
    for k in range(num_things):
      frames = np.nonzero(visible[:, k])[0]
      if frames.size and frames[0] > 0:
        entered += 1
      if frames.size and frames[-1] < 19:
        left += 1
      occluded += int(any(
          0 < s.segments[2 + k]['area'] < s.segments[2 + k]['full_area']
          for s in scenes))
      masks = [s.segment_map == 3 + k for s in scenes]
      moved += int(any((a != b).any() for a, b in zip(masks, masks[1:])))
    # DAVIS labels: thing k is label k, sky and ground are 0, void 255.
    labels = synthetic.davis_labels(scenes[5])
    segment_map = scenes[5].segment_map
    np.testing.assert_array_equal(labels == 255, segment_map == 0)
    np.testing.assert_array_equal(labels == 0, np.isin(segment_map, (1, 2)))
    for k in range(1, num_things + 1):
      np.testing.assert_array_equal(labels == k, segment_map == k + 2)
  assert entered > 0 and left > 0 and occluded > 0 and moved > 0


def test_davis_files_are_palette_pngs_and_jpegs(tmp_path):
  root = str(tmp_path)
  synthetic.write_video_split(root, 'train', 1, image_size=SIZE, num_frames=3)
  sequence = 'synth-train-0000'
  with open(os.path.join(root, 'ImageSets', '2017', 'train.txt')) as f:
    assert f.read() == sequence + '\n'
  label = Image.open(os.path.join(root, 'Annotations_unsupervised', '480p',
                                  sequence, '00002.png'))
  assert label.mode == 'P'
  assert label.getpalette()[3:6] == [128, 0, 0]  # DAVIS colour of object 1
  frame = Image.open(os.path.join(root, 'JPEGImages', '480p', sequence,
                                  '00002.jpg'))
  assert frame.format == 'JPEG' and frame.size == (SIZE, SIZE)


def test_generation_is_fast(tmp_path):
  start = time.perf_counter()
  synthetic.write_image_split(str(tmp_path), 'train', 300, image_size=SIZE)
  # About 1 ms an image here; the bound leaves room for a busy machine.
  assert time.perf_counter() - start < 15
