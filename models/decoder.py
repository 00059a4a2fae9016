"""The TransUNet mask decoder of Pix2Seq-D (paper §3.1, Fig. 2 and 5; REFERENCE §2, §4).

Input: the noisy analog bits `x_t [B, h, w, 16]`, concatenated (conditioning
'cat') with the encoder's fused map `[B, h, w, 256]` and, for video (§3.4), with
the past frames' analog bits `[B, h, w, P * 16]`: 272 channels for the paper.
With self-conditioning (Bit Diffusion, off in the paper's configurations) the
previous `x0` estimate `[B, h, w, 16]` is concatenated too.

  conv_in (1x1) + GN
  down: per level, residual blocks (GN, SiLU, conv3x3, GN * (1 + scale) + shift
        from the time embedding, SiLU, conv3x3 starting at ≈0; skip / sqrt(2)),
        then a strided 3x3 conv except at the last level; every output is kept
        as a skip
  bottleneck: GN + conv1x1 to width 512, + 2-D sin-cos codes, the time embedding
        appended as one extra token, pre-LN transformer blocks (self-attention,
        cross-attention to the encoder tokens for 'attn', GELU MLP), the extra
        token dropped, GN + conv1x1
  up: per level, (blocks + 1) residual blocks each on concat(x, skip), then
        nearest x2 + conv3x3 except at the first level
  out: conv1x1(SiLU(GN(x))) starting at ≈0 -> `[B, h, w, groups, 2**bits]` logits.

The time embedding is the sinusoidal embedding of `gamma * time_scale` (sin half
then cos half) through two Dense+SiLU layers. Because the output conv and every
residual block's last conv start at ≈0, the initial logits are ≈0 and the
initial cross entropy is ln 256 (REFERENCE §4).
"""

import functools
import math
from typing import Optional, Sequence

import gin
import keras
import tensorflow as tf

from models import layers as layers_lib
from models import precision

# conditioning name -> (concatenate the fused map at the input, cross-attend to tokens)
CONDITIONING = {
    'cat': (True, False),
    'attn': (False, True),
    'cat+attn': (True, True),
    'none': (False, False),
}


def conditioning_flags(conditioning: str):
  """`(use_cat, use_attn)` of a conditioning name; raises with the valid names."""
  if conditioning not in CONDITIONING:
    raise ValueError(f'conditioning={conditioning!r} is not one of '
                     f'{sorted(CONDITIONING)}.')
  return CONDITIONING[conditioning]


class TimeEmbedding(keras.layers.Layer):
  """`silu(Dense(silu(Dense(sincos(gamma * time_scale)))))` (REFERENCE §2).

  Call: `gamma float [B] -> [B, mlp_dim]`.
  """

  def __init__(self, embedding_dim: int = 128, mlp_dim: int = 512,
               time_scale: float = 1000.0, **kwargs):
    super().__init__(**kwargs)
    self.embedding_dim = embedding_dim
    self.time_scale = time_scale
    init = layers_lib.glorot_uniform()
    self.dense_0 = keras.layers.Dense(mlp_dim, kernel_initializer=init,
                                      name='dense_0')
    self.dense_1 = keras.layers.Dense(mlp_dim, kernel_initializer=init,
                                      name='dense_1')

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, gamma):
    x = layers_lib.timestep_embedding(
        tf.cast(gamma, tf.float32) * self.time_scale, self.embedding_dim)
    x = tf.nn.silu(self.dense_0(tf.cast(x, self.compute_dtype)))
    return tf.nn.silu(self.dense_1(x))


