"""The Pix2Seq-D model: image encoder + TransUNet mask decoder + the training loss.

`Pix2SeqD` receives its built parts (STYLE.md): an `ImageEncoder`
(models/encoder.py, or None for the unconditional mask prior) and a `TransUNet`
(models/decoder.py). It implements

- `encode(images)`: the encoder, run once per image (paper §3.1, §3.3);
- `denoise(x_t, gamma, encoded, past_bits)`: one decoder pass, returning the
  group logits and the analog-bit prediction `x0_pred` read out of them (§3.2);
- `compute_loss(images, label_map, ...)`: Algorithm 1 with the softmax cross
  entropy per bit group weighted by `mask_loss_weights` (§3.2, Tables 4 and 5),
  or the ℓ2 loss on `x0_pred`; for video (§3.4) the past frames' masks, as
  analog bits, are concatenated to the decoder input and dropped at random per
  example in training;
- optionally self-conditioning (Bit Diffusion, Chen et al. 2022, ref. [12] of
  the paper; REFERENCE §2: in the authors' code, off in their final configs):
  the decoder also sees its previous `x0` estimate — zeros, or in training with
  probability `self_condition_rate` a first, gradient-free decoder pass on the
  same `x_t`; in sampling the previous step's prediction.

Gin configures the factories `build_model`, `build_ema` (and `build_image_encoder`,
`build_mask_decoder`), never the Keras classes.
"""

import inspect
from typing import Callable, Optional, Sequence

import gin
import keras
import tensorflow as tf

from models import bits as bits_lib
from models import decoder as decoder_lib
from models import diffusion
from models import ema as ema_lib
# Imported for gin: registers `build_image_encoder`.
from models import encoder as encoder_lib  # pylint: disable=unused-import
from models import layers as layers_lib
from models import losses
from models import precision

LOSS_TYPES = ('xent', 'l2')

try:  # So gin files can say `build_model.gamma_fn = @cosine_gamma`.
  gin.external_configurable(diffusion.cosine_gamma, module='models.diffusion')
except ValueError:  # Already registered by another module.
  pass


NOISY_INPUT_SCALINGS = ('none', 'analytic', 'std')


def scale_noisy_input(x_t, gamma, b_scale: float, scaling: str = 'none'):
  """`x_t` as the decoder sees it (`Pix2SeqD(noisy_input_scaling=...)`).

  Args:
    x_t: float `[B, h, w, bits]` noisy analog bits.
    gamma: float `[B]`, `gamma(t)` of each example.
    b_scale: the analog-bit scale `b`.
    scaling: 'none', 'analytic' (divide by `sqrt(gamma * b**2 + 1 - gamma)`,
      the standard deviation of `x_t` for bits in `{-b, b}`) or 'std' (divide
      by each example's standard deviation).
  """
  if scaling == 'none':
    return x_t
  if scaling == 'analytic':
    gamma = tf.reshape(tf.cast(gamma, x_t.dtype), [-1, 1, 1, 1])
    return x_t * tf.math.rsqrt(gamma * b_scale**2 + 1.0 - gamma)
  if scaling == 'std':
    return x_t / tf.math.reduce_std(x_t, axis=[1, 2, 3], keepdims=True)
  raise ValueError(f'noisy input scaling {scaling!r} is not one of '
                   f'{list(NOISY_INPUT_SCALINGS)}.')


