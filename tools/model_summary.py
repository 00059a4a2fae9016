"""Prints (and writes) the parameter counts of a gin-configured Pix2Seq-D model.

  python -m tools.model_summary --gin_file=model/pix2seq_d.gin \
      [--gin_bindings='build_mask_decoder.base_dim = 64'] [--output_json=counts.json]

Counts: `total_params` and one entry per component (backbone, encoder_transformer,
fusion, decoder_convs incl. the time embedding and output conv,
decoder_transformer); see `models/summary.py`.
"""

from absl import app
from absl import flags

from models import summary
from tasks import config

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', None, 'Gin files (relative to gin/ or paths).')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, e.g. "build_model.loss_p = 0.4".')
flags.DEFINE_string('output_json', None, 'Write the counts to this JSON file.')
flags.mark_flag_as_required('gin_file')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
  counts = summary.model_summary(FLAGS.output_json)
  print(summary.format_counts(counts))


if __name__ == '__main__':
  app.run(main)
