"""The image encoder of Pix2Seq-D (paper §3.1, Fig. 2; REFERENCE §4).

`images [B, H, W, 3]` in `[0, 1]` -> ImageNet mean/std normalisation -> ResNet
(conv1 .. res4 for the paper: output stride 16, 1024 channels) -> projection of
the last stage to width D + LayerNorm -> 2-D sin-cos position codes (computed
from the static input size at call time, so one set of weights runs at 256² and
1024²) -> pre-LN transformer encoder layers -> output LayerNorm = `tokens
[B, N, D]`. A top-down fusion merges res2, res3 and the tokens reshaped to a map
with `silu(GN(conv3x3(hr + upsample(silu(GN(conv1x1(lr)))))))` blocks and a last
block upsamples to the mask size: `feature_map [B, H/s, W/s, C]` (s = mask
stride, 2 for the paper's 256² image / 128² mask), ending post-SiLU.

The backbone names its layers like `keras.applications.ResNet50`
(`conv1_conv`, `conv2_block1_1_conv`, `conv2_block1_1_bn`, ...), which is what
`load_keras_resnet50_weights` maps by.
"""

import os
import tempfile
from typing import Optional, Sequence

import gin
import keras
import numpy as np
import tensorflow as tf

from models import layers as layers_lib
from models import precision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# What `keras.applications.resnet50.preprocess_input` ('caffe' mode) subtracts,
# in RGB order on the 0..255 scale; its channels are then fed as BGR.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
_KERAS_RESNET50_BN_EPSILON = 1.001e-5
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _conv(filters, kernel_size, strides=1, padding='same', name=None):
  """Bias-free conv (a BatchNorm follows), the released ResNet's initializer."""
  return keras.layers.Conv2D(
      filters, kernel_size, strides=strides, padding=padding, use_bias=False,
      kernel_initializer=keras.initializers.VarianceScaling(), name=name)


def _pad(x, kernel_size):
  """Fixed symmetric padding for strided convs/pools (independent of input size)."""
  total = kernel_size - 1
  begin = total // 2
  return tf.pad(x, [[0, 0], [begin, total - begin], [begin, total - begin], [0, 0]])


class _Block(keras.layers.Layer):
  """Shared plumbing of the residual blocks: BN factory and the named sublayers."""

  def __init__(self, batch_norm_kwargs, **kwargs):
    super().__init__(**kwargs)
    self._bn_kwargs = batch_norm_kwargs

  def _add_conv_bn(self, index, filters, kernel_size, strides=1, padding='same',
                   zero_gamma=False):
    prefix = f'{self.name}_{index}'
    conv = _conv(filters, kernel_size, strides, padding, name=f'{prefix}_conv')
    bn = keras.layers.BatchNormalization(
        gamma_initializer='zeros' if zero_gamma else 'ones',
        name=f'{prefix}_bn', **self._bn_kwargs)
    return conv, bn

  def conv_bn_layers(self) -> list:
    """The block's convs and BNs (named like keras.applications, e.g. `conv2_block1_1_conv`)."""
    names = ('conv0', 'bn0', 'conv1', 'bn1', 'conv2', 'bn2', 'conv3', 'bn3')
    return [getattr(self, n) for n in names if hasattr(self, n)]

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.


