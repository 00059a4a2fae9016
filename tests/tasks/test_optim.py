"""Tests for tasks/optim.py (REFERENCE §5 schedule) and tasks/distribute.py flags."""

import keras
import numpy as np
import pytest

from tasks import distribute
from tasks import optim


def test_warmup_then_linear_decay_to_end_factor():
  schedule = optim.WarmupLinearDecay(1e-4, total_steps=110, warmup_steps=10,
                                     end_factor=0.1)
  values = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)]
  np.testing.assert_allclose(
      values, [0.0, 5e-5, 1e-4, 1e-4 * (1 - 0.9 * 0.5), 1e-5, 1e-5], rtol=1e-5)


def test_constant_schedule_without_warmup():
  schedule = optim.WarmupLinearDecay(1e-5, total_steps=100, end_factor=1.0)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 50, 100)], 1e-5)


def test_schedule_rejects_bad_lengths():
  with pytest.raises(ValueError, match='warmup_steps'):
    optim.WarmupLinearDecay(1e-4, total_steps=10, warmup_steps=20)


def test_adamw_excludes_norms_and_biases_from_decay():
  layer = keras.layers.Dense(3)
  layer.build((None, 2))
  opt = optim.build_optimizer(total_steps=10, learning_rate=0.1,
                              end_lr_factor=1.0, weight_decay=0.5)
  optim.exclude_from_weight_decay(opt, layer.trainable_variables)
  opt.build(layer.trainable_variables)
  kernel, bias = layer.kernel.numpy(), layer.bias.numpy() + 1.0
  layer.bias.assign(bias)
  opt.apply_gradients([(np.zeros_like(kernel), layer.kernel),
                       (np.zeros_like(bias), layer.bias)])
  np.testing.assert_allclose(layer.kernel.numpy(), kernel * (1 - 0.1 * 0.5), rtol=1e-5)
  np.testing.assert_allclose(layer.bias.numpy(), bias, rtol=1e-6)


def test_unknown_strategy_and_all_reduce_name_the_flag():
  with pytest.raises(ValueError, match='--strategy'):
    distribute.build_strategy('gpu')
  with pytest.raises(ValueError, match='--all_reduce'):
    distribute.build_strategy('mirrored', all_reduce='magic')


def test_adamw_decays_every_variable_when_configured():
  """The authors' AdamW decays every variable (models/model_utils.py)."""
  layer = keras.layers.Dense(3)
  layer.build((None, 2))
  opt = optim.build_optimizer(total_steps=10, learning_rate=0.1,
                              end_lr_factor=1.0, weight_decay=0.5,
                              decay_norms_and_biases=True)
  optim.exclude_from_weight_decay(opt, layer.trainable_variables)
  opt.build(layer.trainable_variables)
  bias = layer.bias.numpy() + 1.0
  layer.bias.assign(bias)
  opt.apply_gradients([(np.zeros((2, 3), np.float32), layer.kernel),
                       (np.zeros_like(bias), layer.bias)])
  np.testing.assert_allclose(layer.bias.numpy(), bias * (1 - 0.1 * 0.5), rtol=1e-5)
