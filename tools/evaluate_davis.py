r"""DAVIS 2017 unsupervised J&F of indexed-PNG predictions (REFERENCE §8).

  python -m tools.evaluate_davis \
    --gt_dir=DAVIS/Annotations_unsupervised/480p \
    --pred_dir=run/davis_val --output_json=run/davis.json

`<dir>/<sequence>/<frame>.png`, indexed PNGs (0 background, 1..N; 255 void in
the ground truth), at most 20 proposal ids per sequence. The paper reports
J&F 68.4 on DAVIS 2017 val (REFERENCE §6). Semantics: `tasks.metrics.davis`
(davis2017-evaluation, unsupervised task): void (255) pixels of the ground truth
are left out of J and F, as the package's void masks leave them out.

Prints the global table and the per-object table; its rows are named as the
package's per-sequence table (`<sequence>_<k>`, k the rank of the matched pair
in proposal order), with columns for the ground-truth object and the proposal.
"""

from absl import app
from absl import flags

from tasks.metrics import davis
from tasks.metrics import files

_GT_DIR = flags.DEFINE_string('gt_dir', None, 'Ground-truth sequence folders.')
_PRED_DIR = flags.DEFINE_string('pred_dir', None, 'Predicted sequence folders.')
_OUTPUT_JSON = flags.DEFINE_string('output_json', None,
                                   'Where to write the results JSON (optional).')
_MAX_PROPOSALS = flags.DEFINE_integer('max_proposals', davis.MAX_PROPOSALS,
                                      'The most proposal ids per sequence.')
flags.mark_flags_as_required(['gt_dir', 'pred_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  results = davis.evaluate_davis_dirs(_GT_DIR.value, _PRED_DIR.value,
                                      max_proposals=_MAX_PROPOSALS.value)
  print(davis.format_per_object(results))
  print(davis.format_results(results))
  if _OUTPUT_JSON.value:
    files.write_json(_OUTPUT_JSON.value, results)
    print(f'wrote {_OUTPUT_JSON.value}')


if __name__ == '__main__':
  app.run(main)