class BottleneckBlock(_Block):
  """ResNet bottleneck: 1x1 -> 3x3 -> 1x1 (x4 channels), last BN gamma starts at 0.

  `stride_in_1x1=False` (default, ResNet v1.5 as in the released model) strides
  the 3x3 conv; `True` strides the first 1x1 conv like `keras.applications`.
  """

  expansion = 4

  def __init__(self, filters, strides, projection, stride_in_1x1,
               batch_norm_kwargs, **kwargs):
    super().__init__(batch_norm_kwargs, **kwargs)
    self.strides = strides
    self.stride_in_1x1 = stride_in_1x1
    self.projection = projection
    if projection:
      self.conv0, self.bn0 = self._add_conv_bn(0, 4 * filters, 1, strides, 'valid')
    stride1, stride3 = (strides, 1) if stride_in_1x1 else (1, strides)
    self.conv1, self.bn1 = self._add_conv_bn(1, filters, 1, stride1, 'valid')
    self.conv2, self.bn2 = self._add_conv_bn(
        2, filters, 3, stride3, 'same' if stride3 == 1 else 'valid')
    self.conv3, self.bn3 = self._add_conv_bn(3, 4 * filters, 1, zero_gamma=True)

  def call(self, x, training=False):
    shortcut = self.bn0(self.conv0(x), training=training) if self.projection else x
    y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
    if self.conv2.strides[0] > 1:
      y = _pad(y, 3)
    y = tf.nn.relu(self.bn2(self.conv2(y), training=training))
    y = self.bn3(self.conv3(y), training=training)
    return tf.nn.relu(y + shortcut)


class BasicBlock(_Block):
  """ResNet basic block: 3x3 -> 3x3, last BN gamma starts at 0 (tiny configs)."""

  expansion = 1

  def __init__(self, filters, strides, projection, stride_in_1x1,
               batch_norm_kwargs, **kwargs):
    del stride_in_1x1  # One strided conv only.
    super().__init__(batch_norm_kwargs, **kwargs)
    self.projection = projection
    if projection:
      self.conv0, self.bn0 = self._add_conv_bn(0, filters, 1, strides, 'valid')
    self.conv1, self.bn1 = self._add_conv_bn(
        1, filters, 3, strides, 'same' if strides == 1 else 'valid')
    self.conv2, self.bn2 = self._add_conv_bn(2, filters, 3, zero_gamma=True)

  def call(self, x, training=False):
    shortcut = self.bn0(self.conv0(x), training=training) if self.projection else x
    y = _pad(x, 3) if self.conv1.strides[0] > 1 else x
    y = tf.nn.relu(self.bn1(self.conv1(y), training=training))
    y = self.bn2(self.conv2(y), training=training)
    return tf.nn.relu(y + shortcut)


BLOCK_TYPES = {'bottleneck': BottleneckBlock, 'basic': BasicBlock}
# How the stem's 3x3/s2 max-pool pads: 'symmetric' (one pixel on every side,
# `_pad`) or 'same' (TF 'SAME': for even sizes, one pixel at the bottom/right
# only, as the authors' `MaxPooling2D(padding='SAME')`). The windows of the two
# are offset by one pixel, so weights of one run shifted features in the other.
STEM_POOL_PADDINGS = ('symmetric', 'same')


def _lookup(table, key, what):
  if key not in table:
    raise ValueError(f'{what}={key!r} is not one of {sorted(table)}.')
  return table[key]


