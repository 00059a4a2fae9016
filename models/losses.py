"""Losses of Pix2Seq-D (paper §3.2, Tables 4 and 5; REFERENCE §3).

The 16 analog bits of a pixel form groups (class, instance) of `n_bits` bits. The
decoder outputs, per group, logits over the `2**n_bits` base bit patterns; the
loss is the softmax cross entropy against the group's integer, and the analog-bit
prediction is the softmax-weighted average of the base patterns. The ℓ2 loss on
`x0` is kept as the alternative (Table 4: 43.9 vs 41.9 PQ).
"""

import tensorflow as tf

from models import bits as bits_lib


def base_bit_patterns(n_bits: int, b_scale: float) -> tf.Tensor:
  """The `2**n_bits` base patterns as analog bits: float32 `[2**n_bits, n_bits]` in `{-b, b}`."""
  patterns = bits_lib.int2bit(tf.range(2**n_bits), n_bits)
  return (tf.cast(patterns, tf.float32) * 2.0 - 1.0) * b_scale


def bits_from_logits(logits: tf.Tensor, b_scale: float) -> tf.Tensor:
  """Analog bits read out of group logits (§3.2): the softmax-weighted pattern average.

  Args:
    logits: float `[..., groups, 2**n_bits]`.
    b_scale: the analog-bit scale `b`.

  Returns:
    float32 `[..., groups * n_bits]`, group 0's bits first.
  """
  num_classes = logits.shape[-1]
  n_bits = num_classes.bit_length() - 1
  if 2**n_bits != num_classes:
    raise ValueError(f'logits last dimension {num_classes} is not a power of 2.')
  probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
  analog = tf.einsum('...k,kn->...n', probs, base_bit_patterns(n_bits, b_scale))
  groups = logits.shape[-2]
  return tf.reshape(analog, tf.concat(
      [tf.shape(analog)[:-2], [groups * n_bits]], axis=0))


def bit_group_cross_entropy(logits: tf.Tensor, label_map: tf.Tensor) -> tf.Tensor:
  """Softmax cross entropy per pixel, averaged over the bit groups.

  Args:
    logits: float `[B, h, w, groups, 2**n_bits]`.
    label_map: int `[B, h, w, groups]` (class, instance), values `< 2**n_bits`.

  Returns:
    float32 `[B, h, w]`; equals `ln(2**n_bits)` for all-zero logits.
  """
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(label_map, tf.int32), logits=tf.cast(logits, tf.float32))
  return tf.reduce_mean(ce, axis=-1)


def l2_loss(x0_pred: tf.Tensor, x0: tf.Tensor) -> tf.Tensor:
  """Eq. 2 per pixel: squared error averaged over the bit channels, float32 `[B, h, w]`."""
  diff = tf.cast(x0_pred, tf.float32) - tf.cast(x0, tf.float32)
  return tf.reduce_mean(tf.square(diff), axis=-1)


def mask_loss_weights(instance_ids: tf.Tensor, p: float,
                      num_ids: int = 256) -> tf.Tensor:
  """Per-pixel loss weights `w = 1 / c**p`, normalised to sum to `h*w` per image (§3.2).

  `c` is the pixel count of the pixel's segment id in its image (void, id 0,
  counts as one segment). We use the paper's `c` (not the released code's
  `c + 1`): `c >= 1` always holds because the pixel itself is counted.

  Args:
    instance_ids: int `[B, h, w]` segment ids in `[0, num_ids)`.
    p: the exponent (paper Table 5: 0.2). `p = 0` gives all ones.
    num_ids: exclusive upper bound of the ids (static, for XLA).

  Returns:
    float32 `[B, h, w]`, each image's weights sum to `h*w`.
  """
  ids = tf.cast(instance_ids, tf.int32)
  batch = tf.shape(ids)[0]
  flat = tf.reshape(ids, [batch, -1])
  num_pixels = tf.cast(tf.shape(flat)[1], tf.float32)
  # One segment per (image, id): offset ids by image so a single segment sum counts all.
  segment = flat + tf.range(batch)[:, tf.newaxis] * num_ids
  counts = tf.math.unsorted_segment_sum(
      tf.ones_like(flat, tf.float32), segment, num_segments=batch * num_ids)
  pixel_counts = tf.gather(counts, segment)
  w = tf.pow(pixel_counts, -float(p))
  w = num_pixels * w / tf.reduce_sum(w, axis=1, keepdims=True)
  return tf.reshape(w, tf.shape(ids))
