"""Tests for tasks/optim.py (REFERENCE §5 schedule) and tasks/distribute.py flags."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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


def _five_steps(fused, graph, strategy):
  keras.utils.set_random_seed(0)
  shapes = [(4, 5), (5,), (3, 3, 2)]
  with strategy.scope():
    variables = [keras.Variable(np.random.RandomState(i).normal(size=s).astype(
        np.float32)) for i, s in enumerate(shapes)]
    opt = optim.build_optimizer(total_steps=10, learning_rate=0.1,
                                warmup_steps=2, weight_decay=0.05, fused=fused)
    opt.build(variables)
  optim.exclude_from_weight_decay(opt, variables)

  def step(scale):
    grads = [tf.sin(v.value * scale) for v in variables]
    opt.apply_gradients(zip(grads, variables))

  run = tf.function(lambda s: strategy.run(step, args=(s,))) if graph else step
  for i in range(5):
    run(tf.constant(i + 1.0))
  assert type(opt).__name__ == ('FusedAdamW' if fused else 'AdamW')
  return ([v.numpy() for v in variables], [m.numpy() for m in opt._momentums],  # pylint: disable=protected-access
          [m.numpy() for m in opt._velocities])  # pylint: disable=protected-access


@pytest.mark.parametrize('graph,mirrored', [(False, False), (True, False),
                                            (True, True)])
def test_fused_adamw_follows_keras_adamw(graph, mirrored):
  """Same variables and moments after 5 steps (decay on the kernels only).

  Not bitwise: TF's Adam kernel forms `1 - beta_2` in float32
  (1 - 0.999f = 1.00005e-3), Keras in double (1e-3), so `v` and the step
  differ by ~5e-5 relative (measured: 2.4e-6 absolute on values ~1 after 5
  steps at lr 0.1)."""
  strategy = (tf.distribute.MirroredStrategy(['/cpu:0']) if mirrored
              else tf.distribute.get_strategy())
  fused = _five_steps(True, graph, strategy)
  reference = _five_steps(False, graph, strategy)
  for mine, theirs in zip(sum(fused, []), sum(reference, [])):
    np.testing.assert_allclose(mine, theirs, rtol=2e-4, atol=1e-5)
  moved = [np.max(np.abs(v - np.random.RandomState(i).normal(size=v.shape)))
           for i, v in enumerate(fused[0])]
  assert min(moved) > 0.05  # The steps did move every variable.
