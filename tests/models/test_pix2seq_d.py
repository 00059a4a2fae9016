"""Tests of models/pix2seq_d.py: counts, Algorithm 1 loss, XLA, modes (mixed precision: test_precision.py)."""

import math

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from models import bits as bits_lib
from models import decoder as decoder_lib
from models import diffusion
from models import ema as ema_lib
from models import encoder as encoder_lib
from models import losses
from models import pix2seq_d
from models import summary
from tasks import config

TINY = 'model/pix2seq_d_tiny.gin'
# An even smaller variant where XLA compile time matters.
SMALLER = ['build_mask_decoder.channel_multipliers = (1, 2)',
           'build_mask_decoder.blocks_per_level = (1, 1)',
           'build_mask_decoder.transformer_layers = 1',
           'build_image_encoder.num_layers = 1']


def _build(bindings=(), gin_file=TINY):
  # Fixed initial weights: tests that compare two forward passes see the same model on every run.
  keras.utils.set_random_seed(0)
  config.parse_gin([gin_file], bindings, finalize=False)
  return pix2seq_d.build_model()


def _batch(batch=2, image=64, mask=32, seed=0):
  """Images and a label map with segments of very different sizes."""
  rng = np.random.RandomState(seed)
  images = rng.uniform(size=(batch, image, image, 3)).astype(np.float32)
  instance = np.zeros((batch, mask, mask), np.int32)
  instance[:, : mask // 2] = 3
  instance[:, mask // 2:, : mask // 4] = 7
  instance[:, -2:, -2:] = 200
  instance[1] = rng.randint(0, 5, size=(mask, mask))
  semantic = (instance * 7 + 1) % 134
  label_map = np.stack([semantic, instance], -1)
  return tf.constant(images), tf.constant(label_map)


def _perturb_near_zero(model, seed=0):
  """Gives ≈0 kernels and zero BN gammas ordinary values, so every path matters."""
  rng = np.random.RandomState(seed)
  for v in model.trainable_variables:
    value = v.numpy()
    if np.abs(value).max() < 1e-3:
      v.assign(rng.normal(0, 0.1, value.shape).astype(np.float32))


def test_paper_configuration_parameter_counts():
  config.parse_gin(['model/pix2seq_d.gin'], finalize=False)
  model = pix2seq_d.build_model()
  counts = pix2seq_d.parameter_counts(model)
  # Paper Table 1: 94.5M; REFERENCE §4 gives the released model's split.
  assert abs(counts['total_params'] - 94.5e6) <= 0.02 * 94.5e6
  for name, reference in summary.REFERENCE_COUNTS.items():
    assert abs(counts[name] - reference) <= 0.03 * reference, name
  assert counts['total_params'] == 94_492_480
  assert sum(counts[k] for k in ('backbone', 'encoder_transformer', 'fusion',
                                 'decoder_convs', 'decoder_transformer')) == (
                                     counts['total_params'])
  # Decoder input: concat(x_t [16], fused [256]) = 272 channels.
  assert model.decoder.conv_in.kernel.shape == (1, 1, 272, 128)
  assert model.encoder.mask_stride == 2


def test_initial_loss_is_ln_256():
  model = _build()
  images, label_map = _batch()
  loss, aux = model.compute_loss(images, label_map, seed=[0, 1])
  assert abs(float(loss) - math.log(256)) < 1e-3
  assert abs(float(aux['loss_unweighted']) - math.log(256)) < 1e-3


def _independent_loss(model, images, label_map, t, noise, loss_type,
                      self_condition=False):
  """Algorithm 1 recomputed from the parts with numpy (weights per §3.2).

  With `self_condition`, the decoder first predicts from `x_t` and zeros, then
  from `x_t` and that prediction (Bit Diffusion).
  """
  label = label_map.numpy()
  shifts = np.arange(8)
  bits = np.concatenate([(label[..., c:c + 1] >> shifts) & 1 for c in range(2)], -1)
  x0 = (bits * 2.0 - 1.0) * 0.1
  gamma = np.cos(((t + 0.0002) / 1.00025) * np.pi / 2) ** 2
  g = gamma[:, None, None, None]
  x_t = np.sqrt(g) * x0 + np.sqrt(1 - g) * noise
  encoded = model.encode(images, training=True)
  x_t, gamma = tf.constant(x_t, tf.float32), tf.constant(gamma, tf.float32)
  x0_prev = None
  if self_condition:
    _, x0_prev = model.denoise(x_t, gamma, encoded, training=True)
  logits, x0_pred = model.denoise(x_t, gamma, encoded, training=True,
                                  x0_prev=x0_prev)
  logits, x0_pred = logits.numpy().astype(np.float64), x0_pred.numpy()
  if loss_type == 'xent':
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, label[..., None], -1)[..., 0]
    per_pixel = -picked.mean(-1)
  else:
    per_pixel = ((x0_pred - x0) ** 2).mean(-1)
  per_image = []
  for b in range(label.shape[0]):
    ids = label[b, ..., 1]
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse.reshape(ids.shape)] ** 0.2
    w = ids.size * w / w.sum()
    per_image.append((w * per_pixel[b]).mean())
  return np.mean(per_image)


