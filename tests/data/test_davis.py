"""Tests for data/davis.py on DAVIS-layout data written by data/synthetic.py."""

import os
import shutil

import numpy as np
from PIL import Image
import pytest

from data import davis
from data import records
from data import source_files
from data import synthetic
from tests.data import record_reading


@pytest.fixture(scope='module')
def davis_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('davis'))
  synthetic.write_video_split(root, 'val', 3, image_size=32, num_frames=7,
                              seed=5)
  return root


def _sequences(root):
  with open(os.path.join(root, 'ImageSets', '2017', 'val.txt')) as f:
    return f.read().split()


def test_labels_to_masks_known_values():
  labels = np.array([[0, 1, 2], [255, 3, 0]], np.uint8)
  category, instance = davis.labels_to_masks(labels)
  np.testing.assert_array_equal(category, [[1, 2, 2], [0, 2, 1]])
  np.testing.assert_array_equal(instance, [[1, 2, 3], [0, 4, 1]])
  assert category.dtype == np.uint8 and instance.dtype == np.uint16


@pytest.mark.parametrize('max_frames_per_record', [0, 3])
def test_round_trip_matches_the_pngs(davis_root, tmp_path,
                                     max_frames_per_record):
  prefix = str(tmp_path / 'P')
  summary = davis.convert(davis_root, 'val', prefix, num_shards=2,
                          max_frames_per_record=max_frames_per_record)
  videos = record_reading.read_video_records(prefix)
  chunks_per_video = 1 if max_frames_per_record == 0 else 3  # 7 = 3 + 3 + 1
  assert len(videos) == summary['examples_written'] == 3 * chunks_per_video
  assert summary['frames'] == 3 * 7
  seen_frames = {}
  for context, lists in videos:
    video_id = context[records.VIDEO_ID].decode()
    start = int(context[records.VIDEO_FIRST_FRAME_INDEX])
    names = [n.decode() for n in lists[records.FRAME_NAME]]
    assert names == [f'{start + i:05d}' for i in range(len(names))]
    assert context[records.VIDEO_NUM_FRAMES] == len(names)
    assert context[records.IMAGE_FORMAT] == b'jpeg'
    assert (context[records.IMAGE_HEIGHT], context[records.IMAGE_WIDTH]) == (
        32, 32)
    for i, name in enumerate(names):
      with open(os.path.join(davis_root, 'JPEGImages', '480p', video_id,
                             name + '.jpg'), 'rb') as f:
        assert lists[records.IMAGE_ENCODED][i] == f.read()
      labels = np.asarray(Image.open(os.path.join(
          davis_root, 'Annotations_unsupervised', '480p', video_id,
          name + '.png')))
      category = lists[records.CATEGORY_MASK][i]
      instance = lists[records.INSTANCE_MASK][i]
      void = labels == 255
      np.testing.assert_array_equal(category == 0, void)
      np.testing.assert_array_equal(instance == 0, void)
      np.testing.assert_array_equal(category == 1, labels == 0)
      np.testing.assert_array_equal(instance == 1, labels == 0)  # background
      for k in range(1, 7):
        np.testing.assert_array_equal(instance == k + 1, labels == k)
        assert (category[labels == k] == 2).all()
      seen_frames.setdefault(video_id, []).append(name)
  assert sorted(seen_frames) == sorted(_sequences(davis_root))
  assert all(len(v) == 7 for v in seen_frames.values())
  table = records.read_categories(summary['categories_json'])
  assert [(r['class_id'], r['name'], r['isthing']) for r in table] == [
      (1, 'background', 0), (2, 'object', 1)]


def test_missing_annotation_names_the_png(davis_root, tmp_path):
  sequence = _sequences(davis_root)[1]
  broken = tmp_path / 'davis'
  shutil.copytree(davis_root, broken)
  missing = (broken / 'Annotations_unsupervised' / '480p' / sequence /
             '00004.png')
  os.remove(missing)
  with pytest.raises(source_files.BadExampleError) as info:
    davis.convert(str(broken), 'val', str(tmp_path / 'a' / 'P'), num_shards=1)
  assert info.value.path == str(missing)
  assert info.value.reason == 'missing_file'
  summary = davis.convert(str(broken), 'val', str(tmp_path / 'b' / 'P'),
                          num_shards=1, skip_bad=True)
  assert summary['examples_written'] == 2
  assert summary['skipped'] == {'missing_file': 1}


def test_rgb_annotation_is_a_bad_annotation(davis_root, tmp_path):
  broken = tmp_path / 'davis'
  shutil.copytree(davis_root, broken)
  sequence = _sequences(davis_root)[0]
  path = broken / 'Annotations_unsupervised' / '480p' / sequence / '00000.png'
  Image.open(path).convert('RGB').save(path)
  with pytest.raises(source_files.BadExampleError,
                     match=r'00000\.png: PNG mode RGB, expected an indexed'):
    davis.convert(str(broken), 'val', str(tmp_path / 'P'), num_shards=1)


def test_missing_split_list_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'ImageSets/2017/val\.txt'):
    davis.convert(str(tmp_path), 'val', str(tmp_path / 'P'))
