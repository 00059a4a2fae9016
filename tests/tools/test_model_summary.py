"""Runs tools/model_summary.py as a program on the tiny configuration."""

import json
import os
import subprocess
import sys

from tests import conftest


def test_model_summary_program(tmp_path):
  output = str(tmp_path / 'counts.json')
  result = subprocess.run(
      [sys.executable, '-m', 'tools.model_summary',
       '--gin_file=model/pix2seq_d_tiny.gin',
       '--gin_bindings=build_mask_decoder.transformer_layers = 1',
       f'--output_json={output}'],
      cwd=conftest.REPO_ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-2000:]
  with open(output) as f:
    counts = json.load(f)
  assert counts['total_params'] > 0
  assert f"{counts['total_params']:,}" in result.stdout
  assert 'decoder_transformer' in result.stdout
