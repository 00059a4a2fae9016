"""Which variable of the authors' checkpoint fills which of ours, by structure (issue 14).

The authors' trainer saves `tf.train.Checkpoint(model=..., optimizer=...,
global_step=...)`; a key is the attribute path of the variable plus
`/.ATTRIBUTES/VARIABLE_VALUE` (shared/fixtures/authors/NOTES.md, "Key
conventions"). Their Pix2Seq-D model holds `encoder`, `encoder_fuse`, `denoiser`
and the EMA copies `encoder_ema`, `encoder_fuse_ema`, `denoiser_ema`; their
detection model holds the same `encoder` (architectures/transformers.py
`ResNetTransformer`).

Each `Entry` pairs one of our variables with one or more of their paths and a
function combining their arrays into ours. All but the attention projections
are plain renames (Keras kernels have the same layouts: conv HWIO, dense
(in, out)); their `MultiHeadAttention` keeps q, k, v as `(dim, heads,
head_dim)` kernels and `(heads, head_dim)` biases, ours fuses them into one
`(dim, 3 * heads * head_dim)` projection (models/layers.py `Attention`), and
their output kernel `(heads, head_dim, dim)` is our `(heads * head_dim, dim)`.
"""

import dataclasses
from typing import Callable, List, Sequence

import numpy as np

KEY_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


def checkpoint_key(path: str) -> str:
  """The checkpoint key of an attribute path (a `/` inside a name is escaped as `.S`)."""
  return path + KEY_SUFFIX


@dataclasses.dataclass
class Entry:
  """One variable of ours and where its value comes from.

  Attributes:
    ours: our (Keras) variable.
    theirs: their attribute paths (e.g. `model/encoder/stem_ln/gamma`).
    combine: their arrays (in the order of `theirs`) -> our array.
  """
  ours: object
  theirs: List[str]
  combine: Callable[[Sequence[np.ndarray]], np.ndarray]


def _same(arrays):
  return arrays[0]


def _fused_kernel(arrays):
  """`(dim, heads, head_dim)` kernels -> `(dim, n * heads * head_dim)`, in order."""
  return np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)


def _fused_bias(arrays):
  return np.concatenate([a.reshape(-1) for a in arrays], axis=0)


def _output_kernel(arrays):
  kernel = arrays[0]
  return kernel.reshape(-1, kernel.shape[-1])


def _layer(ours, theirs: str, names=('kernel', 'bias'), their_names=None) -> list:
  """Entries of a layer whose variables are renamed only."""
  their_names = their_names or names
  return [Entry(getattr(ours, n), [f'{theirs}/{t}'], _same)
          for n, t in zip(names, their_names)]


def _norm(ours, theirs: str) -> list:
  return _layer(ours, theirs, ('gamma', 'beta'))


def _batch_norm(ours, theirs: str) -> list:
  return _layer(ours, theirs, ('gamma', 'beta', 'moving_mean', 'moving_variance'))


def _attention(ours, theirs: str) -> list:
  """Our fused `Attention` from their `MultiHeadAttention` at `theirs`."""
  q, k, v = (f'{theirs}/_{n}_dense' for n in ('query', 'key', 'value'))
  if ours.cross:
    entries = [
        Entry(ours.q.kernel, [f'{q}/kernel'], _fused_kernel),
        Entry(ours.q.bias, [f'{q}/bias'], _fused_bias),
        Entry(ours.kv.kernel, [f'{k}/kernel', f'{v}/kernel'], _fused_kernel),
        Entry(ours.kv.bias, [f'{k}/bias', f'{v}/bias'], _fused_bias),
    ]
  else:
    entries = [
        Entry(ours.qkv.kernel, [f'{q}/kernel', f'{k}/kernel', f'{v}/kernel'],
              _fused_kernel),
        Entry(ours.qkv.bias, [f'{q}/bias', f'{k}/bias', f'{v}/bias'], _fused_bias),
    ]
  return entries + [
      Entry(ours.out.kernel, [f'{theirs}/_output_dense/kernel'], _output_kernel),
      Entry(ours.out.bias, [f'{theirs}/_output_dense/bias'], _same),
  ]