class Pix2SeqD(keras.Model):
  """Encoder + mask decoder + diffusion loss (module docstring).

  Attributes:
    encoder: the `ImageEncoder`, or None (conditioning 'none').
    decoder: the `TransUNet`.
    n_bits, b_scale, loss_type, loss_p, num_past_frames, past_drop_rate,
    noisy_input_scaling, gamma_fn: as passed to the constructor.
  """

  def __init__(self, encoder: Optional[keras.layers.Layer],
               decoder: keras.layers.Layer, b_scale: float = 0.1,
               n_bits: Sequence[int] = (8, 8), loss_type: str = 'xent',
               loss_p: float = 0.2, num_past_frames: int = 0,
               past_drop_rate: float = 0.0,
               noisy_input_scaling: str = 'none',
               self_condition: bool = False,
               self_condition_rate: float = 0.5,
               semantic_loss_weight: float = 0.0,
               gamma_fn: Callable = diffusion.cosine_gamma, **kwargs):
    """Builds the model from its parts.

    Args:
      encoder: the image encoder, or None for the unconditional decoder.
      decoder: the mask decoder; its `n_bits` must equal `n_bits`.
      b_scale: the analog-bit scale `b` (Table 3: 0.1).
      n_bits: bits per label channel (class, instance).
      loss_type: 'xent' (softmax cross entropy per bit group) or 'l2'.
      loss_p: the exponent of the per-pixel weights `1 / c**p` (Table 5: 0.2).
      num_past_frames: past masks the decoder sees (video, §3.4; 0 for images).
      past_drop_rate: probability, per example in training, that the past
        masks are zeroed.
      noisy_input_scaling: how `x_t` is scaled before the decoder (one of
        NOISY_INPUT_SCALINGS). 'none' (the paper's configurations); 'analytic'
        divides by its expected standard deviation `sqrt(gamma * b**2 + 1 -
        gamma)`, so the decoder sees unit-scale bits at every t (with b = 0.1
        the clean signal is otherwise 10x smaller than the noise the decoder
        learns to suppress at large t); 'std' divides by each example's
        measured standard deviation (the `normalize_noisy_input` option of the
        authors' code). With either, the video model's past masks are divided
        by `b` (bits in {-1, 1}).
      self_condition: feed the decoder its previous `x0` estimate (module
        docstring); divided by `b` like the past masks when
        `noisy_input_scaling` is not 'none'.
      self_condition_rate: in `compute_loss`, the probability (per batch, as
        in Bit Diffusion) that the estimate comes from a first decoder pass
        rather than zeros.
      semantic_loss_weight: weight of an auxiliary training loss on the
        encoder (not in the paper; 0 = off, the paper): a 1x1 conv
        (`semantic_head`) reads each pixel's class from the fused feature map
        the decoder is conditioned on, with softmax cross entropy against the
        mask's class channel (void included). It gives the encoder a direct
        recognition signal from the first step; the paper gets one by
        starting from a pre-trained encoder (§4), which a from-scratch small
        run has not. Training only: sampling, evaluation and export never
        call the head.
      gamma_fn: the noise schedule `gamma(t)`.
      **kwargs: for `keras.Model` (e.g. `name`).
    """
    kwargs.setdefault('name', 'pix2seq_d')
    super().__init__(**kwargs)
    if loss_type not in LOSS_TYPES:
      raise ValueError(f'loss_type={loss_type!r} is not one of {list(LOSS_TYPES)}.')
    if tuple(decoder.n_bits) != tuple(n_bits):
      raise ValueError(f'the decoder predicts n_bits={tuple(decoder.n_bits)} but '
                       f'the model uses n_bits={tuple(n_bits)}.')
    needs_encoder = decoder.use_cat or decoder.use_attn
    if needs_encoder and encoder is None:
      raise ValueError(f'decoder conditioning {decoder.conditioning!r} needs an '
                       'image encoder; got encoder=None.')
    if not needs_encoder and encoder is not None:
      raise ValueError("decoder conditioning 'none' ignores the image; pass "
                       'encoder=None.')
    if encoder is not None and decoder.use_cat != (encoder.fusion is not None):
      raise ValueError(
          f'decoder conditioning {decoder.conditioning!r} '
          + ('concatenates the fused map: build the encoder with fusion_dim > 0.'
             if decoder.use_cat else
             'does not read the fused map: build the encoder with fusion_dim=0 '
             '(the fusion would get no gradient).'))
    if noisy_input_scaling not in NOISY_INPUT_SCALINGS:
      raise ValueError(f'noisy_input_scaling={noisy_input_scaling!r} is not one '
                       f'of {list(NOISY_INPUT_SCALINGS)}.')
    if not 0.0 <= past_drop_rate <= 1.0:
      raise ValueError(f'past_drop_rate={past_drop_rate} must be in [0, 1].')
    if not 0.0 <= self_condition_rate <= 1.0:
      raise ValueError(f'self_condition_rate={self_condition_rate} must be in '
                       '[0, 1].')
    if semantic_loss_weight < 0.0:
      raise ValueError(f'semantic_loss_weight={semantic_loss_weight} must be '
                       '>= 0.')
    if semantic_loss_weight > 0.0 and (encoder is None or encoder.fusion is None):
      raise ValueError(f'semantic_loss_weight={semantic_loss_weight} reads the '
                       "encoder's fused feature map: build the encoder with "
                       'fusion_dim > 0.')
    self.encoder = encoder
    self.decoder = decoder
    self.b_scale = float(b_scale)
    self.n_bits = tuple(int(n) for n in n_bits)
    self.loss_type = loss_type
    self.loss_p = float(loss_p)
    self.num_past_frames = int(num_past_frames)
    self.past_drop_rate = float(past_drop_rate)
    self.noisy_input_scaling = noisy_input_scaling
    self.self_condition = bool(self_condition)
    self.self_condition_rate = float(self_condition_rate)
    self.semantic_loss_weight = float(semantic_loss_weight)
    self.semantic_head = None
    if self.semantic_loss_weight > 0.0:
      self.semantic_head = keras.layers.Conv2D(
          2**self.n_bits[0], 1, name='semantic_head')
    self.gamma_fn = gamma_fn

  @property
  def mask_stride(self) -> int:
    """Image size / mask size (1 without an encoder)."""
    return self.encoder.mask_stride if self.encoder is not None else 1

  def encode(self, images, training=False) -> Optional[dict]:
    """Runs the image encoder once per image (§3.1).

    Args:
      images: float32 `[B, H, W, 3]` in `[0, 1]` (ignored without an encoder).
      training: BatchNorm/dropout mode.

    Returns:
      `{'feature_map': [B, H/s, W/s, C] (None for conditioning 'attn'),
      'tokens': [B, N, D]}` in the compute dtype, or None when the model has
      no encoder.
    """
    if self.encoder is None:
      return None
    return self.encoder(images, training=training)

  def past_bits_from_label_maps(self, past_label_maps) -> tf.Tensor:
    """Past masks int `[B, P, h, w, 2]` to analog bits float32 `[B, h, w, P * bits]`.

    Frame-major channels: all bits of past frame 0, then of frame 1, ...
    """
    if past_label_maps.shape[1] != self.num_past_frames:
      raise ValueError(f'past_label_maps has {past_label_maps.shape[1]} frames, '
                       f'the model takes num_past_frames={self.num_past_frames}.')
    past = bits_lib.label_map_to_bits(past_label_maps, self.n_bits, self.b_scale)
    past = tf.transpose(past, [0, 2, 3, 1, 4])
    shape = past.shape
    return tf.reshape(past, [tf.shape(past)[0], shape[1], shape[2],
                             shape[3] * shape[4]])

  def _logits(self, x_t, gamma, encoded, past_bits, training, x0_prev=None):
    if (self.num_past_frames > 0) != (past_bits is not None):
      raise ValueError(f'num_past_frames={self.num_past_frames} but past_bits '
                       f'{"is missing" if past_bits is None else "was given"}.')
    if x0_prev is not None and not self.self_condition:
      raise ValueError('x0_prev was given but the model was built with '
                       'self_condition=False.')
    # With a scaled x_t, the clean inputs (past masks, the previous estimate)
    # are put at unit scale too (bits in {-1, 1}).
    clean_scale = 1.0 if self.noisy_input_scaling == 'none' else 1.0 / self.b_scale
    self_cond = None
    if self.self_condition:
      self_cond = (tf.zeros_like(x_t) if x0_prev is None
                   else tf.cast(x0_prev, x_t.dtype) * clean_scale)
    gamma = tf.broadcast_to(tf.reshape(tf.cast(gamma, tf.float32), [-1]),
                            [tf.shape(x_t)[0]])
    x_t = scale_noisy_input(x_t, gamma, self.b_scale, self.noisy_input_scaling)
    if past_bits is not None:
      past_bits = past_bits * clean_scale
    feature_map = tokens = None
    if encoded is not None:
      feature_map, tokens = encoded['feature_map'], encoded['tokens']
      if feature_map is not None and feature_map.shape[1:3] != x_t.shape[1:3]:
        raise ValueError(f'the encoder feature map is {feature_map.shape[1:3]} '
                         f'but the mask is {x_t.shape[1:3]}: image size / mask '
                         f'size must be {self.mask_stride}.')
    return self.decoder(x_t, gamma, feature_map=feature_map, tokens=tokens,
                        past_bits=past_bits, self_cond=self_cond,
                        training=training)

  def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
              x0_prev=None):
    """One decoder pass (Algorithm 2's `mask_decoder`).

    Args:
      x_t: float `[B, h, w, sum(n_bits)]` noisy analog bits.
      gamma: float scalar or `[B]`, `gamma(t)` of `x_t`.
      encoded: what `encode` returned (None without an encoder).
      past_bits: float `[B, h, w, P * sum(n_bits)]` (`past_bits_from_label_maps`
        or the previous predictions' analog bits) when `num_past_frames > 0`.
      training: dropout / BatchNorm mode.
      x0_prev: float `[B, h, w, sum(n_bits)]`, the previous `x0` estimate in
        `[-b, b]`, for a self-conditioned model (zeros when None); must be
        None otherwise.

    Returns:
      `(logits float32 [B, h, w, groups, 2**bits], x0_pred float32
      [B, h, w, sum(n_bits)])`, `x0_pred` in `[-b, b]`.
    """
    logits = self._logits(x_t, gamma, encoded, past_bits, training, x0_prev)
    return logits, losses.bits_from_logits(logits, self.b_scale)

  def compute_loss(self, images, label_map, past_label_maps=None, t=None,
                   noise=None, training=True, seed=None):
    """Algorithm 1: noise the mask's analog bits, predict, weighted loss.

    Args:
      images: float32 `[B, H, W, 3]` in `[0, 1]` (may be None without encoder).
      label_map: int `[B, h, w, 2]` (class, instance id).
      past_label_maps: int `[B, P, h, w, 2]` when `num_past_frames = P > 0`.
      t: float `[B * D]` times, example-major: `D >= 1` noise draws per image
        share one encoder pass (the encoder output is repeated `D` times, so
        the decoder sees `B * D` noisy masks for the cost of `B` encodings).
        Drawn from U(0, 1) (`D = 1`) when None.
      noise: float `[B * D, h, w, sum(n_bits)]` `eps`, in the order of `t`;
        drawn from N(0, 1) when None.
      training: dropout / BatchNorm mode and random dropping of past frames.
      seed: optional int `[2]` seed; random draws are then stateless (the
        same seed gives the same draws, eagerly or under XLA). Without it the
        draws use TF's stateful RNG.

    Returns:
      `(loss, aux)`: float32 scalar — per-pixel loss weighted by
      `mask_loss_weights(instance ids, loss_p)`, averaged over pixels and the
      batch, plus `semantic_loss_weight` times the semantic loss when that is
      on — and a dict of float32 scalars: `loss_unweighted` (plain pixel
      mean of the same per-pixel loss), `t_mean` and, when on,
      `loss_semantic`.
    """
    label_map = tf.cast(label_map, tf.int32)
    class_map = label_map[..., 0]  # Before the repeat over noise draws.
    draws = 1
    if t is not None:
      draws = t.shape[0] // label_map.shape[0]
      if draws < 1 or t.shape[0] != draws * label_map.shape[0]:
        raise ValueError(f't has {t.shape[0]} entries; expected a multiple of '
                         f'the batch ({label_map.shape[0]}): batch x draws.')
    if draws > 1:
      label_map = tf.repeat(label_map, draws, axis=0)
      if past_label_maps is not None:
        past_label_maps = tf.repeat(past_label_maps, draws, axis=0)
    x0 = bits_lib.label_map_to_bits(label_map, self.n_bits, self.b_scale)
    batch = tf.shape(x0)[0]
    seeds = (tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
             if seed is not None else [None] * 4)
    if t is None:
      t = _uniform([batch], seeds[0])
    if noise is None:
      noise = _normal(tf.shape(x0), seeds[1])
    t = tf.cast(t, tf.float32)
    x_t = diffusion.add_noise(x0, t, tf.cast(noise, tf.float32), self.gamma_fn)
    past_bits = None
    if self.num_past_frames > 0:
      if past_label_maps is None:
        raise ValueError(f'num_past_frames={self.num_past_frames} needs '
                         'past_label_maps [B, P, h, w, 2].')
      past_bits = self.past_bits_from_label_maps(past_label_maps)
      if training and self.past_drop_rate > 0.0:
        keep = _uniform([batch], seeds[2]) >= self.past_drop_rate
        past_bits = past_bits * tf.cast(keep, past_bits.dtype)[:, None, None, None]
    encoded = self.encode(images, training=training)
    semantic_loss = None
    if self.semantic_head is not None:
      semantic_logits = self.semantic_head(encoded['feature_map'])
      semantic_loss = tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(
              labels=class_map, logits=tf.cast(semantic_logits, tf.float32)))
    if draws > 1 and encoded is not None:
      encoded = {k: None if v is None else tf.repeat(v, draws, axis=0)
                 for k, v in encoded.items()}
    gamma = self.gamma_fn(t)
    x0_prev = None
    if self.self_condition:
      # An input, not a path for gradients (and none through the cond).
      x0_prev = tf.stop_gradient(tf.cond(
          _uniform([], seeds[3]) < self.self_condition_rate,
          lambda: losses.bits_from_logits(self._logits(
              x_t, gamma, encoded, past_bits, training), self.b_scale),
          lambda: tf.zeros_like(x_t)))
    logits = self._logits(x_t, gamma, encoded, past_bits, training, x0_prev)
    if self.loss_type == 'xent':
      per_pixel = losses.bit_group_cross_entropy(logits, label_map)
    else:
      per_pixel = losses.l2_loss(losses.bits_from_logits(logits, self.b_scale), x0)
    weights = losses.mask_loss_weights(label_map[..., 1], self.loss_p,
                                       num_ids=2**self.n_bits[-1])
    loss = tf.reduce_mean(weights * per_pixel)
    aux = {'loss_unweighted': tf.reduce_mean(per_pixel), 't_mean': tf.reduce_mean(t)}
    if semantic_loss is not None:
      loss += self.semantic_loss_weight * semantic_loss
      aux['loss_semantic'] = semantic_loss
    return loss, aux

  def build(self, input_shape):
    del input_shape  # The parts create their variables on the first call.

  def call(self, inputs, training=False):
    """`{'images'?, 'x_t', 'gamma', 'past_bits'?}` -> `{'logits', 'x0_pred'}` (encode + denoise)."""
    encoded = self.encode(inputs.get('images'), training=training)
    logits, x0_pred = self.denoise(inputs['x_t'], inputs['gamma'], encoded,
                                   inputs.get('past_bits'), training=training)
    outputs = {'logits': logits, 'x0_pred': x0_pred}
    if self.semantic_head is not None:
      outputs['semantic_logits'] = self.semantic_head(encoded['feature_map'])
    return outputs

  def dummy_inputs(self, batch_size: int = 1, mask_size=None) -> dict:
    """Small inputs for `call` that create every variable (see `build_model`).

    Args:
      batch_size: examples.
      mask_size: `(h, w)`; default the smallest cheap size the parts accept.
    """
    if mask_size is None:
      side = max(32, 2 * 2**(self.decoder.num_levels - 1))
      mask_size = (side, side)
    h, w = mask_size
    bits = sum(self.n_bits)
    inputs = {
        'x_t': tf.zeros([batch_size, h, w, bits]),
        'gamma': tf.fill([batch_size], 0.5),
    }
    if self.encoder is not None:
      inputs['images'] = tf.zeros(
          [batch_size, h * self.mask_stride, w * self.mask_stride, 3])
    if self.num_past_frames:
      inputs['past_bits'] = tf.zeros([batch_size, h, w, self.num_past_frames * bits])
    return inputs


