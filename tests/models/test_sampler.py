"""Tests for models/sampler.py (Algorithm 2)."""

import numpy as np
import pytest
import tensorflow as tf

from models import bits
from models import diffusion
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
