r"""Trains and/or evaluates Pix2Seq-D: gin says what to build, flags where and how.

  python -m tools.train --model_dir=/tmp/run \
      --gin_file=experiments/coco_stage1_tiny.gin [--gin_bindings='...'] \
      [--mode=train|eval|train_and_eval|continuous_eval] \
      [--strategy=default|mirrored|multi_worker|tpu] [--tpu=NAME] \
      [--all_reduce=auto|nccl|hierarchical_copy|reduce_to_one]

Evaluation modes re-read the gin config that training saved in `model_dir`
(`config.gin`) before applying the flags' own gin files and bindings.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tasks import config
from tasks import distribute
from tasks import train_lib

FLAGS = flags.FLAGS
flags.DEFINE_string('model_dir', None, 'Directory (local or gs://) for checkpoints, '
                    'summaries, the run record and evaluation outputs.')
flags.DEFINE_multi_string('gin_file', [], 'Gin files (relative to gin/ or paths).')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, e.g. "run_experiment.train_steps = 10".')
flags.DEFINE_enum('mode', 'train', list(train_lib.MODES), 'What to run.')
flags.DEFINE_enum('strategy', 'default', list(distribute.STRATEGIES),
                  'tf.distribute strategy.')
flags.DEFINE_string('tpu', '', 'TPU name or grpc address for --strategy=tpu.')
flags.DEFINE_string('all_reduce', 'auto', 'Cross-device all-reduce: '
                    'auto|nccl|hierarchical_copy|reduce_to_one (mirrored), '
                    'auto|ring|nccl (multi_worker).')
flags.DEFINE_integer('num_gpus', None, 'Use only the first N GPUs (mirrored).')
flags.DEFINE_integer('cpu_devices', 0, 'Split the host CPU into N logical devices '
                     '(MirroredStrategy without GPUs, for tests and debugging).')
flags.DEFINE_bool('deterministic', False, 'Deterministic TF ops (reproducible '
                  'runs on CPU/GPU; slower).')
flags.mark_flag_as_required('model_dir')


def main(argv):
  del argv
  gin_files = list(FLAGS.gin_file)
  saved = os.path.join(FLAGS.model_dir, config.CONFIG_NAME)
  if FLAGS.mode in ('eval', 'continuous_eval') and tf.io.gfile.exists(saved):
    gin_files = [saved] + gin_files
  if not gin_files:
    raise app.UsageError('Give --gin_file (or a --model_dir that holds config.gin).')
  if FLAGS.cpu_devices:
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  config.import_configurables()
  config.parse_gin(gin_files, FLAGS.gin_bindings)
  strategy = distribute.build_strategy(FLAGS.strategy, tpu=FLAGS.tpu,
                                       all_reduce=FLAGS.all_reduce,
                                       num_gpus=FLAGS.num_gpus)
  results = train_lib.run_experiment(FLAGS.model_dir, FLAGS.mode, strategy,
                                     argv=list(sys.argv))
  logging.info('Results: %s', json.dumps(results, default=str))


if __name__ == '__main__':
  app.run(main)