def _uniform(shape, seed):
  if seed is None:
    return tf.random.uniform(shape)
  return tf.random.stateless_uniform(shape, seed=seed)


def _normal(shape, seed):
  if seed is None:
    return tf.random.normal(shape)
  return tf.random.stateless_normal(shape, seed=seed)


@gin.configurable
def build_model(encoder: Optional[keras.layers.Layer] = gin.REQUIRED,
                decoder: keras.layers.Layer = gin.REQUIRED,
                b_scale: float = 0.1,
                n_bits: Sequence[int] = (8, 8),
                loss_type: str = 'xent',
                loss_p: float = 0.2,
                num_past_frames: int = 0,
                past_drop_rate: float = 0.0,
                noisy_input_scaling: str = 'none',
                self_condition: bool = False,
                self_condition_rate: float = 0.5,
                semantic_loss_weight: float = 0.0,
                gamma_fn: Callable = diffusion.cosine_gamma) -> Pix2SeqD:
  """Builds `Pix2SeqD` from its parts and creates every variable (gin factory).

  In gin: `build_model.encoder = @build_image_encoder()` (or `None`),
  `build_model.decoder = @build_mask_decoder()`. The variables are created by
  one call on small zero inputs (`Pix2SeqD.dummy_inputs`), which is cheap even
  for the paper-size model. Call it inside `strategy.scope()` to distribute.

  Returns:
    A built `Pix2SeqD` (arguments as in `Pix2SeqD.__init__`).
  """
  # The parts set the gin dtype policy before creating their layers
  # (models/precision.py); set here too for a decoder built another way.
  precision.set_dtype_policy()
  model = Pix2SeqD(encoder=encoder, decoder=decoder, b_scale=b_scale,
                   n_bits=n_bits, loss_type=loss_type, loss_p=loss_p,
                   num_past_frames=num_past_frames, past_drop_rate=past_drop_rate,
                   noisy_input_scaling=noisy_input_scaling,
                   self_condition=self_condition,
                   self_condition_rate=self_condition_rate,
                   semantic_loss_weight=semantic_loss_weight, gamma_fn=gamma_fn)
  model(model.dummy_inputs(), training=False)
  return model


