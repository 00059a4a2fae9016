"""DAVIS 2017 -> video records, one `tf.train.SequenceExample` per video (REFERENCE §7).

Layout: `JPEGImages/<resolution>/<seq>/00000.jpg`,
`<annotations>/<resolution>/<seq>/00000.png` (indexed PNG: 0 background,
1..N objects, 255 void) and `ImageSets/2017/<split>.txt` (one sequence name a
line). Every frame needs its annotation PNG.

Classes (REFERENCE §1: every segment has its own index, stuff included):
class 1 `background` (stuff), class 2 `object` (thing). In every frame the
background is segment index 1 and object k is index k + 1, so an object keeps
its index through the video; 255 is void (class 0, index 0).
"""

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from data import coco_panoptic
from data import records
from data import source_files
from data import writer

BadExampleError = source_files.BadExampleError

BACKGROUND_CLASS_ID = 1
OBJECT_CLASS_ID = 2
VOID_LABEL = 255
CATEGORIES = (
    {'id': 0, 'name': 'background', 'isthing': 0},
    {'id': 1, 'name': 'object', 'isthing': 1},
)


@dataclasses.dataclass(frozen=True)
class VideoItem:
  """One video (or chunk) to convert (picklable: sent to the writer's workers).

  Attributes:
    video_id: the sequence name.
    frame_dir: folder of the frames, named in errors.
    frame_paths: the frames of this chunk, in order.
    label_paths: their annotation PNGs.
    first_frame_index: index of the chunk's first frame in the whole video.
  """
  video_id: str
  frame_dir: str
  frame_paths: tuple
  label_paths: tuple
  first_frame_index: int = 0


def labels_to_masks(labels: np.ndarray):
  """DAVIS object labels to the record's masks.

  Args:
    labels: uint8 `[H, W]`: 0 background, k >= 1 object k, 255 void.

  Returns:
    `(category_mask uint8, instance_mask uint16)`: background -> (1, 1),
    object k -> (2, k + 1), void -> (0, 0).
  """
  labels = labels.astype(np.uint16)
  void = labels == VOID_LABEL
  category_mask = np.where(labels == 0, BACKGROUND_CLASS_ID,
                           OBJECT_CLASS_ID).astype(np.uint8)
  category_mask[void] = records.VOID_CLASS_ID
  instance_mask = np.where(void, 0, labels + 1).astype(np.uint16)
  return category_mask, instance_mask


def build_video_example(item: VideoItem) -> writer.Built:
  """Reads a video's frames and annotations and builds its SequenceExample.

  Raises:
    BadExampleError: no frames, a missing/unreadable frame or PNG, a PNG that
      is not indexed, or sizes that differ between frames and PNGs.
  """
  if not item.frame_paths:
    raise BadExampleError(item.frame_dir, source_files.MISSING_FILE,
                          f'no frames for video {item.video_id}')
  frames, image_format, size = source_files.read_frames(list(item.frame_paths))
  category_masks, instance_masks = [], []
  for frame_path, label_path in zip(item.frame_paths, item.label_paths):
    labels = source_files.read_indexed_png(label_path)
    source_files.check_size(label_path, labels.shape, size,
                            f'its frame {frame_path}')
    category_mask, instance_mask = labels_to_masks(labels)
    category_masks.append(category_mask)
    instance_masks.append(instance_mask)
  names = [os.path.splitext(os.path.basename(p))[0] for p in item.frame_paths]
  example = records.video_sequence_example(
      video_id=item.video_id, first_frame_index=item.first_frame_index,
      image_format=image_format, height=size[0], width=size[1],
      frames=frames, frame_names=names, category_masks=category_masks,
      instance_masks=instance_masks)
  segments = set()
  for mask in instance_masks:
    segments.update(np.unique(mask).tolist())
  segments.discard(0)
  return writer.Built(example.SerializeToString(), {
      'frames': len(frames), 'segments': len(segments)})


def chunk_starts(num_frames: int, max_frames_per_record: int) -> list:
  """Chunk start indices (one chunk when `max_frames_per_record` <= 0)."""
  if max_frames_per_record <= 0 or num_frames == 0:
    return [0]
  return list(range(0, num_frames, max_frames_per_record))


def read_split(davis_root: str, split: str) -> list:
  """Sequence names listed in `ImageSets/2017/<split>.txt`."""
  path = os.path.join(davis_root, 'ImageSets', '2017', f'{split}.txt')
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: split list not found (expected '
                            f'DAVIS 2017 layout under {davis_root}).')
  with tf.io.gfile.GFile(path, 'r') as f:
    return [line.strip() for line in f if line.strip()]


def convert(davis_root: str, split: str, output_prefix: str, *,
            resolution: str = '480p',
            annotations: str = 'Annotations_unsupervised',
            max_frames_per_record: int = 0, num_shards: int = 8,
            num_workers: int = 1, skip_bad: bool = False,
            progress: Optional[bool] = None) -> dict:
  """Converts a DAVIS 2017 split into video shards and `P.categories.json`.

  Args:
    davis_root: the folder holding `JPEGImages`, `<annotations>`, `ImageSets`.
    split: 'train' or 'val' (any `ImageSets/2017/<split>.txt`).
    output_prefix: `P` of `P-0000i-of-0000N.tfrecord`.
    resolution: '480p' or 'Full-Resolution'.
    annotations: the annotation folder ('Annotations_unsupervised' or
      'Annotations').
    max_frames_per_record: split longer videos into chunks (0: never).
    num_shards: N.
    num_workers: processes building examples.
    skip_bad: skip (and count) bad videos instead of raising.
    progress: tqdm bar (None: when stderr is a TTY).

  Returns:
    The writer's summary, plus `categories_json`.
  """
  items = []
  for video_id in read_split(davis_root, split):
    frame_dir = os.path.join(davis_root, 'JPEGImages', resolution, video_id)
    label_dir = os.path.join(davis_root, annotations, resolution, video_id)
    names = source_files.list_files(frame_dir, '.jpg')
    frame_paths = [os.path.join(frame_dir, n) for n in names]
    label_paths = [os.path.join(label_dir, os.path.splitext(n)[0] + '.png')
                   for n in names]
    for start in chunk_starts(len(names), max_frames_per_record):
      stop = (start + max_frames_per_record if max_frames_per_record > 0 else
              len(names))
      items.append(VideoItem(
          video_id=video_id, frame_dir=frame_dir,
          frame_paths=tuple(frame_paths[start:stop]),
          label_paths=tuple(label_paths[start:stop]), first_frame_index=start))
  writer.make_output_dir(output_prefix)
  categories_path = records.write_categories(
      output_prefix, coco_panoptic.category_table(CATEGORIES))
  summary = writer.write_sharded(
      output_prefix, items, build_video_example, num_shards=num_shards,
      num_workers=num_workers, skip_bad=skip_bad, kind='videos',
      progress=progress)
  summary['categories_json'] = categories_path
  return summary
