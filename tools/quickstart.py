r"""Offline quickstart: synthetic data -> train -> PQ -> overlays, on a CPU.

  python -m tools.quickstart [--output_dir=./quickstart_output] [--minutes=15] \
      [--gin_file=...] [--gin_bindings='...'] [--train_steps=N]

Writes `D/summary.json` (validation PQ / SQ / RQ, things / stuff, train steps,
seconds per stage, parameter count, settings), `D/overlays/*.png`,
`D/trajectory.png`, the run in `D/model/` and the data in `D/data/`
(tasks/quickstart.py).
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

from tasks import quickstart

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', './quickstart_output', 'Where everything goes.')
flags.DEFINE_float('minutes', 15.0, 'Wall-clock budget the schedule is sized for.')
flags.DEFINE_integer('train_steps', None, 'Explicit training steps (overrides '
                     '--minutes; e.g. a smoke run).')
flags.DEFINE_multi_string('gin_file', None, 'Gin files (default: '
                          'experiments/quickstart.gin).')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  summary = quickstart.run_quickstart(
      FLAGS.output_dir,
      gin_files=FLAGS.gin_file or ['experiments/quickstart.gin'],
      gin_bindings=FLAGS.gin_bindings, minutes=FLAGS.minutes,
      train_steps=FLAGS.train_steps, argv=list(sys.argv))
  print(json.dumps({k: summary[k] for k in ('val', 'train_steps', 'seconds')},
                   indent=1))


if __name__ == '__main__':
  app.run(main)
