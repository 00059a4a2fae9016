r"""Panoptic quality (PQ, SQ, RQ) of COCO-format panoptic predictions (REFERENCE §8).

  python -m tools.evaluate_panoptic \
    --gt_json=coco/annotations/panoptic_val2017.json \
    --gt_dir=coco/annotations/panoptic_val2017 \
    --pred_json=run/panoptic_val2017.json --pred_dir=run/panoptic_val2017 \
    --output_json=run/pq.json

The paper reports PQ 50.3 on COCO val (20 steps) and 62.2-64.0 on Cityscapes
val (REFERENCE §6). Cityscapes' panoptic JSON has no categories: pass
`--categories_json` (a list of `{id, name, isthing}`, or a project
`*.categories.json`). Semantics: `tasks.metrics.panoptic_quality`.
"""

from absl import app
from absl import flags

from tasks.metrics import files
from tasks.metrics import panoptic_quality

_GT_JSON = flags.DEFINE_string('gt_json', None, 'Ground-truth COCO panoptic JSON.')
_GT_DIR = flags.DEFINE_string('gt_dir', None, 'Folder of the ground-truth PNGs.')
_PRED_JSON = flags.DEFINE_string('pred_json', None, 'Prediction JSON (annotations).')
_PRED_DIR = flags.DEFINE_string('pred_dir', None, 'Folder of the predicted PNGs.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Where to write the results JSON (optional).')
_CATEGORIES_JSON = flags.DEFINE_string(
    'categories_json', None,
    'Category table; default: the `categories` of --gt_json.')
flags.mark_flags_as_required(['gt_json', 'gt_dir', 'pred_json', 'pred_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  results, categories = panoptic_quality.evaluate_panoptic_files(
      _GT_JSON.value, _GT_DIR.value, _PRED_JSON.value, _PRED_DIR.value,
      categories_json=_CATEGORIES_JSON.value)
  print(panoptic_quality.format_results(results, categories))
  if _OUTPUT_JSON.value:
    files.write_json(_OUTPUT_JSON.value, results)
    print(f'wrote {_OUTPUT_JSON.value}')


if __name__ == '__main__':
  app.run(main)
