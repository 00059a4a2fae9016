"""Building blocks shared by the image encoder and the mask decoder (paper §3.1; REFERENCE §4).

Everything here is static-shaped and XLA-compatible: spatial sizes are read from
the static shapes, the batch size may be dynamic. Normalisations compute their
statistics in float32 and return the layer's compute dtype, so the blocks run
under `mixed_bfloat16`.

Conventions of the released model that these blocks keep (REFERENCE §4):
transformers are pre-LayerNorm (epsilon 1e-6) with exact GELU; GroupNorm uses
epsilon 1e-5 and `min(channels // 4, 32)` groups; 2-D sin-cos position codes put
the row code in the first half of the channels and the column code in the second,
with coordinates normalised to `[0, 2*pi]` so one set of weights runs at any
resolution.
"""

import math
from typing import Optional

import keras
import tensorflow as tf

LN_EPSILON = 1e-6
GN_EPSILON = 1e-5
_TWO_PI = 6.2831852  # The released code's normalisation of position coordinates.


def glorot_uniform(scale: float = 1.0) -> keras.initializers.Initializer:
  """`VarianceScaling(scale, 'fan_avg', 'uniform')`; scale 1e-10 gives an ≈0 start."""
  return keras.initializers.VarianceScaling(
      scale=scale, mode='fan_avg', distribution='uniform')


def near_zero_init() -> keras.initializers.Initializer:
  """≈0 kernels (scale 1e-10, as released): the block starts as the identity / zero output.

  Not exactly zero so that every upstream variable gets a (tiny) gradient at step 0.
  """
  return glorot_uniform(1e-10)


