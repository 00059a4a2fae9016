"""Cityscapes panoptic -> panoptic image records (REFERENCE §7).

The input is what cityscapesscripts' `createPanopticImgs` writes: a COCO-style
JSON (`annotations` with `file_name`, `image_id`, `segments_info`; `images` and
`categories` may be absent) and RGB-id PNGs `X_gtFine_panoptic.png`. The image
of `X_gtFine_panoptic.png` is `X_leftImg8bit.png`, found by name anywhere under
`image_dir` (the dataset keeps it in a city subfolder).

Without `categories` in the JSON, `category_id` is the trainId and the classes
are the 19 Cityscapes trainId classes (contiguous class id = trainId + 1,
things = trainIds 11-18). The masks are built exactly as for COCO panoptic
(`coco_panoptic.build_panoptic_example`).
"""

import functools
import os
from typing import Optional

import tensorflow as tf

from data import coco_panoptic
from data import records
from data import source_files
from data import writer

PANOPTIC_SUFFIX = '_gtFine_panoptic.png'
IMAGE_SUFFIX = '_leftImg8bit.png'

# The 19 evaluated Cityscapes classes in trainId order: (trainId, name, colour),
# as in cityscapesscripts.helpers.labels (checked against it in the tests).
TRAIN_ID_CLASSES = (
    (0, 'road', (128, 64, 128)),
    (1, 'sidewalk', (244, 35, 232)),
    (2, 'building', (70, 70, 70)),
    (3, 'wall', (102, 102, 156)),
    (4, 'fence', (190, 153, 153)),
    (5, 'pole', (153, 153, 153)),
    (6, 'traffic light', (250, 170, 30)),
    (7, 'traffic sign', (220, 220, 0)),
    (8, 'vegetation', (107, 142, 35)),
    (9, 'terrain', (152, 251, 152)),
    (10, 'sky', (70, 130, 180)),
    (11, 'person', (220, 20, 60)),
    (12, 'rider', (255, 0, 0)),
    (13, 'car', (0, 0, 142)),
    (14, 'truck', (0, 0, 70)),
    (15, 'bus', (0, 60, 100)),
    (16, 'train', (0, 80, 100)),
    (17, 'motorcycle', (0, 0, 230)),
    (18, 'bicycle', (119, 11, 32)),
)
THING_TRAIN_IDS = tuple(range(11, 19))


def train_id_categories(thing_train_ids=THING_TRAIN_IDS) -> list:
  """The 19 trainId classes as COCO-style categories (`id` = trainId).

  Args:
    thing_train_ids: the trainIds that are things (Cityscapes: 11-18;
      KITTI-STEP tracks only 11 and 13).
  """
  categories = []
  for train_id, name, color in TRAIN_ID_CLASSES:
    categories.append({'id': train_id, 'name': name,
                       'isthing': int(train_id in thing_train_ids),
                       'color': list(color)})
  return categories


def index_images(image_dir: str) -> dict:
  """Maps `X` -> the path of every `X_leftImg8bit.png` under `image_dir`.

  Raises:
    FileNotFoundError: `image_dir` is not a folder.
    ValueError: two files with the same name in different subfolders.
  """
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f'{image_dir}: image folder not found.')
  found = {}
  for root, _, names in tf.io.gfile.walk(image_dir):
    for name in names:
      if not name.endswith(IMAGE_SUFFIX):
        continue
      stem = name[:-len(IMAGE_SUFFIX)]
      path = os.path.join(root, name)
      if stem in found:
        raise ValueError(f'{path} and {found[stem]}: the same image name twice '
                         f'under {image_dir}.')
      found[stem] = path
  return found


def convert(annotations_json: str, panoptic_dir: str, image_dir: str,
            output_prefix: str, *, num_shards: int = 10, num_workers: int = 1,
            skip_bad: bool = False, categories_json: Optional[str] = None,
            progress: Optional[bool] = None) -> dict:
  """Converts a Cityscapes panoptic split into shards and `P.categories.json`.

  Args:
    annotations_json: e.g. `cityscapes_panoptic_val.json`.
    panoptic_dir: folder of the `*_gtFine_panoptic.png` files.
    image_dir: `leftImg8bit/<split>` (searched recursively).
    output_prefix: `P` of `P-0000i-of-0000N.tfrecord`.
    num_shards: N.
    num_workers: processes building examples.
    skip_bad: skip (and count) bad examples instead of raising.
    categories_json: category list to use instead of the JSON's own or the 19
      trainId classes.
    progress: tqdm bar (None: when stderr is a TTY).

  Returns:
    The writer's summary, plus `categories_json`.
  """
  annotations = source_files.read_json(annotations_json)
  if categories_json or annotations.get('categories'):
    categories = coco_panoptic.load_categories(annotations, annotations_json,
                                               categories_json)
  else:
    categories = train_id_categories()
  table = coco_panoptic.category_table(categories)
  class_of_category = {row['id']: row['class_id'] for row in table}
  sizes = {}
  for image in annotations.get('images', []):
    if 'height' in image and 'width' in image:
      sizes[image['id']] = (int(image['height']), int(image['width']))
  image_paths = index_images(image_dir)
  items = []
  for annotation in annotations.get('annotations', []):
    png_name = annotation['file_name']
    if not png_name.endswith(PANOPTIC_SUFFIX):
      raise ValueError(f'{annotations_json}: annotation file_name {png_name} '
                       f'does not end with {PANOPTIC_SUFFIX}.')
    stem = png_name[:-len(PANOPTIC_SUFFIX)]
    # A missing image becomes a bad example naming the expected file.
    image_path = image_paths.get(stem,
                                 os.path.join(image_dir, stem + IMAGE_SUFFIX))
    items.append(coco_panoptic.PanopticItem(
        image_path=image_path,
        png_path=os.path.join(panoptic_dir, png_name),
        source_id=str(annotation['image_id']),
        segments_info=tuple(annotation['segments_info']),
        expected_size=sizes.get(annotation['image_id'])))
  writer.make_output_dir(output_prefix)
  categories_path = records.write_categories(output_prefix, table)
  summary = writer.write_sharded(
      output_prefix, items,
      functools.partial(coco_panoptic.build_panoptic_example,
                        class_of_category=class_of_category),
      num_shards=num_shards, num_workers=num_workers, skip_bad=skip_bad,
      kind='images', progress=progress)
  summary['categories_json'] = categories_path
  return summary
