"""Parameter counts of the gin-configured model (REFERENCE §4), for tools/model_summary.py.

The model is built by `pix2seq_d.build_model()` from the current gin config,
which creates every variable with one call on small dummy inputs; nothing runs
at the configured image size.
"""

import json
from typing import Optional

import tensorflow as tf

from models import pix2seq_d

# REFERENCE §4: the authors' released model at the paper's configuration.
REFERENCE_COUNTS = {
    'total_params': 94_492_480,
    'backbone': 8_543_296,
    'encoder_transformer': 525_824 + 37_828_608 + 1_024,
    'fusion': 4_003_840,
    'decoder_convs': 43_589_888 - 25_882_624,
    'decoder_time_embedding': 328_704,
    'decoder_transformer': 25_882_624,
}


def model_summary(output_json: Optional[str] = None) -> dict:
  """Builds the gin-configured model and returns (and optionally writes) its counts.

  Args:
    output_json: where to write the counts as JSON (via `tf.io.gfile`, written
      to a temporary name and renamed); None to skip.

  Returns:
    `pix2seq_d.parameter_counts` of the model.
  """
  model = pix2seq_d.build_model()
  counts = pix2seq_d.parameter_counts(model)
  if output_json:
    tmp = output_json + '.tmp'
    with tf.io.gfile.GFile(tmp, 'w') as f:
      json.dump(counts, f, indent=2, sort_keys=True)
      f.write('\n')
    tf.io.gfile.rename(tmp, output_json, overwrite=True)
  return counts


def format_counts(counts: dict) -> str:
  """One line per component: count, millions and the paper model's count."""
  lines = []
  for name, value in counts.items():
    reference = REFERENCE_COUNTS.get(name)
    note = f'   (paper config: {reference:,})' if reference is not None else ''
    lines.append(f'{name:24s} {value:>12,}  {value / 1e6:8.3f}M{note}')
  return '\n'.join(lines)