@pytest.mark.parametrize('loss_type', ['xent', 'l2'])
def test_loss_is_algorithm_1(loss_type):
  model = _build([f"build_model.loss_type = '{loss_type}'"])
  _perturb_near_zero(model)
  images, label_map = _batch()
  rng = np.random.RandomState(3)
  t = np.array([0.3, 0.8], np.float32)
  noise = rng.randn(2, 32, 32, 16).astype(np.float32)
  # BatchNorm in inference mode for both, so the two forward passes agree.
  model.encoder.trainable = False
  loss, _ = model.compute_loss(images, label_map, t=tf.constant(t),
                               noise=tf.constant(noise), training=True)
  expected = _independent_loss(model, images, label_map, t, noise, loss_type)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


@pytest.mark.parametrize('rate', [0.0, 1.0])
def test_self_conditioning_loss(rate):
  """Rate 1: the second pass sees the first's x0 (no gradient through it); rate 0: zeros."""
  model = _build(['build_model.self_condition = True',
                  f'build_model.self_condition_rate = {rate}',
                  "build_model.noisy_input_scaling = 'analytic'"])
  # x_t, its estimate and the fused map: 16 + 16 + 32 input channels.
  assert model.decoder.conv_in.kernel.shape[2] == 64
  _perturb_near_zero(model)
  model.encoder.trainable = False
  images, label_map = _batch()
  t = np.array([0.3, 0.8], np.float32)
  noise = np.random.RandomState(3).randn(2, 32, 32, 16).astype(np.float32)
  with tf.GradientTape() as tape:
    loss, _ = model.compute_loss(images, label_map, t=tf.constant(t),
                                 noise=tf.constant(noise), training=True)
  expected = _independent_loss(model, images, label_map, t, noise, 'xent',
                               self_condition=rate == 1.0)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  # The estimate is an input, not a path for gradients: the gradient equals
  # that of the second pass alone with the first pass's output held fixed.
  variables = model.decoder.trainable_variables
  grads = tape.gradient(loss, variables)
  encoded = model.encode(images, training=True)
  gamma = diffusion.cosine_gamma(tf.constant(t))
  x_t = diffusion.add_noise(
      bits_lib.label_map_to_bits(label_map, (8, 8), 0.1), tf.constant(t),
      tf.constant(noise))
  x0_prev = model.denoise(x_t, gamma, encoded)[1] if rate else None
  with tf.GradientTape() as tape:
    logits, _ = model.denoise(x_t, gamma, encoded, x0_prev=x0_prev)
    weights = losses.mask_loss_weights(label_map[..., 1], 0.2, num_ids=256)
    manual = tf.reduce_mean(
        weights * losses.bit_group_cross_entropy(logits, label_map))
  for got, want, v in zip(grads, tape.gradient(manual, variables), variables):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-6,
                               err_msg=v.path)


