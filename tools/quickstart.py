r"""Offline quickstart: synthetic data -> train -> PQ (or J&F) -> pictures, on a CPU.

  python -m tools.quickstart [--output_dir=./quickstart_output] [--minutes=15] \
      [--gin_file=...] [--gin_bindings='...'] [--train_steps=N]
  python -m tools.quickstart --video [--output_dir=./quickstart_video_output] ...

Images: writes `D/summary.json` (validation PQ / SQ / RQ, things / stuff, train
steps, seconds per stage, parameter count, settings), `D/overlays/*.png`,
`D/trajectory.png`, the run in `D/model/` and the data in `D/data/`
(tasks/quickstart.py).

--video: the video model on the synthetic videos, streaming inference
conditioned on the past predicted masks: `D/summary.json` (DAVIS J&F, J, F,
...), `D/pictures/<video>/<frame>.png` (frame | ground truth | prediction) and
`D/pictures/<video>.gif` (tasks/quickstart_video.py).

Without --output_dir, D is ./quickstart_output, or ./quickstart_video_output
with --video; without --gin_file, the experiment is
experiments/quickstart.gin, or experiments/quickstart_video.gin with --video.
"""

import sys

from absl import app
from absl import flags

from tasks import quickstart
from tasks import quickstart_video

DEFAULT_OUTPUT_DIR = './quickstart_output'
DEFAULT_VIDEO_OUTPUT_DIR = './quickstart_video_output'
DEFAULT_GIN_FILE = 'experiments/quickstart.gin'
DEFAULT_VIDEO_GIN_FILE = 'experiments/quickstart_video.gin'

FLAGS = flags.FLAGS
flags.DEFINE_string('output_dir', None, 'Where everything goes (default '
                    f'{DEFAULT_OUTPUT_DIR}, with --video '
                    f'{DEFAULT_VIDEO_OUTPUT_DIR}).')
flags.DEFINE_bool('video', False, 'The video quickstart: synthetic videos, the '
                  'video model, streaming inference, DAVIS J&F.')
flags.DEFINE_float('minutes', 15.0, 'Wall-clock budget the schedule is sized for.')
flags.DEFINE_integer('train_steps', None, 'Explicit training steps (overrides '
                     '--minutes; e.g. a smoke run).')
flags.DEFINE_multi_string('gin_file', None, f'Gin files (default: '
                          f'{DEFAULT_GIN_FILE}, with --video '
                          f'{DEFAULT_VIDEO_GIN_FILE}).')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')


def main(argv):
  del argv
  if FLAGS.video:
    run, output_dir, gin_file = (quickstart_video.run_video_quickstart,
                                 DEFAULT_VIDEO_OUTPUT_DIR, DEFAULT_VIDEO_GIN_FILE)
  else:
    run, output_dir, gin_file = (quickstart.run_quickstart, DEFAULT_OUTPUT_DIR,
                                 DEFAULT_GIN_FILE)
  summary = run(
      FLAGS.output_dir or output_dir,
      gin_files=FLAGS.gin_file or [gin_file],
      gin_bindings=FLAGS.gin_bindings, minutes=FLAGS.minutes,
      train_steps=FLAGS.train_steps, argv=list(sys.argv))
  print(quickstart.format_summary(summary, FLAGS.output_dir or output_dir))


if __name__ == '__main__':
  app.run(main)
