"""Continuous-time diffusion maths for Bit Diffusion (paper §2, Eq. 1; Algorithms 2 and 4).

Pure functions on tensors; no state. Numbers in REFERENCE §2:
`gamma(t) = cos(((t + ns) / (1 + ds)) * pi / 2) ** 2` with `ns = 0.0002`,
`ds = 0.00025`, and the DDIM update with the `x0` clip to `[-b, b]`.
"""

import math

import gin
import tensorflow as tf


@gin.register
def cosine_gamma(t, ns: float = 0.0002, ds: float = 0.00025) -> tf.Tensor:
  """The cosine noise schedule `gamma(t)` (Algorithm 4), decreasing from ~1 to ~0.

  Args:
    t: float tensor (any shape) of times in `[0, 1]`.
    ns: shift of `t` (keeps `gamma(0)` just below 1).
    ds: stretch of `t` (keeps `gamma(1)` just above 0).

  Returns:
    float32 tensor of the same shape; not clipped.
  """
  t = tf.cast(t, tf.float32)
  return tf.cos(((t + ns) / (1.0 + ds)) * math.pi / 2.0) ** 2


def _broadcast_to_rank(v: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
  """Reshape a per-example `[B]` (or scalar) tensor to broadcast against `x [B, ...]`."""
  v = tf.cast(v, x.dtype)
  if v.shape.rank == 0:
    return v
  return tf.reshape(v, [-1] + [1] * (x.shape.rank - 1))


def add_noise(x0: tf.Tensor, t: tf.Tensor, noise: tf.Tensor,
              gamma_fn=cosine_gamma) -> tf.Tensor:
  """Forward process, Eq. 1: `x_t = sqrt(gamma(t)) x0 + sqrt(1 - gamma(t)) eps`.

  Args:
    x0: float `[B, ...]` analog bits.
    t: float scalar or `[B]` times in `[0, 1]`.
    noise: float `[B, ...]` standard normal `eps`, same shape as `x0`.
    gamma_fn: the schedule.

  Returns:
    `x_t`, same shape and dtype as `x0`.
  """
  x0 = tf.convert_to_tensor(x0)
  gamma = _broadcast_to_rank(gamma_fn(t), x0)
  return tf.sqrt(gamma) * x0 + tf.sqrt(1.0 - gamma) * noise


def eps_from_x0(x_t: tf.Tensor, x0: tf.Tensor, gamma: tf.Tensor) -> tf.Tensor:
  """Inverts Eq. 1 for `eps` given `x0`: `(x_t - sqrt(g) x0) / sqrt(1 - g)`."""
  x_t = tf.convert_to_tensor(x_t)
  gamma = _broadcast_to_rank(gamma, x_t)
  return (x_t - tf.sqrt(gamma) * x0) / tf.sqrt(1.0 - gamma)


def x0_from_eps(x_t: tf.Tensor, eps: tf.Tensor, gamma: tf.Tensor) -> tf.Tensor:
  """Inverts Eq. 1 for `x0` given `eps`: `(x_t - sqrt(1 - g) eps) / sqrt(g)`.

  Used by the `eps`-prediction option: the network predicts `eps` and the sampler
  needs `x0`.
  """
  x_t = tf.convert_to_tensor(x_t)
  gamma = _broadcast_to_rank(gamma, x_t)
  return (x_t - tf.sqrt(1.0 - gamma) * eps) / tf.sqrt(gamma)


def ddim_step(x_t: tf.Tensor, x0_pred: tf.Tensor, t_now, t_next,
              b_scale: float, gamma_fn=cosine_gamma) -> tf.Tensor:
  """One DDIM update from `t_now` to `t_next` (Algorithm 4).

  `x0 = clip(x0_pred, -b, b)`; `eps = (x_t - sqrt(g_now) x0) / sqrt(1 - g_now)`;
  `x_next = sqrt(g_next) x0 + sqrt(1 - g_next) eps`.

  Args:
    x_t: float `[B, ...]` current noisy bits.
    x0_pred: float `[B, ...]` the decoder's prediction of `x0`.
    t_now: scalar or `[B]` current time.
    t_next: scalar or `[B]` next time (`< t_now`).
    b_scale: the analog-bit scale `b`, the clip range.
    gamma_fn: the schedule.

  Returns:
    `x_{t_next}`, same shape as `x_t`.
  """
  x_t = tf.convert_to_tensor(x_t)
  gamma_now = gamma_fn(t_now)
  gamma_next = _broadcast_to_rank(gamma_fn(t_next), x_t)
  x0 = tf.clip_by_value(x0_pred, -b_scale, b_scale)
  eps = eps_from_x0(x_t, x0, gamma_now)
  return tf.sqrt(gamma_next) * x0 + tf.sqrt(1.0 - gamma_next) * eps


def step_times(step, num_steps, td) -> tuple:
  """`(t_now, t_next)` of step `step` of Algorithm 2 with asymmetric intervals.

  `t_now = 1 - s / S`, `t_next = max(1 - (s + 1 + td) / S, 0)`. Scalars from
  scalars: inside the sampler's loop no tensor's shape depends on `S`, so one
  XLA compilation serves every step count.

  Args:
    step: int or float scalar (Python or tensor) `s`.
    num_steps: int scalar `S`, the number of decoder calls.
    td: float scalar time difference `td` (paper §3.3).

  Returns:
    `(t_now, t_next)`, float32 tensors shaped like `step`.
  """
  num_steps_f = tf.cast(num_steps, tf.float32)
  td = tf.cast(td, tf.float32)
  step = tf.cast(step, tf.float32)
  t_now = 1.0 - step / num_steps_f
  t_next = tf.maximum(1.0 - (step + 1.0 + td) / num_steps_f, 0.0)
  return t_now, t_next