def test_self_conditioning_input():
  model = _build(['build_model.self_condition = True'])
  _perturb_near_zero(model)
  images, _ = _batch()
  encoded = model.encode(images)
  x_t = tf.random.stateless_normal([2, 32, 32, 16], [3, 4])
  gamma = tf.constant([0.5, 0.5])
  zeros, _ = model.denoise(x_t, gamma, encoded)
  np.testing.assert_array_equal(
      zeros.numpy(),
      model.denoise(x_t, gamma, encoded, x0_prev=tf.zeros_like(x_t))[0].numpy())
  estimate = tf.sign(tf.random.stateless_normal([2, 32, 32, 16], [5, 6])) * 0.1
  seen, _ = model.denoise(x_t, gamma, encoded, x0_prev=estimate)
  assert float(tf.reduce_max(tf.abs(seen - zeros))) > 1e-2
  gin.clear_config()
  plain = _build()
  with pytest.raises(ValueError, match='self_condition=False'):
    plain.denoise(x_t, gamma, plain.encode(images), x0_prev=estimate)
  with pytest.raises(ValueError, match='self_condition_rate'):
    _build(['build_model.self_condition_rate = 1.5'])


def test_forward_and_gradient_under_xla_match_eager():
  model = _build(SMALLER)
  _perturb_near_zero(model)
  images, label_map = _batch()
  t = tf.constant([0.2, 0.7])
  noise = tf.random.stateless_normal([2, 32, 32, 16], seed=[1, 2])
  gamma = diffusion.cosine_gamma(t)

  def step(images, label_map, t, noise):
    encoded = model.encode(images, training=False)
    x_t = diffusion.add_noise(bits_lib.label_map_to_bits(label_map), t, noise)
    logits, x0_pred = model.denoise(x_t, gamma, encoded, training=False)
    with tf.GradientTape() as tape:
      loss, _ = model.compute_loss(images, label_map, t=t, noise=noise,
                                   training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    return logits, x0_pred, loss, grads

  # Training-mode BatchNorm updates its statistics: both runs start from the same.
  state = [v.numpy() for v in model.variables]
  eager = step(images, label_map, t, noise)
  for v, value in zip(model.variables, state):
    v.assign(value)
  compiled = tf.function(step, jit_compile=True)(images, label_map, t, noise)
  np.testing.assert_allclose(compiled[0].numpy(), eager[0].numpy(), rtol=1e-3,
                             atol=1e-3)
  np.testing.assert_allclose(compiled[1].numpy(), eager[1].numpy(), atol=1e-5)
  np.testing.assert_allclose(float(compiled[2]), float(eager[2]), rtol=1e-4)
  for g_xla, g_eager, v in zip(compiled[3], eager[3], model.trainable_variables):
    scale = np.abs(g_eager.numpy()).max() + 1e-12
    np.testing.assert_allclose(g_xla.numpy() / scale, g_eager.numpy() / scale,
                               atol=2e-3, err_msg=v.path)


def test_every_gradient_finite_and_nonzero():
  model = _build()
  images, label_map = _batch()
  t = tf.constant([0.4, 0.6])
  noise = tf.random.stateless_normal([2, 32, 32, 16], seed=[3, 4])

  def grads():
    with tf.GradientTape() as tape:
      loss, _ = model.compute_loss(images, label_map, t=t, noise=noise)
    return tape.gradient(loss, model.trainable_variables)

  # At step 0 the zero-initialised BN gammas block the gradient of the last
  # conv of each block (by design); one SGD step opens every path.
  for g, v in zip(grads(), model.trainable_variables):
    assert g is not None and np.all(np.isfinite(g.numpy())), v.path
    v.assign_sub(0.5 * g / (tf.norm(g) + 1e-12))
  for g, v in zip(grads(), model.trainable_variables):
    values = g.numpy()
    assert np.all(np.isfinite(values)), v.path
    assert np.any(values != 0), v.path


@pytest.mark.parametrize('conditioning', ['cat', 'attn', 'cat+attn', 'none'])
def test_conditioning_modes(conditioning):
  bindings = [f"build_mask_decoder.conditioning = '{conditioning}'"]
  if conditioning == 'none':
    bindings.append('build_model.encoder = None')
  if conditioning == 'attn':
    bindings.append('build_image_encoder.fusion_dim = 0')
  model = _build(bindings)
  images, label_map = _batch()
  encoded = model.encode(images)
  if conditioning == 'none':
    assert encoded is None
    images = None
  elif conditioning == 'attn':
    assert encoded['feature_map'] is None
    assert encoded['tokens'].shape == (2, 16, 128)
  else:
    assert encoded['feature_map'].shape == (2, 32, 32, 32)
    assert encoded['tokens'].shape == (2, 16, 128)
  logits, x0_pred = model.denoise(tf.zeros([2, 32, 32, 16]), tf.constant(0.5), encoded)
  assert logits.shape == (2, 32, 32, 2, 256)
  assert x0_pred.shape == (2, 32, 32, 16)
  with tf.GradientTape() as tape:
    loss, _ = model.compute_loss(images, label_map, seed=[1, 1])
  assert loss.shape == () and abs(float(loss) - math.log(256)) < 1e-3
  # Every variable is used (a None gradient would break the all-reduce).
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in grads)


