r"""DAVIS 2017 -> one SequenceExample per video, sharded (REFERENCE §7).

  python -m tools.create_davis_tfrecord --davis_root=DAVIS --split=val \
    --output_prefix=records/davis/val --num_shards=4

Classes: 1 background (stuff, index 1 in every frame), 2 object (object k is
index k + 1); 255 is void (data/davis.py). Writes `P-0000i-of-0000N.tfrecord`
and `P.categories.json`.
"""

from absl import app
from absl import flags

from data import davis
from data import writer

_DAVIS_ROOT = flags.DEFINE_string(
    'davis_root', None, 'Folder holding JPEGImages/, Annotations*/ and '
    'ImageSets/.', required=True)
_SPLIT = flags.DEFINE_string('split', 'val',
                             'Sequence list ImageSets/2017/SPLIT.txt.')
_OUTPUT_PREFIX = flags.DEFINE_string(
    'output_prefix', None, 'Shards are written as '
    'OUTPUT_PREFIX-0000i-of-0000N.tfrecord.', required=True)
_RESOLUTION = flags.DEFINE_string('resolution', '480p',
                                  '480p or Full-Resolution.')
_ANNOTATIONS = flags.DEFINE_string(
    'annotations', 'Annotations_unsupervised', 'Annotation folder.')
_MAX_FRAMES_PER_RECORD = flags.DEFINE_integer(
    'max_frames_per_record', 0, 'Split longer videos into chunks (0: never).')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 8, 'Number of shards.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                    'Processes building examples.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad', False, 'Skip bad videos (counted by reason) instead of '
    'stopping at the first.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  summary = davis.convert(
      _DAVIS_ROOT.value, _SPLIT.value, _OUTPUT_PREFIX.value,
      resolution=_RESOLUTION.value, annotations=_ANNOTATIONS.value,
      max_frames_per_record=_MAX_FRAMES_PER_RECORD.value,
      num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value,
      skip_bad=_SKIP_BAD.value)
  print(writer.format_summary(summary))


if __name__ == '__main__':
  app.run(main)
