"""Small records built from numpy masks for the input-pipeline tests.

Masks are grids of rectangular blocks, one segment per block, so tests know the
ground truth exactly. Records go through `data/records.py` (the schema), never
through the converters.
"""

import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from data import records


def block_masks(height: int, width: int, grid: Tuple[int, int],
                rng: np.random.Generator, num_classes: int = 20,
                void_blocks: int = 1) -> Tuple[np.ndarray, np.ndarray,
                                               np.ndarray]:
  """A `grid` of blocks: each block one segment, a few blocks void.

  Returns:
    category_mask uint8 `[H, W]`, instance_mask uint16 `[H, W]` (segment
    indices 1..N in a shuffled block order), segment_class_ids int `[N]`.
  """
  rows, cols = grid
  num_blocks = rows * cols
  block_index = rng.permutation(num_blocks)
  num_segments = num_blocks - void_blocks
  segment_class_ids = rng.integers(1, num_classes + 1, size=num_segments)
  category = np.zeros((height, width), np.uint8)
  instance = np.zeros((height, width), np.uint16)
  ys = np.linspace(0, height, rows + 1).round().astype(int)
  xs = np.linspace(0, width, cols + 1).round().astype(int)
  for b in range(num_blocks):
    r, c = divmod(b, cols)
    segment = block_index[b]  # 0-based; segments >= num_segments are void.
    if segment < num_segments:
      instance[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = segment + 1
      category[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = segment_class_ids[segment]
  return category, instance, segment_class_ids


def encode_image(image: np.ndarray, image_format: str) -> bytes:
  if image_format == 'png':
    return records.encode_png(image)
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def class_colour_image(category: np.ndarray) -> np.ndarray:
  """uint8 `[H, W, 3]` whose red channel is `10 * class` (alignment checks)."""
  image = np.zeros(category.shape + (3,), np.uint8)
  image[..., 0] = category.astype(np.int32) * 10
  image[..., 1] = 128
  return image


def image_example(height: int = 24, width: int = 32, grid=(3, 4),
                  seed: int = 0, source_id: str = 'img0',
                  crowd_segments: Sequence[int] = (),
                  image_format: str = 'png',
                  image: np.ndarray = None) -> Tuple[tf.train.Example, Dict]:
  """One image record and the arrays it holds.

  Args:
    height, width: image size.
    grid: (rows, cols) of segment blocks.
    seed: numpy seed of the layout.
    source_id: the record's source id.
    crowd_segments: 1-based segment indices flagged crowd.
    image_format: 'png' or 'jpeg'.
    image: uint8 `[H, W, 3]` or `[H, W]`; default `class_colour_image`.

  Returns:
    (example, arrays) with arrays `image`, `category_mask`, `instance_mask`,
    `segment_class_ids`, `segment_is_crowd`.
  """
  rng = np.random.default_rng(seed)
  category, instance, class_ids = block_masks(height, width, grid, rng)
  if image is None:
    image = class_colour_image(category)
  is_crowd = np.zeros(len(class_ids), np.int64)
  for s in crowd_segments:
    is_crowd[s - 1] = 1
  example = records.panoptic_example(
      image_bytes=encode_image(image, image_format), image_format=image_format,
      height=height, width=width, source_id=source_id,
      filename=f'{source_id}.{image_format}', category_mask=category,
      instance_mask=instance,
      segment_ids=[1000 + i for i in range(len(class_ids))],
      segment_class_ids=class_ids, segment_is_crowd=is_crowd)
  arrays = {
      'image': image,
      'category_mask': category,
      'instance_mask': instance,
      'segment_class_ids': class_ids,
      'segment_is_crowd': is_crowd,
  }
  return example, arrays


def video_example(num_frames: int = 5, height: int = 16, width: int = 24,
                  video_id: str = 'vid0', first_frame_index: int = 0,
                  seed: int = 0) -> Tuple[tf.train.SequenceExample, Dict]:
  """One video record whose objects move one pixel right per frame.

  Frame t: class of every segment pixel is `t + 1` (so a label map tells which
  frame it came from), instance indices are a fixed block layout shifted by t
  columns (consistent across frames), the image's red channel is `10 * (t+1)`.

  Returns:
    (sequence_example, arrays) with arrays `frames` uint8 `[T, H, W, 3]`,
    `category_masks` uint8 `[T, H, W]`, `instance_masks` uint16 `[T, H, W]`.
  """
  rng = np.random.default_rng(seed)
  _, instance, _ = block_masks(height, width, (2, 3), rng, void_blocks=1)
  frames, categories, instances = [], [], []
  for t in range(num_frames):
    shifted = np.roll(instance, t, axis=1)
    categories.append(np.where(shifted > 0, t + 1, 0).astype(np.uint8))
    instances.append(shifted)
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = 10 * (t + 1)
    frame[..., 1] = (shifted * 30).astype(np.uint8)
    frames.append(frame)
  example = records.video_sequence_example(
      video_id=video_id, first_frame_index=first_frame_index,
      image_format='png', height=height, width=width,
      frames=[records.encode_png(f) for f in frames],
      frame_names=[f'{first_frame_index + t:05d}' for t in range(num_frames)],
      category_masks=categories, instance_masks=instances)
  arrays = {
      'frames': np.stack(frames),
      'category_masks': np.stack(categories),
      'instance_masks': np.stack(instances),
  }
  return example, arrays


def write_records(path: str, examples: List) -> str:
  """Writes serialized examples to one TFRecord file; returns the path."""
  with tf.io.TFRecordWriter(path) as writer:
    for example in examples:
      writer.write(example.SerializeToString())
  return path