def test_video_past_frames():
  model = _build(['build_model.num_past_frames = 2', 'build_model.past_drop_rate = 0.0'])
  _perturb_near_zero(model)
  images, label_map = _batch()
  rng = np.random.RandomState(7)
  past = tf.constant(rng.randint(0, 9, size=(2, 2, 32, 32, 2)).astype(np.int32))
  past_bits = model.past_bits_from_label_maps(past)
  assert past_bits.shape == (2, 32, 32, 32)
  # Frame-major: frame 1's 16 bits follow frame 0's.
  np.testing.assert_array_equal(
      past_bits[..., 16:].numpy(), bits_lib.label_map_to_bits(past[:, 1]).numpy())
  assert model.decoder.conv_in.kernel.shape[2] == 16 + 32 + 32
  logits, _ = model.denoise(tf.zeros([2, 32, 32, 16]), tf.constant([0.5, 0.5]),
                            model.encode(images), past_bits=past_bits)
  assert logits.shape == (2, 32, 32, 2, 256)

  model.encoder.trainable = False  # Inference BN: only the past maps differ.
  other = tf.zeros_like(past)
  # The past maps move the logits (mean |change| ~0.05 over random inits; the
  # mean loss moves by as little as 1e-4, too little to test against).
  encoded = model.encode(images)
  logits_a, _ = model.denoise(tf.zeros([2, 32, 32, 16]), tf.constant([0.5, 0.5]), encoded,
                              past_bits=model.past_bits_from_label_maps(past))
  logits_b, _ = model.denoise(tf.zeros([2, 32, 32, 16]), tf.constant([0.5, 0.5]), encoded,
                              past_bits=model.past_bits_from_label_maps(other))
  assert float(tf.reduce_mean(tf.abs(logits_a - logits_b))) > 0.01
  kwargs = dict(t=tf.constant([0.5, 0.5]), noise=tf.zeros([2, 32, 32, 16]),
                training=True, seed=[0, 0])
  model.past_drop_rate = 1.0  # Every example's past masks are zeroed.
  loss_a, _ = model.compute_loss(images, label_map, past, **kwargs)
  loss_b, _ = model.compute_loss(images, label_map, other, **kwargs)
  assert float(loss_a) == pytest.approx(float(loss_b), rel=1e-6)
  with pytest.raises(ValueError, match='past_label_maps'):
    model.compute_loss(images, label_map, seed=[0, 0])


