r"""Exports a trained Pix2Seq-D as a SavedModel with the whole sampler inside (issue 8).

  python -m tools.export_saved_model --model_dir=/tmp/p2sd_stage1_tiny \
      --output_dir=/tmp/p2sd_export/1 [--checkpoint=/tmp/p2sd_stage1_tiny/ckpt-4] \
      [--gin_file=...] [--gin_bindings='export_saved_model.num_steps = 10'] \
      [--overwrite]

Reads `model_dir/config.gin` (what training ran), then the flags' gin files and
bindings; exports the EMA weights of the latest (or the given) checkpoint.
Signatures, inputs and outputs: `tasks/export.py`. Check with
`saved_model_cli show --dir=OUTPUT_DIR --all`.
"""

import json

from absl import app
from absl import flags

from tasks import export

FLAGS = flags.FLAGS
flags.DEFINE_string('model_dir', None, 'Training directory: config.gin and checkpoints.')
flags.DEFINE_string('output_dir', None, 'Export directory (e.g. BASE/1 for TF Serving).')
flags.DEFINE_string('checkpoint', None, 'Checkpoint prefix or folder (default: '
                    "model_dir's latest).")
flags.DEFINE_multi_string('gin_file', [], 'Extra gin files, after config.gin.')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings, e.g. '
                          '"export_saved_model.num_steps = 10".')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output_dir.')
flags.mark_flags_as_required(['model_dir', 'output_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  export.parse_export_gin(FLAGS.model_dir, FLAGS.gin_file, FLAGS.gin_bindings)
  info = export.export_saved_model(FLAGS.model_dir, FLAGS.output_dir,
                                   FLAGS.checkpoint, overwrite=FLAGS.overwrite)
  print(json.dumps({k: info[k] for k in ('output_dir', 'checkpoint',
                                         'global_step', 'used_ema',
                                         'signatures')}))


if __name__ == '__main__':
  app.run(main)
