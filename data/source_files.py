"""Reading the source datasets' files, with errors that name the file (REFERENCE §7).

The converters (`data/coco_panoptic.py`, `data/cityscapes.py`,
`data/coco_instances.py`, `data/davis.py`, `data/kitti_step.py`) read images,
label PNGs and JSON only through these functions, so every bad input surfaces
as one `BadExampleError(path, reason, detail)` that `data/writer.py` either
raises or, with `skip_bad`, counts under its `reason`.
"""

import io
import json
import uuid

import numpy as np
from PIL import Image
import tensorflow as tf

# Reasons a source example is bad; the keys of the writer's `skipped` Counter.
MISSING_FILE = 'missing_file'
UNREADABLE_IMAGE = 'unreadable_image'
UNSUPPORTED_FORMAT = 'unsupported_format'
SIZE_MISMATCH = 'size_mismatch'
UNKNOWN_SEGMENT_ID = 'unknown_segment_id'
UNKNOWN_CATEGORY = 'unknown_category'
BAD_ANNOTATION = 'bad_annotation'

# PIL's format names -> the record's `image/format` values (records.py).
_RECORD_FORMATS = {'JPEG': 'jpeg', 'PNG': 'png'}


class BadExampleError(Exception):
  """A source example that cannot be converted.

  Attributes:
    path: the file (or JSON entry) at fault.
    reason: one of this module's reason constants (the `skipped` Counter key).
    detail: what was found and what was expected.
  """

  def __init__(self, path: str, reason: str, detail: str):
    super().__init__(path, reason, detail)
    self.path = path
    self.reason = reason
    self.detail = detail

  def __str__(self):
    return f'{self.path}: {self.detail} [{self.reason}]'


def read_bytes(path: str) -> bytes:
  """Returns the file's bytes; a missing file raises `BadExampleError`."""
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      return f.read()
  except tf.errors.NotFoundError as e:
    raise BadExampleError(path, MISSING_FILE, 'file not found') from e


def read_json(path: str):
  """Loads a JSON file; errors name the file (not per-example errors)."""
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path}: JSON file not found.')
  with tf.io.gfile.GFile(path, 'r') as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise ValueError(f'{path}: not valid JSON ({e}).') from e


def read_image(path: str):
  """Reads an encoded image as shipped and checks that it decodes completely.

  Args:
    path: a JPEG or PNG file.

  Returns:
    `(image_bytes, image_format, (height, width))`, `image_format` being the
    record's 'jpeg' or 'png'.

  Raises:
    BadExampleError: missing file, bytes that do not decode (truncated or
      corrupt), or a format other than JPEG/PNG.
  """
  data = read_bytes(path)
  try:
    with Image.open(io.BytesIO(data)) as image:
      pil_format = image.format
      image.load()  # Decodes every pixel: a truncated file fails here.
      width, height = image.size
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise BadExampleError(path, UNREADABLE_IMAGE,
                          f'cannot decode image ({e})') from e
  if pil_format not in _RECORD_FORMATS:
    raise BadExampleError(path, UNSUPPORTED_FORMAT,
                          f'image format {pil_format}, expected JPEG or PNG')
  return data, _RECORD_FORMATS[pil_format], (height, width)


def _open_png(path: str) -> Image.Image:
  data = read_bytes(path)
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except (OSError, SyntaxError, ValueError) as e:
    raise BadExampleError(path, UNREADABLE_IMAGE,
                          f'cannot decode label PNG ({e})') from e
  if image.format != 'PNG':
    raise BadExampleError(path, UNSUPPORTED_FORMAT,
                          f'label file is {image.format}, expected PNG')
  return image


def read_rgb_id_png(path: str) -> np.ndarray:
  """Reads an RGB segment-id PNG: id = R + 256·G + 256²·B (REFERENCE §7).

  Returns:
    int64 `[H, W]` segment ids, 0 = void.
  """
  image = _open_png(path)
  if image.mode != 'RGB':
    if image.mode not in ('RGBA', 'P'):
      raise BadExampleError(path, BAD_ANNOTATION,
                            f'PNG mode {image.mode}, expected an RGB id PNG')
    image = image.convert('RGB')
  rgb = np.asarray(image, dtype=np.int64)
  return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def read_rgb_png(path: str) -> np.ndarray:
  """Reads an RGB PNG as uint8 `[H, W, 3]` (e.g. a KITTI-STEP panoptic map)."""
  image = _open_png(path)
  if image.mode != 'RGB':
    raise BadExampleError(path, BAD_ANNOTATION,
                          f'PNG mode {image.mode}, expected RGB')
  return np.asarray(image, dtype=np.uint8)


def read_indexed_png(path: str) -> np.ndarray:
  """Reads a palette (mode 'P') or grey PNG as its uint8 indices `[H, W]`."""
  image = _open_png(path)
  if image.mode not in ('P', 'L'):
    raise BadExampleError(path, BAD_ANNOTATION,
                          f'PNG mode {image.mode}, expected an indexed '
                          '(palette) PNG')
  return np.asarray(image, dtype=np.uint8)


def check_size(path: str, actual, expected, what: str) -> None:
  """Raises `BadExampleError(SIZE_MISMATCH)` unless `actual == expected`."""
  if tuple(actual) != tuple(expected):
    raise BadExampleError(path, SIZE_MISMATCH,
                          f'size (height, width) {tuple(actual)} differs from '
                          f'{what} {tuple(expected)}')


def list_files(directory: str, suffix: str) -> list:
  """Sorted names in `directory` ending with `suffix` ([] if it is absent)."""
  if not tf.io.gfile.isdir(directory):
    return []
  return sorted(n for n in tf.io.gfile.listdir(directory) if n.endswith(suffix))


def write_bytes_atomic(path: str, data: bytes) -> None:
  """Writes `data` to a temporary name beside `path`, then renames it."""
  tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json_atomic(path: str, payload) -> None:
  """Writes a JSON file via a temporary name and a rename."""
  write_bytes_atomic(path, json.dumps(payload).encode('utf-8'))


def read_frames(paths) -> tuple:
  """Reads a video's encoded frames and checks they share one format and size.

  Args:
    paths: the frame files in order (non-empty).

  Returns:
    `(frames, image_format, (height, width))`.

  Raises:
    BadExampleError: a missing/unreadable frame, or a frame whose format or
      size differs from the first frame's.
  """
  frames = []
  first_format, first_size = None, None
  for path in paths:
    data, image_format, size = read_image(path)
    if first_format is None:
      first_format, first_size = image_format, size
    if image_format != first_format:
      raise BadExampleError(path, UNSUPPORTED_FORMAT,
                            f'frame format {image_format} differs from the '
                            f'first frame\'s {first_format} ({paths[0]})')
    check_size(path, size, first_size, f'the first frame {paths[0]}')
    frames.append(data)
  return frames, first_format, first_size
