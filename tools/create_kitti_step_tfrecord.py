r"""KITTI-STEP -> SequenceExamples (chunks of long videos), sharded (REFERENCE §7).

  python -m tools.create_kitti_step_tfrecord --root=kitti-step --split=val \
    --output_prefix=records/kitti_step/val --max_frames_per_record=100

Classes are the 19 Cityscapes trainIds (class id = trainId + 1); one segment
per (class, track id), indices consistent across a video's chunks
(data/kitti_step.py). Writes `P-0000i-of-0000N.tfrecord` and
`P.categories.json`.
"""

from absl import app
from absl import flags

from data import kitti_step
from data import writer

_ROOT = flags.DEFINE_string(
    'root', None, 'Folder holding images/ and panoptic_maps/.', required=True)
_SPLIT = flags.DEFINE_string('split', 'val', 'train or val.')
_OUTPUT_PREFIX = flags.DEFINE_string(
    'output_prefix', None, 'Shards are written as '
    'OUTPUT_PREFIX-0000i-of-0000N.tfrecord.', required=True)
_MAX_FRAMES_PER_RECORD = flags.DEFINE_integer(
    'max_frames_per_record', 100, 'Split longer videos into chunks (0: never).')
_NUM_SHARDS = flags.DEFINE_integer('num_shards', 8, 'Number of shards.')
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 1,
                                    'Processes scanning and building examples.')
_SKIP_BAD = flags.DEFINE_bool(
    'skip_bad', False, 'Skip bad chunks (counted by reason) instead of '
    'stopping at the first.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  summary = kitti_step.convert(
      _ROOT.value, _SPLIT.value, _OUTPUT_PREFIX.value,
      max_frames_per_record=_MAX_FRAMES_PER_RECORD.value,
      num_shards=_NUM_SHARDS.value, num_workers=_NUM_WORKERS.value,
      skip_bad=_SKIP_BAD.value)
  print(writer.format_summary(summary))


if __name__ == '__main__':
  app.run(main)
