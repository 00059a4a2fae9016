"""Tests for data/kitti_step.py on a small fake dataset in the KITTI-STEP layout."""

import os

import numpy as np
from PIL import Image
import pytest

from data import kitti_step
from data import records
from data import source_files
from tests.data import record_reading

HEIGHT, WIDTH = 10, 12
ROAD, SKY, PERSON, CAR = 0, 10, 11, 13


def _panoptic_map(frame):
  """(trainId, track id) per pixel: things move and one car enters late."""
  semantic = np.full((HEIGHT, WIDTH), ROAD, np.int64)
  semantic[:3] = SKY
  track = np.zeros((HEIGHT, WIDTH), np.int64)
  semantic[4:7, frame:frame + 3] = CAR
  track[4:7, frame:frame + 3] = 300  # G = 1, B = 44
  semantic[7:9, 8:10] = PERSON
  track[7:9, 8:10] = 2
  if frame >= 3:
    semantic[3:5, 9:12] = CAR
    track[3:5, 9:12] = 7
  semantic[9, :2] = CAR  # an untracked car region (track id 0)
  semantic[0, 0] = 255  # void
  return semantic, track


def _write_dataset(root, videos):
  for video_id, num_frames in videos.items():
    for frame in range(num_frames):
      semantic, track = _panoptic_map(frame)
      rgb = np.stack([semantic, track // 256, track % 256], -1).astype(np.uint8)
      name = f'{frame:06d}.png'
      for folder, array in (
          ('images', np.full((HEIGHT, WIDTH, 3), 10 * frame, np.uint8)),
          ('panoptic_maps', rgb)):
        directory = os.path.join(root, folder, 'val', video_id)
        os.makedirs(directory, exist_ok=True)
        Image.fromarray(array).save(os.path.join(directory, name))


def _expected_index(video_num_frames):
  pairs = set()
  for frame in range(video_num_frames):
    semantic, track = _panoptic_map(frame)
    keep = semantic != 255
    pairs.update(zip(semantic[keep].tolist(), track[keep].tolist()))
  return {pair: i + 1 for i, pair in enumerate(sorted(pairs))}


@pytest.mark.parametrize('max_frames_per_record', [0, 2])
def test_round_trip_with_indices_consistent_across_chunks(
    tmp_path, max_frames_per_record):
  root = str(tmp_path / 'kitti')
  _write_dataset(root, {'0000': 5, '0001': 2})
  prefix = str(tmp_path / 'out' / 'P')
  summary = kitti_step.convert(root, 'val', prefix, num_shards=2,
                               max_frames_per_record=max_frames_per_record)
  records_read = record_reading.read_video_records(prefix)
  expected_chunks = 2 if max_frames_per_record == 0 else 3 + 1
  assert len(records_read) == summary['examples_written'] == expected_chunks
  assert summary['frames'] == 7
  frames_seen = set()
  for context, lists in records_read:
    video_id = context[records.VIDEO_ID].decode()
    start = int(context[records.VIDEO_FIRST_FRAME_INDEX])
    index_of = _expected_index({'0000': 5, '0001': 2}[video_id])
    assert context[records.IMAGE_FORMAT] == b'png'
    for i, name in enumerate(lists[records.FRAME_NAME]):
      frame = start + i
      assert name.decode() == f'{frame:06d}'
      frames_seen.add((video_id, frame))
      semantic, track = _panoptic_map(frame)
      expected_instance = np.zeros((HEIGHT, WIDTH), np.int64)
      for (train_id, track_id), index in index_of.items():
        expected_instance[(semantic == train_id) & (track == track_id)] = index
      expected_category = np.where(semantic == 255, 0, semantic + 1)
      np.testing.assert_array_equal(lists[records.INSTANCE_MASK][i],
                                    expected_instance)
      np.testing.assert_array_equal(lists[records.CATEGORY_MASK][i],
                                    expected_category)
      image_path = os.path.join(root, 'images', 'val', video_id,
                                name.decode() + '.png')
      with open(image_path, 'rb') as f:
        assert lists[records.IMAGE_ENCODED][i] == f.read()
  assert len(frames_seen) == 7
  # The late car (track 7) has the same index in every chunk it appears in.
  assert _expected_index(5)[(CAR, 7)] == 5  # (0,0),(10,0),(11,2),(13,0),(13,7)
  table = records.read_categories(summary['categories_json'])
  assert [r['class_id'] for r in table] == list(range(1, 20))
  assert [r['id'] for r in table if r['isthing']] == [PERSON, CAR]


def test_unknown_semantic_id_names_the_map(tmp_path):
  root = str(tmp_path / 'kitti')
  _write_dataset(root, {'0000': 3, '0001': 2})
  path = os.path.join(root, 'panoptic_maps', 'val', '0000', '000001.png')
  rgb = np.asarray(Image.open(path)).copy()
  rgb[5, 5] = (40, 0, 0)
  Image.fromarray(rgb).save(path)
  with pytest.raises(source_files.BadExampleError,
                     match=r'000001\.png: semantic ids \[40\]') as info:
    kitti_step.convert(root, 'val', str(tmp_path / 'a' / 'P'), num_shards=1)
  assert info.value.reason == 'unknown_category'
  summary = kitti_step.convert(root, 'val', str(tmp_path / 'b' / 'P'),
                               num_shards=1, skip_bad=True,
                               max_frames_per_record=2)
  # Both chunks of the bad video are skipped; the other video is written.
  assert summary['skipped'] == {'unknown_category': 2}
  assert summary['examples_written'] == 1


@pytest.mark.parametrize('folder, expected', [
    ('images', 'differs from the first frame'),
    ('panoptic_maps', 'differs from its frame'),
])
def test_size_mismatch_names_the_file(tmp_path, folder, expected):
  root = str(tmp_path / 'kitti')
  _write_dataset(root, {'0000': 2})
  path = os.path.join(root, folder, 'val', '0000', '000001.png')
  Image.fromarray(np.zeros((HEIGHT + 1, WIDTH, 3), np.uint8)).save(path)
  with pytest.raises(source_files.BadExampleError) as info:
    kitti_step.convert(root, 'val', str(tmp_path / 'P'), num_shards=1)
  assert info.value.reason == 'size_mismatch'
  assert info.value.path == path
  assert expected in str(info.value)
