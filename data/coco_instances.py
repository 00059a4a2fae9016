"""COCO *instance* annotations -> panoptic image records: the "your own data" path.

Input: a COCO instances JSON (`images`, `annotations` with `segmentation` as
polygons or RLE, `iscrowd`, `categories`), as written by most labelling tools,
and the image folder. Each image becomes one `records.panoptic_example`
(REFERENCE §1, §7):
  * every category is a thing (`isthing = 1`), contiguous class ids 1..C in
    the order of `categories`;
  * every annotation is its own segment (`segment_ids` = annotation ids);
    `iscrowd` annotations are kept as crowd segments;
  * where annotations overlap, the pixel goes to the one drawn later when they
    are drawn in order of decreasing mask area (so small objects lie on top;
    equal areas keep the JSON order);
  * unannotated pixels are void (class 0, index 0);
  * indices 1..N follow the JSON order of the annotations that keep at least
    one pixel (fully covered or empty ones are dropped and counted).
Images without annotations are kept (all void).
"""

import dataclasses
import functools
import os
from typing import Optional

from absl import logging
import numpy as np
from pycocotools import mask as mask_util

from data import coco_panoptic
from data import records
from data import source_files
from data import writer

BadExampleError = source_files.BadExampleError


@dataclasses.dataclass(frozen=True)
class InstancesItem:
  """One image and its annotations (picklable: sent to the writer's workers)."""
  image_path: str
  source_id: str
  size: tuple
  annotations: tuple


def decode_segmentation(segmentation, size, where: str) -> np.ndarray:
  """A COCO `segmentation` (polygons, uncompressed or compressed RLE) to a mask.

  Args:
    segmentation: list of polygons `[[x0, y0, x1, y1, ...], ...]` or an RLE
      dict (`counts` list or string, `size` [h, w]).
    size: `(height, width)` of the image.
    where: names the annotation in errors.

  Returns:
    bool `[H, W]`.
  """
  height, width = size
  try:
    if isinstance(segmentation, list):
      polygons = [p for p in segmentation if len(p) >= 6]
      if len(polygons) != len(segmentation):
        raise ValueError('a polygon has fewer than 3 points')
      if not polygons:
        return np.zeros(size, bool)
      rle = mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict):
      if list(segmentation['size']) != [height, width]:
        raise ValueError(f'RLE size {segmentation["size"]} != image size '
                         f'{[height, width]}')
      if isinstance(segmentation['counts'], list):
        rle = mask_util.frPyObjects(segmentation, height, width)
      else:
        counts = segmentation['counts']
        rle = {'size': [height, width],
               'counts': counts.encode() if isinstance(counts, str) else counts}
    else:
      raise ValueError(f'segmentation of type {type(segmentation).__name__}')
    return mask_util.decode(rle).astype(bool)
  except (ValueError, TypeError, KeyError) as e:
    raise BadExampleError(where, source_files.BAD_ANNOTATION,
                          f'cannot decode segmentation ({e})') from e


def paint_instances(masks, size) -> np.ndarray:
  """Paints masks in order of decreasing area, so small ones lie on top.

  Args:
    masks: list of bool `[H, W]`, in JSON order.
    size: `(H, W)`.

  Returns:
    int32 `[H, W]`: 1 + position in `masks` of the annotation owning each
    pixel, 0 where none does.
  """
  areas = [int(m.sum()) for m in masks]
  # Stable sort: equal areas keep the JSON order (the later one on top).
  order = sorted(range(len(masks)), key=lambda i: -areas[i])
  owner = np.zeros(size, np.int32)
  for i in order:
    owner[masks[i]] = i + 1
  return owner


