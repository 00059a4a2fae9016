"""Optimizer and learning-rate schedule (REFERENCE §5).

AdamW (weight decay 0.05, β1 0.9, β2 0.999) with linear warmup then linear decay
to `end_lr_factor × peak`. Global gradient-norm clipping is NOT done here: the
optimizer's `global_clipnorm` clips per replica under MirroredStrategy, so the
trainer clips the all-reduced gradient itself (`tasks/trainer.py`).
"""

import gin
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package='pix2seq_d')
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
  """`peak * step / warmup` for `step < warmup`, then linear to `peak * end_factor`.

  `total_steps` is an int, or an integer `tf.Variable` that a time budget
  re-plans during training (tasks/budget.py): the decay then always ends at
  the currently planned last step.
  """

  def __init__(self, peak: float, total_steps, warmup_steps: int = 0,
               end_factor: float = 0.1):
    if isinstance(total_steps, tf.Variable):
      if not total_steps.dtype.is_integer:
        raise ValueError(f'total_steps variable must be an integer, got '
                         f'{total_steps.dtype.name}.')
      if warmup_steps < 0:
        raise ValueError(f'warmup_steps={warmup_steps} must be >= 0.')
    else:
      if total_steps <= 0:
        raise ValueError(f'total_steps must be > 0, got {total_steps}.')
      if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f'warmup_steps={warmup_steps} must be in [0, '
                         f'total_steps={total_steps}].')
      total_steps = int(total_steps)
    self.peak = float(peak)
    self.total_steps = total_steps
    self.warmup_steps = int(warmup_steps)
    self.end_factor = float(end_factor)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = tf.cast(self.warmup_steps, tf.float32)
    decay_steps = tf.maximum(
        tf.cast(self.total_steps, tf.float32) - warmup, 1.0)
    warm = self.peak * step / tf.maximum(warmup, 1.0)
    progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
    decayed = self.peak * (1.0 - (1.0 - self.end_factor) * progress)
    return tf.where(step < warmup, warm, decayed)

  def get_config(self):
    total_steps = self.total_steps
    if isinstance(total_steps, tf.Variable):
      total_steps = int(total_steps.numpy())
    return dict(peak=self.peak, total_steps=total_steps,
                warmup_steps=self.warmup_steps, end_factor=self.end_factor)


@keras.saving.register_keras_serializable(package='pix2seq_d')
class FusedAdamW(keras.optimizers.AdamW):
  """Keras' AdamW with each variable's update in one or two TF kernels (issue 15).

  The same algorithm and slots (checkpoints are interchangeable): the decoupled
  decay `var -= lr * wd * var` is one `ResourceApplyGradientDescent`, the Adam
  step (`m += (g - m)(1 - b1)`, `v += (g² - v)(1 - b2)`, `var -= alpha m /
  (sqrt(v) + eps)`, `alpha = lr sqrt(1 - b2^t) / (1 - b1^t)`, Keras' formula)
  one `ResourceApplyAdam`, instead of Keras' ~25 ops per variable (and the
  learning-rate schedule evaluated again for every variable's decay). Traced
  and run ~600 times per step, those ops were a third of the first step's
  trace and ~10 passes over the weights per step. Results equal Keras' AdamW
  to a few ulp (the kernels round in another order).
  """

  def _apply_weight_decay(self, variables):
    del variables  # Applied in `update_step`, with the step's learning rate.

  def update_step(self, gradient, variable, learning_rate):
    dtype = variable.dtype
    lr = tf.cast(learning_rate, dtype)
    if self.weight_decay and self._use_weight_decay(variable):
      tf.raw_ops.ResourceApplyGradientDescent(
          var=variable.handle, alpha=lr * tf.cast(self.weight_decay, dtype),
          delta=tf.convert_to_tensor(variable))
    local_step = tf.cast(self.iterations + 1, dtype)
    index = self._get_variable_index(variable)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].value.handle,
        v=self._velocities[index].value.handle,
        beta1_power=tf.pow(tf.cast(self.beta_1, dtype), local_step),
        beta2_power=tf.pow(tf.cast(self.beta_2, dtype), local_step),
        lr=lr, beta1=tf.cast(self.beta_1, dtype),
        beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
        grad=tf.cast(gradient, dtype))


@gin.configurable
def build_optimizer(total_steps,
                    learning_rate: float = 1e-4,
                    end_lr_factor: float = 0.1,
                    warmup_steps: int = 0,
                    weight_decay: float = 0.05,
                    beta_1: float = 0.9,
                    beta_2: float = 0.999,
                    epsilon: float = 1e-8,
                    decay_norms_and_biases: bool = False,
                    fused: bool = True) -> keras.optimizers.Optimizer:
  """AdamW with the warmup + linear-decay schedule of REFERENCE §5.

  Args:
    total_steps: length of the schedule (the run's train steps): an int, or
      an integer `tf.Variable` re-planned by a time budget (tasks/budget.py).
    learning_rate: the peak learning rate.
    end_lr_factor: final learning rate as a fraction of the peak (1.0 = constant).
    warmup_steps: linear warmup length.
    weight_decay: decoupled weight decay.
    beta_1: Adam β1.
    beta_2: Adam β2.
    epsilon: Adam ε.
    decay_norms_and_biases: also decay 1-D variables (norm scales, biases).
      Off by default, the usual practice for transformers.
    fused: `FusedAdamW` (one or two kernels per variable, same algorithm);
      False: Keras' `AdamW`.

  Returns:
    A Keras 3 AdamW optimizer (not yet built); amsgrad is not offered.
  """
  schedule = WarmupLinearDecay(learning_rate, total_steps, warmup_steps,
                               end_lr_factor)
  optimizer_class = FusedAdamW if fused else keras.optimizers.AdamW
  optimizer = optimizer_class(
      learning_rate=schedule, weight_decay=weight_decay, beta_1=beta_1,
      beta_2=beta_2, epsilon=epsilon)
  optimizer.decay_norms_and_biases = decay_norms_and_biases
  return optimizer


def exclude_from_weight_decay(optimizer, variables) -> None:
  """Excludes 1-D variables (biases, norm scales) from decay unless configured."""
  if getattr(optimizer, 'decay_norms_and_biases', True):
    return
  optimizer.exclude_from_weight_decay(
      var_list=[v for v in variables if len(v.shape) <= 1])