def test_noise_draws_share_one_encoder_pass():
  """`t [B * D]`: the encoder output and masks are repeated D times, example-major."""
  model = _build()
  _perturb_near_zero(model)
  images, label_map = _batch()
  rng = np.random.RandomState(3)
  t = tf.constant([0.1, 0.6, 0.3, 0.9], tf.float32)
  noise = tf.constant(rng.normal(size=(4, 32, 32, 16)).astype(np.float32))
  shared, _ = model.compute_loss(images, label_map, t=t, noise=noise,
                                 training=False)
  repeated, _ = model.compute_loss(tf.repeat(images, 2, axis=0),
                                   tf.repeat(label_map, 2, axis=0), t=t,
                                   noise=noise, training=False)
  assert float(shared) == pytest.approx(float(repeated), rel=1e-5)
  # Not the same as pairing the draws with the other image.
  swapped, _ = model.compute_loss(images[::-1], label_map[::-1], t=t,
                                  noise=noise, training=False)
  assert abs(float(swapped) - float(shared)) > 1e-4
  with pytest.raises(ValueError, match='multiple of the batch'):
    model.compute_loss(images, label_map, t=t[:3], noise=noise[:3])


@pytest.mark.parametrize('t', [0.02, 0.5, 0.98])
def test_noisy_input_scaling(t):
  """'analytic' gives x_t unit variance at every t; 'std' measures it per example."""
  rng = np.random.RandomState(0)
  bits = np.where(rng.uniform(size=(2, 32, 32, 8)) < 0.5, -0.1, 0.1)
  x0 = tf.constant(bits, tf.float32)
  gamma = diffusion.cosine_gamma(tf.fill([2], t))
  x_t = diffusion.add_noise(x0, tf.fill([2], t),
                            tf.random.stateless_normal(x0.shape, [1, 2]))
  assert pix2seq_d.scale_noisy_input(x_t, gamma, 0.1, 'none') is x_t
  analytic = pix2seq_d.scale_noisy_input(x_t, gamma, 0.1, 'analytic')
  assert float(tf.math.reduce_std(analytic)) == pytest.approx(1.0, abs=0.03)
  measured = pix2seq_d.scale_noisy_input(x_t, gamma, 0.1, 'std')
  np.testing.assert_allclose(tf.math.reduce_std(measured, axis=[1, 2, 3]),
                             [1.0, 1.0], rtol=1e-5)
  with pytest.raises(ValueError, match="'analytic'"):
    pix2seq_d.Pix2SeqD(
        encoder=None, decoder=decoder_lib.build_mask_decoder(
            base_dim=16, conditioning='none', transformer_layers=0),
        noisy_input_scaling='unit')


def test_analytic_scaling_changes_the_decoder_input_only():
  model = _build(['build_model.noisy_input_scaling = "analytic"'])
  assert model.noisy_input_scaling == 'analytic'
  _perturb_near_zero(model)
  images, _ = _batch()
  encoded = model.encode(images)
  x_t = tf.random.stateless_normal([2, 32, 32, 16], [3, 4]) * 0.1
  gamma = tf.constant([0.99, 0.99])
  ours, _ = model.denoise(x_t, gamma, encoded)
  model.noisy_input_scaling = 'none'
  unscaled, _ = model.denoise(x_t, gamma, encoded)
  reference, _ = model.denoise(
      pix2seq_d.scale_noisy_input(x_t, gamma, 0.1, 'analytic'), gamma, encoded)
  np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-4)
  assert float(tf.reduce_max(tf.abs(ours - unscaled))) > 1e-2


def test_scaling_puts_past_masks_at_unit_scale():
  model = _build(['build_model.num_past_frames = 1',
                  'build_model.noisy_input_scaling = "std"'])
  _perturb_near_zero(model)
  images, label_map = _batch()
  encoded = model.encode(images)
  past_bits = model.past_bits_from_label_maps(label_map[:, tf.newaxis])
  x_t = tf.random.stateless_normal([2, 32, 32, 16], [3, 4])
  gamma = tf.constant([0.5, 0.5])
  ours, _ = model.denoise(x_t, gamma, encoded, past_bits=past_bits)
  model.noisy_input_scaling = 'none'
  reference, _ = model.denoise(
      pix2seq_d.scale_noisy_input(x_t, gamma, 0.1, 'std'), gamma, encoded,
      past_bits=past_bits / 0.1)
  np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-4)


