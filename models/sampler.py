"""The DDIM sampler of Algorithm 2 in one compiled graph (paper §3.3, REFERENCE §2).

The image encoder runs once; only the decoder runs at each of the `num_steps`
steps. The loop is a `tf.while_loop` whose trip count and `td` are tensors and
each step's times are computed from its index (no `[num_steps]` table, whose
shape XLA would have to know), so one trace and one XLA compilation serve
every step count.

The final mask is read out of the last step's decoder output (`readout`):
- 'threshold' (default; Algorithm 2): `bit2int(x0_pred > 0)`, where `x0_pred`
  is, for each bit group (class bits, instance bits), the softmax-weighted
  average of the group's `2**n` bit patterns (models/losses.py). Where the
  decoder is split between two patterns, thresholding their average can give
  a third pattern that neither proposed (e.g. ids 1 = 01b at 0.45 and 2 = 10b
  at 0.40 average to 11b = 3).
- 'argmax': each group's most probable pattern, `argmax` of its logits (the
  pattern index is the integer, as patterns are `int2bit(k)`). Identical to
  'threshold' when each group's softmax is one-hot. The DDIM steps themselves
  always use `x0_pred` (the readout only decides the returned label maps).
"""

from typing import Optional

import tensorflow as tf

from models import bits as bits_lib
from models import diffusion

READOUTS = ('threshold', 'argmax')


def check_readout(readout: str) -> str:
  if readout not in READOUTS:
    raise ValueError(f'readout={readout!r} is not one of {list(READOUTS)}.')
  return readout


def readout_label_map(logits: Optional[tf.Tensor], x0: tf.Tensor, n_bits,
                      readout: str = 'threshold') -> tf.Tensor:
  """The label map of one decoder output (module docstring).

  Args:
    logits: float `[B, h, w, groups, 2**n]` group logits (`Pix2SeqD.denoise`);
      needed for 'argmax' only.
    x0: float `[B, h, w, sum(n_bits)]` analog-bit prediction.
    n_bits: bits per group, e.g. `(8, 8)`.
    readout: 'threshold' or 'argmax'.

  Returns:
    int32 `[B, h, w, groups]` (class, instance).
  """
  check_readout(readout)
  if readout == 'threshold':
    return bits_lib.bits_to_label_map(x0, n_bits)
  if logits is None:
    raise ValueError("readout='argmax' needs the decoder's group logits; the "
                     'model returned none.')
  if logits.shape[-2] != len(n_bits) or any(
      2**n != logits.shape[-1] for n in n_bits):
    raise ValueError(f'logits {logits.shape} do not match n_bits={n_bits}.')
  return tf.argmax(logits, axis=-1, output_type=tf.int32)


def sample(model, images: tf.Tensor, *, mask_size, num_steps, td, seed,
           past_label_maps: Optional[tf.Tensor] = None,
           trajectory_size: int = 0, encoded=None,
           initial_noise: Optional[tf.Tensor] = None,
           readout: str = 'threshold') -> dict:
  """Generates panoptic masks for a batch of images.

  Args:
    model: a `Pix2SeqD` (models/pix2seq_d.py): `encode`, `denoise`, `b_scale`,
      `n_bits`, `gamma_fn`, `self_condition`, `past_bits_from_label_maps`.
    images: float32 `[B, H, W, 3]` in [0, 1].
    mask_size: `(h, w)` of the generated mask (static).
    num_steps: int scalar (tensor or Python) number of decoder calls `S`.
    td: float scalar time difference (asymmetric intervals, §3.3).
    seed: int `[2]` seed of the initial noise (stateless: same seed, same masks).
    past_label_maps: int `[B, P, h, w, 2]` past-frame masks for the video
      model, or None.
    trajectory_size: if > 0, also return the label map predicted at each of
      the first `trajectory_size` steps (Fig. 11); static buffer for XLA.
    encoded: the encoder output, if the caller already has it (streaming video
      reuses nothing across frames, but a benchmark may time the parts).
    initial_noise: float `[B, h, w, bits]` x_1 to start from instead of the
      draw from `seed` (to replay another implementation's run from its
      stored noise).
    readout: how the label maps are read out of the decoder output:
      'threshold' (`bit2int(x0 > 0)`) or 'argmax' (each bit group's most
      probable pattern); module docstring.

  Returns:
    dict with `label_map` int32 `[B, h, w, 2]` (class, instance), `x0` float32
    `[B, h, w, bits]` (last analog prediction) and, with `trajectory_size`,
    `trajectory` int32 `[trajectory_size, B, h, w, 2]` (zeros past `num_steps`).
  """
  check_readout(readout)
  if encoded is None:
    encoded = model.encode(images, training=False)
  batch = tf.shape(images)[0]
  num_bits = sum(model.n_bits)
  height, width = mask_size
  if initial_noise is not None:
    x_t = tf.cast(initial_noise, tf.float32)
  else:
    x_t = tf.random.stateless_normal([batch, height, width, num_bits], seed=seed)
  past_bits = None
  if past_label_maps is not None:
    past_bits = model.past_bits_from_label_maps(past_label_maps)
  num_steps = tf.cast(num_steps, tf.int32)

  def body(step, x_t, x0, label_map, trajectory):
    t_now, t_next = diffusion.step_times(step, num_steps, td)
    gamma = tf.fill([batch], model.gamma_fn(t_now))
    # A self-conditioned model sees its previous estimate (zeros at step 0).
    logits, x0 = model.denoise(x_t, gamma, encoded, past_bits=past_bits,
                               training=False,
                               x0_prev=x0 if model.self_condition else None)
    x_t = diffusion.ddim_step(x_t, x0, t_now, t_next, model.b_scale,
                              model.gamma_fn)
    label_map = readout_label_map(logits, x0, model.n_bits, readout)
    if trajectory_size:
      update = label_map[tf.newaxis]
      index = tf.minimum(step, trajectory_size - 1)
      keep = tf.cast(step < trajectory_size, tf.int32)
      current = tf.gather(trajectory, index)[tf.newaxis]
      trajectory = tf.tensor_scatter_nd_update(
          trajectory, [[index]], keep * update + (1 - keep) * current)
    return step + 1, x_t, x0, label_map, trajectory

  trajectory = tf.zeros(
      [max(trajectory_size, 1), batch, height, width, len(model.n_bits)],
      tf.int32)
  x0 = tf.zeros_like(x_t)
  # The last step's label map (all void if num_steps is 0).
  label_map = tf.zeros([batch, height, width, len(model.n_bits)], tf.int32)
  # parallel_iterations=1: the steps depend on each other anyway, but by
  # default the executor runs the loop-invariant part of up to 10 future
  # iterations ahead (under mixed_bfloat16: every decoder weight's bfloat16
  # cast), holding 10 copies. Paper model, 20 steps, peak inference RSS
  # 2.55 -> 1.77 GB (mixed_bfloat16), 1.69 -> 1.60 GB (float32); issue 15.
  _, _, x0, label_map, trajectory = tf.while_loop(
      lambda step, *_: step < num_steps, body,
      (tf.constant(0), x_t, x0, label_map, trajectory), parallel_iterations=1)
  outputs = {'label_map': label_map, 'x0': x0}
  if trajectory_size:
    outputs['trajectory'] = trajectory
  return outputs
