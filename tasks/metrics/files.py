"""File input and output of the evaluators; every access goes through `tf.io.gfile`.

Formats (REFERENCE §7): COCO panoptic PNGs encode a segment id as
`R + 256 * G + 256**2 * B`; DAVIS masks are indexed (palette) PNGs;
KITTI-STEP panoptic maps are RGB PNGs with `R` = class and `G * 256 + B` =
track id. Video folders hold `<sequence>/<frame>.png`.
"""

import json
import os
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from data import records


def read_json(path: str) -> Any:
  """Reads a JSON file; errors name the file."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'JSON file {path} not found.')
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise ValueError(f'{path}: not valid JSON ({e}).') from e


def write_json(path: str, payload: Any) -> str:
  """Writes `payload` as indented JSON to a temporary name, then renames it.

  Args:
    path: destination (local or any `tf.io.gfile` scheme); its folder is made.
    payload: JSON-serialisable data.

  Returns:
    `path`.
  """
  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def read_png(path: str) -> np.ndarray:
  """Reads a PNG as a numpy array (`[H, W]` or `[H, W, C]`); errors name the file.

  Indexed (palette) PNGs give their palette indices, 16-bit PNGs keep 16 bits.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'PNG file {path} not found.')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  try:
    return records.decode_png(data)
  except OSError as e:
    raise ValueError(f'{path}: not a readable PNG ({e}).') from e


def rgb_to_id(rgb: np.ndarray, path: str = 'PNG') -> np.ndarray:
  """COCO panoptic colour to segment id: `R + 256 * G + 256**2 * B`.

  Args:
    rgb: uint8 `[H, W, 3]` (an alpha channel, if any, is dropped).
    path: the file name, for errors.

  Returns:
    int64 `[H, W]` segment ids.
  """
  if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
    raise ValueError(f'{path}: expected an RGB PNG, got shape {rgb.shape}.')
  rgb = rgb[..., :3].astype(np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
  """Segment ids `[H, W]` (< 2**24) to uint8 `[H, W, 3]` colours; see `rgb_to_id`."""
  ids = np.asarray(ids, dtype=np.int64)
  return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256],
                  axis=-1).astype(np.uint8)


def write_png(path: str, array: np.ndarray) -> str:
  """Writes a uint8 (`[H, W]` or `[H, W, 3]`) array as PNG via a temporary name."""
  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(records.encode_png(np.asarray(array)))
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def list_video_frames(root: str) -> Dict[str, List[str]]:
  """Lists `<root>/<sequence>/<frame>.png`.

  Args:
    root: a folder with one sub-folder per sequence.

  Returns:
    `{sequence: [frame stem, ...]}`, sequences and frames sorted by name
    (the frame order of the DAVIS and KITTI-STEP tools).

  Raises:
    FileNotFoundError: `root` is missing.
  """
  if not tf.io.gfile.isdir(root):
    raise FileNotFoundError(f'folder {root} not found.')
  sequences = {}
  for name in sorted(tf.io.gfile.listdir(root)):
    name = name.rstrip('/')
    folder = os.path.join(root, name)
    if not tf.io.gfile.isdir(folder):
      continue
    frames = sorted(f[:-len('.png')] for f in tf.io.gfile.listdir(folder)
                    if f.endswith('.png'))
    sequences[name] = frames
  return sequences
