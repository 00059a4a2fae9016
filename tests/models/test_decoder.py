"""Tests of models/decoder.py: TransUNet structure, conditioning modes, time embedding."""

import math

import numpy as np
import pytest
import tensorflow as tf

from models import decoder as decoder_lib
from models import layers
from tests.models import recompute_checks


def _tiny_decoder(**overrides):
  kwargs = dict(base_dim=16, channel_multipliers=(1, 2), blocks_per_level=(1, 1),
                transformer_dim=32, transformer_layers=1, transformer_heads=2,
                transformer_mlp_dim=64, time_embedding_dim=16, time_mlp_dim=32)
  kwargs.update(overrides)
  return decoder_lib.build_mask_decoder(**kwargs)


def _perturb_near_zero(layer, seed=0):
  """Gives the ≈0-initialised kernels ordinary values so every path matters."""
  rng = np.random.RandomState(seed)
  for v in layer.trainable_variables:
    value = v.numpy()
    if value.size and np.abs(value).max() < 1e-3 and 'gamma' not in v.path:
      v.assign(rng.normal(0, 0.2, value.shape).astype(np.float32))


def _inputs(batch=2, size=8, fused=6, tokens=5, token_dim=12):
  rng = np.random.RandomState(1)
  return dict(
      x_t=tf.constant(rng.randn(batch, size, size, 16).astype(np.float32)),
      gamma=tf.constant(rng.uniform(size=batch).astype(np.float32)),
      feature_map=tf.constant(rng.randn(batch, size, size, fused).astype(np.float32)),
      tokens=tf.constant(rng.randn(batch, tokens, token_dim).astype(np.float32)))


@pytest.mark.parametrize('conditioning', ['cat', 'attn', 'cat+attn', 'none'])
def test_conditioning_modes(conditioning):
  decoder = _tiny_decoder(conditioning=conditioning)
  inputs = _inputs()
  use_cat, use_attn = decoder_lib.CONDITIONING[conditioning]
  logits = decoder(inputs['x_t'], inputs['gamma'],
                   feature_map=inputs['feature_map'] if use_cat else None,
                   tokens=inputs['tokens'] if use_attn else None)
  assert logits.shape == (2, 8, 8, 2, 256)
  assert logits.dtype == tf.float32
  assert decoder.conv_in.kernel.shape == (1, 1, 16 + 6 * use_cat, 16)
  has_cross = any('cross_attention' in v.path for v in decoder.variables)
  assert has_cross == use_attn
  # ≈0 output conv: the initial logits are ≈0 (loss ln 256).
  assert np.abs(logits.numpy()).max() < 1e-3

  _perturb_near_zero(decoder)
  base = decoder(inputs['x_t'], inputs['gamma'],
                 feature_map=inputs['feature_map'] if use_cat else None,
                 tokens=inputs['tokens'] if use_attn else None).numpy()
  if use_cat:
    moved = decoder(inputs['x_t'], inputs['gamma'],
                    feature_map=inputs['feature_map'] * 2.0,
                    tokens=inputs['tokens'] if use_attn else None).numpy()
    assert np.abs(moved - base).max() > 1e-3
  if use_attn:
    moved = decoder(inputs['x_t'], inputs['gamma'],
                    feature_map=inputs['feature_map'] if use_cat else None,
                    tokens=inputs['tokens'] * 2.0).numpy()
    assert np.abs(moved - base).max() > 1e-3
  moved = decoder(inputs['x_t'], inputs['gamma'] * 0.5,
                  feature_map=inputs['feature_map'] if use_cat else None,
                  tokens=inputs['tokens'] if use_attn else None).numpy()
  assert np.abs(moved - base).max() > 1e-3


def test_missing_conditioning_inputs_raise():
  decoder = _tiny_decoder(conditioning='cat+attn')
  inputs = _inputs()
  with pytest.raises(ValueError, match='needs the feature map'):
    decoder(inputs['x_t'], inputs['gamma'], tokens=inputs['tokens'])
  with pytest.raises(ValueError, match='needs the tokens'):
    decoder(inputs['x_t'], inputs['gamma'], feature_map=inputs['feature_map'])


def test_video_past_bits_are_extra_input_channels():
  decoder = _tiny_decoder()
  inputs = _inputs()
  past = tf.random.normal([2, 8, 8, 2 * 16])
  logits = decoder(inputs['x_t'], inputs['gamma'], feature_map=inputs['feature_map'],
                   tokens=inputs['tokens'], past_bits=past)
  assert logits.shape == (2, 8, 8, 2, 256)
  assert decoder.conv_in.kernel.shape == (1, 1, 16 + 6 + 32, 16)


def test_unknown_conditioning_names_the_valid_ones():
  with pytest.raises(ValueError, match=r"\['attn', 'cat', 'cat\+attn', 'none'\]"):
    _tiny_decoder(conditioning='concat')


