"""Tests for models/sampler.py (Algorithm 2)."""

import numpy as np
import pytest
import tensorflow as tf

from models import bits
from models import diffusion
from models import losses
from models import sampler


class OracleModel:
  """A stand-in decoder that always predicts the true analog bits."""

  n_bits = (8, 8)
  b_scale = 0.1
  self_condition = False
  gamma_fn = staticmethod(diffusion.cosine_gamma)

  def __init__(self, label_map):
    self.truth = bits.label_map_to_bits(label_map, self.n_bits, self.b_scale)
    self.calls = []

  def encode(self, images, training=False):
    del training
    return {'tokens': tf.zeros([tf.shape(images)[0], 1, 1])}

  def past_bits_from_label_maps(self, past_label_maps):
    raise AssertionError('not a video model')

  def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
              x0_prev=None):
    del encoded, past_bits, training, x0_prev
    self.calls.append(gamma)
    # x0 slightly off the true scale: the sampler must threshold at 0.
    return None, self.truth * 1.7 + 0.0 * x_t


def _truth():
  rng = np.random.default_rng(0)
  return tf.constant(rng.integers(0, 256, size=(2, 6, 5, 2)), tf.int32)


@pytest.mark.parametrize('num_steps,td', [(1, 0.0), (5, 1.0), (10, 2.0), (20, 2.0)])
def test_oracle_decoder_gives_ground_truth(num_steps, td):
  truth = _truth()
  model = OracleModel(truth)
  out = sampler.sample(model, tf.zeros([2, 12, 10, 3]), mask_size=(6, 5),
                       num_steps=num_steps, td=td, seed=[1, 2])
  np.testing.assert_array_equal(out['label_map'], truth)


def test_traced_once_for_different_step_counts_and_xla():
  truth = _truth()
  model = OracleModel(truth)
  traces = []

  @tf.function(jit_compile=True)
  def run(num_steps, td):
    traces.append(1)
    return sampler.sample(model, tf.zeros([2, 12, 10, 3]), mask_size=(6, 5),
                          num_steps=num_steps, td=td, seed=[1, 2])['label_map']

  for steps, td in [(3, 1.0), (7, 2.0), (20, 0.5)]:
    np.testing.assert_array_equal(run(tf.constant(steps), tf.constant(td)), truth)
  assert len(traces) == 1


def test_decoder_sees_gamma_of_each_t_now():
  truth = _truth()
  model = OracleModel(truth)
  gammas = []

  class Recorder(OracleModel):

    def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
                x0_prev=None):
      gammas.append(float(gamma[0]))
      return super().denoise(x_t, gamma, encoded, past_bits, training)

  model = Recorder(truth)
  sampler.sample(model, tf.zeros([2, 12, 10, 3]), mask_size=(6, 5), num_steps=4,
                 td=1.0, seed=[0, 0])
  # Eager while_loop runs the Python body once per step.
  expected = [float(diffusion.cosine_gamma(1 - s / 4)) for s in range(4)]
  np.testing.assert_allclose(gammas, expected, rtol=1e-5)


def test_self_conditioned_model_sees_the_previous_prediction():
  truth = _truth()
  seen = []

  class SelfConditioned(OracleModel):
    self_condition = True

    def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
                x0_prev=None):
      seen.append(x0_prev.numpy())
      _, x0 = super().denoise(x_t, gamma, encoded, past_bits, training)
      return None, x0 * float(gamma[0])  # A different estimate at each step.

  sampler.sample(SelfConditioned(truth), tf.zeros([2, 12, 10, 3]),
                 mask_size=(6, 5), num_steps=3, td=0.0, seed=[0, 0])
  model = OracleModel(truth)
  np.testing.assert_array_equal(seen[0], 0.0)
  for step in (1, 2):
    gamma = float(diffusion.cosine_gamma(1 - (step - 1) / 3))
    np.testing.assert_allclose(seen[step], model.truth * 1.7 * gamma, rtol=1e-6)


def test_trajectory_holds_each_steps_prediction():
  truth = _truth()
  out = sampler.sample(OracleModel(truth), tf.zeros([2, 12, 10, 3]),
                       mask_size=(6, 5), num_steps=3, td=0.0, seed=[1, 2],
                       trajectory_size=5)
  assert out['trajectory'].shape == (5, 2, 6, 5, 2)
  for step in range(3):
    np.testing.assert_array_equal(out['trajectory'][step], truth)
  np.testing.assert_array_equal(out['trajectory'][3:], 0)


