"""Discrete masks <-> analog bits (paper §3.2, Algorithm 3; REFERENCE §1).

A panoptic `label_map [..., 2]` holds (class, instance) integers. Each channel is
written as `n_bits` little-endian bits (bit `i` is `(x >> i) & 1`), the channels'
bits are concatenated (class bits first), and the bits become analog values
`(bits * 2 - 1) * b_scale` in `{-b, +b}`.
"""

from typing import Sequence

import tensorflow as tf


def int2bit(x: tf.Tensor, n_bits: int) -> tf.Tensor:
  """Integers to little-endian bits (Algorithm 3).

  Args:
    x: integer tensor `[...]`, values in `[0, 2**n_bits)`.
    n_bits: number of bits per value.

  Returns:
    int32 tensor `[..., n_bits]` of 0/1, bit `i` = `(x >> i) & 1`.
  """
  x = tf.cast(x, tf.int32)
  shifts = tf.range(n_bits, dtype=tf.int32)
  return tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(x[..., tf.newaxis], shifts), 1)


def bit2int(bits: tf.Tensor) -> tf.Tensor:
  """Little-endian bits `[..., n_bits]` (0/1 or bool) to int32 `[...]`."""
  bits = tf.cast(bits, tf.int32)
  n_bits = bits.shape[-1]
  shifts = tf.range(n_bits, dtype=tf.int32)
  return tf.reduce_sum(tf.bitwise.left_shift(bits, shifts), axis=-1)


def label_map_to_bits(label_map: tf.Tensor,
                      n_bits: Sequence[int] = (8, 8),
                      b_scale: float = 0.1) -> tf.Tensor:
  """Panoptic label map to analog bits (Algorithm 1, "discrete masks to analog bits").

  Args:
    label_map: int tensor `[..., C]` (C = len(n_bits); for panoptic masks
      channel 0 is the class, channel 1 the instance id).
    n_bits: bits per channel, e.g. `(8, 8)` for the paper's 16 bits.
    b_scale: the input scale `b` (paper Table 3: 0.1).

  Returns:
    float32 `[..., sum(n_bits)]` in `{-b_scale, +b_scale}`.
  """
  _check_channels(label_map, n_bits)
  channels = [
      int2bit(label_map[..., i], n) for i, n in enumerate(n_bits)
  ]
  bits = tf.cast(tf.concat(channels, axis=-1), tf.float32)
  return (bits * 2.0 - 1.0) * b_scale


def bits_to_label_map(mask_bits: tf.Tensor,
                      n_bits: Sequence[int] = (8, 8)) -> tf.Tensor:
  """Analog bits `[..., sum(n_bits)]` to an int32 label map `[..., len(n_bits)]`.

  A bit is 1 where the analog value is > 0 (Algorithm 2: `bit2int(m_pred > 0)`).
  """
  if mask_bits.shape[-1] != sum(n_bits):
    raise ValueError(f'mask_bits has {mask_bits.shape[-1]} channels, '
                     f'expected sum(n_bits) = {sum(n_bits)} for n_bits={n_bits}.')
  positive = mask_bits > 0
  channels = []
  start = 0
  for n in n_bits:
    channels.append(bit2int(positive[..., start:start + n]))
    start += n
  return tf.stack(channels, axis=-1)


def _check_channels(label_map, n_bits):
  if label_map.shape[-1] != len(n_bits):
    raise ValueError(f'label_map has {label_map.shape[-1]} channels, expected '
                     f'{len(n_bits)} (one per entry of n_bits={n_bits}).')
