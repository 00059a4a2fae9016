r"""Sweeps of gin settings x seeds on the quickstart's data (tasks/sweep.py).

  python -m tools.sweep --gin_file=experiments/quickstart.gin \
    --sweep="B_SCALE=0.03,0.1,0.3,1.0" [--sweep="LOSS_P=0,0.2"] --seeds=2 \
    --train_steps=N --output_dir=D \
    [--eval_only_sweep="build_evaluator.num_steps=1,2,5,10,20"] \
    [--combine=grid|separate] [--report_name=results] [--video]

Several --sweep flags form a grid (`--combine=grid`) or are each varied alone
from the base configuration (`--combine=separate`, the paper's ablations).
Every setting x seed is one run, `D/runs/<setting>__seed<k>/` (a model_dir),
trained for exactly --train_steps and evaluated on the held-out split; the
data is generated once into --data_dir (default `D/data`). A re-run skips
finished runs and evaluations, so a killed sweep continues where it stopped.
Results: `D/<report_name>.json|.md|.png` and `D/hparams/` (TensorBoard HParams).
--video sweeps the video quickstart (J&F) instead.
"""

import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from data import source_files
from tasks import quickstart
from tasks import quickstart_video
from tasks import sweep
from tasks import sweep_report

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', None, 'Gin files of the base '
                          'configuration (default experiments/quickstart.gin, '
                          'with --video experiments/quickstart_video.gin).')
flags.DEFINE_multi_string('gin_bindings', [], 'Bindings of the base '
                          'configuration (every run has them).')
flags.DEFINE_multi_string('sweep', [], 'NAME=V1,V2,...: a gin macro or '
                          'parameter and the values each training run takes.')
flags.DEFINE_multi_string('eval_only_sweep', [], 'NAME=V1,V2,...: values '
                          'taken at evaluation only (every trained run is '
                          're-evaluated with each; e.g. sampling steps, td).')
flags.DEFINE_enum('combine', 'grid', sweep.COMBINE_MODES, 'grid: every '
                  'combination of the axes; separate: each axis varied alone '
                  'from the base configuration (the base run is shared).')
flags.DEFINE_integer('seeds', 2, 'Runs per setting (seeds 0 .. N-1).',
                     lower_bound=1)
flags.DEFINE_integer('train_steps', None, 'Training steps of every run.',
                     lower_bound=1)
flags.DEFINE_integer('checkpoint_interval', 100, 'Steps between checkpoints '
                     '(what a killed run has to redo).', lower_bound=1)
flags.DEFINE_string('output_dir', None, 'Where runs/, the report and hparams/ go.')
flags.DEFINE_string('data_dir', None, 'The generated data (default '
                    'OUTPUT_DIR/data; a quickstart output\'s data/ can be '
                    'shared).')
flags.DEFINE_string('report_name', 'results', 'Report files: '
                    'OUTPUT_DIR/NAME.json, .md, .png.')
flags.DEFINE_bool('video', False, 'Sweep the video quickstart (J&F).')
flags.mark_flags_as_required(['train_steps', 'output_dir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  gin_files = FLAGS.gin_file or [
      'experiments/quickstart_video.gin' if FLAGS.video
      else 'experiments/quickstart.gin']
  data_dir = FLAGS.data_dir or os.path.join(FLAGS.output_dir, 'data')
  base_bindings = quickstart.data_bindings(data_dir) + list(FLAGS.gin_bindings)
  try:
    train_axes = [sweep.parse_axis(t, '--sweep') for t in FLAGS.sweep]
    eval_axes = [sweep.parse_axis(t, '--eval_only_sweep')
                 for t in FLAGS.eval_only_sweep]
    plan = sweep.plan_sweep(gin_files, base_bindings, train_axes, eval_axes,
                            FLAGS.combine)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  logging.info('sweep: %d training settings x %d seeds, %d evaluation '
               'settings each', len(plan.train_settings), FLAGS.seeds,
               len(plan.eval_settings))

  # The data once, as the quickstart makes it (the settings come from gin).
  sweep.configure(gin_files, base_bindings, [])
  if FLAGS.video:
    quickstart_video.make_video_records(
        data_dir, quickstart_video.quickstart_video_data(),
        quickstart.quickstart_settings()['num_workers'])
  else:
    quickstart.make_records(data_dir, quickstart.quickstart_data(),
                            quickstart.quickstart_settings()['num_workers'])

  command = ' '.join(shlex.quote(a) for a in ['python', '-m', 'tools.sweep'] +
                     sys.argv[1:])
  report = lambda results: sweep_report.write_report(
      FLAGS.output_dir, FLAGS.report_name, results,
      [a.name for a in train_axes], [a.name for a in eval_axes],
      plan.base_values, FLAGS.combine, command=command)
  results = sweep.run_sweep(FLAGS.output_dir, gin_files, base_bindings, plan,
                            FLAGS.seeds, FLAGS.train_steps,
                            FLAGS.checkpoint_interval, on_result=report)
  paths = report(results)
  print(source_files.read_bytes(paths['md']).decode())
  print('\n'.join(f'{k}: {v}' for k, v in paths.items()))


if __name__ == '__main__':
  app.run(main)
