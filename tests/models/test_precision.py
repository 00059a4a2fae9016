"""Tests of models/precision.py: the gin dtype policy, mixed bfloat16 and the
inference-only bfloat16 against float32."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from models import ema as ema_lib
from models import pix2seq_d
from models import precision
from models import sampler
from tasks import config
from tasks import optim
from tasks import train_lib
from tasks import trainer as trainer_lib

TINY = 'model/pix2seq_d_tiny.gin'
MIXED = "set_dtype_policy.policy = 'mixed_bfloat16'"
BF16 = "set_dtype_policy.policy = 'bfloat16'"


@pytest.fixture(autouse=True)
def _float32_after():
  yield
  keras.config.set_dtype_policy('float32')


def _build(bindings=()):
  config.import_configurables()
  config.parse_gin([TINY], list(bindings), finalize=False)
  keras.utils.set_random_seed(0)
  return pix2seq_d.build_model()


def _batch():
  """Two images and label maps of a few large segments (learnable in ~60 steps)."""
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(size=(2, 64, 64, 3)).astype(np.float32))
  instance = np.zeros((2, 32, 32), np.int32)
  instance[:, :16] = 3
  instance[:, 16:, :8] = 7
  instance[1, :, 20:] = 1
  label_map = tf.constant(np.stack([(instance * 7 + 1) % 134, instance], -1),
                          tf.int32)
  t = tf.constant([0.2, 0.6])
  noise = tf.random.stateless_normal([2, 32, 32, 16], seed=[0, 3])
  return images, label_map, t, noise


@pytest.fixture(scope='module')
def trained_pair():
  """A float32 tiny model fitted to `_batch` (60 Adam steps, loss 5.5 -> ~0.9)
  and a mixed one holding the same values: random weights give ≈uniform
  group softmaxes whose analog bits all sit at the threshold, a poor test of
  whether the two precisions give the same masks."""
  gin.clear_config()
  model32 = _build()
  images, label_map, _, _ = _batch()
  optimizer = keras.optimizers.Adam(3e-3)

  @tf.function
  def step(seed):
    with tf.GradientTape() as tape:
      loss, _ = model32.compute_loss(images, label_map, seed=seed)
    grads = tape.gradient(loss, model32.trainable_variables)
    optimizer.apply_gradients(zip(grads, model32.trainable_variables))
    return loss

  for i in range(60):
    step(tf.constant([i, 1]))
  gin.clear_config()
  model16 = _build([MIXED])
  for mine, theirs in zip(model16.variables, model32.variables):
    mine.assign(theirs.value)
  gin.clear_config()
  keras.config.set_dtype_policy('float32')
  return model32, model16


def test_unknown_policy_names_the_binding_and_the_choices():
  with pytest.raises(ValueError, match=r"set_dtype_policy.policy='float16'.*"
                     r"'float32', 'mixed_bfloat16', 'bfloat16'"):
    precision.set_dtype_policy('float16')


def test_the_gin_policy_is_applied_by_the_builders_and_reset_without_it():
  model = _build([MIXED])
  assert model.decoder.compute_dtype == 'bfloat16'
  assert model.encoder.backbone.stem_conv.compute_dtype == 'bfloat16'
  # Logits conv pinned to float32, every variable float32 (master weights).
  assert model.decoder.conv_out.compute_dtype == 'float32'
  assert {v.dtype for v in model.variables} <= {'float32', 'int32', 'int64',
                                                'uint32'}
  # The next model without the binding is float32 again (no leak).
  gin.clear_config()
  keras.config.set_dtype_policy('mixed_bfloat16')
  model = _build()
  assert model.decoder.compute_dtype == 'float32'
  assert model.encoder.compute_dtype == 'float32'


def test_mixed_loss_and_gradients_match_float32(trained_pair):
  """Same weights, same noise: loss within 1% and gradients aligned.

  bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9 ≈ 0.2% per
  value), and the rounding of the ~40 matmul/conv layers of the tiny model
  adds up in the logits (1.6-8% relative on random weights). Measured on the
  fitted model: loss 0.8797 (float32) vs 0.8810 (mixed), 0.15% apart; the
  gradients' cosine 0.9994. 1% is ~7x that and still far below what one
  training step changes the loss by at this point (~2%).
  """
  model32, model16 = trained_pair
  images, label_map, t, noise = _batch()
  results = {}
  for name, model in (('f32', model32), ('bf16', model16)):
    with tf.GradientTape() as tape:
      loss, aux = model.compute_loss(images, label_map, t=t, noise=noise)
    grads = tape.gradient(loss, model.trainable_variables)
    assert loss.dtype == tf.float32 and aux['loss_unweighted'].dtype == tf.float32
    assert all(g.dtype == tf.float32 for g in grads)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    results[name] = (float(loss), tf.concat([tf.reshape(g, [-1]) for g in grads], 0))
  loss32, grad32 = results['f32']
  loss16, grad16 = results['bf16']
  assert loss32 < 2.0  # Fitted, not the ≈0-logits start (ln 256 = 5.55).
  assert abs(loss16 - loss32) / loss32 < 0.01, (loss16, loss32)
  cosine = float(tf.reduce_sum(grad32 * grad16) /
                 (tf.norm(grad32) * tf.norm(grad16)))
  assert cosine > 0.99, cosine
  ratio = float(tf.norm(grad16) / tf.norm(grad32))
  assert abs(ratio - 1.0) < 0.05, ratio


def test_the_compute_dtypes_inside_a_mixed_model(trained_pair):
  _, model = trained_pair
  images, _, _, _ = _batch()
  encoded = model.encode(images)
  assert encoded['feature_map'].dtype == tf.bfloat16
  assert encoded['tokens'].dtype == tf.bfloat16
  logits, x0 = model.denoise(tf.zeros([2, 32, 32, 16]), tf.constant([0.5, 0.5]),
                             encoded)
  assert logits.dtype == tf.float32 and x0.dtype == tf.float32


def test_group_norm_reads_its_parameters_in_float32_under_mixed():
  """Output = the float32 layer's output rounded once (gamma/beta not rounded first)."""
  from models import layers as layers_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(3)
  x = tf.cast(tf.constant(rng.normal(size=(2, 4, 4, 8)).astype(np.float32)),
              tf.bfloat16)
  gamma = 1.0 + rng.uniform(-0.3, 0.3, 8).astype(np.float32)
  beta = rng.uniform(-0.3, 0.3, 8).astype(np.float32)
  outputs = {}
  for policy in ('float32', 'mixed_bfloat16'):
    norm = layers_lib.GroupNorm(2, dtype=policy)
    norm.build(x.shape)
    norm.gamma.assign(gamma)
    norm.beta.assign(beta)
    outputs[policy] = norm(tf.cast(x, norm.compute_dtype))
  assert outputs['mixed_bfloat16'].dtype == tf.bfloat16
  np.testing.assert_array_equal(
      outputs['mixed_bfloat16'].numpy(),
      tf.cast(outputs['float32'], tf.bfloat16).numpy())