class ResBlock(keras.layers.Layer):
  """Residual block with time scale/shift; the last conv starts at ≈0.

  Call: `(x [B, H, W, c], emb [B, e], training) -> [B, H, W, out_dim]`.
  """

  def __init__(self, out_dim: int, kernel_size: int = 3,
               dropout_rate: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.out_dim = out_dim
    init = layers_lib.glorot_uniform()
    self.shortcut = None
    self.emb_proj = keras.layers.Dense(2 * out_dim, kernel_initializer=init,
                                       name='emb_proj')
    self.conv_0 = keras.layers.Conv2D(out_dim, kernel_size, padding='same',
                                      kernel_initializer=init, name='conv_0')
    self.conv_1 = keras.layers.Conv2D(out_dim, kernel_size, padding='same',
                                      kernel_initializer=layers_lib.near_zero_init(),
                                      name='conv_1')
    self.norm_1 = layers_lib.GroupNorm(layers_lib.num_groups_for(out_dim),
                                       name='norm_1')
    self.dropout = keras.layers.Dropout(dropout_rate)

  def build(self, input_shape):
    in_dim = input_shape[-1]
    self.norm_0 = layers_lib.GroupNorm(layers_lib.num_groups_for(in_dim),
                                       name='norm_0')
    if in_dim != self.out_dim:
      self.shortcut = keras.layers.Conv2D(
          self.out_dim, 1, kernel_initializer=layers_lib.glorot_uniform(),
          name='shortcut')

  def call(self, x, emb, training=False):
    skip = x if self.shortcut is None else self.shortcut(x)
    scale, shift = tf.split(self.emb_proj(emb)[:, tf.newaxis, tf.newaxis, :], 2,
                            axis=-1)
    y = self.conv_0(tf.nn.silu(self.norm_0(x)))
    y = tf.nn.silu(self.norm_1(y) * (1.0 + scale) + shift)
    y = self.conv_1(self.dropout(y, training=training))
    return (y + skip) * tf.cast(1.0 / math.sqrt(2.0), y.dtype)


class BottleneckTransformer(keras.layers.Layer):
  """The TransUNet's transformer at the lowest resolution (REFERENCE §4).

  Call: `(x [B, h, w, c], emb [B, e], tokens [B, N, d] or None, training)
  -> [B, h, w, dim]`.
  """

  def __init__(self, dim: int = 512, num_layers: int = 6, num_heads: int = 8,
               mlp_dim: int = 2048, cross_attention: bool = True,
               dropout_rate: float = 0.0, norm_in_groups: Optional[int] = None,
               **kwargs):
    super().__init__(**kwargs)
    self.dim = dim
    self.norm_in_groups = norm_in_groups
    self.cross_attention = cross_attention
    init = layers_lib.glorot_uniform()
    self.conv_in = keras.layers.Conv2D(dim, 1, kernel_initializer=init,
                                       name='conv_in')
    self.emb_proj = keras.layers.Dense(dim, kernel_initializer=init,
                                       name='emb_proj')
    self.blocks = [
        layers_lib.track(self, layers_lib.TransformerBlock(
            dim, num_heads, mlp_dim, cross_attention=cross_attention,
            dropout_rate=dropout_rate, name=f'layer_{i}'))
        for i in range(num_layers)
    ]
    self.norm_out = layers_lib.GroupNorm(layers_lib.num_groups_for(dim),
                                         name='norm_out')
    self.conv_out = keras.layers.Conv2D(dim, 1, kernel_initializer=init,
                                        name='conv_out')

  def build(self, input_shape):
    groups = self.norm_in_groups or layers_lib.num_groups_for(input_shape[-1])
    self.norm_in = layers_lib.GroupNorm(groups, name='norm_in')

  def call(self, x, emb, tokens=None, training=False):
    height, width = layers_lib.static_hw(x)
    batch = tf.shape(x)[0]
    x = self.conv_in(self.norm_in(x))
    x = tf.reshape(x, [batch, height * width, self.dim])
    codes = layers_lib.position_codes_2d(height, width, self.dim)
    x = x + tf.cast(codes, x.dtype)[tf.newaxis]
    x = tf.concat([x, self.emb_proj(emb)[:, tf.newaxis, :]], axis=1)
    for block in self.blocks:
      x = block(x, tokens, training=training)
    x = tf.reshape(x[:, :-1], [batch, height, width, self.dim])
    return self.conv_out(self.norm_out(x))


class TransUNet(keras.layers.Layer):
  """The mask decoder: `(x_t, gamma, conditioning) -> logits` (module docstring).

  Attributes:
    conditioning: 'cat', 'attn', 'cat+attn' or 'none'.
    n_bits: bits per group, e.g. (8, 8): the logits have `len(n_bits)` groups
      of `2**n_bits[0]` classes.
    time_embedding, transformer: parts (for parameter counts).

  Call: `(x_t [B, h, w, sum(n_bits)], gamma [B], feature_map [B, h, w, C] or
  None, tokens [B, N, D] or None, past_bits [B, h, w, P * sum(n_bits)] or None,
  self_cond [B, h, w, sum(n_bits)] or None, training) -> logits float32
  [B, h, w, groups, 2**bits]`. `h` and `w` must be multiples of
  `2**(levels - 1)`. The optional inputs are concatenated to `x_t` in the order
  x_t, self_cond, feature_map, past_bits (the input conv is built by the first
  call, so a decoder is always called with the same set).
  """

  def __init__(self, n_bits: Sequence[int] = (8, 8), base_dim: int = 128,
               channel_multipliers: Sequence[int] = (1, 1, 2, 2),
               blocks_per_level: Sequence[int] = (1, 1, 1, 1),
               kernel_size: int = 3, in_kernel_size: int = 1,
               out_kernel_size: int = 1, conditioning: str = 'cat+attn',
               transformer_dim: int = 512, transformer_layers: int = 6,
               transformer_heads: int = 8, transformer_mlp_dim: int = 2048,
               time_embedding_dim: int = 128, time_mlp_dim: int = 512,
               time_scale: float = 1000.0, dropout_rate: float = 0.0,
               recompute_blocks: bool = False,
               transformer_norm_in_groups: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    self.use_cat, self.use_attn = conditioning_flags(conditioning)
    self.conditioning = conditioning
    if len(set(n_bits)) != 1:
      raise ValueError(f'n_bits={tuple(n_bits)}: every group needs the same '
                       'number of bits (the logits are [..., groups, 2**bits]).')
    if len(blocks_per_level) != len(channel_multipliers):
      raise ValueError(f'blocks_per_level {tuple(blocks_per_level)} and '
                       f'channel_multipliers {tuple(channel_multipliers)} must '
                       'have one entry per level.')
    if self.use_attn and transformer_layers == 0:
      raise ValueError(f'conditioning={conditioning!r} cross-attends in the '
                       'bottleneck transformer; transformer_layers must be > 0.')
    if recompute_blocks and dropout_rate:
      raise ValueError('recompute_blocks needs dropout_rate = 0 (a recomputed '
                       'block would draw another dropout mask).')
    self.recompute_blocks = recompute_blocks
    self.n_bits = tuple(n_bits)
    self.num_groups = len(n_bits)
    self.num_classes = 2**n_bits[0]
    self.num_levels = len(channel_multipliers)
    self.blocks_per_level = tuple(blocks_per_level)
    init = layers_lib.glorot_uniform()
    self.time_embedding = TimeEmbedding(time_embedding_dim, time_mlp_dim,
                                        time_scale, name='time_embedding')
    widths = [base_dim * m for m in channel_multipliers]
    self.conv_in = keras.layers.Conv2D(widths[0], in_kernel_size, padding='same',
                                       kernel_initializer=init, name='conv_in')
    self.norm_in = layers_lib.GroupNorm(layers_lib.num_groups_for(widths[0]),
                                        name='norm_in')
    self.down_blocks, self.downsamples = [], []
    self.up_blocks, self.upsamples = [], []
    track = functools.partial(layers_lib.track, self)
    for level, (width, num_blocks) in enumerate(zip(widths, blocks_per_level)):
      self.down_blocks.append([
          track(ResBlock(width, kernel_size, dropout_rate,
                         name=f'down_{level}_block_{j}'))
          for j in range(num_blocks)])
      self.up_blocks.append([
          track(ResBlock(width, kernel_size, dropout_rate,
                         name=f'up_{level}_block_{j}'))
          for j in range(num_blocks + 1)])
      last = level == self.num_levels - 1
      self.downsamples.append(None if last else track(keras.layers.Conv2D(
          width, 3, strides=2, padding='same', kernel_initializer=init,
          name=f'down_{level}_conv')))
      self.upsamples.append(None if level == 0 else track(keras.layers.Conv2D(
          width, 3, padding='same', kernel_initializer=init,
          name=f'up_{level}_conv')))
    self.transformer = None
    if transformer_layers > 0:
      self.transformer = BottleneckTransformer(
          transformer_dim, transformer_layers, transformer_heads,
          transformer_mlp_dim, cross_attention=self.use_attn,
          dropout_rate=dropout_rate, norm_in_groups=transformer_norm_in_groups,
          name='transformer')
    self.norm_out = layers_lib.GroupNorm(layers_lib.num_groups_for(widths[0]),
                                         name='norm_out')
    # Logits in float32 (also under mixed precision): they feed a 256-way softmax.
    self.conv_out = keras.layers.Conv2D(
        self.num_groups * self.num_classes, out_kernel_size, padding='same',
        kernel_initializer=layers_lib.near_zero_init(), dtype='float32',
        name='conv_out')

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, x_t, gamma, feature_map=None, tokens=None, past_bits=None,
           self_cond=None, training=False):
    if self.use_cat and feature_map is None:
      raise ValueError(f'conditioning={self.conditioning!r} needs the feature map.')
    if self.use_attn and tokens is None:
      raise ValueError(f'conditioning={self.conditioning!r} needs the tokens.')
    height, width = layers_lib.static_hw(x_t)
    factor = 2**(self.num_levels - 1)
    if height % factor or width % factor:
      raise ValueError(f'mask size {(height, width)} must be a multiple of '
                       f'{factor} ({self.num_levels} U-Net levels).')
    inputs = [x_t]
    if self_cond is not None:
      inputs.append(self_cond)
    if self.use_cat:
      inputs.append(feature_map)
    if past_bits is not None:
      inputs.append(past_bits)
    x = tf.concat([tf.cast(v, self.compute_dtype) for v in inputs], axis=-1)
    emb = self.time_embedding(tf.reshape(gamma, [-1]))
    x = self.norm_in(self.conv_in(x))
    skips = [x]
    for level in range(self.num_levels):
      for block in self.down_blocks[level]:
        x = self._run_block(block, x, emb, training)
        skips.append(x)
      if self.downsamples[level] is not None:
        x = self.downsamples[level](x)
        skips.append(x)
    if self.transformer is not None:
      x = self.transformer(x, emb, tokens if self.use_attn else None,
                           training=training)
    for level in reversed(range(self.num_levels)):
      for block in self.up_blocks[level]:
        x = self._run_block(block, tf.concat([x, skips.pop()], axis=-1), emb,
                            training)
      if self.upsamples[level] is not None:
        x = self.upsamples[level](layers_lib.upsample_nearest(x, 2))
    logits = self.conv_out(tf.cast(tf.nn.silu(self.norm_out(x)), tf.float32))
    return tf.reshape(logits,
                      [tf.shape(x)[0], height, width, self.num_groups,
                       self.num_classes])

  def _run_block(self, block, x, emb, training):
    """A residual block; in training with `recompute_blocks`, rematerialised."""
    if not (training and self.recompute_blocks and block.built):
      return block(x, emb, training=training)
    # Keeps only the block's input for the backward pass and recomputes the
    # rest there (GroupNorm, no state; no dropout): less memory, more compute.
    return tf.recompute_grad(
        lambda x, emb: block(x, emb, training=training))(x, emb)


@gin.configurable
def build_mask_decoder(n_bits: Sequence[int] = (8, 8),
                       base_dim: int = 128,
                       channel_multipliers: Sequence[int] = (1, 1, 2, 2),
                       blocks_per_level: Sequence[int] = (1, 1, 1, 1),
                       kernel_size: int = 3,
                       in_kernel_size: int = 1,
                       out_kernel_size: int = 1,
                       conditioning: str = 'cat+attn',
                       transformer_dim: int = 512,
                       transformer_layers: int = 6,
                       transformer_heads: int = 8,
                       transformer_mlp_dim: int = 2048,
                       time_embedding_dim: int = 128,
                       time_mlp_dim: int = 512,
                       time_scale: float = 1000.0,
                       dropout_rate: float = 0.0,
                       recompute_blocks: bool = False,
                       transformer_norm_in_groups: Optional[int] = None
                       ) -> TransUNet:
  """Builds the TransUNet mask decoder (defaults = the paper, REFERENCE §4).

  Args:
    n_bits: bits per group (class, instance); sets the output logits.
    base_dim: width of the first level.
    channel_multipliers: width of each level relative to `base_dim`.
    blocks_per_level: residual blocks per level on the way down (the way up
      has one more per level, for the extra skip).
    kernel_size: kernel of the residual blocks' convs.
    in_kernel_size: kernel of the input conv (1 as released).
    out_kernel_size: kernel of the output conv (1 as released).
    conditioning: 'cat', 'attn', 'cat+attn' (paper) or 'none' (unconditional
      mask prior for decoder pretraining).
    transformer_dim: width of the bottleneck transformer.
    transformer_layers: its blocks (6); 0 for none.
    transformer_heads: its heads (8 x 64).
    transformer_mlp_dim: its MLP width.
    time_embedding_dim: sinusoidal embedding width of `gamma`.
    time_mlp_dim: width of the time MLP (and of the embedding the blocks see).
    time_scale: `gamma` is multiplied by this before the sinusoidal embedding.
    dropout_rate: dropout in the residual blocks and transformer MLPs.
    recompute_blocks: gradient checkpointing of the U-Net's residual blocks
      in training (`tf.recompute_grad`): their activations are recomputed in
      the backward pass instead of kept (needs dropout_rate = 0).
    transformer_norm_in_groups: GroupNorm groups of the bottleneck
      transformer's input norm. None: `min(C // 4, 32)` of its C input
      channels, like every other GroupNorm. The authors' code takes
      `min(transformer_dim // 4, 32)` there; the two agree for the paper's
      sizes (256 channels in, 512 wide: 32 groups) and differ for small ones,
      so a model imported from their weights sets it (tools.import_authors_checkpoint).

  Returns:
    An unbuilt `TransUNet` (variables are created on the first call).
  """
  precision.set_dtype_policy()  # Before any layer exists (models/precision.py).
  return TransUNet(
      n_bits=n_bits, base_dim=base_dim, channel_multipliers=channel_multipliers,
      blocks_per_level=blocks_per_level, kernel_size=kernel_size,
      in_kernel_size=in_kernel_size, out_kernel_size=out_kernel_size,
      conditioning=conditioning, transformer_dim=transformer_dim,
      transformer_layers=transformer_layers, transformer_heads=transformer_heads,
      transformer_mlp_dim=transformer_mlp_dim,
      time_embedding_dim=time_embedding_dim, time_mlp_dim=time_mlp_dim,
      time_scale=time_scale, dropout_rate=dropout_rate,
      recompute_blocks=recompute_blocks,
      transformer_norm_in_groups=transformer_norm_in_groups, name='mask_decoder')


def decoder_part_counts(decoder: TransUNet) -> dict:
  """Trainable parameters of the decoder's parts (built decoder)."""
  transformer = (layers_lib.count_params(decoder.transformer)
                 if decoder.transformer is not None else 0)
  total = layers_lib.count_params(decoder)
  return {
      'decoder_convs': total - transformer,
      'decoder_time_embedding': layers_lib.count_params(decoder.time_embedding),
      'decoder_transformer': transformer,
  }
