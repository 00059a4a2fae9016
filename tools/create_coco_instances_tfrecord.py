r"""COCO instance annotations (your own data) -> panoptic TFRecords (REFERENCE §7).

  python -m tools.create_coco_instances_tfrecord \
    --annotations_json=mydata/annotations/instances_train.json \
    --image_dir=mydata/images/train --output_prefix=records/mydata/train

Polygons or RLE; every annotation becomes a thing segment (small objects drawn
on top), unannotated pixels are void, `iscrowd` annotations crowd segments
(data/coco_instances.py). Writes `P-0000i-of-0000N.tfrecord` and
`P.categories.json`.
"""

from absl import app
from absl import flags

from data import coco_instances
from data import writer

_ANNOTATIONS_JSON = flags.DEFINE_string(
    'annotations_json', None, 'COCO instances JSON (images, annotations with '
    'segmentation, categories).', required=True)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  summary = coco_instances.convert(
      _ANNOTATIONS_JSON.value, _IMAGE_DIR.value, _OUTPUT_PREFIX.value,
      num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value,
      skip_bad=_SKIP_BAD.value)
  print(writer.format_summary(summary))


if __name__ == '__main__':
  app.run(main)