def _mlp(block, theirs: str) -> list:
  """The MLP half of a transformer layer (their `MLP` with one `FeedForwardLayer`)."""
  return (_norm(block.mlp_ln, f'{theirs}/mlp/layernorms/0')
          + _layer(block.mlp_in, f'{theirs}/mlp/mlp_layers/0/dense1')
          + _layer(block.mlp_out, f'{theirs}/mlp/mlp_layers/0/dense2'))


def backbone_entries(backbone, theirs: str) -> list:
  """Our `ResNet` from their `resnet` (NOTES.md "Key conventions": ResNet)."""
  stem = f'{theirs}/initial_conv_relu_max_pool'
  entries = _layer(backbone.stem_conv, f'{stem}/0/conv2d', ('kernel',))
  entries += _batch_norm(backbone.stem_bn, f'{stem}/2/bn')
  if backbone.block_type != 'bottleneck':
    raise ValueError('the authors\' ResNet-50 needs a bottleneck backbone; ours '
                     f'has block_type={backbone.block_type!r}.')
  # Their bottleneck: conv_relu_dropblock_layers 0/1 (1x1), 3/4 (3x3), 6/7
  # (1x1 x4); 2, 5, 8 are DropBlocks. projection_layers 0/1 is the shortcut.
  slots = {'conv1': 0, 'bn1': 1, 'conv2': 3, 'bn2': 4, 'conv3': 6, 'bn3': 7}
  for g, stage in enumerate(backbone.stages):
    for b, block in enumerate(stage):
      prefix = f'{theirs}/block_groups/{g}/layers/{b}'
      if block.projection:
        entries += _layer(block.conv0, f'{prefix}/projection_layers/0/conv2d',
                          ('kernel',))
        entries += _batch_norm(block.bn0, f'{prefix}/projection_layers/1/bn')
      for name, slot in slots.items():
        path = f'{prefix}/conv_relu_dropblock_layers/{slot}'
        if name.startswith('conv'):
          entries += _layer(getattr(block, name), f'{path}/conv2d', ('kernel',))
        else:
          entries += _batch_norm(getattr(block, name), f'{path}/bn')
  return entries


def transformer_entries(transformer, theirs: str) -> list:
  """Our `ImageTransformer` from the non-ResNet part of their `ResNetTransformer`."""
  entries = _layer(transformer.projection, f'{theirs}/stem_projection')
  entries += _norm(transformer.projection_ln, f'{theirs}/stem_ln')
  for i, block in enumerate(transformer.blocks):
    layer = f'{theirs}/transformer_encoder/enc_layers/{i}'
    entries += _norm(block.self_ln, f'{layer}/mha_ln')
    entries += _attention(block.self_attention, f'{layer}/mha')
    entries += _mlp(block, layer)
  entries += _norm(transformer.output_ln, f'{theirs}/output_ln')
  return entries


def encoder_entries(encoder, theirs: str) -> list:
  """Backbone + transformer of our `ImageEncoder` from their `ResNetTransformer`."""
  return (backbone_entries(encoder.backbone, f'{theirs}/resnet')
          + transformer_entries(encoder.transformer, theirs))


def _upsample_block(block, theirs: str) -> list:
  return (_layer(block.lateral_conv, f'{theirs}/conv1')
          + _norm(block.lateral_norm, f'{theirs}/gn1')
          + _layer(block.merge_conv, f'{theirs}/conv2')
          + _norm(block.merge_norm, f'{theirs}/gn2'))


def fusion_entries(fusion, theirs: str) -> list:
  """Our `FeatureFusion` from their `FeaturePyramidMerge`.

  Their `upsample_blocks/i` (i >= 1) merges into the map of feature i - 1 (our
  `merge_blocks[i - 1]`); `upsample_blocks/0` is the final upsampling.
  """
  entries = []
  for i, block in enumerate(fusion.merge_blocks):
    entries += _upsample_block(block, f'{theirs}/upsample_blocks/{i + 1}')
  if fusion.final_block is not None:
    entries += _upsample_block(fusion.final_block, f'{theirs}/upsample_blocks/0')
  return entries