@gin.configurable
def build_ema(model: keras.Model, decay: float = 0.999) -> Optional[ema_lib.EMA]:
  """The model's EMA shadow (REFERENCE §5: decay 0.999, DAVIS 0.99); None if decay is 0.

  Build the model first; call inside `strategy.scope()` to distribute.
  """
  if not decay:
    return None
  return ema_lib.EMA(model, decay=decay)


def ema_configured() -> bool:
  """Whether the gin config's `build_ema` builds an EMA (its decay is not 0)."""
  try:
    decay = gin.query_parameter('build_ema.decay')
  except ValueError:  # Unbound: the default.
    decay = inspect.signature(build_ema).parameters['decay'].default
  return bool(decay)


def restore_for_inference(model: Pix2SeqD, checkpoint_path: str) -> bool:
  """Loads a training checkpoint's inference weights into a built model.

  The EMA averages when the gin config has an EMA (read straight into the
  model's variables, `ema.restore_averages`: no shadow copy, no optimizer
  state), else the raw weights. Each tensor is cast to its variable's dtype
  (`precision.read_checkpoint`), so a model built under the inference-only
  'bfloat16' policy reads float32 training checkpoints.

  Returns:
    Whether the EMA averages were loaded.
  """
  if ema_configured():
    ema_lib.restore_averages(model, checkpoint_path)
    return True
  precision.read_checkpoint(tf.train.Checkpoint(model=model), checkpoint_path)
  return False


def parameter_counts(model: Pix2SeqD) -> dict:
  """Trainable parameters per component of a built model (REFERENCE §4 split).

  Returns:
    `{'total_params', 'backbone', 'encoder_transformer' (projection + LN +
    layers + output LN), 'fusion', 'decoder_convs' (everything of the decoder
    but its bottleneck transformer: convs, norms, time embedding, output conv),
    'decoder_time_embedding' (part of decoder_convs), 'decoder_transformer',
    'non_trainable_params' (BatchNorm statistics)}`.
  """
  counts = {'total_params': layers_lib.count_params(model)}
  encoder = model.encoder
  counts['backbone'] = layers_lib.count_params(encoder.backbone) if encoder else 0
  counts['encoder_transformer'] = (layers_lib.count_params(encoder.transformer)
                                   if encoder else 0)
  counts['fusion'] = (layers_lib.count_params(encoder.fusion)
                      if encoder and encoder.fusion is not None else 0)
  counts.update(decoder_lib.decoder_part_counts(model.decoder))
  counts['non_trainable_params'] = layers_lib.count_params(
      [v for v in model.non_trainable_variables if 'float' in str(v.dtype)])
  return counts
