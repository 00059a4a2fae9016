"""The project's TFRecord schema: one place that names every key (REFERENCE §7).

Image datasets (COCO panoptic, Cityscapes, COCO instances, the synthetic set) are
one `tf.train.Example` per image; keys follow TF Model Garden's conventions:

| key | type | content |
|---|---|---|
| `image/encoded` | bytes | the image file as shipped (JPEG or PNG) |
| `image/format` | bytes | `jpeg` or `png` |
| `image/height`, `image/width` | int64 | original size |
| `image/source_id` | bytes | the dataset's image id (COCO `image_id`) |
| `image/filename` | bytes | the image's file name |
| `image/panoptic/category_mask` | bytes | uint8 PNG: contiguous class id, 0 = void |
| `image/panoptic/instance_mask` | bytes | uint16 PNG: segment index 1..N, 0 = void |
| `image/panoptic/segment_ids` | int64[N] | dataset segment id of index i+1 |
| `image/panoptic/segment_class_ids` | int64[N] | contiguous class id of index i+1 |
| `image/panoptic/segment_is_crowd` | int64[N] | 1 where the segment is a crowd region |

Every segment, thing or stuff, has its own index (REFERENCE §1). Contiguous class
ids are 1..C in the order of the dataset's category list; the table that maps
them back (`P.categories.json`, see `write_categories`) lives beside the shards.

Videos (DAVIS, KITTI-STEP, the synthetic video set) are one
`tf.train.SequenceExample` per video (or per chunk of a long video): a clip
sampler needs random access to the past frames of any frame, which a per-video
record gives in one read, and streaming evaluation reads the frames in order.
Context: `video/id`, `video/first_frame_index` (chunk start), `video/num_frames`,
`image/height`, `image/width`, `image/format`. Feature lists, one entry per
frame: `image/encoded`, `image/frame_name`, `image/panoptic/category_mask`,
`image/panoptic/instance_mask`. Instance indices are consistent across all
frames of a video (the same object keeps its index).
"""

import io
import json
from typing import Optional, Sequence

import numpy as np
from PIL import Image
import tensorflow as tf

IMAGE_ENCODED = 'image/encoded'
IMAGE_FORMAT = 'image/format'
IMAGE_HEIGHT = 'image/height'
IMAGE_WIDTH = 'image/width'
IMAGE_SOURCE_ID = 'image/source_id'
IMAGE_FILENAME = 'image/filename'
CATEGORY_MASK = 'image/panoptic/category_mask'
INSTANCE_MASK = 'image/panoptic/instance_mask'
SEGMENT_IDS = 'image/panoptic/segment_ids'
SEGMENT_CLASS_IDS = 'image/panoptic/segment_class_ids'
SEGMENT_IS_CROWD = 'image/panoptic/segment_is_crowd'

VIDEO_ID = 'video/id'
VIDEO_FIRST_FRAME_INDEX = 'video/first_frame_index'
VIDEO_NUM_FRAMES = 'video/num_frames'
FRAME_NAME = 'image/frame_name'

VOID_CLASS_ID = 0


