"""Exponential moving average of a model's variables (REFERENCE §5: decay 0.999).

ONE shadow copy of the model's trainable variables and BatchNorm statistics
(every floating-point variable of the model; RNG states are left out), updated
after each optimizer step and swapped into the model for evaluation and export:

    ema = EMA(model, decay=0.999)      # after the model is built (in strategy.scope())
    ema.update()                       # in the train step (replica context is fine)
    with ema.swap():                   # the model now holds the averages
      evaluate(model)
    # ... and its own weights again.

Keras 3 variables are not `tf.Variable`s: values are read with `.value` and
written with `.assign` (or, in `update`, a raw op on their `.handle`).

The update is one pass in chunks (issue 15): each variable's shadow takes
`shadow -= (1 - decay) * (shadow - variable)` in a single
`ResourceApplyGradientDescent` kernel (what an SGD step runs; the product and
the subtraction in one loop, no extra temporaries but the difference); the
variables are grouped in chunks of about `chunk_bytes` whose updates are
independent, and each chunk starts after the previous one is written. The
chain keeps the memory gain of ordering the update (in a graph nothing orders
the updates of different variables, and the executor may compute every
variable's temporaries before the first assignment: paper-size training peak
7.53 GB unordered, 7.13 GB ordered) with ~25 links instead of ~500, and a
third fewer passes over the weights than `assign_sub` of a separately
computed step.
"""

import math
from typing import Optional

import keras
import tensorflow as tf

from models import precision

# Bytes of variables whose updates run unordered within one chunk: the peak
# of the update's temporaries (the paper model's largest variable is 4 MB).
DEFAULT_CHUNK_BYTES = 16 * 2**20


def averaged_variables(model) -> list:
  """The model's variables the EMA tracks: all floating-point ones (weights, BN stats)."""
  return [v for v in model.variables if 'float' in str(v.dtype)]


class EMA(tf.Module):
  """The EMA shadow of a built model's variables (checkpointable: a `tf.Module`).

  Attributes:
    decay: the default decay of `update`.
    shadow_variables: the averages, one per `averaged_variables(model)` entry.
  """

  def __init__(self, model, decay: float = 0.999, name: str = 'ema',
               chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Creates the shadow (a copy of the model's current values).

    Args:
      model: a built Keras model (or layer).
      decay: the default decay of `update`.
      name: the module's name.
      chunk_bytes: bytes of variables updated unordered per chunk of
        `update` (module docstring); at least one variable per chunk.
    """
    super().__init__(name=name)
    variables = averaged_variables(model)
    if not variables:
      raise ValueError('EMA: the model has no variables yet; build it first.')
    if chunk_bytes < 1:
      raise ValueError(f'EMA chunk_bytes={chunk_bytes}; expected >= 1.')
    self.decay = float(decay)
    # Not a checkpoint dependency of the EMA: the model saves its own variables.
    object.__setattr__(self, '_model_variables', variables)
    # ONLY_FIRST_REPLICA: every replica computes the same average, so updates
    # made in replica context are taken from the first.
    self.shadow_variables = [
        keras.Variable(tf.identity(v.value), dtype=v.dtype, trainable=False,
                       aggregation='only_first_replica',
                       name=v.name.replace('/', '_') + '_ema')
        for v in variables
    ]
    object.__setattr__(self, '_chunks', _chunks(variables, chunk_bytes))

  def update(self, decay: Optional[float] = None) -> None:
    """`shadow = decay * shadow + (1 - decay) * variable` for every variable.

    Works eagerly, in `tf.function` (also XLA) and in a `tf.distribute`
    replica context.

    Args:
      decay: float or scalar tensor; default `self.decay`.
    """
    decay = tf.cast(self.decay if decay is None else decay, tf.float32)
    done = []
    for chunk in self._chunks:
      # Reads (and so the differences) of this chunk wait for the previous
      # chunk's writes (module docstring).
      with tf.control_dependencies(done):
        done = [
            tf.raw_ops.ResourceApplyGradientDescent(
                var=self.shadow_variables[i].handle,
                alpha=tf.cast(1.0 - decay, self.shadow_variables[i].dtype),
                delta=(self.shadow_variables[i].value -
                       self._model_variables[i].value))
            for i in chunk
        ]

  def swap(self) -> '_SwapBack':
    """Exchanges the model's values and the shadow values.

    Returns:
      A context manager that swaps back on exit, so both `ema.swap(); ...;
      ema.swap()` and `with ema.swap(): ...` work.
    """
    current = [tf.identity(v.value) for v in self._model_variables]
    for variable, shadow in zip(self._model_variables, self.shadow_variables):
      variable.assign(shadow.value)
    for shadow, value in zip(self.shadow_variables, current):
      shadow.assign(value)
    return _SwapBack(self)

  def copy_from_model(self) -> None:
    """Restarts the averages at the model's current values (after a partial init)."""
    for shadow, variable in zip(self.shadow_variables, self._model_variables):
      shadow.assign(variable.value)

  def copy_to_model(self) -> None:
    """Overwrites the model's variables with the averages (e.g. before a final export)."""
    for variable, shadow in zip(self._model_variables, self.shadow_variables):
      variable.assign(shadow.value)


def _chunks(variables, chunk_bytes: int) -> list:
  """Indices of `variables` in order, cut into runs of about `chunk_bytes`."""
  chunks, current, size = [], [], 0
  for index, variable in enumerate(variables):
    nbytes = math.prod(variable.shape) * tf.as_dtype(variable.dtype).size
    if current and size + nbytes > chunk_bytes:
      chunks.append(current)
      current, size = [], 0
    current.append(index)
    size += nbytes
  if current:
    chunks.append(current)
  return chunks


def averages_view(model) -> tf.Module:
  """A stand-in for an `EMA` in a checkpoint whose averages ARE `model`'s variables.

  Restoring a training checkpoint's `ema` into it (`tf.train.Checkpoint(
  ema=averages_view(model))`) writes the averages into the model.
  """
  view = tf.Module(name='ema')
  view.shadow_variables = averaged_variables(model)
  return view


def restore_averages(model, checkpoint_path: str) -> None:
  """Reads an `EMA`'s saved averages straight into `model`'s own variables.

  For inference (export, pictures): the checkpoint's `ema/shadow_variables`
  are restored into the variables they average, so no shadow copy (a second
  copy of every weight) and no optimizer state is ever built. The model's
  other variables (RNG states of training-only layers) are left as built.

  Args:
    model: the built model the EMA was made for (same variable order).
    checkpoint_path: a training checkpoint prefix holding `ema`.

  Each average is cast to its variable's dtype (`precision.read_checkpoint`:
  a model built under the inference-only 'bfloat16' policy stores them in
  bfloat16) and read one at a time.

  Raises:
    AssertionError: the checkpoint has no average for one of the variables.
  """
  precision.read_checkpoint(tf.train.Checkpoint(ema=averages_view(model)),
                            checkpoint_path)


class _SwapBack:
  """Context manager returned by `EMA.swap`: swaps back on exit."""

  def __init__(self, ema: EMA):
    self._ema = ema

  def __enter__(self):
    return self._ema

  def __exit__(self, *exc_info):
    self._ema.swap()
    return False
