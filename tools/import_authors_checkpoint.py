r"""Imports a checkpoint of the authors' Pix2Seq / Pix2Seq-D trainer (issue 14).

  python -m tools.import_authors_checkpoint \
      --checkpoint=gs://pix2seq/obj365_pretrain/resnetc_640x640_b256_s400k \
      --kind=detection_encoder --gin_file=experiments/coco_stage1_authors.gin \
      --output_dir=gs://BUCKET/pix2seq_d/obj365_encoder
  python -m tools.import_authors_checkpoint --checkpoint=THEIR_MODEL_DIR \
      --kind=pix2seq_d --output_dir=gs://BUCKET/pix2seq_d/imported

`--kind=detection_encoder` writes an init checkpoint of our encoder (ResNet +
transformer; `run_experiment.init_checkpoint_parts = 'encoder'`);
`--kind=pix2seq_d` writes a model_dir with model and EMA
(`init_checkpoint_parts = 'model_and_ema'`, `tools.export_saved_model`,
`tools.train --mode=eval`). With the authors' `config.json` next to the
checkpoint our model is built from it; otherwise `--gin_file` says what to
build. Prints the mapping (theirs -> ours with shapes, what was not used, what
was not filled); a missing or mis-shaped variable stops with both names and
nothing written. Library: `tasks/import_authors.py`.
"""

import sys

from absl import app
from absl import flags

from tasks import import_authors

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', None, "The authors' checkpoint prefix or folder.")
flags.DEFINE_enum('kind', None, list(import_authors.KINDS), 'What the checkpoint is.')
flags.DEFINE_string('output_dir', None, 'Where to write (must hold no checkpoint).')
flags.DEFINE_multi_string('gin_file', [], 'Our gin files (optional next to the '
                          "authors' config.json).")
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
flags.mark_flags_as_required(['checkpoint', 'kind', 'output_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  report = import_authors.import_checkpoint(
      FLAGS.checkpoint, FLAGS.kind, FLAGS.output_dir, FLAGS.gin_file,
      FLAGS.gin_bindings, argv=list(sys.argv))
  print('\n'.join(report['lines']))
  print(f'\nwrote {report["checkpoint"]} ({report["num_mapped"]} variables)')


if __name__ == '__main__':
  app.run(main)
