"""Our gin bindings for a model of the authors' code, read from their `config.json`.

The authors' runs write their whole `ml_collections.ConfigDict` next to the
checkpoints (`config.json`; the fixtures under `shared/fixtures/authors/` keep it
as `{"config": {...}}`). `bindings_from_config` turns it into the bindings that
build our model with the same structure and numbers (issue 14):

- encoder: ResNet-`resnet_depth` cut after res4 (`resnet_variant='c4'`) of width
  `64 * resnet_width_multiplier`, `num_encoder_layers` x `dim_att` transformer
  (`num_heads`, `dim_mlp`), fusion of width `enc_fuse_dim`; their raw `[0, 1]`
  inputs (mean 0, std 1), TF 'SAME' stem max-pool and global BatchNorm;
- decoder: TransUNet of `decoder.dim` x `ch_multipliers`, `n_res_blocks`,
  `transformer_blocks` x `transformer_dim` (`transformer_dim / per_head_dim`
  heads, MLP 4x), the time embedding of width `dim` (MLP 4x) of
  `gamma * time_scaling`, their group count of the transformer's input norm;
- bits (`n_bits_label` split into `outp_softmax_groups`), `b_scale`,
  `mask_weight_p`, `normalize_noisy_input`, EMA decay, and the sampler
  (`iterations`, `td`, `min_pixels`).

What our code cannot build (a ViT encoder, other ResNet variants, attention in
the U-Net levels, strided transformer input, ...) raises naming the key.
"""

import json
import os
from typing import List, Optional

import tensorflow as tf

CONFIG_JSON = 'config.json'
_RESNET_BLOCKS = {50: (3, 4, 6), 101: (3, 4, 23), 152: (3, 8, 36)}


def find_config_json(checkpoint: str) -> Optional[str]:
  """The authors' `config.json` in the checkpoint's folder or the folder above, or None.

  Args:
    checkpoint: a checkpoint prefix or a folder (local or gs://).
  """
  folder = checkpoint if tf.io.gfile.isdir(checkpoint) else os.path.dirname(checkpoint)
  for candidate in (folder, os.path.dirname(folder.rstrip('/'))):
    path = os.path.join(candidate, CONFIG_JSON)
    if candidate and tf.io.gfile.exists(path):
      return path
  return None


def read_config(path: str) -> dict:
  """The authors' ConfigDict as a dict (unwraps `{"config": ...}`)."""
  with tf.io.gfile.GFile(path, 'r') as f:
    data = json.load(f)
  if 'config' in data and 'model' in data['config']:
    data = data['config']
  if 'model' not in data:
    raise ValueError(f'{path}: not an authors\' config.json (no "model" key).')
  return data


def _get(config: dict, key: str, path: str):
  node = config
  for part in key.split('.'):
    if not isinstance(node, dict) or part not in node:
      raise ValueError(f'{path}: the authors\' config has no {key!r}.')
    node = node[part]
  return node


def _require(config: dict, key: str, allowed, path: str):
  value = _get(config, key, path)
  if value not in allowed:
    raise ValueError(f'{path}: {key} = {value!r}; our model builds only '
                     f'{list(allowed)}.')
  return value


def _ints(text) -> tuple:
  if isinstance(text, (list, tuple)):
    return tuple(int(v) for v in text)
  return tuple(int(v) for v in str(text).split(','))


def encoder_bindings(config: dict, path: str = CONFIG_JSON) -> List[str]:
  """Bindings of `build_image_encoder` for the authors' ResNet + transformer encoder."""
  _require(config, 'model.resnet_variant', ('c4',), path)
  _require(config, 'model.resnet_sk_ratio', (0, 0.0), path)
  _require(config, 'model.use_cls_token', (False,), path)
  _require(config, 'model.pos_encoding', ('sin_cos',), path)
  depth = _require(config, 'model.resnet_depth', tuple(_RESNET_BLOCKS), path)
  width = 64 * float(_get(config, 'model.resnet_width_multiplier', path))
  if width != int(width) or width < 1:
    raise ValueError(f'{path}: 64 * resnet_width_multiplier = {width} is not a '
                     'positive integer width.')
  return [
      f'build_image_encoder.blocks_per_stage = {_RESNET_BLOCKS[depth]}',
      f'build_image_encoder.base_width = {int(width)}',
      "build_image_encoder.block_type = 'bottleneck'",
      'build_image_encoder.stride_in_1x1 = False',
      f'build_image_encoder.hidden_dim = {int(_get(config, "model.dim_att", path))}',
      'build_image_encoder.num_layers = '
      f'{int(_get(config, "model.num_encoder_layers", path))}',
      f'build_image_encoder.num_heads = {int(_get(config, "model.num_heads", path))}',
      f'build_image_encoder.mlp_dim = {int(_get(config, "model.dim_mlp", path))}',
      'build_image_encoder.dropout_rate = '
      f'{float(_get(config, "model.drop_units", path))}',
      'build_image_encoder.drop_path_rate = '
      f'{float(_get(config, "model.drop_path", path))}',
      # Their model sees raw [0, 1] pixels, pools with TF 'SAME' and syncs BN.
      'build_image_encoder.pixel_mean = (0.0, 0.0, 0.0)',
      'build_image_encoder.pixel_std = (1.0, 1.0, 1.0)',
      "build_image_encoder.stem_pool_padding = 'same'",
      'build_image_encoder.sync_batch_norm = True',
  ]


