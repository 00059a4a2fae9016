"""KITTI-STEP -> video records, one `tf.train.SequenceExample` per chunk (REFERENCE §7).

Layout (as the dataset's authors distribute it):
`images/<split>/<seq>/<frame>.png` and
`panoptic_maps/<split>/<seq>/<frame>.png`, the latter RGB with R = the
Cityscapes trainId (255 void) and G·256 + B = the track id.

Classes are the 19 Cityscapes trainIds (contiguous class id = trainId + 1);
`isthing` marks the two tracked classes, 11 pedestrian/person and 13 car
(REFERENCE §7). Every (class, track id) pair of a video is one segment (stuff
regions have track id 0, so each stuff class is one segment; REFERENCE §1).
Indices 1..M follow the sorted (class, track id) pairs of the whole video, so
they are consistent across all frames and across the chunks of a long video
(`max_frames_per_record`); a first pass over the video's maps collects the
pairs.
"""

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from data import cityscapes
from data import coco_panoptic
from data import davis
from data import records
from data import source_files
from data import writer

BadExampleError = source_files.BadExampleError

TRACKED_TRAIN_IDS = (11, 13)
VOID_TRAIN_ID = 255
NUM_TRAIN_IDS = len(cityscapes.TRAIN_ID_CLASSES)


@dataclasses.dataclass(frozen=True)
class ChunkItem:
  """A chunk of a video to convert (picklable: sent to the writer's workers).

  Attributes:
    video_id: the sequence name.
    frame_dir: folder of the frames, named in errors.
    frame_paths: this chunk's frames, in order.
    label_paths: their panoptic maps.
    first_frame_index: index of the chunk's first frame in the whole video.
    segment_keys: the video's sorted `trainId * 65536 + track_id` keys; key i
      is segment index i + 1.
    scan_error: the `BadExampleError` the first pass met in this video, raised
      again when the chunk is built (so `skip_bad` counts it).
  """
  video_id: str
  frame_dir: str
  frame_paths: tuple
  label_paths: tuple
  first_frame_index: int
  segment_keys: tuple
  scan_error: Optional[BadExampleError] = None


def _segment_keys(panoptic_map: np.ndarray, path: str) -> np.ndarray:
  """Per-pixel `trainId * 65536 + track_id` (int64 `[H, W]`), -1 for void."""
  panoptic_map = panoptic_map.astype(np.int64)
  train_id = panoptic_map[..., 0]
  track_id = panoptic_map[..., 1] * 256 + panoptic_map[..., 2]
  void = train_id == VOID_TRAIN_ID
  bad = (~void) & (train_id >= NUM_TRAIN_IDS)
  if bad.any():
    found = sorted(set(train_id[bad].tolist()))[:10]
    raise BadExampleError(path, source_files.UNKNOWN_CATEGORY,
                          f'semantic ids {found} are not Cityscapes trainIds '
                          f'0..{NUM_TRAIN_IDS - 1} or {VOID_TRAIN_ID} (void)')
  return np.where(void, -1, train_id * 65536 + track_id)


def scan_video(label_paths) -> tuple:
  """First pass: the sorted segment keys of a video, or the error it met.

  Returns:
    `(keys, None)` or `((), BadExampleError)`.
  """
  keys = set()
  try:
    for path in label_paths:
      keys.update(np.unique(_segment_keys(source_files.read_rgb_png(path),
                                          path)).tolist())
  except BadExampleError as e:
    return (), e
  keys.discard(-1)
  return tuple(sorted(keys)), None