def test_mixed_sampler_agrees_with_float32_on_most_pixels(trained_pair):
  """The DDIM loop in float32 around bfloat16 decoder passes: the same masks.

  Measured on the fitted model: 99.7% of the label-map entries and 99.96% of
  the final analog bits' signs agree; a pixel whose analog bit ends near 0
  may flip. 98% leaves room for other CPUs' rounding.
  """
  model32, model16 = trained_pair
  images, _, _, _ = _batch()
  outputs = {}
  for name, model in (('f32', model32), ('bf16', model16)):
    outputs[name] = sampler.sample(model, images, mask_size=(32, 32),
                                   num_steps=5, td=1.0, seed=[4, 2])
    assert outputs[name]['x0'].dtype == tf.float32
  same = np.mean(outputs['f32']['label_map'].numpy() ==
                 outputs['bf16']['label_map'].numpy())
  assert same > 0.98, same
  x0_32, x0_16 = outputs['f32']['x0'].numpy(), outputs['bf16']['x0'].numpy()
  assert np.mean(np.sign(x0_32) == np.sign(x0_16)) > 0.98


def test_one_training_step_under_the_default_strategy():
  model = _build([MIXED])
  strategy = tf.distribute.get_strategy()
  optimizer = optim.build_optimizer(total_steps=10)
  optimizer.build(model.trainable_variables)
  ema = pix2seq_d.build_ema(model, decay=0.5)
  images, label_map, _, _ = _batch()
  dataset = tf.data.Dataset.from_tensors(
      ({'images': images}, {'label_map': label_map})).repeat()
  trainer = trainer_lib.Pix2SeqDTrainer(
      model=model, optimizer=optimizer, ema=ema, strategy=strategy,
      train_dataset=strategy.experimental_distribute_dataset(dataset),
      global_batch_size=2, total_steps=10, jit_compile=False)
  before = [v.numpy() for v in model.trainable_variables]
  outputs = trainer.train(tf.constant(2, tf.int32))
  assert np.isfinite(outputs['loss']) and np.isfinite(outputs['grad_norm'])
  assert int(trainer.global_step.numpy()) == 2
  assert all(v.dtype == 'float32' for v in optimizer.variables
             if 'float' in str(v.dtype))
  assert all(v.dtype == 'float32' for v in ema.shadow_variables)
  moved = [np.any(b != v.numpy()) for b, v in zip(before, model.trainable_variables)]
  assert np.mean(moved) > 0.9