def pix2seq_d_bindings(config: dict, path: str = CONFIG_JSON) -> List[str]:
  """Bindings of the whole Pix2Seq-D model, EMA and sampler (see module docstring)."""
  _require(config, 'model.name', ('panoptic_diffusion',), path)
  _require(config, 'model.enc_fuse', ('pyramid_merge',), path)
  _require(config, 'model.enc_fuse_upsample', ('nearest',), path)
  _require(config, 'model.pred_type', ('x_softmax_xent',), path)
  _require(config, 'model.self_cond', ('none',), path)
  _require(config, 'model.train_schedule', ('cosine',), path)
  _require(config, 'model.infer_schedule', ('cosine',), path)
  _require(config, 'model.x0_clip', ('auto',), path)
  conditional = _require(config, 'model.conditional',
                         ('cat', 'attn', 'cat+attn'), path)
  _require(config, 'decoder.mhsa_resolutions', ('0',), path)
  _require(config, 'decoder.n_mlp_blocks', (0,), path)
  _require(config, 'decoder.in_strides', (1,), path)
  _require(config, 'decoder.transformer_strides', (1,), path)
  _require(config, 'decoder.u_pos_encoding', ('sin_cos',), path)
  image_size = _ints(_get(config, 'model.image_size', path))
  mask_size = _ints(_get(config, 'model.msize', path))
  total_bits = int(_get(config, 'task.n_bits_label', path))
  groups = int(_get(config, 'decoder.outp_softmax_groups', path))
  if groups < 1 or total_bits % groups:
    raise ValueError(f'{path}: n_bits_label {total_bits} does not split into '
                     f'outp_softmax_groups = {groups}.')
  n_bits = tuple([total_bits // groups] * groups)
  dim = int(_get(config, 'decoder.dim', path))
  transformer_dim = int(_get(config, 'decoder.transformer_dim', path))
  kernel_sizes = _ints(_get(config, 'decoder.kernel_sizes', path))
  if len(set(kernel_sizes)) != 1:
    raise ValueError(f'{path}: decoder.kernel_sizes {kernel_sizes}: our decoder '
                     'uses one kernel size for every level.')
  time_scale = config['model'].get('time_scaling')
  if time_scale is None:
    # The released panoptic configs do not set it (NOTES.md); their
    # diffusion base config's value.
    time_scale = 1000.0
  fusion_dim = (int(_get(config, 'model.enc_fuse_dim', path))
                if 'cat' in conditional else 0)
  normalize = bool(_get(config, 'model.normalize_noisy_input', path))
  ema_decay = float(config.get('optimization', {}).get('ema_decay', 0.0))
  return [
      f'IMAGE_SIZE = {image_size}',
      f'MASK_SIZE = {mask_size}',
      f'N_BITS = {n_bits}',
      f'B_SCALE = {float(_get(config, "model.b_scale", path))}',
      f'LOSS_P = {float(_get(config, "model.mask_weight_p", path))}',
      'build_image_encoder.image_size = %IMAGE_SIZE',
      'build_image_encoder.mask_size = %MASK_SIZE',
      *encoder_bindings(config, path),
      f'build_image_encoder.fusion_dim = {fusion_dim}',
      'build_mask_decoder.n_bits = %N_BITS',
      f'build_mask_decoder.base_dim = {dim}',
      'build_mask_decoder.channel_multipliers = '
      f'{_ints(_get(config, "decoder.ch_multipliers", path))}',
      'build_mask_decoder.blocks_per_level = '
      f'{_ints(_get(config, "decoder.n_res_blocks", path))}',
      f'build_mask_decoder.kernel_size = {kernel_sizes[0]}',
      'build_mask_decoder.in_kernel_size = '
      f'{int(_get(config, "decoder.in_kernel_size", path))}',
      'build_mask_decoder.out_kernel_size = '
      f'{int(_get(config, "decoder.out_kernel_size", path))}',
      f"build_mask_decoder.conditioning = '{conditional}'",
      f'build_mask_decoder.transformer_dim = {transformer_dim}',
      'build_mask_decoder.transformer_layers = '
      f'{int(_get(config, "decoder.transformer_blocks", path))}',
      'build_mask_decoder.transformer_heads = '
      f'{transformer_dim // int(_get(config, "decoder.per_head_dim", path))}',
      f'build_mask_decoder.transformer_mlp_dim = {4 * transformer_dim}',
      'build_mask_decoder.transformer_norm_in_groups = '
      f'{max(min(transformer_dim // 4, 32), 1)}',
      f'build_mask_decoder.time_embedding_dim = {dim}',
      f'build_mask_decoder.time_mlp_dim = {4 * dim}',
      f'build_mask_decoder.time_scale = {float(time_scale)}',
      f'build_mask_decoder.dropout_rate = {float(_get(config, "decoder.udrop", path))}',
      'build_model.encoder = @build_image_encoder()',
      'build_model.decoder = @build_mask_decoder()',
      'build_model.n_bits = %N_BITS',
      'build_model.b_scale = %B_SCALE',
      'build_model.loss_p = %LOSS_P',
      "build_model.loss_type = 'xent'",
      'build_model.noisy_input_scaling = '
      f"'{'std' if normalize else 'none'}'",
      f'build_ema.decay = {ema_decay}',
      f'build_evaluator.num_steps = {int(_get(config, "model.iterations", path))}',
      f'build_evaluator.td = {float(_get(config, "model.td", path))}',
      f'build_evaluator.min_pixels = {int(_get(config, "task.min_pixels", path))}',
  ]
