"""Tests of models/summary.py on the tiny configuration."""

import json

from models import summary
from tasks import config


def test_model_summary_writes_the_counts(tmp_path):
  config.parse_gin(['model/pix2seq_d_tiny.gin'], finalize=False)
  path = str(tmp_path / 'counts.json')
  counts = summary.model_summary(path)
  with open(path) as f:
    assert json.load(f) == counts
  parts = ('backbone', 'encoder_transformer', 'fusion', 'decoder_convs',
           'decoder_transformer')
  assert sum(counts[p] for p in parts) == counts['total_params'] > 0
  assert 0 < counts['decoder_time_embedding'] < counts['decoder_convs']
  text = summary.format_counts(counts)
  assert 'total_params' in text and f"{counts['total_params']:,}" in text
