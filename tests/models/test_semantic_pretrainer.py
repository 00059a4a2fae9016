"""Tests of models/semantic_pretrainer.py: the loss, learning, and the hand-over to Pix2Seq-D."""

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from models import encoder as encoder_lib
from models import pix2seq_d
from models import semantic_pretrainer
from tasks import config
from tasks import train_lib

TINY = 'model/pix2seq_d_tiny.gin'
PRETRAIN = ['N_BITS = (4, 4)']


def _build_pretrainer():
  config.parse_gin([TINY, 'experiments/encoder_pretrain.gin'], PRETRAIN,
                   finalize=False)
  return semantic_pretrainer.build_semantic_pretrainer()  # As the gin file binds it.


def _batch(batch=2, seed=0):
  """Images whose left half is bright and right half dark, classes to match."""
  rng = np.random.RandomState(seed)
  images = rng.uniform(0.0, 0.3, size=(batch, 64, 64, 3)).astype(np.float32)
  images[:, :, :32] += 0.6
  classes = np.zeros((batch, 32, 32), np.int32)
  classes[:, :, :16] = 5
  classes[:, :4, :4] = 3
  ids = rng.randint(0, 4, size=(batch, 32, 32))
  return tf.constant(images), tf.constant(np.stack([classes, ids], -1))


def test_loss_is_the_mean_pixel_cross_entropy_of_the_class_channel():
  model = _build_pretrainer()
  assert model.head.filters == 2**4  # Every value of 4 class bits.
  images, label_map = _batch()
  loss, aux = model.compute_loss(images, label_map, t=tf.ones([2]),
                                 noise=tf.zeros([2, 32, 32, 8]), training=False)
  logits = model(images, training=False).numpy().astype(np.float64)
  classes = label_map.numpy()[..., 0]
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.take_along_axis(log_softmax, classes[..., None], -1).mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  accuracy = (logits.argmax(-1) == classes).mean()
  np.testing.assert_allclose(float(aux['pixel_accuracy']), accuracy, rtol=1e-6)
  # Instance ids do not enter the loss.
  other_ids = tf.concat([label_map[..., :1], label_map[..., 1:] + 1], -1)
  other_loss, _ = model.compute_loss(images, other_ids, training=False)
  np.testing.assert_allclose(float(other_loss), float(loss), rtol=1e-6)


def test_training_steps_teach_the_classes():
  keras.utils.set_random_seed(0)
  model = _build_pretrainer()
  images, label_map = _batch()
  optimizer = keras.optimizers.Adam(3e-3)
  first, _ = model.compute_loss(images, label_map, training=True)
  for _ in range(30):
    with tf.GradientTape() as tape:
      loss, aux = model.compute_loss(images, label_map, training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
  assert float(loss) < 0.3 * float(first)
  assert float(aux['pixel_accuracy']) > 0.9


def test_the_checkpoint_starts_a_pix2seq_d_encoder(tmp_path):
  pretrainer = _build_pretrainer()
  for v in pretrainer.encoder.trainable_variables:
    v.assign(v + 0.5)  # Away from any fresh initialisation.
  path = tf.train.Checkpoint(model=pretrainer).write(str(tmp_path / 'ckpt'))
  gin.clear_config()
  config.parse_gin([TINY], finalize=False)
  model = pix2seq_d.build_model()
  decoder_before = [v.numpy() for v in model.decoder.variables]
  train_lib.restore_init_checkpoint(path, 'encoder', model, ema=None)
  source = {v.path: v.numpy() for v in pretrainer.encoder.variables}
  target = {v.path: v.numpy() for v in model.encoder.variables}
  assert len(source) == len(target) > 50
  for (_, a), (_, b) in zip(sorted(source.items()), sorted(target.items())):
    np.testing.assert_array_equal(a, b)
  for before, v in zip(decoder_before, model.decoder.variables):
    np.testing.assert_array_equal(before, v.numpy())


def test_an_encoder_without_fusion_is_refused():
  config.parse_gin([TINY], ['build_image_encoder.fusion_dim = 0'],
                   finalize=False)
  with pytest.raises(ValueError, match='fusion'):
    semantic_pretrainer.build_semantic_pretrainer(
        encoder=encoder_lib.build_image_encoder(), n_bits=(4, 4),
        image_size=(64, 64))


def test_run_experiment_refuses_to_evaluate_it(tmp_path):
  config.parse_gin([TINY, 'experiments/encoder_pretrain.gin'], PRETRAIN + [
      'run_experiment.train_steps = 1', 'run_experiment.global_batch_size = 2'],
                   finalize=False)
  with pytest.raises(ValueError, match="model_builder.*mode='train'"):
    train_lib.run_experiment(str(tmp_path / 'run'), 'eval',
                             tf.distribute.get_strategy())
