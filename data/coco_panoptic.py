"""COCO panoptic (JSON + RGB-id PNGs) -> panoptic image records (REFERENCE §1, §7).

The COCO panoptic format: a JSON with `images`, `annotations` (one per image:
`image_id`, `file_name` of its PNG, `segments_info` [`id`, `category_id`,
`iscrowd`, ...]) and `categories` [`id`, `name`, `isthing`], plus one PNG per
image whose pixels encode the segment id as R + 256·G + 256²·B, 0 = void.

Each image becomes one `records.panoptic_example`:
  * contiguous class ids 1..C in the order of the category list (0 = void);
  * every segment, thing or stuff, crowd or not, gets its own index 1..N in
    the order of `segments_info` (REFERENCE §1); `iscrowd` segments keep their
    class and get `segment_is_crowd = 1`;
  * segments listed in the JSON but without a pixel in the PNG are left out
    (counted as `empty_segments_dropped`); a PNG id missing from the JSON is a
    bad example (`unknown_segment_id`).

`build_panoptic_example` is shared with the Cityscapes converter (same layout).
"""

import dataclasses
import functools
import os
from typing import Optional, Sequence

import numpy as np

from data import records
from data import source_files
from data import writer

BadExampleError = source_files.BadExampleError


@dataclasses.dataclass(frozen=True)
class PanopticItem:
  """One image to convert (picklable: sent to the writer's workers).

  Attributes:
    image_path: the image file.
    png_path: the RGB segment-id PNG.
    source_id: the dataset's image id, as a string.
    segments_info: the annotation's `segments_info` list.
    expected_size: `(height, width)` the JSON states, or None.
  """
  image_path: str
  png_path: str
  source_id: str
  segments_info: tuple
  expected_size: Optional[tuple] = None


def category_table(categories: Sequence[dict]) -> list:
  """The `P.categories.json` rows: contiguous `class_id` 1..C in list order.

  Args:
    categories: the dataset's categories (`id`, `name`, `isthing`, optional
      `color`), in the order that defines the contiguous ids.

  Returns:
    dicts with `class_id`, `id`, `name`, `isthing` and `color` when known.
  """
  table = []
  seen = set()
  for position, category in enumerate(categories):
    for key in ('id', 'name'):
      if key not in category:
        raise ValueError(f'category #{position} {category} has no {key!r}.')
    if category['id'] in seen:
      raise ValueError(f'category id {category["id"]} appears twice.')
    seen.add(category['id'])
    row = {
        'class_id': position + 1,
        'id': int(category['id']),
        'name': str(category['name']),
        'isthing': int(category.get('isthing', 0)),
    }
    if category.get('color') is not None:
      row['color'] = [int(c) for c in category['color']]
    table.append(row)
  if len(table) > 255:
    raise ValueError(f'{len(table)} categories do not fit the 8-bit class '
                     'mask.')
  return table


def load_categories(annotations: dict, annotations_json: str,
                    categories_json: Optional[str]) -> list:
  """Categories from `categories_json` if given, else from the annotations JSON.

  `categories_json` may hold a list (panopticapi's
  panoptic_coco_categories.json) or a dict with a `categories` list.
  """
  if categories_json:
    payload = source_files.read_json(categories_json)
    categories = payload['categories'] if isinstance(payload, dict) else payload
    if not isinstance(categories, list) or not categories:
      raise ValueError(f'{categories_json}: expected a non-empty list of '
                       'categories (or a dict with "categories").')
    return categories
  categories = annotations.get('categories')
  if not categories:
    raise ValueError(f'{annotations_json} has no "categories"; pass '
                     '--categories_json (e.g. panoptic_coco_categories.json).')
  return categories


def segments_to_masks(id_map: np.ndarray, segments_info: Sequence[dict],
                      class_of_category: dict, png_path: str):
  """Turns a segment-id map and its `segments_info` into the record's masks.

  Args:
    id_map: int64 `[H, W]` dataset segment ids, 0 = void.
    segments_info: dicts with `id`, `category_id`, optional `iscrowd`.
    class_of_category: dataset category id -> contiguous class id.
    png_path: the PNG, named in errors.

  Returns:
    `(category_mask uint8 [H, W], instance_mask uint16 [H, W], segment_ids,
    segment_class_ids, segment_is_crowd, num_dropped)`; index i+1 is the i-th
    segment of `segments_info` that has pixels.

  Raises:
    BadExampleError: a PNG id not in `segments_info`, an unknown category, or a
      malformed segment entry.
  """
  unique_ids, inverse = np.unique(id_map, return_inverse=True)
  present = set(int(i) for i in unique_ids)
  info_by_id = {}
  for segment in segments_info:
    try:
      segment_id = int(segment['id'])
      category_id = int(segment['category_id'])
    except (KeyError, TypeError, ValueError) as e:
      raise BadExampleError(png_path, source_files.BAD_ANNOTATION,
                            f'malformed segments_info entry {segment}') from e
    if segment_id == 0 or segment_id in info_by_id:
      raise BadExampleError(png_path, source_files.BAD_ANNOTATION,
                            f'segment id {segment_id} is 0 (void) or repeated '
                            'in segments_info')
    if category_id not in class_of_category:
      raise BadExampleError(png_path, source_files.UNKNOWN_CATEGORY,
                            f'segment {segment_id} has category_id '
                            f'{category_id}, not in the category list')
    info_by_id[segment_id] = segment
  unknown = sorted(present - set(info_by_id) - {0})
  if unknown:
    raise BadExampleError(png_path, source_files.UNKNOWN_SEGMENT_ID,
                          f'segment ids {unknown[:10]} in the PNG are not in '
                          "the annotation's segments_info")

  segment_ids, class_ids, is_crowd = [], [], []
  index_of_id = {0: 0}
  for segment in segments_info:
    segment_id = int(segment['id'])
    if segment_id not in present:
      continue
    segment_ids.append(segment_id)
    class_ids.append(class_of_category[int(segment['category_id'])])
    is_crowd.append(int(bool(segment.get('iscrowd', 0))))
    index_of_id[segment_id] = len(segment_ids)
  class_of_id = dict(zip(segment_ids, class_ids))
  class_of_id[0] = records.VOID_CLASS_ID
  index_lut = np.array([index_of_id[int(i)] for i in unique_ids], np.uint16)
  class_lut = np.array([class_of_id[int(i)] for i in unique_ids], np.uint8)
  shape = id_map.shape
  instance_mask = index_lut[inverse].reshape(shape)
  category_mask = class_lut[inverse].reshape(shape)
  num_dropped = len(segments_info) - len(segment_ids)
  return (category_mask, instance_mask, segment_ids, class_ids, is_crowd,
          num_dropped)


