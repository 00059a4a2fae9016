r"""Measures the training input pipeline's throughput and prints it as JSON.

  python -m tools.benchmark_input --file_pattern='/data/coco/train-*' \
      [--gin_file=...] [--gin_bindings='TrainParser.image_size = (64, 64)'] \
      [--batch_size=32] [--num_batches=50] [--warmup_batches=5] [--video]

Builds `TrainParser()` (or `VideoTrainParser()` with --video) and
`build_dataset(is_training=True)` with their gin bindings, and runs
`data.pipeline.benchmark_training_input`; prints one JSON object with
`examples_per_sec`.
"""

import json

from absl import app
from absl import flags

from data import pipeline
from tasks import config

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('file_pattern', None,
                          'TFRecord glob(s) in the schema of data/records.py.')
flags.DEFINE_multi_string('gin_file', [], 'Gin files (relative to gin/ or paths).')
flags.DEFINE_multi_string('gin_bindings', [],
                          'Gin bindings, e.g. "TrainParser.image_size = (64, 64)".')
flags.DEFINE_integer('batch_size', 32, 'Global batch size.')
flags.DEFINE_integer('num_batches', 50, 'Batches to time.')
flags.DEFINE_integer('warmup_batches', 5, 'Batches read before timing.')
flags.DEFINE_bool('video', False, 'Video records and VideoTrainParser.')
flags.mark_flag_as_required('file_pattern')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
  result = pipeline.benchmark_training_input(
      FLAGS.file_pattern, global_batch_size=FLAGS.batch_size,
      num_batches=FLAGS.num_batches, warmup_batches=FLAGS.warmup_batches,
      video=FLAGS.video)
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
