"""Tests of models/layers.py against independent numpy formulas."""

import math

import keras
import numpy as np
import tensorflow as tf

from models import layers


def _np_positional_encoding(coords, dim):
  """The released `positional_encoding`, written independently in numpy."""
  i = np.arange(dim)
  rates = 1.0 / np.power(10000.0, (2 * (i // 2)) / dim)
  angles = coords[:, None] * rates[None, :]
  return np.concatenate([np.sin(angles[:, 0::2]), np.cos(angles[:, 1::2])], -1)


def test_position_codes_2d_match_released_formula():
  height, width, dim = 3, 5, 16
  codes = layers.position_codes_2d(height, width, dim).numpy()
  y = _np_positional_encoding(np.arange(height) / (height - 1) * 6.2831852, dim // 2)
  x = _np_positional_encoding(np.arange(width) / (width - 1) * 6.2831852, dim // 2)
  expected = np.concatenate([
      np.broadcast_to(y[:, None], (height, width, dim // 2)),
      np.broadcast_to(x[None, :], (height, width, dim // 2)),
  ], -1).reshape(height * width, dim)
  assert codes.shape == (15, 16)
  np.testing.assert_allclose(codes, expected, atol=1e-5)
  # Row 0, column 0: sin(0) = 0 then cos(0) = 1 in each half.
  np.testing.assert_allclose(codes[0], [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4)


def test_position_codes_span_the_same_range_at_any_size():
  small = layers.position_codes_2d(4, 4, 8).numpy().reshape(4, 4, 8)
  large = layers.position_codes_2d(16, 16, 8).numpy().reshape(16, 16, 8)
  np.testing.assert_allclose(small[-1, -1], large[-1, -1], atol=1e-5)
  np.testing.assert_allclose(small[0, 0], large[0, 0], atol=1e-6)


def test_timestep_embedding_sin_then_cos():
  values = np.array([0.0, 0.5, 123.4], np.float32)
  emb = layers.timestep_embedding(values, 8).numpy()
  k = np.arange(4)
  angles = values[:, None] * 10000.0**(-2.0 * k / 8)[None]
  np.testing.assert_allclose(emb, np.concatenate([np.sin(angles), np.cos(angles)], -1),
                             rtol=1e-5, atol=1e-5)


def test_upsample_nearest_equals_repeat():
  x = np.random.RandomState(0).randn(2, 3, 4, 5).astype(np.float32)
  y = layers.upsample_nearest(tf.constant(x), 3).numpy()
  np.testing.assert_array_equal(y, x.repeat(3, axis=1).repeat(3, axis=2))


def test_group_norm_matches_numpy():
  rng = np.random.RandomState(1)
  x = (rng.randn(2, 4, 6, 8) * 3 + 1).astype(np.float32)
  norm = layers.GroupNorm(4)
  norm.build(x.shape)
  gamma, beta = rng.randn(8).astype(np.float32), rng.randn(8).astype(np.float32)
  norm.gamma.assign(gamma)
  norm.beta.assign(beta)
  y = norm(tf.constant(x)).numpy()
  g = x.reshape(2, 4, 6, 4, 2)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  expected = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * gamma + beta
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_num_groups_for():
  assert layers.num_groups_for(512) == 32
  assert layers.num_groups_for(128) == 32
  assert layers.num_groups_for(32) == 8


def _np_attention(x, context, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, heads):
  def split(t):
    return t.reshape(t.shape[0], t.shape[1], heads, -1)
  q, k, v = split(x @ q_w + q_b), split(context @ k_w + k_b), split(context @ v_w + v_b)
  logits = np.einsum('bnhd,bmhd->bhnm', q, k) / math.sqrt(q.shape[-1])
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  out = np.einsum('bhnm,bmhd->bnhd', weights, v).reshape(x.shape[0], x.shape[1], -1)
  return out @ o_w + o_b


def test_self_attention_matches_numpy():
  rng = np.random.RandomState(2)
  x = rng.randn(2, 5, 8).astype(np.float32)
  attention = layers.Attention(8, num_heads=2)
  y = attention(tf.constant(x)).numpy()
  qkv_w, qkv_b = [w.numpy() for w in attention.qkv.weights]
  o_w, o_b = [w.numpy() for w in attention.out.weights]
  # Fused layout: [q | k | v], each [heads * head_dim] (heads outer).
  expected = _np_attention(x, x, qkv_w[:, :8], qkv_b[:8], qkv_w[:, 8:16],
                           qkv_b[8:16], qkv_w[:, 16:], qkv_b[16:], o_w, o_b, 2)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_cross_attention_matches_numpy():
  rng = np.random.RandomState(3)
  x = rng.randn(2, 5, 8).astype(np.float32)
  context = rng.randn(2, 7, 12).astype(np.float32)
  attention = layers.Attention(8, num_heads=4, cross=True)
  y = attention(tf.constant(x), tf.constant(context)).numpy()
  q_w, q_b = [w.numpy() for w in attention.q.weights]
  kv_w, kv_b = [w.numpy() for w in attention.kv.weights]
  o_w, o_b = [w.numpy() for w in attention.out.weights]
  expected = _np_attention(x, context, q_w, q_b, kv_w[:, :8], kv_b[:8],
                           kv_w[:, 8:], kv_b[8:], o_w, o_b, 4)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_transformer_block_parameter_counts_match_released_layers():
  # REFERENCE §4: 12 encoder layers = 37,828,608; 6 decoder blocks include
  # cross-attention (4,204,032 each plus the convs around them).
  encoder_layer = layers.TransformerBlock(512, 16, 2048)
  encoder_layer(tf.zeros([1, 2, 512]))
  assert layers.count_params(encoder_layer) * 12 == 37_828_608
  decoder_layer = layers.TransformerBlock(512, 8, 2048, cross_attention=True)
  decoder_layer(tf.zeros([1, 2, 512]), tf.zeros([1, 3, 512]))
  assert layers.count_params(decoder_layer) == 4_204_032


def test_transformer_block_is_pre_ln_with_exact_gelu():
  rng = np.random.RandomState(4)
  x = rng.randn(1, 3, 8).astype(np.float32)
  block = layers.TransformerBlock(8, 2, 16)
  y = block(tf.constant(x)).numpy()

  def ln(t, layer):
    gamma, beta = [w.numpy() for w in layer.weights]
    mean, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    return (t - mean) / np.sqrt(var + 1e-6) * gamma + beta

  attention = block.self_attention
  qkv_w, qkv_b = [w.numpy() for w in attention.qkv.weights]
  o_w, o_b = [w.numpy() for w in attention.out.weights]
  h = ln(x, block.self_ln)
  x1 = x + _np_attention(h, h, qkv_w[:, :8], qkv_b[:8], qkv_w[:, 8:16], qkv_b[8:16],
                         qkv_w[:, 16:], qkv_b[16:], o_w, o_b, 2)
  w1, b1 = [w.numpy() for w in block.mlp_in.weights]
  w2, b2 = [w.numpy() for w in block.mlp_out.weights]
  pre = ln(x1, block.mlp_ln) @ w1 + b1
  gelu = 0.5 * pre * (1 + np.vectorize(math.erf)(pre / math.sqrt(2)))
  np.testing.assert_allclose(y, x1 + gelu @ w2 + b2, rtol=1e-4, atol=1e-5)


def test_drop_path_drops_whole_examples():
  drop = layers.DropPath(0.5)
  x = tf.ones([64, 3, 4])
  np.testing.assert_array_equal(drop(x, training=False).numpy(), x.numpy())
  y = drop(x, training=True).numpy()
  per_example = y.reshape(64, -1)
  assert set(np.unique(per_example)) <= {0.0, 2.0}
  assert np.all(per_example.min(1) == per_example.max(1))
  assert 0 < (per_example[:, 0] == 0).sum() < 64


def test_near_zero_init_is_tiny_but_not_zero():
  kernel = keras.layers.Dense(16, kernel_initializer=layers.near_zero_init())
  kernel.build((None, 16))
  values = np.abs(kernel.kernel.numpy())
  # Variance scale 1e-10: amplitude sqrt(3e-10 / fan_avg).
  assert 0 < values.max() <= math.sqrt(3e-10 / 16) * 1.0001
