r"""COCO panoptic (JSON + RGB-id PNGs) -> sharded TFRecords (REFERENCE §7).

  python -m tools.create_coco_panoptic_tfrecord \
    --annotations_json=coco/annotations/panoptic_val2017.json \
    --panoptic_dir=coco/annotations/panoptic_val2017 \
    --image_dir=coco/val2017 --output_prefix=records/coco/val --num_shards=8

Writes `P-0000i-of-0000N.tfrecord` and `P.categories.json`; a re-run keeps the
finished shards (data/writer.py). The synthetic set (tools.make_synthetic) goes
through this program too.
"""

from absl import app
from absl import flags

from data import coco_panoptic
from data import writer

_ANNOTATIONS_JSON = flags.DEFINE_string(
    'annotations_json', None, 'COCO panoptic JSON (images, annotations with '
    'segments_info, categories).', required=True)
_PANOPTIC_DIR = flags.DEFINE_string(
    'panoptic_dir', None, 'Folder of the RGB-id PNGs.', required=True)
_IMAGE_DIR = flags.DEFINE_string('image_dir', None, 'Folder of the images.',
                                 required=True)
_OUTPUT_PREFIX = flags.DEFINE_string(
    'output_prefix', None, 'Shards are written as '
    'OUTPUT_PREFIX-0000i-of-0000N.tfrecord.', required=True)
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 32, 'Number of shards.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                    'Processes building examples.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad', False, 'Skip bad examples (counted by reason) instead of '
    'stopping at the first.')
_CATEGORIES_JSON = flags.DEFINE_string(
    'categories_json', None, 'Category list to use instead of the annotations '
    "JSON's (e.g. panopticapi's panoptic_coco_categories.json).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  summary = coco_panoptic.convert(
      _ANNOTATIONS_JSON.value, _PANOPTIC_DIR.value, _IMAGE_DIR.value,
      _OUTPUT_PREFIX.value, num_shards=_NUM_SHARDS.value,
      num_workers=_NUM_WORKERS.value, skip_bad=_SKIP_BAD.value,
      categories_json=_CATEGORIES_JSON.value)
  print(writer.format_summary(summary))


if __name__ == '__main__':
  app.run(main)