def test_same_seed_same_noise():
  a = sampler.sample(OracleModel(_truth()), tf.zeros([2, 4, 4, 3]),
                     mask_size=(6, 5), num_steps=2, td=0.0, seed=[3, 4])
  b = sampler.sample(OracleModel(_truth()), tf.zeros([2, 4, 4, 3]),
                     mask_size=(6, 5), num_steps=2, td=0.0, seed=[3, 4])
  np.testing.assert_array_equal(a['x0'], b['x0'])


class LogitsModel(OracleModel):
  """A decoder with fixed group logits; x0 is their softmax average (losses)."""

  n_bits = (2, 2)

  def __init__(self, logits):
    self.logits = tf.constant(logits, tf.float32)

  def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
              x0_prev=None):
    del gamma, encoded, past_bits, training, x0_prev
    logits = tf.broadcast_to(
        self.logits, tf.concat([tf.shape(x_t)[:3], self.logits.shape], 0))
    return logits, losses.bits_from_logits(logits, self.b_scale)


def _sample(model, readout, **kwargs):
  return sampler.sample(model, tf.zeros([1, 4, 4, 3]), mask_size=(2, 3),
                        num_steps=3, td=1.0, seed=[0, 1], readout=readout,
                        **kwargs)


def test_argmax_readout_gives_the_mode_where_thresholding_invents_a_third_id():
  # Class group: pattern 2 (binary 10) is certain. Instance group: ids 1
  # (01b) at 0.45 and 2 (10b) at 0.40, 3 (11b) at 0.15: each bit is 1 with
  # probability 0.60 / 0.55, so the thresholded average is id 3.
  probs = np.array([[0.0001, 0.0001, 0.9997, 0.0001],
                    [0.0, 0.45, 0.40, 0.15]]) + 1e-9
  model = LogitsModel(np.log(probs))
  threshold = _sample(model, 'threshold', trajectory_size=3)
  argmax = _sample(model, 'argmax', trajectory_size=3)
  np.testing.assert_array_equal(threshold['label_map'][..., 0], 2)
  np.testing.assert_array_equal(threshold['label_map'][..., 1], 3)
  np.testing.assert_array_equal(argmax['label_map'][..., 0], 2)
  np.testing.assert_array_equal(argmax['label_map'][..., 1], 1)
  # The trajectory uses the same readout; x0 (and so the DDIM steps) do not
  # depend on it.
  np.testing.assert_array_equal(argmax['trajectory'][..., 1], 1)
  np.testing.assert_array_equal(threshold['x0'], argmax['x0'])


def test_argmax_equals_threshold_for_one_hot_softmax():
  rng = np.random.default_rng(3)
  logits = np.full([2, 4], -30.0)
  logits[0, rng.integers(4)] = 30.0
  logits[1, rng.integers(4)] = 30.0
  model = LogitsModel(logits)
  np.testing.assert_array_equal(_sample(model, 'argmax')['label_map'],
                                _sample(model, 'threshold')['label_map'])
  # And per pixel on varied one-hot logits, inside XLA.
  ids = rng.integers(0, 4, size=(2, 3, 5, 2))
  one_hot = tf.one_hot(ids, 4, on_value=40.0, off_value=-40.0)
  x0 = losses.bits_from_logits(one_hot, 0.1)
  compiled = tf.function(sampler.readout_label_map, jit_compile=True,
                         reduce_retracing=True)
  np.testing.assert_array_equal(compiled(one_hot, x0, (2, 2), 'argmax'), ids)
  np.testing.assert_array_equal(
      sampler.readout_label_map(one_hot, x0, (2, 2), 'threshold'), ids)


def test_bad_readout_is_named():
  with pytest.raises(ValueError, match="readout='mode'.*threshold.*argmax"):
    _sample(LogitsModel(np.zeros([2, 4])), 'mode')
  with pytest.raises(ValueError, match='argmax.*logits'):
    sampler.sample(OracleModel(_truth()), tf.zeros([2, 4, 4, 3]),
                   mask_size=(6, 5), num_steps=1, td=0.0, seed=[0, 0],
                   readout='argmax')


def test_one_xla_compilation_serves_every_step_count():
  """The compiled program does not depend on the values of num_steps and td."""
  model = OracleModel(_truth())

  @tf.function(jit_compile=True)
  def run(num_steps, td):
    return sampler.sample(model, tf.zeros([2, 12, 10, 3]), mask_size=(6, 5),
                          num_steps=num_steps, td=td, seed=[1, 2])['label_map']

  programs = {run.experimental_get_compiler_ir(tf.constant(steps),
                                               tf.constant(td))(stage='hlo')
              for steps, td in [(3, 1.0), (20, 2.0)]}
  assert len(programs) == 1
