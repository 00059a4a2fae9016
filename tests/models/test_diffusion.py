"""Tests for models/diffusion.py (Eq. 1, Algorithms 2 and 4, REFERENCE §2)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from models import diffusion


def _gamma_formula(t, ns=0.0002, ds=0.00025):
  return math.cos(((t + ns) / (1 + ds)) * math.pi / 2) ** 2


def test_cosine_gamma_reference_values():
  # REFERENCE §2 test values.
  expected = {0.0: 0.99999988, 0.05: 0.993798, 0.25: 0.853401, 0.5: 0.499882,
              0.75: 0.146433, 0.95: 0.006165}
  for t, value in expected.items():
    assert float(diffusion.cosine_gamma(t)) == pytest.approx(value, abs=2e-6)
    assert float(diffusion.cosine_gamma(t)) == pytest.approx(
        _gamma_formula(t), abs=1e-6)
  assert float(diffusion.cosine_gamma(1.0)) == pytest.approx(6.146e-9, rel=1e-2)


def test_cosine_gamma_endpoints_and_monotone():
  assert float(diffusion.cosine_gamma(0.0)) == pytest.approx(1.0, abs=1e-6)
  assert float(diffusion.cosine_gamma(1.0)) == pytest.approx(0.0, abs=1e-6)
  g = diffusion.cosine_gamma(tf.linspace(0.0, 1.0, 1001)).numpy()
  assert np.all(np.diff(g) < 0)


def test_add_noise_matches_eq1_per_example_t():
  rng = np.random.default_rng(0)
  x0 = rng.choice([-0.1, 0.1], size=(3, 4, 4, 16)).astype(np.float32)
  eps = rng.normal(size=x0.shape).astype(np.float32)
  t = np.array([0.1, 0.5, 0.9], np.float32)
  x_t = diffusion.add_noise(x0, t, eps).numpy()
  for i in range(3):
    g = _gamma_formula(float(t[i]))
    np.testing.assert_allclose(
        x_t[i], math.sqrt(g) * x0[i] + math.sqrt(1 - g) * eps[i], rtol=1e-5,
        atol=1e-6)


def test_eps_x0_conversions_invert_each_other():
  rng = np.random.default_rng(1)
  x0 = rng.normal(size=(2, 3, 3, 4)).astype(np.float32) * 0.1
  eps = rng.normal(size=x0.shape).astype(np.float32)
  t = np.array([0.3, 0.7], np.float32)
  gamma = diffusion.cosine_gamma(t)
  x_t = diffusion.add_noise(x0, t, eps)
  np.testing.assert_allclose(diffusion.eps_from_x0(x_t, x0, gamma), eps, atol=1e-5)
  np.testing.assert_allclose(diffusion.x0_from_eps(x_t, eps, gamma), x0, atol=1e-5)


def test_ddim_step_with_true_x0_reaches_x0_at_t0():
  rng = np.random.default_rng(2)
  b = 0.1
  x0 = rng.choice([-b, b], size=(2, 8, 8, 16)).astype(np.float32)
  x_t = rng.normal(size=x0.shape).astype(np.float32)
  x_next = diffusion.ddim_step(x_t, x0, 0.6, 0.0, b_scale=b)
  # gamma(0) = 1 - 1.2e-7: x_next = sqrt(g) x0 + sqrt(1 - g) eps, eps ~ O(1).
  np.testing.assert_allclose(x_next, x0, atol=2e-3)
  assert np.all(np.sign(x_next) == np.sign(x0))


def test_ddim_step_formula_and_clip():
  b = 0.1
  x_t = np.array([[0.5, -0.2, 0.05]], np.float32)
  x0_pred = np.array([[0.3, -0.05, -1.0]], np.float32)  # 0.3 and -1.0 are clipped.
  t_now, t_next = 0.8, 0.5
  g_now, g_next = _gamma_formula(t_now), _gamma_formula(t_next)
  x0 = np.clip(x0_pred, -b, b)
  eps = (x_t - math.sqrt(g_now) * x0) / math.sqrt(1 - g_now)
  expected = math.sqrt(g_next) * x0 + math.sqrt(1 - g_next) * eps
  np.testing.assert_allclose(
      diffusion.ddim_step(x_t, x0_pred, t_now, t_next, b_scale=b), expected,
      rtol=1e-5)


@pytest.mark.parametrize('td', [0.0, 1.0, 2.0])
def test_step_times_match_algorithm_2(td):
  steps = 10
  t_now, t_next = diffusion.step_times(tf.range(steps), steps, td)
  for s in range(steps):
    assert float(t_now[s]) == pytest.approx(1 - s / steps, abs=1e-6)
    assert float(t_next[s]) == pytest.approx(
        max(1 - (s + 1 + td) / steps, 0.0), abs=1e-6)
  assert t_now.shape == (steps,)


def test_step_times_from_tensors_and_traced():
  fn = tf.function(diffusion.step_times, jit_compile=False)
  eager = diffusion.step_times(tf.range(7), 7, 1.5)
  for step in range(7):
    traced = fn(tf.constant(step), tf.constant(7), tf.constant(1.5))
    for a, b in zip(eager, traced):
      assert float(a[step]) == float(b)


def test_same_result_under_xla():
  rng = np.random.default_rng(3)
  x0 = tf.constant(rng.choice([-0.1, 0.1], size=(2, 4, 4, 16)), tf.float32)
  eps = tf.constant(rng.normal(size=(2, 4, 4, 16)), tf.float32)
  t = tf.constant([0.2, 0.9])

  def step(x0, eps, t):
    x_t = diffusion.add_noise(x0, t, eps)
    g = diffusion.cosine_gamma(t)
    return (diffusion.ddim_step(x_t, x0 * 1.5, t, t * 0.5, 0.1),
            diffusion.eps_from_x0(x_t, x0, g), diffusion.x0_from_eps(x_t, eps, g))

  eager = step(x0, eps, t)
  compiled = tf.function(step, jit_compile=True)(x0, eps, t)
  for a, b in zip(eager, compiled):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
