"""Tests of models/ema.py: update numerics, swap, distribution, checkpointing."""

import keras
import numpy as np
import pytest
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


def _old_chained_update(shadows, variables, decay):
  """The update before issue 15 (one variable after the other, assign_sub of a step)."""
  done = []
  for shadow, variable in zip(shadows, variables):
    with tf.control_dependencies(done):
      step = (shadow.value - variable.value) * tf.cast(1.0 - decay, shadow.dtype)
    shadow.assign_sub(step)
    done = [tf.identity(shadow.value)]


def test_chunked_update_equals_the_chained_one_to_one_ulp():
  """Five steps of both updates, eagerly and in a graph, tiny and one-variable chunks."""
  model = _model()
  variables = ema_lib.averaged_variables(model)
  rng = np.random.RandomState(0)
  for chunk_bytes in (1, ema_lib.DEFAULT_CHUNK_BYTES):
    ema = ema_lib.EMA(model, decay=0.9, chunk_bytes=chunk_bytes)
    if chunk_bytes == 1:
      assert ema._chunks == [[i] for i in range(len(variables))]  # pylint: disable=protected-access
    else:
      assert ema._chunks == [list(range(len(variables)))]  # pylint: disable=protected-access
    reference = [keras.Variable(s.value) for s in ema.shadow_variables]
    new_update = tf.function(lambda: ema.update(0.9))
    old_update = tf.function(lambda: _old_chained_update(reference, variables, 0.9))
    for step in range(5):
      _set(variables, [rng.normal(size=v.shape).astype(np.float32) for v in variables])
      if step % 2:
        ema.update(0.9)
        _old_chained_update(reference, variables, 0.9)
      else:
        new_update()
        old_update()
      for new, old in zip(ema.shadow_variables, reference):
        np.testing.assert_array_max_ulp(new.numpy(), old.numpy(), maxulp=1)


def test_chunks_follow_the_byte_budget():
  model = _model()
  sizes = [v.numpy().nbytes for v in ema_lib.averaged_variables(model)]
  budget = max(sizes) + 1
  ema = ema_lib.EMA(model, chunk_bytes=budget)
  chunks = ema._chunks  # pylint: disable=protected-access
  assert [i for chunk in chunks for i in chunk] == list(range(len(sizes)))
  for chunk in chunks:
    assert len(chunk) == 1 or sum(sizes[i] for i in chunk) <= budget
  with pytest.raises(ValueError, match='chunk_bytes=0'):
    ema_lib.EMA(model, chunk_bytes=0)


def test_each_chunk_reads_after_the_previous_chunk_is_written():
  """The memory ordering: in the graph, a chunk's reads wait for the last chunk's writes."""
  model = _model()
  ema = ema_lib.EMA(model, decay=0.9, chunk_bytes=1)  # One variable per chunk.
  graph = tf.function(ema.update).get_concrete_function().graph
  applies = [op for op in graph.get_operations()
             if op.type == 'ResourceApplyGradientDescent']
  assert len(applies) == len(ema.shadow_variables)
  for previous, apply in zip(applies, applies[1:]):
    difference = apply.inputs[2].op
    reads = [t.op for t in difference.inputs]
    assert all(previous in read.control_inputs for read in reads), apply.name


def test_restore_averages_reads_the_shadow_into_the_model(tmp_path):
  model = _model()
  ema = ema_lib.EMA(model, decay=0.5)
  variables = ema_lib.averaged_variables(model)
  _set(variables, [v.numpy() + 3.0 for v in variables])
  ema.update()
  expected = [s.numpy() for s in ema.shadow_variables]
  raw = [v.numpy() for v in variables]
  path = tf.train.Checkpoint(model=model, ema=ema).write(str(tmp_path / 'ckpt'))
  fresh = _model()
  ema_lib.restore_averages(fresh, path)
  for got, want, not_want in zip(ema_lib.averaged_variables(fresh), expected, raw):
    np.testing.assert_array_equal(got.numpy(), want)
    assert not np.array_equal(got.numpy(), not_want)
  assert len(fresh.variables) == len(model.variables)  # No shadow was built.
  # A checkpoint without averages is an error, not a silent raw-weight load.
  raw_only = tf.train.Checkpoint(model=model).write(str(tmp_path / 'raw'))
  with pytest.raises(AssertionError):
    ema_lib.restore_averages(_model(), raw_only)