def _res_block(block, theirs: str) -> list:
  entries = (_layer(block.emb_proj, f'{theirs}/emb_proj')
             + _layer(block.conv_0, f'{theirs}/conv_0')
             + _layer(block.conv_1, f'{theirs}/conv_1')
             + _norm(block.norm_0, f'{theirs}/group_norm_0')
             + _norm(block.norm_1, f'{theirs}/group_norm_1'))
  if block.shortcut is not None:
    entries += _layer(block.shortcut, f'{theirs}/shortcut_layer')
  return entries


def decoder_entries(decoder, theirs: str) -> list:
  """Our `TransUNet` from theirs (architectures/transunet.py)."""
  entries = (_layer(decoder.time_embedding.dense_0, f'{theirs}/time_emb/dense_0')
             + _layer(decoder.time_embedding.dense_1, f'{theirs}/time_emb/dense_1')
             + _layer(decoder.conv_in, f'{theirs}/conv_in')
             + _norm(decoder.norm_in, f'{theirs}/group_norm_in'))
  for level in range(decoder.num_levels):
    for j, block in enumerate(decoder.down_blocks[level]):
      entries += _res_block(block, f'{theirs}/dn_units/{level}/resnet_blocks/{j}')
    if decoder.downsamples[level] is not None:
      entries += _layer(decoder.downsamples[level],
                        f'{theirs}/dn_units/{level}/conv_dn')
    for j, block in enumerate(decoder.up_blocks[level]):
      entries += _res_block(block, f'{theirs}/up_units/{level}/resnet_blocks/{j}')
    if decoder.upsamples[level] is not None:
      entries += _layer(decoder.upsamples[level], f'{theirs}/up_units/{level}/conv_up')
  transformer = decoder.transformer
  if transformer is not None:
    prefix = f'{theirs}/transformer'
    entries += (_layer(transformer.conv_in, f'{prefix}/trans_conv_in')
                + _norm(transformer.norm_in, f'{prefix}/trans_conv_in_norm')
                + _layer(transformer.emb_proj, f'{prefix}/emb_proj'))
    for i, block in enumerate(transformer.blocks):
      layer = f'{prefix}/transformer_decoder/dec_layers/{i}'
      entries += _norm(block.self_ln, f'{layer}/self_ln')
      entries += _attention(block.self_attention, f'{layer}/self_mha')
      if block.cross_attention:
        entries += _norm(block.cross_ln, f'{layer}/cross_ln')
        entries += _attention(block.cross_attention_layer, f'{layer}/cross_mha')
      entries += _mlp(block, layer)
    entries += (_norm(transformer.norm_out, f'{prefix}/trans_conv_out_norm')
                + _layer(transformer.conv_out, f'{prefix}/trans_conv_out'))
  entries += (_norm(decoder.norm_out, f'{theirs}/group_norm_out')
              + _layer(decoder.conv_out, f'{theirs}/conv_out'))
  return entries


def pix2seq_d_entries(model, suffix: str = '') -> list:
  """Every variable of our `Pix2SeqD` from their panoptic model.

  Args:
    model: a built `Pix2SeqD` with an encoder.
    suffix: '' for their online weights, '_ema' for their EMA copies.
  """
  if model.encoder is None:
    raise ValueError('the authors\' Pix2Seq-D has an image encoder; ours was '
                     'built without one (conditioning "none").')
  entries = encoder_entries(model.encoder, f'model/encoder{suffix}')
  if model.encoder.fusion is not None:
    entries += fusion_entries(model.encoder.fusion, f'model/encoder_fuse{suffix}')
  return entries + decoder_entries(model.decoder, f'model/denoiser{suffix}')
