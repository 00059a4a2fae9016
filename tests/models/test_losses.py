"""Tests for models/losses.py (§3.2, Tables 4 and 5, REFERENCE §3)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from models import bits
from models import losses


def test_cross_entropy_hand_computed():
  # One pixel, 2 groups of 1 bit (2 classes each).
  logits = np.array([[[[[2.0, 0.0], [0.0, 1.0]]]]], np.float32)  # [1,1,1,2,2]
  targets = np.array([[[[0, 0]]]])  # group 0 -> class 0, group 1 -> class 0.
  ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
  ce1 = -math.log(1 / (1 + math.e))
  value = losses.bit_group_cross_entropy(logits, targets)
  assert value.shape == (1, 1, 1)
  assert float(value[0, 0, 0]) == pytest.approx((ce0 + ce1) / 2, rel=1e-6)


def test_cross_entropy_of_zero_logits_is_ln_256():
  value = losses.bit_group_cross_entropy(
      tf.zeros([2, 3, 3, 2, 256]), tf.zeros([2, 3, 3, 2], tf.int32))
  np.testing.assert_allclose(value, math.log(256), rtol=1e-6)


def test_readout_of_one_hot_logits_is_exact_analog_bits():
  rng = np.random.default_rng(0)
  label_map = rng.integers(0, 256, size=(2, 3, 4, 2))
  logits = tf.one_hot(label_map, 256, on_value=1e4, off_value=-1e4)
  analog = losses.bits_from_logits(logits, b_scale=0.1)
  np.testing.assert_allclose(
      analog, bits.label_map_to_bits(label_map, (8, 8), 0.1), atol=1e-7)


def test_readout_of_uniform_logits_is_zero():
  analog = losses.bits_from_logits(tf.zeros([1, 2, 2, 2, 16]), b_scale=0.1)
  assert analog.shape == (1, 2, 2, 8)
  np.testing.assert_allclose(analog, 0.0, atol=1e-7)


def test_l2_loss():
  x0 = np.full((1, 1, 2, 4), 0.1, np.float32)
  pred = np.array([[[[0.1, -0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0]]]], np.float32)
  np.testing.assert_allclose(
      losses.l2_loss(pred, x0), [[[0.04 / 4, 0.04 / 4 * 4 / 4]]], rtol=1e-5)


def _one_and_ninety_nine():
  ids = np.full((1, 10, 10), 2)
  ids[0, 0, 0] = 1  # a 1-pixel instance next to a 99-pixel one.
  return ids


def test_loss_weights_p0_are_uniform():
  w = losses.mask_loss_weights(_one_and_ninety_nine(), p=0.0)
  np.testing.assert_allclose(w, 1.0, rtol=1e-6)


def test_loss_weights_p02_hand_computed():
  w = losses.mask_loss_weights(_one_and_ninety_nine(), p=0.2).numpy()
  raw_small, raw_large = 1.0, 99.0 ** -0.2
  total = raw_small + 99 * raw_large
  assert w[0, 0, 0] == pytest.approx(100 * raw_small / total, rel=1e-5)
  assert w[0, 5, 5] == pytest.approx(100 * raw_large / total, rel=1e-5)
  assert w.sum() == pytest.approx(100.0, rel=1e-5)
  assert w[0, 0, 0] > w[0, 5, 5]


def test_loss_weights_are_per_image():
  ids = np.concatenate([_one_and_ninety_nine(), np.zeros((1, 10, 10), int)])
  w = losses.mask_loss_weights(ids, p=0.2).numpy()
  np.testing.assert_allclose(w.sum(axis=(1, 2)), [100.0, 100.0], rtol=1e-5)
  np.testing.assert_allclose(w[1], 1.0, rtol=1e-5)


def test_same_result_under_xla():
  rng = np.random.default_rng(4)
  logits = tf.constant(rng.normal(size=(2, 4, 4, 2, 256)), tf.float32)
  label_map = tf.constant(rng.integers(0, 256, size=(2, 4, 4, 2)), tf.int32)

  def compute(logits, label_map):
    return (losses.bit_group_cross_entropy(logits, label_map),
            losses.bits_from_logits(logits, 0.1),
            losses.mask_loss_weights(label_map[..., 1], 0.2),
            losses.l2_loss(losses.bits_from_logits(logits, 0.1),
                           bits.label_map_to_bits(label_map, (8, 8), 0.1)))

  eager = compute(logits, label_map)
  compiled = tf.function(compute, jit_compile=True)(logits, label_map)
  for a, b in zip(eager, compiled):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
