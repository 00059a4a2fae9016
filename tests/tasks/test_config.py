"""Tests for tasks/config.py: gin parsing with the repository's gin/ tree."""

import os

import gin
import pytest

from tasks import config


def test_every_gin_file_parses():
  config.import_configurables()
  files = config.all_gin_files()
  assert files, 'no gin files found'
  for path in files:
    gin.clear_config()
    config.parse_gin([path], finalize=False)


def test_gin_file_relative_to_gin_dir_and_bindings_win():
  config.import_configurables()
  config.parse_gin(['diffusion/bit_diffusion.gin'], ['B_SCALE = 0.3'],
                   finalize=False)
  assert gin.query_parameter('%B_SCALE') == 0.3


def test_include_resolves_against_gin_dir(tmp_path):
  config.import_configurables()
  path = tmp_path / 'exp.gin'
  path.write_text("include 'diffusion/bit_diffusion.gin'\nLOSS_P = 0.4\n")
  config.parse_gin([str(path)], finalize=False)
  assert gin.query_parameter('%LOSS_P') == 0.4
  assert gin.query_parameter('%N_BITS') == (8, 8)


def test_missing_gin_file_names_the_file():
  with pytest.raises(FileNotFoundError, match='no_such.gin'):
    config.parse_gin(['no_such.gin'])


def test_run_record_written(tmp_path):
  config.import_configurables()
  config.parse_gin(['diffusion/bit_diffusion.gin'], finalize=False)
  config.save_run_record(str(tmp_path), ['python', '-m', 'tools.train', '--x=1'])
  assert 'B_SCALE = 0.1' in (tmp_path / config.CONFIG_NAME).read_text()
  assert (tmp_path / config.COMMAND_LINE_NAME).read_text() == (
      'python -m tools.train --x=1\n')
  assert not [p for p in os.listdir(tmp_path) if p.endswith('.tmp')]


def test_paper_configurations_follow_the_authors_released_code():
  """Issue 14 part 2: the five differences are the authors' in the paper
  configurations; the quickstart keeps the defaults."""
  authors = {
      'build_image_encoder.pixel_mean': (0.0, 0.0, 0.0),
      'build_image_encoder.pixel_std': (1.0, 1.0, 1.0),
      'build_image_encoder.stem_pool_padding': 'same',
      'build_image_encoder.sync_batch_norm': True,
      'train/TrainParser.pad_value': 0.3,
      'train/TrainParser.antialias': True,
      'eval/EvalParser.pad_value': 0.3,
      'eval/EvalParser.antialias': True,
      'build_optimizer.decay_norms_and_biases': True,
      'build_evaluator.min_pixels_at': 'original',
      'build_evaluator.void_votes': True,
  }
  config.import_configurables()
  for experiment in ('coco_stage1', 'coco_stage2', 'cityscapes'):
    gin.clear_config()
    config.parse_gin([f'experiments/{experiment}.gin'], finalize=False)
    for key, value in authors.items():
      found = config.gin_value(key)
      assert (tuple(found) if isinstance(found, list) else found) == value, (
          experiment, key)
  gin.clear_config()
  config.parse_gin(['experiments/coco_stage1.gin'], finalize=False)
  assert config.gin_value('build_evaluator.min_pixels') == 40
  gin.clear_config()
  config.parse_gin(['experiments/quickstart.gin'], finalize=False)
  for key in authors:
    assert config.gin_value(key) is None, key