def test_bfloat16_reads_a_float32_checkpoint_and_samples_the_same_masks(
    trained_pair, tmp_path):
  """Inference-only 'bfloat16': the float variables stored in bfloat16, filled
  from a float32 checkpoint (weights, and an EMA's averages) by rounding; the
  logits conv still computes in float32; the masks agree with float32's as
  mixed precision's do (test above)."""
  model32, _ = trained_pair
  path = tf.train.Checkpoint(model=model32).write(str(tmp_path / 'ckpt'))
  gin.clear_config()
  model16 = _build([BF16])
  # Stored in bfloat16 but for the logits conv, pinned to float32.
  pinned = {v.path for v in model16.decoder.conv_out.variables}
  assert {v.path: v.dtype for v in model16.variables
          if v.dtype == 'float32'}.keys() == pinned
  assert all(v.dtype == 'bfloat16' for v in model16.trainable_variables
             if v.path not in pinned)
  read = precision.read_checkpoint(tf.train.Checkpoint(model=model16), path)
  assert read == len(model16.variables)
  for mine, theirs in zip(model16.variables, model32.variables):
    np.testing.assert_array_equal(
        mine.numpy(), tf.cast(theirs.value, mine.dtype).numpy())
  images, _, _, _ = _batch()
  outputs = {}
  for name, model in (('f32', model32), ('bf16', model16)):
    outputs[name] = sampler.sample(model, images, mask_size=(32, 32),
                                   num_steps=5, td=1.0, seed=[4, 2])
  assert outputs['bf16']['x0'].dtype == tf.float32
  same = np.mean(outputs['f32']['label_map'].numpy() ==
                 outputs['bf16']['label_map'].numpy())
  assert same > 0.98, same

  # An EMA's averages (what export and evaluation read) land the same way.
  ema = pix2seq_d.build_ema(model32, decay=0.5)
  ema_path = tf.train.Checkpoint(model=model32, ema=ema).write(
      str(tmp_path / 'with_ema'))
  gin.clear_config()
  fresh = _build([BF16])
  ema_lib.restore_averages(fresh, ema_path)
  for mine, shadow in zip(ema_lib.averaged_variables(fresh),
                          ema.shadow_variables):
    np.testing.assert_array_equal(
        mine.numpy(), tf.cast(shadow.value, mine.dtype).numpy())


def test_read_checkpoint_names_the_variables_it_has_no_value_for(tmp_path):
  model = _build()
  path = tf.train.Checkpoint(model=tf.train.Checkpoint(
      decoder=model.decoder)).write(str(tmp_path / 'decoder_only'))
  with pytest.raises(AssertionError, match=r'decoder_only has no value for '
                     r'\d+ variable\(s\): .*'):
    precision.read_checkpoint(tf.train.Checkpoint(model=model), path)


def test_bfloat16_is_refused_for_training(tmp_path):
  with pytest.raises(ValueError, match="policy='bfloat16' is for inference only"):
    precision.check_trainable('bfloat16')
  precision.check_trainable('mixed_bfloat16')
  config.import_configurables()
  config.parse_gin([TINY], [BF16, 'run_experiment.train_steps = 1',
                           'run_experiment.global_batch_size = 2'],
                   finalize=False)
  with pytest.raises(ValueError, match='for inference only'):
    train_lib.run_experiment(str(tmp_path / 'run'), 'train',
                             tf.distribute.get_strategy())
