"""The image encoder trained alone, on each pixel's class: a pre-trained encoder at small scale.

The paper does not train the image encoder from scratch: its ResNet comes
pre-trained (paper §4; REFERENCE §5, the staged schedule), which is what
teaches it to recognise objects before the mask decoder learns to draw them.
Where no pre-trained weights fit (the quickstart's tiny encoder and synthetic
shapes), this is the stand-in: the same `ImageEncoder` with a 1x1 conv head
reading every pixel's class from the fused feature map, trained with softmax
cross entropy against the class channel of the panoptic label map (semantic
segmentation, instance ids ignored). Without the mask decoder a step costs a
fraction of a Pix2Seq-D step (quickstart: ~21 vs ~2.5 steps/s on 2 CPU cores),
so minutes of it teach the encoder what many minutes of diffusion training
would (README "What limits the quickstart").

The model plugs into the ordinary training loop (`run_experiment.model_builder
= @build_semantic_pretrainer`, tasks/trainer.py): `compute_loss` has
`Pix2SeqD.compute_loss`'s signature and ignores the diffusion draws. Its
checkpoint holds the encoder at `model/encoder`, where the diffusion run's
`init_checkpoint_parts = 'encoder'` takes it from.
"""

from typing import Optional, Sequence

import gin
import keras
import tensorflow as tf

from models import encoder as encoder_lib  # pylint: disable=unused-import
from models import precision


class SemanticPretrainer(keras.Model):
  """`ImageEncoder` + per-pixel class head (module docstring).

  Attributes:
    encoder: the `ImageEncoder` (with its fusion: the head reads `feature_map`).
    head: 1x1 conv, `num_classes` logits per mask pixel.
    n_bits: the label encoding of the diffusion model this encoder is for; the
      head has `2**n_bits[0]` classes (every value of the class channel).
  """

  def __init__(self, encoder: keras.layers.Layer, n_bits: Sequence[int],
               **kwargs):
    super().__init__(**kwargs)
    if encoder is None or getattr(encoder, 'fusion', None) is None:
      raise ValueError('build_semantic_pretrainer.encoder must be an '
                       'ImageEncoder with its fusion (the head reads its '
                       'feature map at the mask size).')
    self.encoder = encoder
    self.n_bits = tuple(int(n) for n in n_bits)
    self.head = keras.layers.Conv2D(2**self.n_bits[0], 1, name='semantic_head')

  def call(self, images, training=False):
    """`images [B, H, W, 3]` in `[0, 1]` -> float32 logits `[B, h, w, 2**n_bits[0]]`."""
    feature_map = self.encoder(images, training=training)['feature_map']
    return tf.cast(self.head(feature_map), tf.float32)

  def compute_loss(self, images, label_map, past_label_maps=None, t=None,
                   noise=None, training=False, seed=None):
    """Mean per-pixel softmax cross entropy against the class channel.

    Args:
      images: float32 `[B, H, W, 3]` in `[0, 1]`.
      label_map: int `[B, h, w, 2]` (class, instance id) at the mask size.
      past_label_maps, t, noise, seed: the trainer's diffusion inputs
        (`Pix2SeqD.compute_loss`), unused here.
      training: BatchNorm / dropout mode.

    Returns:
      `(loss, aux)`: the float32 scalar loss and `{'pixel_accuracy'}`.
    """
    del past_label_maps, t, noise, seed
    classes = tf.cast(label_map[..., 0], tf.int32)
    logits = self(images, training=training)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=classes, logits=logits))
    correct = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), classes)
    return loss, {'pixel_accuracy': tf.reduce_mean(tf.cast(correct, tf.float32))}


@gin.configurable
def build_semantic_pretrainer(encoder: Optional[keras.layers.Layer] = gin.REQUIRED,
                              n_bits: Sequence[int] = (8, 8),
                              image_size: Sequence[int] = (256, 256)
                              ) -> SemanticPretrainer:
  """Builds `SemanticPretrainer` and creates its variables (gin factory).

  In gin: `build_semantic_pretrainer.encoder = @build_image_encoder()` and
  `build_semantic_pretrainer.n_bits = %N_BITS`, `.image_size = %IMAGE_SIZE`
  (gin/experiments/encoder_pretrain.gin; the image size only
  sizes the call that creates the variables). Call inside `strategy.scope()`.
  """
  precision.set_dtype_policy()
  model = SemanticPretrainer(encoder, n_bits)
  model(tf.zeros([1, *image_size, 3]), training=False)
  return model
