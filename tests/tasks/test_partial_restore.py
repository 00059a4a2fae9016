"""Tests for tasks/partial_restore.py: path-and-shape matched restores across configs."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from models import checkpoint_graph
from models import pix2seq_d
from tasks import config
from tasks import partial_restore
from tasks import train_lib


def _build(bindings):
  gin.clear_config()
  config.import_configurables()
  config.parse_gin(['model/pix2seq_d_tiny.gin'], bindings, finalize=False)
  model = pix2seq_d.build_model()
  return model, pix2seq_d.build_ema(model)


def _by_path(module):
  return {v.path: v for v in module.weights}


def test_conditional_decoder_from_unconditional_prior(tmp_path):
  prior, _ = _build(['build_model.encoder = None',
                     "build_mask_decoder.conditioning = 'none'"])
  for variable in prior.decoder.weights:
    variable.assign(tf.random.normal(variable.shape, seed=1) * 0.01 + 0.5)
  path = tf.train.Checkpoint(model=prior).write(str(tmp_path / 'prior'))

  model, ema = _build([])
  before = {k: v.numpy().copy() for k, v in _by_path(model.decoder).items()}
  restored, skipped = partial_restore.restore_matching(path, model.decoder,
                                                       ('model', 'decoder'))
  assert restored and skipped
  # The input conv sees 16 + fused-feature channels here, 16 in the prior; the
  # cross-attention does not exist in the prior.
  assert any('conv_in' in p for p in skipped)
  assert any('cross' in p or 'attention' in p for p in skipped)
  source = tf.train.load_checkpoint(path)
  source_keys = partial_restore.variable_keys(source, ('model', 'decoder'))
  for p in restored:
    value = source.get_tensor(source_keys[p])
    matches = [v for v in model.decoder.weights
               if np.array_equal(v.numpy(), value)]
    assert matches, p
  changed = sum(not np.array_equal(before[k], v.numpy())
                for k, v in _by_path(model.decoder).items())
  assert changed >= len([p for p in restored if 'moving' not in p]) - 5
  # Through train_lib, the EMA restarts at the restored weights.
  model2, ema2 = _build([])
  train_lib.restore_init_checkpoint(path, 'decoder', model2, ema2)
  with ema2.swap():
    swapped = [v.numpy().copy() for v in model2.decoder.weights]
  np.testing.assert_array_equal(swapped[0], model2.decoder.weights[0].numpy())


def test_missing_part_is_named(tmp_path):
  model, _ = _build([])
  path = tf.train.Checkpoint(other=tf.Variable(1.0)).write(str(tmp_path / 'x'))
  try:
    partial_restore.restore_matching(path, model.decoder, ('model', 'decoder'))
  except ValueError as e:
    assert "'model/decoder'" in str(e)
  else:
    raise AssertionError('expected a ValueError')


def test_extract_part_writes_an_encoder_that_starts_a_run(tmp_path):
  """A model's encoder alone (no decoder, EMA or step) restores into a new model."""
  source, ema = _build([])
  for variable in source.encoder.weights:
    if 'float' in variable.dtype:
      variable.assign(tf.random.normal(variable.shape, seed=2))
  step = tf.Variable(7, dtype=tf.int64)
  path = tf.train.Checkpoint(model=source, ema=ema, step=step).write(
      str(tmp_path / 'run' / 'ckpt-7'))
  written = partial_restore.extract_part(path, 'encoder', str(tmp_path / 'enc'))
  assert written['num_variables'] == len(source.encoder.variables)
  reader = tf.train.load_checkpoint(written['checkpoint'])
  keys = set(reader.get_variable_to_shape_map())
  others = {k for k in keys if not k.startswith('model/encoder/')}
  assert others == {checkpoint_graph.OBJECT_GRAPH_KEY,
                    'save_counter/.ATTRIBUTES/VARIABLE_VALUE'}, others

  target, _ = _build([])
  train_lib.restore_init_checkpoint(str(tmp_path / 'enc'), 'encoder', target, None)
  for path_, variable in _by_path(target.encoder).items():
    np.testing.assert_array_equal(variable.numpy(),
                                  _by_path(source.encoder)[path_].numpy())
  with pytest.raises(ValueError, match='already holds a checkpoint'):
    partial_restore.extract_part(path, 'encoder', str(tmp_path / 'enc'))


def test_extract_part_refuses_a_part_the_checkpoint_does_not_hold(tmp_path):
  source, _ = _build([])
  path = tf.train.Checkpoint(model=source).write(str(tmp_path / 'ckpt'))
  gin.clear_config()
  config.parse_gin(['model/pix2seq_d_tiny.gin'],
                   ['build_image_encoder.hidden_dim = 64'], finalize=False)
  with pytest.raises(ValueError, match='does not hold the encoder the gin '
                     r'config builds: \d+ variable'):
    partial_restore.extract_part(path, 'encoder', str(tmp_path / 'enc'))
  with pytest.raises(ValueError, match="part='head'"):
    partial_restore.extract_part(path, 'head', str(tmp_path / 'head'))


def test_encoder_and_decoder_prior_from_two_checkpoints(tmp_path):
  """`init_checkpoint = [ENC, PRIOR]`, parts `['encoder', 'decoder']`: both land."""
  source, _ = _build([])
  for variable in source.encoder.weights:
    if 'float' in variable.dtype:
      variable.assign(tf.random.normal(variable.shape, seed=3))
  encoder_path = tf.train.Checkpoint(model=source).write(str(tmp_path / 'enc'))
  prior, _ = _build(['build_model.encoder = None',
                     "build_mask_decoder.conditioning = 'none'"])
  for variable in prior.decoder.weights:
    variable.assign(tf.random.normal(variable.shape, seed=4) * 0.01 + 0.5)
  prior_path = tf.train.Checkpoint(model=prior).write(str(tmp_path / 'prior'))

  sources = train_lib.init_checkpoint_sources([encoder_path, prior_path],
                                              ['encoder', 'decoder'])
  assert sources == [(encoder_path, 'encoder'), (prior_path, 'decoder')]
  target, ema = _build([])
  for path, parts in sources:
    train_lib.restore_init_checkpoint(path, parts, target, ema)
  for path_, variable in _by_path(target.encoder).items():
    np.testing.assert_array_equal(variable.numpy(),
                                  _by_path(source.encoder)[path_].numpy())
  prior_weights = _by_path(prior.decoder)
  same = [p for p, v in _by_path(target.decoder).items()
          if p in prior_weights and v.shape == prior_weights[p].shape]
  assert len(same) > 10
  for p in same:
    np.testing.assert_array_equal(_by_path(target.decoder)[p].numpy(),
                                  prior_weights[p].numpy())


def test_init_checkpoint_sources_pairs_paths_with_parts():
  assert train_lib.init_checkpoint_sources(None, 'model_and_ema') == []
  assert train_lib.init_checkpoint_sources('/a', 'encoder') == [('/a', 'encoder')]
  with pytest.raises(ValueError, match='one part for each'):
    train_lib.init_checkpoint_sources(['/a', '/b'], 'encoder')
  with pytest.raises(ValueError, match='one part for each'):
    train_lib.init_checkpoint_sources(['/a', '/b'], ['encoder'])
  with pytest.raises(ValueError, match='is not one part'):
    train_lib.init_checkpoint_sources('/a', ['encoder', 'decoder'])