def test_n_bits_and_level_checks():
  with pytest.raises(ValueError, match='same number of bits'):
    _tiny_decoder(n_bits=(8, 6))
  with pytest.raises(ValueError, match='one entry per level'):
    _tiny_decoder(blocks_per_level=(1, 1, 1))
  with pytest.raises(ValueError, match='multiple of 2'):
    inputs = _inputs(size=7)
    _tiny_decoder()(inputs['x_t'], inputs['gamma'], feature_map=inputs['feature_map'],
                    tokens=inputs['tokens'])


def test_other_bit_widths():
  decoder = _tiny_decoder(n_bits=(4, 4, 4), conditioning='none')
  logits = decoder(tf.zeros([1, 8, 8, 12]), tf.constant([0.3]))
  assert logits.shape == (1, 8, 8, 3, 16)


def test_time_embedding_matches_numpy():
  embedding = decoder_lib.TimeEmbedding(embedding_dim=8, mlp_dim=16, time_scale=1000.0)
  gamma = np.array([0.0, 0.25, 0.99], np.float32)
  out = embedding(tf.constant(gamma)).numpy()
  w0, b0 = [w.numpy() for w in embedding.dense_0.weights]
  w1, b1 = [w.numpy() for w in embedding.dense_1.weights]
  angles = (gamma * 1000.0)[:, None] * 10000.0**(-2.0 * np.arange(4) / 8)[None]
  e = np.concatenate([np.sin(angles), np.cos(angles)], -1)

  def silu(v):
    return v / (1 + np.exp(-v))

  np.testing.assert_allclose(out, silu(silu(e @ w0 + b0) @ w1 + b1), rtol=1e-4,
                             atol=1e-5)


def test_res_block_starts_as_scaled_skip_and_uses_time_scale_shift():
  block = decoder_lib.ResBlock(8)
  x = tf.random.normal([2, 4, 4, 8])
  emb = tf.random.normal([2, 6])
  np.testing.assert_allclose(block(x, emb).numpy(), x.numpy() / math.sqrt(2),
                             atol=1e-4)
  _perturb_near_zero(block)
  y = block(x, emb).numpy()
  # Independent recomputation of the block with its weights.
  gn0, gn1 = block.norm_0, block.norm_1
  h = block.conv_0(tf.nn.silu(gn0(x)))
  scale, shift = np.split(block.emb_proj(emb).numpy()[:, None, None], 2, -1)
  h = tf.nn.silu(gn1(h) * (1 + scale) + shift)
  expected = (block.conv_1(h).numpy() + x.numpy()) / math.sqrt(2)
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_paper_decoder_counts():
  decoder = decoder_lib.build_mask_decoder()
  decoder(tf.zeros([1, 32, 32, 16]), tf.zeros([1]),
          feature_map=tf.zeros([1, 32, 32, 256]), tokens=tf.zeros([1, 16, 512]))
  counts = decoder_lib.decoder_part_counts(decoder)
  assert counts['decoder_transformer'] == 25_882_624  # REFERENCE §4
  assert counts['decoder_time_embedding'] == 328_704
  assert counts['decoder_convs'] + counts['decoder_transformer'] == 43_589_888
  assert decoder.conv_in.kernel.shape == (1, 1, 272, 128)
  assert decoder.conv_out.kernel.shape == (1, 1, 128, 512)
  assert layers.count_params(decoder.transformer.blocks[0]) == 4_204_032


def test_recomputed_blocks_give_the_same_outputs_and_gradients():
  inputs = _inputs()
  plain = _tiny_decoder()
  plain(**inputs)
  _perturb_near_zero(plain)
  remat = _tiny_decoder(recompute_blocks=True)
  remat(**inputs)
  for a, b in zip(remat.weights, plain.weights):
    a.assign(b.value)

  @tf.function
  def grads(decoder):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(decoder(**inputs, training=True)))
    return loss, tape.gradient(loss, decoder.trainable_variables)

  recompute_checks.assert_same_loss_and_gradients(grads(plain), grads(remat),
                                                  rtol=1e-3)
  # The backward pass really recomputes: the blocks' convolutions run twice.
  assert (recompute_checks.op_count(grads.get_concrete_function(remat).graph,
                                    'Conv2D') >
          recompute_checks.op_count(grads.get_concrete_function(plain).graph,
                                    'Conv2D'))
  with pytest.raises(ValueError, match='dropout_rate = 0'):
    _tiny_decoder(recompute_blocks=True, dropout_rate=0.1)


def test_transformer_norm_in_groups():
  """Default: min(C // 4, 32) of the C = 32 input channels (8); the authors'
  code takes min(transformer_dim // 4, 32) (16 for width 64)."""
  inputs = _inputs()
  default = _tiny_decoder(transformer_dim=64)
  default(**inputs)
  assert default.transformer.norm_in.num_groups == 8
  authors = _tiny_decoder(transformer_dim=64, transformer_norm_in_groups=16)
  authors(**inputs)
  assert authors.transformer.norm_in.num_groups == 16
  for a, b in zip(authors.weights, default.weights):
    a.assign(b)
  _perturb_near_zero(default)
  for a, b in zip(authors.weights, default.weights):
    a.assign(b)
  assert not np.allclose(default(**inputs).numpy(), authors(**inputs).numpy(),
                         atol=1e-4)