class ResNet(keras.layers.Layer):
  """ResNet stem + stages, returning every stage's output (REFERENCE §4).

  Stage `i` (0-based) has `blocks_per_stage[i]` blocks of width
  `base_width * 2**i` (times the block's expansion), stride 4 * 2**i overall.
  `(3, 4, 6)` bottleneck stages of base width 64 are ResNet-50 cut after res4
  (8,543,296 trainable parameters).

  Call: `(x [B, H, W, 3] normalised, training) -> [res2, res3, ...]`, each
  `[B, H / 2**(i+2), W / 2**(i+2), channels_i]`.
  """

  def __init__(self, blocks_per_stage: Sequence[int] = (3, 4, 6),
               base_width: int = 64, block_type: str = 'bottleneck',
               stride_in_1x1: bool = False, sync_batch_norm: bool = False,
               stem_pool_padding: str = 'symmetric', **kwargs):
    super().__init__(**kwargs)
    block_cls = _lookup(BLOCK_TYPES, block_type, 'block_type')
    if stem_pool_padding not in STEM_POOL_PADDINGS:
      raise ValueError(f'stem_pool_padding={stem_pool_padding!r} is not one of '
                       f'{list(STEM_POOL_PADDINGS)}.')
    self.stem_pool_padding = stem_pool_padding
    self.block_type = block_type
    self.blocks_per_stage = tuple(blocks_per_stage)
    self.base_width = base_width
    self.stride_in_1x1 = stride_in_1x1
    bn_kwargs = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                     synchronized=sync_batch_norm)
    self.stem_conv = _conv(base_width, 7, strides=2, padding='valid',
                           name='conv1_conv')
    self.stem_bn = keras.layers.BatchNormalization(name='conv1_bn', **bn_kwargs)
    self.stages = []
    self.stage_channels = []
    for i, num_blocks in enumerate(self.blocks_per_stage):
      filters = base_width * 2**i
      stage = []
      for j in range(num_blocks):
        block = block_cls(
            filters, strides=(2 if i > 0 and j == 0 else 1), projection=(j == 0),
            stride_in_1x1=stride_in_1x1, batch_norm_kwargs=bn_kwargs,
            name=f'conv{i + 2}_block{j + 1}')
        stage.append(layers_lib.track(self, block))
      self.stages.append(stage)
      self.stage_channels.append(filters * block_cls.expansion)

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def named_layers(self) -> dict:
    """Layer name -> conv/BN layer, names as in `keras.applications.ResNet50`."""
    found = [self.stem_conv, self.stem_bn]
    for stage in self.stages:
      for block in stage:
        found.extend(block.conv_bn_layers())
    return {layer.name: layer for layer in found}

  def stem(self, x, training=False):
    """conv 7x7/s2 -> BN -> ReLU -> max-pool 3x3/s2: `[B, H/4, W/4, base_width]`."""
    x = self.stem_conv(_pad(x, 7))
    x = tf.nn.relu(self.stem_bn(x, training=training))
    # Zero padding is -inf padding here: the input is post-ReLU.
    if self.stem_pool_padding == 'same':
      return tf.nn.max_pool2d(x, ksize=3, strides=2, padding='SAME')
    return tf.nn.max_pool2d(_pad(x, 3), ksize=3, strides=2, padding='VALID')

  def call(self, x, training=False):
    x = self.stem(x, training=training)
    outputs = []
    for stage in self.stages:
      for block in stage:
        x = block(x, training=training)
      outputs.append(x)
    return outputs


class ImageTransformer(keras.layers.Layer):
  """Transformer encoder over the last stage's tokens (REFERENCE §4).

  dropout -> Dense(D) -> LayerNorm -> + 2-D sin-cos codes -> `num_layers`
  pre-LN layers -> output LayerNorm.

  Call: `(x [B, h, w, C], training) -> tokens [B, h*w, D]`.
  """

  def __init__(self, hidden_dim: int = 512, num_layers: int = 12,
               num_heads: int = 16, mlp_dim: int = 2048,
               dropout_rate: float = 0.0, drop_path_rate: float = 0.0,
               recompute_blocks: bool = False, **kwargs):
    super().__init__(**kwargs)
    if recompute_blocks and (dropout_rate or drop_path_rate):
      raise ValueError('build_image_encoder.recompute_blocks needs dropout_rate '
                       '= 0 and drop_path_rate = 0 (a recomputed layer would '
                       'draw other random masks).')
    self.recompute_blocks = recompute_blocks
    self.hidden_dim = hidden_dim
    self.input_dropout = keras.layers.Dropout(dropout_rate)
    self.projection = keras.layers.Dense(hidden_dim, name='projection')
    self.projection_ln = layers_lib.layer_norm('projection_ln')
    self.blocks = [
        layers_lib.track(self, layers_lib.TransformerBlock(
            hidden_dim, num_heads, mlp_dim, dropout_rate=dropout_rate,
            drop_path_rate=drop_path_rate, name=f'layer_{i}'))
        for i in range(num_layers)
    ]
    self.output_ln = layers_lib.layer_norm('output_ln')

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, x, training=False):
    height, width = layers_lib.static_hw(x)
    x = tf.reshape(x, [tf.shape(x)[0], height * width, x.shape[-1]])
    x = self.input_dropout(x, training=training)
    x = self.projection_ln(self.projection(x))
    codes = layers_lib.position_codes_2d(height, width, self.hidden_dim)
    x = x + tf.cast(codes, x.dtype)[tf.newaxis]
    for block in self.blocks:
      if training and self.recompute_blocks and block.built:
        # Only the layer's input is kept for the backward pass.
        x = tf.recompute_grad(lambda x, block=block: block(x, training=True))(x)
      else:
        x = block(x, training=training)
    return self.output_ln(x)