def build_instances_example(item: InstancesItem,
                            class_of_category: dict) -> writer.Built:
  """Reads one image, rasterizes its annotations and builds the record.

  Raises:
    BadExampleError: missing/unreadable image, image size different from the
      JSON's, an annotation that does not decode or has an unknown category.
  """
  image_bytes, image_format, image_size = source_files.read_image(
      item.image_path)
  source_files.check_size(item.image_path, image_size, item.size,
                          'the size in the annotations JSON')
  masks, class_ids = [], []
  for annotation in item.annotations:
    where = f'{item.image_path} (annotation id {annotation.get("id")})'
    category_id = annotation.get('category_id')
    if category_id not in class_of_category:
      raise BadExampleError(where, source_files.UNKNOWN_CATEGORY,
                            f'category_id {category_id} not in the category '
                            'list')
    if 'segmentation' not in annotation or 'id' not in annotation:
      raise BadExampleError(where, source_files.BAD_ANNOTATION,
                            'annotation lacks "segmentation" or "id"')
    masks.append(decode_segmentation(annotation['segmentation'], item.size,
                                     where))
    class_ids.append(class_of_category[category_id])
  owner = paint_instances(masks, item.size)
  visible = sorted(set(np.unique(owner).tolist()) - {0})
  index_lut = np.zeros(len(masks) + 1, np.uint16)
  class_lut = np.zeros(len(masks) + 1, np.uint8)
  segment_ids, segment_class_ids, is_crowd = [], [], []
  for new_index, position in enumerate(visible, start=1):
    annotation = item.annotations[position - 1]
    index_lut[position] = new_index
    class_lut[position] = class_ids[position - 1]
    segment_ids.append(int(annotation['id']))
    segment_class_ids.append(class_ids[position - 1])
    is_crowd.append(int(bool(annotation.get('iscrowd', 0))))
  example = records.panoptic_example(
      image_bytes=image_bytes, image_format=image_format,
      height=image_size[0], width=image_size[1], source_id=item.source_id,
      filename=os.path.basename(item.image_path),
      category_mask=class_lut[owner], instance_mask=index_lut[owner],
      segment_ids=segment_ids, segment_class_ids=segment_class_ids,
      segment_is_crowd=is_crowd)
  return writer.Built(example.SerializeToString(), {
      'segments': len(segment_ids),
      'crowd_segments': sum(is_crowd),
      'empty_segments_dropped': len(masks) - len(visible),
  })


def convert(annotations_json: str, image_dir: str, output_prefix: str, *,
            num_shards: int = 32, num_workers: int = 1, skip_bad: bool = False,
            progress: Optional[bool] = None) -> dict:
  """Converts a COCO instances split into shards and `P.categories.json`.

  Args:
    annotations_json: e.g. `instances_val2017.json`.
    image_dir: folder of the images named by `images[*].file_name`.
    output_prefix: `P` of `P-0000i-of-0000N.tfrecord`.
    num_shards: N.
    num_workers: processes building examples.
    skip_bad: skip (and count) bad examples instead of raising.
    progress: tqdm bar (None: when stderr is a TTY).

  Returns:
    The writer's summary, plus `categories_json`.
  """
  payload = source_files.read_json(annotations_json)
  categories = payload.get('categories')
  if not categories:
    raise ValueError(f'{annotations_json} has no "categories".')
  table = coco_panoptic.category_table(
      [dict(c, isthing=1) for c in categories])
  class_of_category = {row['id']: row['class_id'] for row in table}
  by_image = {}
  for annotation in payload.get('annotations', []):
    by_image.setdefault(annotation.get('image_id'), []).append(annotation)
  image_ids = set()
  items = []
  for image in payload.get('images', []):
    for key in ('id', 'file_name', 'height', 'width'):
      if key not in image:
        raise ValueError(f'{annotations_json}: image entry {image} has no '
                         f'{key!r}.')
    items.append(InstancesItem(
        image_path=os.path.join(image_dir, image['file_name']),
        source_id=str(image['id']),
        size=(int(image['height']), int(image['width'])),
        annotations=tuple(by_image.get(image['id'], ()))))
    image_ids.add(image['id'])
  orphans = sum(len(v) for k, v in by_image.items() if k not in image_ids)
  if orphans:
    logging.warning('%s: %d annotation(s) name an image_id with no entry in '
                    '"images"; they are ignored.', annotations_json, orphans)
  writer.make_output_dir(output_prefix)
  categories_path = records.write_categories(output_prefix, table)
  summary = writer.write_sharded(
      output_prefix, items,
      functools.partial(build_instances_example,
                        class_of_category=class_of_category),
      num_shards=num_shards, num_workers=num_workers, skip_bad=skip_bad,
      kind='images', progress=progress)
  summary['categories_json'] = categories_path
  return summary
