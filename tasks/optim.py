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


@gin.configurable
def build_optimizer(total_steps,
                    learning_rate: float = 1e-4,
                    end_lr_factor: float = 0.1,
                    warmup_steps: int = 0,
                    weight_decay: float = 0.05,
                    beta_1: float = 0.9,
                    beta_2: float = 0.999,
                    epsilon: float = 1e-8,
                    decay_norms_and_biases: bool = False) -> keras.optimizers.Optimizer:
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

  Returns:
    A Keras 3 AdamW optimizer (not yet built).
  """
  schedule = WarmupLinearDecay(learning_rate, total_steps, warmup_steps,
                               end_lr_factor)
  optimizer = keras.optimizers.AdamW(
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