class UpsampleBlock(keras.layers.Layer):
  """`silu(GN(conv3x3(hr + upsample(silu(GN(conv1x1(lr)))))))` (REFERENCE §4).

  Call: `(lr [B, H/f, W/f, c], hr [B, H, W, dim] or None, factor) -> [B, H, W, dim]`.
  """

  def __init__(self, dim: int, **kwargs):
    super().__init__(**kwargs)
    init = layers_lib.glorot_uniform()
    groups = layers_lib.num_groups_for(dim)
    self.lateral_conv = keras.layers.Conv2D(dim, 1, kernel_initializer=init,
                                            name='lateral_conv')
    self.lateral_norm = layers_lib.GroupNorm(groups, name='lateral_norm')
    self.merge_conv = keras.layers.Conv2D(dim, 3, padding='same',
                                          kernel_initializer=init,
                                          name='merge_conv')
    self.merge_norm = layers_lib.GroupNorm(groups, name='merge_norm')

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, lr, hr=None, factor=2):
    x = tf.nn.silu(self.lateral_norm(self.lateral_conv(lr)))
    x = layers_lib.upsample_nearest(x, factor)
    if hr is not None:
      x = hr + x
    return tf.nn.silu(self.merge_norm(self.merge_conv(x)))


class FeatureFusion(keras.layers.Layer):
  """Top-down merge of the stage maps, then upsampling to the mask size.

  Call: `(features [hr, ..., lr], training) -> [B, h_mask, w_mask, out_dim]`
  where `features[i]` has `lateral_dims[i]` channels (the last one, the token
  map, any number) and the final block upsamples `features[0]`'s resolution by
  `final_factor` (no final block when it is 1).
  """

  def __init__(self, lateral_dims: Sequence[int], out_dim: int,
               final_factor: int, recompute_blocks: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.recompute_blocks = recompute_blocks
    self.merge_blocks = [
        layers_lib.track(self, UpsampleBlock(dim, name=f'merge_{i}'))
        for i, dim in enumerate(lateral_dims)
    ]
    self.final_factor = final_factor
    self.final_block = (UpsampleBlock(out_dim, name='final')
                        if final_factor > 1 else None)

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, features, training=False):
    recompute = training and self.recompute_blocks
    x = features[-1]
    for i in range(len(features) - 2, -1, -1):
      hr = features[i]
      factor = layers_lib.static_hw(hr)[0] // layers_lib.static_hw(x)[0]
      block = self.merge_blocks[i]
      if recompute and block.built:
        # GroupNorm only (no state, no randomness): recomputing is exact.
        x = tf.recompute_grad(
            lambda lr, hr, block=block, factor=factor: block(lr, hr=hr,
                                                             factor=factor))(x, hr)
      else:
        x = block(x, hr=hr, factor=factor)
    if self.final_block is not None:
      if recompute and self.final_block.built:
        x = tf.recompute_grad(
            lambda lr: self.final_block(lr, factor=self.final_factor))(x)
      else:
        x = self.final_block(x, factor=self.final_factor)
    return x