def build_chunk_example(item: ChunkItem) -> writer.Built:
  """Reads a chunk's frames and maps and builds its SequenceExample.

  Raises:
    BadExampleError: no frames, missing/unreadable files, bad semantic ids,
      sizes that differ between frames and maps.
  """
  if item.scan_error is not None:
    raise item.scan_error
  if not item.frame_paths:
    raise BadExampleError(item.frame_dir, source_files.MISSING_FILE,
                          f'no frames for video {item.video_id}')
  if len(item.segment_keys) > 65535:
    raise BadExampleError(item.frame_dir, source_files.BAD_ANNOTATION,
                          f'{len(item.segment_keys)} segments do not fit the '
                          '16-bit instance mask')
  frames, image_format, size = source_files.read_frames(list(item.frame_paths))
  index_of_key = {key: i + 1 for i, key in enumerate(item.segment_keys)}
  index_of_key[-1] = 0  # void
  category_masks, instance_masks = [], []
  segments = set()
  for frame_path, label_path in zip(item.frame_paths, item.label_paths):
    panoptic_map = source_files.read_rgb_png(label_path)
    source_files.check_size(label_path, panoptic_map.shape[:2], size,
                            f'its frame {frame_path}')
    keys = _segment_keys(panoptic_map, label_path)
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    unseen = [k for k in unique_keys.tolist() if k not in index_of_key]
    if unseen:
      raise BadExampleError(label_path, source_files.BAD_ANNOTATION,
                            f'segments {unseen[:10]} were not seen when the '
                            'video was scanned (did the file change?)')
    index_lut = np.array([index_of_key[k] for k in unique_keys.tolist()],
                         np.uint16)
    instance_mask = index_lut[inverse].reshape(keys.shape)
    void = keys < 0
    category_mask = np.where(void, records.VOID_CLASS_ID,
                             keys // 65536 + 1).astype(np.uint8)
    category_masks.append(category_mask)
    instance_masks.append(instance_mask)
    segments.update(np.unique(instance_mask).tolist())
  segments.discard(0)
  names = [os.path.splitext(os.path.basename(p))[0] for p in item.frame_paths]
  example = records.video_sequence_example(
      video_id=item.video_id, first_frame_index=item.first_frame_index,
      image_format=image_format, height=size[0], width=size[1],
      frames=frames, frame_names=names, category_masks=category_masks,
      instance_masks=instance_masks)
  return writer.Built(example.SerializeToString(), {
      'frames': len(frames), 'segments': len(segments)})


def list_videos(root: str, split: str) -> list:
  """Sequence folders under `images/<split>`, sorted."""
  split_dir = os.path.join(root, 'images', split)
  if not tf.io.gfile.isdir(split_dir):
    raise FileNotFoundError(f'{split_dir}: not found (expected the KITTI-STEP '
                            f'layout images/<split>/<seq>/ under {root}).')
  names = [n.rstrip('/') for n in tf.io.gfile.listdir(split_dir)]
  return sorted(n for n in names
                if tf.io.gfile.isdir(os.path.join(split_dir, n)))


def convert(root: str, split: str, output_prefix: str, *,
            max_frames_per_record: int = 100, num_shards: int = 8,
            num_workers: int = 1, skip_bad: bool = False,
            progress: Optional[bool] = None) -> dict:
  """Converts a KITTI-STEP split into video shards and `P.categories.json`.

  Args:
    root: the folder holding `images/` and `panoptic_maps/`.
    split: 'train' or 'val'.
    output_prefix: `P` of `P-0000i-of-0000N.tfrecord`.
    max_frames_per_record: split longer videos into chunks (0: never).
    num_shards: N.
    num_workers: processes scanning videos and building examples.
    skip_bad: skip (and count) bad chunks instead of raising.
    progress: tqdm bar (None: when stderr is a TTY).

  Returns:
    The writer's summary, plus `categories_json`.
  """
  videos = []
  for video_id in list_videos(root, split):
    frame_dir = os.path.join(root, 'images', split, video_id)
    label_dir = os.path.join(root, 'panoptic_maps', split, video_id)
    names = source_files.list_files(frame_dir, '.png')
    videos.append((video_id, frame_dir,
                   [os.path.join(frame_dir, n) for n in names],
                   [os.path.join(label_dir, n) for n in names]))
  scans = writer.parallel_map(scan_video, [v[3] for v in videos], num_workers)
  items = []
  for (video_id, frame_dir, frame_paths, label_paths), (keys, error) in zip(
      videos, scans):
    for start in davis.chunk_starts(len(frame_paths), max_frames_per_record):
      stop = (start + max_frames_per_record if max_frames_per_record > 0 else
              len(frame_paths))
      items.append(ChunkItem(
          video_id=video_id, frame_dir=frame_dir,
          frame_paths=tuple(frame_paths[start:stop]),
          label_paths=tuple(label_paths[start:stop]), first_frame_index=start,
          segment_keys=keys, scan_error=error))
  table = coco_panoptic.category_table(
      cityscapes.train_id_categories(thing_train_ids=TRACKED_TRAIN_IDS))
  writer.make_output_dir(output_prefix)
  categories_path = records.write_categories(output_prefix, table)
  summary = writer.write_sharded(
      output_prefix, items, build_chunk_example, num_shards=num_shards,
      num_workers=num_workers, skip_bad=skip_bad, kind='videos',
      progress=progress)
  summary['categories_json'] = categories_path
  return summary