def _bytes(values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
  return tf.train.Feature(
      int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def encode_png(array: np.ndarray) -> bytes:
  """Encodes a 2-D uint8 or uint16 array (or `[H, W, 3]` uint8) as PNG bytes."""
  array = np.asarray(array)
  if array.dtype == np.uint16 and array.ndim == 2:
    image = Image.fromarray(array.astype('<u2'))  # mode I;16
  elif array.dtype == np.uint8:
    image = Image.fromarray(array)
  else:
    raise ValueError(f'encode_png takes uint8 or 2-D uint16, got {array.dtype} '
                     f'{array.shape}.')
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes to a numpy array, keeping 16-bit depth (the inverse of `encode_png`)."""
  with Image.open(io.BytesIO(data)) as image:
    if image.mode in ('I;16', 'I;16B', 'I'):
      return np.asarray(image, dtype=np.uint16)
    return np.asarray(image)


def check_masks(category_mask: np.ndarray, instance_mask: np.ndarray,
                num_segments: int, where: str) -> None:
  """Validates masks before they are written; `where` names the source in errors."""
  if category_mask.shape != instance_mask.shape or category_mask.ndim != 2:
    raise ValueError(f'{where}: category mask {category_mask.shape} and instance '
                     f'mask {instance_mask.shape} must be equal 2-D shapes.')
  if category_mask.max(initial=0) > 255:
    raise ValueError(f'{where}: class id {category_mask.max()} does not fit 8 bits.')
  if instance_mask.max(initial=0) > num_segments:
    raise ValueError(f'{where}: instance index {instance_mask.max()} > number of '
                     f'segments {num_segments}.')


def panoptic_example(*, image_bytes: bytes, image_format: str, height: int,
                     width: int, source_id: str, filename: str,
                     category_mask: np.ndarray, instance_mask: np.ndarray,
                     segment_ids: Sequence[int], segment_class_ids: Sequence[int],
                     segment_is_crowd: Sequence[int]) -> tf.train.Example:
  """Builds the image record described in the module docstring.

  Args:
    image_bytes: the encoded image, as shipped.
    image_format: 'jpeg' or 'png'.
    height: image height; must equal the masks' height.
    width: image width; must equal the masks' width.
    source_id: the dataset's image id.
    filename: the image file name.
    category_mask: uint8 `[H, W]` contiguous class ids, 0 = void.
    instance_mask: `[H, W]` segment index 1..N, 0 = void.
    segment_ids: `[N]` dataset segment id per index.
    segment_class_ids: `[N]` contiguous class id per index.
    segment_is_crowd: `[N]` 0/1 crowd flag per index.

  Returns:
    A `tf.train.Example`.
  """
  n = len(segment_ids)
  if not len(segment_class_ids) == len(segment_is_crowd) == n:
    raise ValueError(f'{filename}: segment lists differ in length.')
  check_masks(category_mask, instance_mask, n, filename)
  if category_mask.shape != (height, width):
    raise ValueError(f'{filename}: mask size {category_mask.shape} != image size '
                     f'{(height, width)}.')
  feature = {
      IMAGE_ENCODED: _bytes([image_bytes]),
      IMAGE_FORMAT: _bytes([image_format.encode()]),
      IMAGE_HEIGHT: _ints([height]),
      IMAGE_WIDTH: _ints([width]),
      IMAGE_SOURCE_ID: _bytes([str(source_id).encode()]),
      IMAGE_FILENAME: _bytes([filename.encode()]),
      CATEGORY_MASK: _bytes([encode_png(category_mask.astype(np.uint8))]),
      INSTANCE_MASK: _bytes([encode_png(instance_mask.astype(np.uint16))]),
      SEGMENT_IDS: _ints(segment_ids),
      SEGMENT_CLASS_IDS: _ints(segment_class_ids),
      SEGMENT_IS_CROWD: _ints(segment_is_crowd),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def video_sequence_example(*, video_id: str, first_frame_index: int,
                           image_format: str, height: int, width: int,
                           frames: Sequence[bytes], frame_names: Sequence[str],
                           category_masks: Sequence[np.ndarray],
                           instance_masks: Sequence[np.ndarray],
                           max_instances: Optional[int] = None
                           ) -> tf.train.SequenceExample:
  """Builds the video record described in the module docstring.

  Args:
    video_id: the sequence name.
    first_frame_index: index of `frames[0]` in the whole video (chunks).
    image_format: 'jpeg' or 'png'.
    height: frame height (all frames and masks).
    width: frame width.
    frames: encoded frames in order.
    frame_names: file stems in order (e.g. '00000').
    category_masks: uint8 `[H, W]` per frame, contiguous class ids.
    instance_masks: `[H, W]` per frame, indices consistent across the video.
    max_instances: optional bound on the instance indices, checked.

  Returns:
    A `tf.train.SequenceExample`.
  """
  if not len(frames) == len(frame_names) == len(category_masks) == len(
      instance_masks) > 0:
    raise ValueError(f'{video_id}: frames, names and masks must be equal, '
                     'non-empty lists.')
  bound = max_instances if max_instances is not None else 65535
  for name, cat, inst in zip(frame_names, category_masks, instance_masks):
    check_masks(cat, inst, bound, f'{video_id}/{name}')
    if cat.shape != (height, width):
      raise ValueError(f'{video_id}/{name}: mask size {cat.shape} != '
                       f'{(height, width)}.')
  context = tf.train.Features(feature={
      VIDEO_ID: _bytes([video_id.encode()]),
      VIDEO_FIRST_FRAME_INDEX: _ints([first_frame_index]),
      VIDEO_NUM_FRAMES: _ints([len(frames)]),
      IMAGE_HEIGHT: _ints([height]),
      IMAGE_WIDTH: _ints([width]),
      IMAGE_FORMAT: _bytes([image_format.encode()]),
  })

  def feature_list(values):
    return tf.train.FeatureList(feature=[_bytes([v]) for v in values])

  lists = tf.train.FeatureLists(feature_list={
      IMAGE_ENCODED: feature_list(frames),
      FRAME_NAME: feature_list([n.encode() for n in frame_names]),
      CATEGORY_MASK: feature_list(
          [encode_png(m.astype(np.uint8)) for m in category_masks]),
      INSTANCE_MASK: feature_list(
          [encode_png(m.astype(np.uint16)) for m in instance_masks]),
  })
  return tf.train.SequenceExample(context=context, feature_lists=lists)


def categories_path(output_prefix: str) -> str:
  return output_prefix + '.categories.json'


def write_categories(output_prefix: str, categories: Sequence[dict]) -> str:
  """Writes `P.categories.json`: the contiguous class table beside the shards.

  Args:
    output_prefix: the shards' prefix `P`.
    categories: dicts with `class_id` (contiguous, 1..C), `id` (the dataset's
      category id), `name`, `isthing` (0/1), and optionally `color`.

  Returns:
    The path written (via a temporary name and a rename).
  """
  class_ids = [c['class_id'] for c in categories]
  if class_ids != list(range(1, len(categories) + 1)):
    raise ValueError('categories must have contiguous class_id 1..C in order.')
  payload = {'void_class_id': VOID_CLASS_ID, 'categories': list(categories)}
  path = categories_path(output_prefix)
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    json.dump(payload, f, indent=1)
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def read_categories(path: str) -> list:
  """Reads a `*.categories.json` table; errors name the file."""
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      payload = json.load(f)
    return payload['categories']
  except (tf.errors.NotFoundError, FileNotFoundError) as e:
    raise FileNotFoundError(f'category table {path} not found.') from e
  except (ValueError, KeyError) as e:
    raise ValueError(f'{path}: not a categories.json table ({e}).') from e