def num_groups_for(channels: int) -> int:
  """GroupNorm groups of the released model: `min(channels // 4, 32)` (at least 1)."""
  return max(min(channels // 4, 32), 1)


def static_hw(x: tf.Tensor):
  """Static `(height, width)` of `x [B, H, W, C]`; raises if unknown (XLA needs them)."""
  height, width = x.shape[1], x.shape[2]
  if height is None or width is None:
    raise ValueError(f'spatial size must be static, got shape {x.shape}.')
  return int(height), int(width)


def upsample_nearest(x: tf.Tensor, factor: int) -> tf.Tensor:
  """Nearest-neighbour upsampling by an integer factor (a broadcast, no gather).

  Args:
    x: `[B, H, W, C]`.
    factor: integer `>= 1`.

  Returns:
    `[B, H*factor, W*factor, C]`, same dtype.
  """
  if factor == 1:
    return x
  height, width = static_hw(x)
  channels = x.shape[-1]
  batch = tf.shape(x)[0]
  x = x[:, :, tf.newaxis, :, tf.newaxis, :]
  x = tf.broadcast_to(x, [batch, height, factor, width, factor, channels])
  return tf.reshape(x, [batch, height * factor, width * factor, channels])


def _sincos(coords: tf.Tensor, dim: int) -> tf.Tensor:
  """`[N]` coordinates to `[N, dim]` codes: `sin(c * r_k)` for k < dim/2, then `cos`.

  `r_k = 10000 ** (-2k / dim)` (the released `positional_encoding`).
  """
  half = dim // 2
  rates = tf.pow(10000.0, -2.0 * tf.range(half, dtype=tf.float32) / float(dim))
  angles = coords[:, tf.newaxis] * rates[tf.newaxis, :]
  return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)


def position_codes_2d(height: int, width: int, dim: int) -> tf.Tensor:
  """2-D sin-cos position codes for a `height x width` grid (REFERENCE §4).

  Row and column coordinates are normalised to `[0, 2*pi]` (so the codes of a
  256² and a 1024² input span the same range), each coded with `dim / 2`
  channels by `_sincos`; the row code fills the first half of the channels.

  Args:
    height: static grid height.
    width: static grid width.
    dim: code width, divisible by 4.

  Returns:
    float32 `[height * width, dim]`, row-major (matches a `[H, W]` reshape).
  """
  if dim % 4:
    raise ValueError(f'2-D position codes need dim divisible by 4, got {dim}.')

  def axis_codes(n):
    coords = tf.range(n, dtype=tf.float32) / float(max(n - 1, 1)) * _TWO_PI
    return _sincos(coords, dim // 2)

  rows = tf.broadcast_to(axis_codes(height)[:, tf.newaxis, :],
                         [height, width, dim // 2])
  cols = tf.broadcast_to(axis_codes(width)[tf.newaxis, :, :],
                         [height, width, dim // 2])
  return tf.reshape(tf.concat([rows, cols], axis=-1), [height * width, dim])


def timestep_embedding(values: tf.Tensor, dim: int) -> tf.Tensor:
  """Sinusoidal embedding of scalars (REFERENCE §2): sin half then cos half.

  Args:
    values: float `[B]` (the decoder passes `gamma * time_scale`).
    dim: even embedding width.

  Returns:
    float32 `[B, dim]`: `[sin(v r_k)]_k ++ [cos(v r_k)]_k`, `r_k = 10000**(-2k/dim)`.
  """
  return _sincos(tf.cast(tf.reshape(values, [-1]), tf.float32), dim)


class GroupNorm(keras.layers.Layer):
  """GroupNorm over the last axis, statistics in float32 (epsilon 1e-5 by default).

  Input `[B, ..., C]`; groups split `C`; mean and variance are taken over all
  non-batch axes within a group. Variables `gamma`, `beta` of shape `[C]`.
  """

  def __init__(self, num_groups: int, epsilon: float = GN_EPSILON, **kwargs):
    super().__init__(**kwargs)
    self.num_groups = num_groups
    self.epsilon = epsilon

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels % self.num_groups:
      raise ValueError(f'{self.name}: {channels} channels do not split into '
                       f'{self.num_groups} groups.')
    # autocast=False: read in float32 also inside a bfloat16 layer call (as
    # Keras' own norms do), so the affine parameters are not rounded.
    self.gamma = self.add_weight(name='gamma', shape=(channels,),
                                 initializer='ones', autocast=False)
    self.beta = self.add_weight(name='beta', shape=(channels,),
                                initializer='zeros', autocast=False)

  def call(self, x):
    shape = tf.shape(x)
    rank = x.shape.rank
    channels = x.shape[-1]
    x32 = tf.cast(x, tf.float32)
    grouped = tf.reshape(
        x32, tf.concat([shape[:-1], [self.num_groups, channels // self.num_groups]],
                       axis=0))
    axes = list(range(1, rank - 1)) + [rank]
    mean, variance = tf.nn.moments(grouped, axes=axes, keepdims=True)
    grouped = (grouped - mean) * tf.math.rsqrt(variance + self.epsilon)
    out = tf.reshape(grouped, shape) * tf.cast(self.gamma, tf.float32) + tf.cast(
        self.beta, tf.float32)
    return tf.cast(out, self.compute_dtype)


def layer_norm(name: str) -> keras.layers.LayerNormalization:
  """LayerNorm of the released transformers (epsilon 1e-6; Keras computes in float32)."""
  return keras.layers.LayerNormalization(epsilon=LN_EPSILON, name=name)


class DropPath(keras.layers.Layer):
  """Stochastic depth: drops a whole residual branch per example in training."""

  def __init__(self, rate: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f'drop path rate must be in [0, 1), got {rate}.')
    self.rate = rate
    self.seed_generator = keras.random.SeedGenerator() if rate > 0 else None

  def call(self, x, training=False):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = [tf.shape(x)[0]] + [1] * (x.shape.rank - 1)
    noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=x.dtype)
    return x * tf.floor(keep + noise) / keep


class Attention(keras.layers.Layer):
  """Multi-head dot-product attention with fused projections.

  Self-attention projects q, k, v with one `[dim, 3 * heads * head_dim]` matmul;
  cross-attention projects q from the queries and k, v with one matmul from the
  context. The same parameter count as `keras.layers.MultiHeadAttention`. The
  softmax runs in float32.

  Call: `(x [B, N, dim], context [B, M, c] or None) -> [B, N, dim]`.
  """

  def __init__(self, dim: int, num_heads: int, head_dim: Optional[int] = None,
               cross: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.dim = dim
    self.num_heads = num_heads
    self.head_dim = head_dim or dim // num_heads
    self.cross = cross
    inner = self.num_heads * self.head_dim
    if cross:
      self.q = keras.layers.Dense(inner, name='query')
      self.kv = keras.layers.Dense(2 * inner, name='key_value')
    else:
      self.qkv = keras.layers.Dense(3 * inner, name='query_key_value')
    self.out = keras.layers.Dense(dim, name='output')

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, x, context=None):
    batch = tf.shape(x)[0]
    length = x.shape[1]
    heads, head_dim = self.num_heads, self.head_dim
    if self.cross:
      if context is None:
        raise ValueError(f'{self.name}: cross-attention needs a context.')
      q = tf.reshape(self.q(x), [batch, length, heads, head_dim])
      kv = tf.reshape(self.kv(context), [batch, context.shape[1], 2, heads, head_dim])
      k, v = kv[:, :, 0], kv[:, :, 1]
    else:
      qkv = tf.reshape(self.qkv(x), [batch, length, 3, heads, head_dim])
      q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q = q * tf.cast(head_dim**-0.5, q.dtype)
    logits = tf.einsum('bnhd,bmhd->bhnm', q, k)
    weights = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), v.dtype)
    out = tf.einsum('bhnm,bmhd->bnhd', weights, v)
    return self.out(tf.reshape(out, [batch, length, heads * head_dim]))


class TransformerBlock(keras.layers.Layer):
  """Pre-LN transformer layer: self-attention, optional cross-attention, GELU MLP.

  `x = x + SA(LN(x)); x = x + CA(LN(x), context); x = x + MLP(LN(x))`, with
  exact GELU, dropout after the GELU and stochastic depth on each branch (the
  released `TransformerEncoderLayer` / `TransformerDecoderLayer`).

  Call: `(x [B, N, dim], context [B, M, c] or None, training) -> [B, N, dim]`.
  """

  def __init__(self, dim: int, num_heads: int, mlp_dim: int,
               cross_attention: bool = False, dropout_rate: float = 0.0,
               drop_path_rate: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.cross_attention = cross_attention
    self.self_ln = layer_norm('self_attention_ln')
    self.self_attention = Attention(dim, num_heads, name='self_attention')
    if cross_attention:
      self.cross_ln = layer_norm('cross_attention_ln')
      self.cross_attention_layer = Attention(dim, num_heads, cross=True,
                                             name='cross_attention')
    self.mlp_ln = layer_norm('mlp_ln')
    self.mlp_in = keras.layers.Dense(mlp_dim, name='mlp_in')
    self.mlp_dropout = keras.layers.Dropout(dropout_rate)
    self.mlp_out = keras.layers.Dense(dim, name='mlp_out')
    self.drop_path = DropPath(drop_path_rate)

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, x, context=None, training=False):
    x = x + self.drop_path(self.self_attention(self.self_ln(x)), training=training)
    if self.cross_attention:
      y = self.cross_attention_layer(self.cross_ln(x), context)
      x = x + self.drop_path(y, training=training)
    y = tf.nn.gelu(self.mlp_in(self.mlp_ln(x)), approximate=False)
    y = self.mlp_out(self.mlp_dropout(y, training=training))
    return x + self.drop_path(y, training=training)


def track(owner: keras.layers.Layer, layer):
  """Also sets `layer` as attribute `owner.<layer.name>`; returns `layer`.

  Keras 3 tracks sublayers kept in lists for its own weights, but
  `tf.train.Checkpoint` (what the trainer saves) only follows attributes: every
  layer held in a list is registered here too, under its (unique) name.
  """
  if layer is not None:
    setattr(owner, layer.name, layer)
  return layer


def count_params(layer_or_variables) -> int:
  """Number of scalars in a layer's trainable variables (or in a list of variables)."""
  variables = getattr(layer_or_variables, 'trainable_variables', layer_or_variables)
  return int(sum(math.prod(v.shape) for v in variables))
