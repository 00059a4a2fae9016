"""Tests for models/bits.py (Algorithm 3, REFERENCE §1)."""

import numpy as np
import pytest
import tensorflow as tf

from models import bits


@pytest.mark.parametrize('n_bits', [8, 16])
def test_round_trip_all_values(n_bits):
  x = tf.range(2**n_bits)
  np.testing.assert_array_equal(bits.bit2int(bits.int2bit(x, n_bits)), x)


def test_known_patterns_little_endian():
  # bit i is (x >> i) & 1.
  np.testing.assert_array_equal(bits.int2bit(1, 8), [1, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(bits.int2bit(6, 8), [0, 1, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(bits.int2bit(128, 8), [0, 0, 0, 0, 0, 0, 0, 1])
  np.testing.assert_array_equal(bits.int2bit(255, 8), [1] * 8)
  np.testing.assert_array_equal(bits.int2bit(0, 4), [0] * 4)


def test_label_map_to_bits_layout_and_scale():
  label_map = tf.constant([[[[3, 129]]]])  # [1, 1, 1, 2]: class 3, instance 129.
  analog = bits.label_map_to_bits(label_map, n_bits=(8, 8), b_scale=0.1)
  expected_bits = [1, 1, 0, 0, 0, 0, 0, 0] + [1, 0, 0, 0, 0, 0, 0, 1]
  np.testing.assert_allclose(
      analog[0, 0, 0], (np.array(expected_bits) * 2 - 1) * 0.1, rtol=1e-6)


@pytest.mark.parametrize('n_bits', [(8, 8), (4, 10), (7, 9)])
def test_label_map_round_trip_any_bits(n_bits):
  rng = np.random.default_rng(0)
  label_map = np.stack(
      [rng.integers(0, 2**n, size=(2, 5, 6)) for n in n_bits], axis=-1)
  analog = bits.label_map_to_bits(label_map, n_bits=n_bits, b_scale=0.3)
  assert analog.shape == (2, 5, 6, sum(n_bits))
  np.testing.assert_allclose(np.abs(analog), 0.3, rtol=1e-6)
  np.testing.assert_array_equal(bits.bits_to_label_map(analog, n_bits), label_map)


def test_wrong_channel_count_is_a_clear_error():
  with pytest.raises(ValueError, match='channels'):
    bits.label_map_to_bits(tf.zeros([1, 2, 2, 3], tf.int32), n_bits=(8, 8))
  with pytest.raises(ValueError, match='channels'):
    bits.bits_to_label_map(tf.zeros([1, 2, 2, 15]), n_bits=(8, 8))


def test_same_result_under_xla():
  rng = np.random.default_rng(1)
  label_map = tf.constant(rng.integers(0, 256, size=(2, 4, 4, 2)), tf.int32)

  def round_trip(m):
    return bits.bits_to_label_map(bits.label_map_to_bits(m, (8, 8), 0.1), (8, 8))

  eager = round_trip(label_map)
  compiled = tf.function(round_trip, jit_compile=True)(label_map)
  np.testing.assert_array_equal(eager, compiled)
  np.testing.assert_array_equal(compiled, label_map)
