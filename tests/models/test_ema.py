"""Tests of models/ema.py: update numerics, swap, distribution, checkpointing."""

import keras
import numpy as np
import tensorflow as tf

from models import ema as ema_lib


def _model():
  inputs = keras.Input((3,))
  x = keras.layers.Dense(4, name='dense')(inputs)
  x = keras.layers.BatchNormalization(name='bn')(x)
  x = keras.layers.Dropout(0.5)(x)  # Has a SeedGenerator state (uint32).
  return keras.Model(inputs, x)


def _set(variables, values):
  for v, value in zip(variables, values):
    v.assign(value)


def test_tracks_float_variables_including_batch_norm_statistics():
  model = _model()
  tracked = ema_lib.averaged_variables(model)
  names = sorted(v.name for v in tracked)
  assert names == ['beta', 'bias', 'gamma', 'kernel', 'moving_mean', 'moving_variance']
  assert len(model.variables) > len(tracked)  # The seed state is left out.


def test_update_and_swap_numerics():
  model = _model()
  variables = ema_lib.averaged_variables(model)
  initial = [v.numpy().copy() for v in variables]
  ema = ema_lib.EMA(model, decay=0.9)
  for shadow, value in zip(ema.shadow_variables, initial):
    np.testing.assert_array_equal(shadow.numpy(), value)

  new = [value + 1.0 + i for i, value in enumerate(initial)]
  _set(variables, new)
  ema.update()  # decay 0.9
  expected = [0.9 * a + 0.1 * b for a, b in zip(initial, new)]
  for shadow, value in zip(ema.shadow_variables, expected):
    np.testing.assert_allclose(shadow.numpy(), value, rtol=1e-6, atol=1e-6)
  ema.update(0.5)  # explicit decay: 0.5 * shadow + 0.5 * variable
  expected = [0.5 * a + 0.5 * b for a, b in zip(expected, new)]
  for shadow, value in zip(ema.shadow_variables, expected):
    np.testing.assert_allclose(shadow.numpy(), value, rtol=1e-6, atol=1e-6)

  with ema.swap():
    for v, value in zip(variables, expected):
      np.testing.assert_allclose(v.numpy(), value, rtol=1e-6, atol=1e-6)
    for shadow, value in zip(ema.shadow_variables, new):
      np.testing.assert_array_equal(shadow.numpy(), value)
  for v, value in zip(variables, new):
    np.testing.assert_array_equal(v.numpy(), value)

  ema.swap()  # Imperative use: swapped until the next swap.
  np.testing.assert_allclose(variables[0].numpy(), expected[0], rtol=1e-6, atol=1e-6)
  ema.swap()
  np.testing.assert_array_equal(variables[0].numpy(), new[0])


def test_update_under_xla():
  model = _model()
  variables = ema_lib.averaged_variables(model)
  ema = ema_lib.EMA(model, decay=0.99)
  before = [s.numpy().copy() for s in ema.shadow_variables]
  _set(variables, [v.numpy() * 0 + 2.0 for v in variables])
  tf.function(lambda: ema.update(tf.constant(0.75)), jit_compile=True)()
  for shadow, value in zip(ema.shadow_variables, before):
    np.testing.assert_allclose(shadow.numpy(), 0.75 * value + 0.25 * 2.0, rtol=1e-6, atol=1e-6)


def test_update_in_replica_context():
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  with strategy.scope():
    model = _model()
    ema = ema_lib.EMA(model, decay=0.5)
  variables = ema_lib.averaged_variables(model)
  before = [s.numpy().copy() for s in ema.shadow_variables]
  _set(variables, [v.numpy() * 0 + 4.0 for v in variables])

  @tf.function
  def step():
    strategy.run(ema.update)

  step()
  for shadow, value in zip(ema.shadow_variables, before):
    np.testing.assert_allclose(shadow.numpy(), 0.5 * value + 2.0, rtol=1e-6, atol=1e-6)
  with ema.swap():
    np.testing.assert_allclose(variables[0].numpy(), 0.5 * before[0] + 2.0, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(variables[0].numpy(), 4.0)


def test_checkpoint_holds_only_the_shadow(tmp_path):
  model = _model()
  ema = ema_lib.EMA(model)
  ema.shadow_variables[0].assign(ema.shadow_variables[0] + 3.0)
  expected = ema.shadow_variables[0].numpy()
  path = tf.train.Checkpoint(ema=ema).write(str(tmp_path / 'ckpt'))
  keys = [name for name, _ in tf.train.list_variables(path)
          if name.startswith('ema/') and 'OBJECT_CONFIG' not in name]
  assert len(keys) == len(ema.shadow_variables)
  restored = ema_lib.EMA(_model())
  tf.train.Checkpoint(ema=restored).read(path).assert_existing_objects_matched()
  np.testing.assert_array_equal(restored.shadow_variables[0].numpy(), expected)