def test_seeded_draws_are_deterministic():
  model = _build()
  images, label_map = _batch()
  first, aux = model.compute_loss(images, label_map, seed=[4, 2])
  again, aux_again = model.compute_loss(images, label_map, seed=[4, 2])
  _, aux_other = model.compute_loss(images, label_map, seed=[4, 3])
  assert float(first) == float(again)
  assert float(aux['t_mean']) == float(aux_again['t_mean'])
  assert float(aux['t_mean']) != float(aux_other['t_mean'])


def test_inconsistent_parts_are_rejected():
  decoder = decoder_lib.build_mask_decoder(base_dim=16, transformer_dim=32,
                                           transformer_layers=1)
  with pytest.raises(ValueError, match='needs an image encoder'):
    pix2seq_d.Pix2SeqD(encoder=None, decoder=decoder)
  with pytest.raises(ValueError, match='n_bits'):
    pix2seq_d.Pix2SeqD(encoder=None, decoder=decoder, n_bits=(7, 7))
  with pytest.raises(ValueError, match=r"\['xent', 'l2'\]"):
    pix2seq_d.Pix2SeqD(encoder=None, decoder=decoder, loss_type='ce')
  uncond = decoder_lib.build_mask_decoder(base_dim=16, conditioning='none',
                                          transformer_layers=0)
  with pytest.raises(ValueError, match='pass encoder=None'):
    pix2seq_d.Pix2SeqD(encoder=object(), decoder=uncond)
  attn = decoder_lib.build_mask_decoder(base_dim=16, conditioning='attn',
                                        transformer_dim=32, transformer_layers=1)
  with pytest.raises(ValueError, match='fusion_dim=0'):
    pix2seq_d.Pix2SeqD(encoder=encoder_lib.build_image_encoder(), decoder=attn)
  with pytest.raises(ValueError, match='fusion_dim > 0'):
    pix2seq_d.Pix2SeqD(encoder=encoder_lib.build_image_encoder(fusion_dim=0),
                       decoder=decoder)


def test_mask_size_must_match_the_encoder():
  model = _build()
  images, _ = _batch()
  with pytest.raises(ValueError, match='mask size must be 2'):
    model.denoise(tf.zeros([2, 16, 16, 16]), tf.constant(0.5), model.encode(images))


@pytest.mark.parametrize('gin_file', ['model/pix2seq_d.gin', 'model/pix2seq_d_video.gin',
                                      'model/pix2seq_d_tiny.gin',
                                      'model/pix2seq_d_uncond.gin'])
def test_gin_files_parse(gin_file):
  config.parse_gin([gin_file], finalize=False)
  expected = {
      'model/pix2seq_d.gin': ((256, 256), (128, 128), 0, 'cat+attn'),
      'model/pix2seq_d_video.gin': ((256, 256), (128, 128), 2, 'cat+attn'),
      'model/pix2seq_d_tiny.gin': ((64, 64), (32, 32), 0, 'cat+attn'),
      'model/pix2seq_d_uncond.gin': ((256, 256), (128, 128), 0, 'none'),
  }[gin_file]
  assert tuple(gin.query_parameter('%IMAGE_SIZE')) == expected[0]
  assert tuple(gin.query_parameter('%MASK_SIZE')) == expected[1]
  assert gin.query_parameter('build_mask_decoder.conditioning') == expected[3]
  try:
    num_past_frames = gin.query_parameter('build_model.num_past_frames')
  except ValueError:
    num_past_frames = 0
  assert num_past_frames == expected[2]