def build_panoptic_example(item: PanopticItem,
                           class_of_category: dict) -> writer.Built:
  """Reads one image and its PNG and builds the record (a writer `build_fn`).

  Raises:
    BadExampleError: missing/unreadable files, sizes that differ (image vs PNG
      vs JSON), PNG ids not in the JSON, unknown categories.
  """
  image_bytes, image_format, image_size = source_files.read_image(
      item.image_path)
  if item.expected_size is not None:
    source_files.check_size(item.image_path, image_size, item.expected_size,
                            'the size in the annotations JSON')
  id_map = source_files.read_rgb_id_png(item.png_path)
  source_files.check_size(item.png_path, id_map.shape, image_size,
                          f'its image {item.image_path}')
  (category_mask, instance_mask, segment_ids, class_ids, is_crowd,
   num_dropped) = segments_to_masks(id_map, item.segments_info,
                                    class_of_category, item.png_path)
  example = records.panoptic_example(
      image_bytes=image_bytes, image_format=image_format,
      height=image_size[0], width=image_size[1], source_id=item.source_id,
      filename=os.path.basename(item.image_path),
      category_mask=category_mask, instance_mask=instance_mask,
      segment_ids=segment_ids, segment_class_ids=class_ids,
      segment_is_crowd=is_crowd)
  return writer.Built(example.SerializeToString(), {
      'segments': len(segment_ids),
      'crowd_segments': sum(is_crowd),
      'empty_segments_dropped': num_dropped,
  })


def convert(annotations_json: str, panoptic_dir: str, image_dir: str,
            output_prefix: str, *, num_shards: int = 32, num_workers: int = 1,
            skip_bad: bool = False, categories_json: Optional[str] = None,
            progress: Optional[bool] = None) -> dict:
  """Converts a COCO panoptic split into shards and `P.categories.json`.

  Args:
    annotations_json: e.g. `panoptic_val2017.json`.
    panoptic_dir: folder of the PNGs named by `annotations[*].file_name`.
    image_dir: folder of the images named by `images[*].file_name`.
    output_prefix: `P` of `P-0000i-of-0000N.tfrecord`.
    num_shards: N.
    num_workers: processes building examples.
    skip_bad: skip (and count) bad examples instead of raising.
    categories_json: category list to use instead of the JSON's `categories`.
    progress: tqdm bar (None: when stderr is a TTY).

  Returns:
    The writer's summary, plus `categories_json` (the table's path).
  """
  annotations = source_files.read_json(annotations_json)
  table = category_table(
      load_categories(annotations, annotations_json, categories_json))
  class_of_category = {row['id']: row['class_id'] for row in table}
  images = {}
  for image in annotations.get('images', []):
    images[image['id']] = image
  items = []
  for annotation in annotations.get('annotations', []):
    image = images.get(annotation.get('image_id'))
    if image is None:
      raise ValueError(f'{annotations_json}: annotation '
                       f'{annotation.get("file_name")} has image_id '
                       f'{annotation.get("image_id")} with no entry in '
                       '"images".')
    expected = None
    if 'height' in image and 'width' in image:
      expected = (int(image['height']), int(image['width']))
    items.append(PanopticItem(
        image_path=os.path.join(image_dir, image['file_name']),
        png_path=os.path.join(panoptic_dir, annotation['file_name']),
        source_id=str(annotation['image_id']),
        segments_info=tuple(annotation['segments_info']),
        expected_size=expected))
  writer.make_output_dir(output_prefix)
  categories_path = records.write_categories(output_prefix, table)
  summary = writer.write_sharded(
      output_prefix, items,
      functools.partial(build_panoptic_example,
                        class_of_category=class_of_category),
      num_shards=num_shards, num_workers=num_workers, skip_bad=skip_bad,
      kind='images', progress=progress)
  summary['categories_json'] = categories_path
  return summary
