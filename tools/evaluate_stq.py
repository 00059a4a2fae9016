r"""Segmentation and Tracking Quality (STQ, AQ, SQ) on KITTI-STEP (REFERENCE §8).

  python -m tools.evaluate_stq \
    --gt_dir=kitti_step/panoptic_maps/val --pred_dir=run/kitti_step_val \
    --output_json=run/stq.json

`<dir>/<sequence>/<frame>.png`, RGB PNGs with R = class (Cityscapes trainIds,
255 void) and G * 256 + B = track id. The paper reports STQ 61.6 (AQ 61.3,
SQ 61.9) on KITTI-STEP val (REFERENCE §6). Semantics: `tasks.metrics.stq`
(deeplab2's STQuality).
"""

from absl import app
from absl import flags

from tasks.metrics import files
from tasks.metrics import stq

_GT_DIR = flags.DEFINE_string('gt_dir', None, 'Ground-truth sequence folders.')
_PRED_DIR = flags.DEFINE_string('pred_dir', None, 'Predicted sequence folders.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Where to write the results JSON (optional).')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 19, 'Classes 0..N-1.')
_THINGS = flags.DEFINE_multi_integer(
    'things', list(stq.KITTI_STEP_THINGS),
    'Tracked classes (repeat the flag); KITTI-STEP: 11 pedestrian, 13 car.')
_IGNORE_LABEL = flags.DEFINE_integer('ignore_label', 255, 'Void class.')
flags.mark_flags_as_required(['gt_dir', 'pred_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  results = stq.evaluate_stq_dirs(
      _GT_DIR.value, _PRED_DIR.value, num_classes=_NUM_CLASSES.value,
      things_list=_THINGS.value, ignore_label=_IGNORE_LABEL.value)
  print(stq.format_results(results))
  if _OUTPUT_JSON.value:
    files.write_json(_OUTPUT_JSON.value, results)
    print(f'wrote {_OUTPUT_JSON.value}')


if __name__ == '__main__':
  app.run(main)