def test_build_ema():
  model = _build()
  config.parse_gin([], ['build_ema.decay = 0.99'], finalize=False)
  ema = pix2seq_d.build_ema(model)
  assert isinstance(ema, ema_lib.EMA) and ema.decay == 0.99
  assert len(ema.shadow_variables) == len(ema_lib.averaged_variables(model))
  assert pix2seq_d.build_ema(model, decay=0.0) is None


def test_checkpoint_round_trip_restores_every_variable(tmp_path):
  """tf.train.Checkpoint (the trainer's format) must see layers kept in lists."""
  model = _build()
  _perturb_near_zero(model)
  ema = pix2seq_d.build_ema(model)
  path = tf.train.Checkpoint(model=model, ema=ema).write(str(tmp_path / 'ckpt'))
  fresh = _build()
  fresh_ema = pix2seq_d.build_ema(fresh)
  status = tf.train.Checkpoint(model=fresh, ema=fresh_ema).read(path)
  status.assert_existing_objects_matched()
  for saved, restored in zip(model.variables + ema.shadow_variables,
                             fresh.variables + fresh_ema.shadow_variables):
    np.testing.assert_array_equal(saved.numpy(), restored.numpy(), err_msg=saved.path)
  # Parts restore on their own (train_lib's init_checkpoint 'encoder'/'decoder').
  other = _build()
  status = tf.train.Checkpoint(model=tf.train.Checkpoint(decoder=other.decoder)).read(path)
  status.expect_partial().assert_existing_objects_matched()
  for saved, restored in zip(model.decoder.variables, other.decoder.variables):
    np.testing.assert_array_equal(saved.numpy(), restored.numpy(), err_msg=saved.path)


def test_semantic_loss_adds_a_per_pixel_class_loss_on_the_encoder():
  """`semantic_loss_weight`: + w * xent(1x1 conv(feature map), class channel)."""
  images, label_map = _batch()
  rng = np.random.RandomState(4)
  t = tf.constant([0.1, 0.6, 0.3, 0.9], tf.float32)
  noise = tf.constant(rng.normal(size=(4, 32, 32, 16)).astype(np.float32))
  plain = _build()
  model = _build(['build_model.semantic_loss_weight = 0.5'])
  for source, target in zip(plain.weights, [w for w in model.weights
                                            if 'semantic_head' not in w.path]):
    target.assign(source)
  assert model.semantic_head is not None and plain.semantic_head is None
  base, _ = plain.compute_loss(images, label_map, t=t, noise=noise,
                               training=False)
  loss, aux = model.compute_loss(images, label_map, t=t, noise=noise,
                                 training=False)
  # Independently: the head on the un-repeated encoder output.
  feature_map = model.encode(images)['feature_map']
  logits = model.semantic_head(feature_map).numpy().astype(np.float64)
  logits -= logits.max(-1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  classes = label_map.numpy()[..., 0]
  expected = -np.mean(np.take_along_axis(log_p, classes[..., None], -1))
  assert float(aux['loss_semantic']) == pytest.approx(expected, rel=1e-5)
  assert float(loss) == pytest.approx(float(base) + 0.5 * expected, rel=1e-5)
  # The head trains the encoder only (and itself), never the decoder.
  with tf.GradientTape() as tape:
    semantic = model.compute_loss(images, label_map, t=t, noise=noise)[1][
        'loss_semantic']
  grads = tape.gradient(semantic, model.trainable_variables)
  touched = {v.path.split('/')[1] for v, g in
             zip(model.trainable_variables, grads) if g is not None}
  assert touched == {'image_encoder', 'semantic_head'}, touched
  assert 'semantic_logits' in model(model.dummy_inputs())


def test_semantic_loss_needs_the_fused_map():
  with pytest.raises(ValueError, match='fusion_dim > 0'):
    _build(['build_model.semantic_loss_weight = 1.0',
            'build_image_encoder.fusion_dim = 0',
            "build_mask_decoder.conditioning = 'attn'"])
  with pytest.raises(ValueError, match='must be >= 0'):
    _build(['build_model.semantic_loss_weight = -1.0'])