class ImageEncoder(keras.layers.Layer):
  """Normalise -> ResNet -> transformer -> fusion (paper §3.1, Fig. 2).

  Attributes:
    backbone, transformer, fusion: the parts (for parameter counts and loading).
    mask_stride: input size / feature-map (mask) size.

  Call: `(images float [B, H, W, 3] in [0, 1], training)` ->
  `{'feature_map': [B, H/mask_stride, W/mask_stride, C], 'tokens': [B, N, D]}`
  (`feature_map` None when built without fusion, for conditioning 'attn');
  H and W must be multiples of 16 (the backbone's output stride for 3 stages).
  """

  def __init__(self, backbone: ResNet, transformer: ImageTransformer,
               fusion: Optional[FeatureFusion], mask_stride: int,
               pixel_mean: Sequence[float] = IMAGENET_MEAN,
               pixel_std: Sequence[float] = IMAGENET_STD, **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    self.transformer = transformer
    self.fusion = fusion
    self.mask_stride = mask_stride
    self.pixel_mean = tuple(float(m) for m in pixel_mean)
    self.pixel_std = tuple(float(s) for s in pixel_std)

  def build(self, input_shape):
    del input_shape  # Sublayers build on first call.

  def call(self, images, training=False):
    height, width = layers_lib.static_hw(images)
    stride = 2**(len(self.backbone.stages) + 1)
    if height % stride or width % stride:
      raise ValueError(f'image size {(height, width)} must be a multiple of the '
                       f'backbone output stride {stride}.')
    x = tf.cast(images, self.compute_dtype)
    mean = tf.constant(self.pixel_mean, dtype=x.dtype)
    inv_std = tf.constant([1.0 / s for s in self.pixel_std], dtype=x.dtype)
    stages = self.backbone((x - mean) * inv_std, training=training)
    tokens = self.transformer(stages[-1], training=training)
    if self.fusion is None:
      return {'feature_map': None, 'tokens': tokens}
    h, w = layers_lib.static_hw(stages[-1])
    token_map = tf.reshape(tokens, [tf.shape(tokens)[0], h, w, tokens.shape[-1]])
    feature_map = self.fusion(list(stages[:-1]) + [token_map], training=training)
    return {'feature_map': feature_map, 'tokens': tokens}


def mask_stride_from_sizes(image_size: Sequence[int],
                           mask_size: Sequence[int]) -> int:
  """`image_size / mask_size`, checked to be the same integer in 1, 2 or 4 for both axes."""
  strides = set()
  for image_dim, mask_dim in zip(image_size, mask_size):
    if image_dim % mask_dim:
      raise ValueError(f'image_size {tuple(image_size)} is not a multiple of '
                       f'mask_size {tuple(mask_size)}.')
    strides.add(image_dim // mask_dim)
  if len(strides) != 1 or next(iter(strides)) not in (1, 2, 4):
    raise ValueError(f'image_size {tuple(image_size)} / mask_size '
                     f'{tuple(mask_size)} must be 1, 2 or 4 on both axes (the '
                     'fusion upsamples res2, at stride 4, to the mask size).')
  return strides.pop()


@gin.configurable
def build_image_encoder(image_size: Sequence[int] = (256, 256),
                        mask_size: Sequence[int] = (128, 128),
                        blocks_per_stage: Sequence[int] = (3, 4, 6),
                        base_width: int = 64,
                        block_type: str = 'bottleneck',
                        stride_in_1x1: bool = False,
                        sync_batch_norm: bool = False,
                        hidden_dim: int = 512,
                        num_layers: int = 12,
                        num_heads: int = 16,
                        mlp_dim: int = 2048,
                        dropout_rate: float = 0.0,
                        drop_path_rate: float = 0.0,
                        fusion_dim: int = 256,
                        pixel_mean: Sequence[float] = IMAGENET_MEAN,
                        pixel_std: Sequence[float] = IMAGENET_STD,
                        stem_pool_padding: str = 'symmetric',
                        resnet_weights: Optional[str] = None,
                        recompute_blocks: bool = False) -> ImageEncoder:
  """Builds the image encoder (paper §3.1; defaults = the paper, REFERENCE §4).

  Args:
    image_size: training image `(height, width)`; with `mask_size` it fixes the
      mask stride (1, 2 or 4). Other sizes with the same stride run too.
    mask_size: the mask (decoder) `(height, width)`.
    blocks_per_stage: ResNet blocks per stage; 3 stages = cut after res4.
    base_width: width of the first stage (64 for ResNet-50).
    block_type: 'bottleneck' (ResNet-50) or 'basic' (tiny configs).
    stride_in_1x1: stride the 1x1 conv (keras.applications layout) instead of
      the 3x3 (v1.5, as released).
    sync_batch_norm: batch statistics across replicas (the released model used
      global BatchNorm under its TPU/GPU strategy).
    hidden_dim: transformer width D.
    num_layers: transformer layers (12 as released; the paper text says 6).
    num_heads: attention heads.
    mlp_dim: transformer MLP width.
    dropout_rate: dropout on the tokens and inside the MLPs in training.
    drop_path_rate: stochastic depth of each residual branch in training.
    fusion_dim: channels of the fused feature map; 0 builds no fusion (for
      conditioning 'attn', which only reads the tokens).
    pixel_mean: per-channel mean subtracted from `[0, 1]` RGB images.
    pixel_std: per-channel std the images are divided by. The authors' model
      takes the raw `[0, 1]` pixels: `pixel_mean = (0, 0, 0)`, `pixel_std =
      (1, 1, 1)` (their weights need it; paper configuration files set it).
    stem_pool_padding: 'symmetric' or 'same' (the authors' TF 'SAME' max-pool;
      their weights need it), see STEM_POOL_PADDINGS.
    resnet_weights: optional path of `keras.applications.ResNet50` weights
      (.h5 / .weights.h5) loaded into the backbone (`load_keras_resnet50_weights`).
    recompute_blocks: gradient checkpointing (`tf.recompute_grad`) of the
      transformer layers and the fusion blocks in training: only each one's
      input is kept for the backward pass, the rest is recomputed there (same
      gradients; needs dropout_rate = drop_path_rate = 0). The ResNet blocks
      are not recomputed: their BatchNorm would update its moving statistics
      a second time in the recomputation. `build_mask_decoder.recompute_blocks`
      is the decoder's.

  Returns:
    An unbuilt `ImageEncoder` (variables are created on the first call), or
    built and loaded when `resnet_weights` is given.
  """
  precision.set_dtype_policy()  # Before any layer exists (models/precision.py).
  mask_stride = mask_stride_from_sizes(image_size, mask_size)
  backbone = ResNet(blocks_per_stage, base_width, block_type, stride_in_1x1,
                    sync_batch_norm, stem_pool_padding, name='backbone')
  transformer = ImageTransformer(hidden_dim, num_layers, num_heads, mlp_dim,
                                 dropout_rate, drop_path_rate,
                                 recompute_blocks=recompute_blocks,
                                 name='transformer')
  fusion = None
  if fusion_dim:
    fusion = FeatureFusion(backbone.stage_channels[:-1], fusion_dim,
                           final_factor=4 // mask_stride,
                           recompute_blocks=recompute_blocks, name='fusion')
  encoder = ImageEncoder(backbone, transformer, fusion, mask_stride, pixel_mean,
                         pixel_std, name='image_encoder')
  if resnet_weights:
    load_keras_resnet50_weights(backbone, resnet_weights, pixel_mean, pixel_std)
  return encoder


def load_keras_resnet50_weights(backbone: ResNet, path: str,
                                pixel_mean: Sequence[float] = IMAGENET_MEAN,
                                pixel_std: Sequence[float] = IMAGENET_STD) -> int:
  """Loads `keras.applications.ResNet50` weights into `backbone`, mapped by layer name.

  The file is what `keras.applications.ResNet50(...).save_weights(path)` writes
  (.weights.h5) or Keras' own legacy ImageNet `.h5` files (with or without the
  top). The conversion is exact in inference:
  - Keras convs have biases, ours do not (a BatchNorm follows): each bias is
    folded into the BN moving mean (`mean - bias`); BN epsilon 1.001e-5 is
    folded into the moving variance.
  - Keras' ResNet50 takes caffe-style input (BGR, 0..255, mean subtracted);
    ours takes `(rgb01 - pixel_mean) / pixel_std`. The first conv's input
    channels are reversed and scaled by `255 * pixel_std`, and the remaining
    constant offset is folded into conv1's BN mean. The offset is exact away
    from the image border; with `pixel_mean = CAFFE_MEAN_RGB / 255` and
    `pixel_std = 1 / 255` it is zero and the whole conversion is exact.
  For an exact copy of the Keras network build the backbone with
  `stride_in_1x1=True`; the default (v1.5) backbone accepts the same weights.

  Args:
    backbone: a bottleneck `ResNet` with base width 64 and at most (3, 4, 6, 3) blocks.
    path: local or `gs://` path of the weights file.
    pixel_mean: the encoder's input mean (on the [0, 1] scale, RGB).
    pixel_std: the encoder's input std.

  Returns:
    The number of layers loaded.

  Raises:
    ValueError: the backbone's layout cannot take ResNet-50 weights, or the file
      does not hold a layer the backbone needs.
  """
  if backbone.block_type != 'bottleneck' or backbone.base_width != 64 or any(
      n > m for n, m in zip(backbone.blocks_per_stage, (3, 4, 6, 3))):
    raise ValueError('ResNet-50 weights need a bottleneck backbone of base width '
                     f'64 with at most (3, 4, 6, 3) blocks; got {backbone.block_type}, '
                     f'{backbone.base_width}, {backbone.blocks_per_stage}.')
  reference = _keras_resnet50_from_file(path)
  if not backbone.built or not backbone.stem_conv.built:
    backbone(tf.zeros([1, 64, 64, 3]), training=False)
  scale = 255.0 * np.asarray(pixel_std, np.float32)
  offset = 255.0 * np.asarray(pixel_mean, np.float32) - np.asarray(
      CAFFE_MEAN_RGB, np.float32)
  named = backbone.named_layers()
  loaded = 0
  for name, layer in named.items():
    if not name.endswith('_conv'):
      continue
    try:
      kernel, bias = reference.get_layer(name).get_weights()
      gamma, beta, mean, variance = reference.get_layer(
          name[:-len('_conv')] + '_bn').get_weights()
    except ValueError as e:
      raise ValueError(f'{path}: no layer {name!r} (or its BN) in the ResNet50 '
                       f'weights: {e}') from e
    if name == 'conv1_conv':
      kernel = kernel[:, :, ::-1, :] * scale[np.newaxis, np.newaxis, :, np.newaxis]
      # Conv of the constant offset (x_keras = 255 std x + offset, BGR order).
      bias = bias + np.einsum('hwco,c->o', kernel / scale[:, np.newaxis], offset)
    layer.kernel.assign(kernel)
    bn = named[name[:-len('_conv')] + '_bn']
    bn.gamma.assign(gamma)
    bn.beta.assign(beta)
    bn.moving_mean.assign(mean - bias)
    bn.moving_variance.assign(variance + _KERAS_RESNET50_BN_EPSILON - BN_EPSILON)
    loaded += 1
  return loaded


def _keras_resnet50_from_file(path: str) -> keras.Model:
  """`keras.applications.ResNet50` (no pretrained download) holding the file's weights."""
  with tempfile.TemporaryDirectory() as tmp:
    local = path
    if '://' in path:
      local = os.path.join(tmp, os.path.basename(path))
      tf.io.gfile.copy(path, local, overwrite=True)
    if not tf.io.gfile.exists(local):
      raise FileNotFoundError(f'ResNet-50 weights file {path} does not exist.')
    errors = []
    for include_top in (False, True):
      model = keras.applications.ResNet50(
          weights=None, include_top=include_top, input_shape=(None, None, 3)
          if not include_top else (224, 224, 3))
      try:
        model.load_weights(local)
        return model
      except Exception as e:  # pylint: disable=broad-except
        errors.append(f'include_top={include_top}: {e}')
  raise ValueError(f'{path} is not a keras.applications.ResNet50 weights file: '
                   + ' | '.join(errors))
