r"""Writes one part (encoder or decoder) of a checkpoint as a small init checkpoint.

  python -m tools.extract_part --checkpoint=PRETRAIN_DIR --part=encoder \
      --gin_file=experiments/quickstart.gin --output_dir=ENCODER_DIR

The part is built from the gin files (those of the run that wrote the
checkpoint) and filled from it; no head, optimizer state or step is kept.
Start a run from it with `run_experiment.init_checkpoint = 'ENCODER_DIR'` and
`run_experiment.init_checkpoint_parts = 'encoder'`. The quickstart's shipped
encoder (models/pretrained/quickstart_encoder) was made so (README "The
quickstart"). Library: `tasks/partial_restore.extract_part`.
"""

import json

from absl import app
from absl import flags

from tasks import config
from tasks import partial_restore

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', None, 'Checkpoint prefix or model_dir.')
flags.DEFINE_enum('part', 'encoder', ['encoder', 'decoder'], 'What to keep.')
flags.DEFINE_string('output_dir', None, 'Where to write (must hold no checkpoint).')
flags.DEFINE_multi_string('gin_file', [], 'Gin files that build the part.')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
flags.mark_flags_as_required(['checkpoint', 'output_dir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config.import_configurables()
  config.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
  print(json.dumps(partial_restore.extract_part(
      FLAGS.checkpoint, FLAGS.part, FLAGS.output_dir), indent=2))


if __name__ == '__main__':
  app.run(main)
