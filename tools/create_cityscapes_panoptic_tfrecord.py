r"""Cityscapes panoptic (createPanopticImgs output) -> sharded TFRecords (REFERENCE §7).

  python -m tools.create_cityscapes_panoptic_tfrecord \
    --annotations_json=cityscapes/gtFine/cityscapes_panoptic_val_trainId.json \
    --panoptic_dir=cityscapes/gtFine/cityscapes_panoptic_val_trainId \
    --image_dir=cityscapes/leftImg8bit/val \
    --output_prefix=records/cityscapes/val

`X_gtFine_panoptic.png` pairs with `X_leftImg8bit.png`, found anywhere under
--image_dir. Without `categories` in the JSON, category ids are trainIds and the
19 trainId classes are used. Writes `P-0000i-of-0000N.tfrecord` and
`P.categories.json`.
"""

from absl import app
from absl import flags

from data import cityscapes
from data import writer

_ANNOTATIONS_JSON = flags.DEFINE_string(
    'annotations_json', None, 'Panoptic JSON written by cityscapesscripts '
    'createPanopticImgs.', required=True)
_PANOPTIC_DIR = flags.DEFINE_string(
    'panoptic_dir', None, 'Folder of the *_gtFine_panoptic.png files.',
    required=True)
_IMAGE_DIR = flags.DEFINE_string(
    'image_dir', None, 'leftImg8bit/<split> (searched recursively).',
    required=True)
_OUTPUT_PREFIX = flags.DEFINE_string(
    'output_prefix', None, 'Shards are written as '
    'OUTPUT_PREFIX-0000i-of-0000N.tfrecord.', required=True)
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 10, 'Number of shards.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                    'Processes building examples.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad', False, 'Skip bad examples (counted by reason) instead of '
    'stopping at the first.')
_CATEGORIES_JSON = flags.DEFINE_string(
    'categories_json', None, 'Category list to use instead of the JSON\'s or '
    'the 19 trainId classes.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  summary = cityscapes.convert(
      _ANNOTATIONS_JSON.value, _PANOPTIC_DIR.value, _IMAGE_DIR.value,
      _OUTPUT_PREFIX.value, num_shards=_NUM_SHARDS.value,
      num_workers=_NUM_WORKERS.value, skip_bad=_SKIP_BAD.value,
      categories_json=_CATEGORIES_JSON.value)
  print(writer.format_summary(summary))


if __name__ == '__main__':
  app.run(main)
