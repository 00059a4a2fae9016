"""The training step of Algorithm 1 at scale: an orbit trainer over `tf.distribute`.

One step, per replica:
1. draw `t ~ U(0, 1)` and `eps ~ N(0, I)` per example from a stateless RNG keyed
   by (seed, step, global example index), so the same data and seed give the
   same loss under any strategy and any number of replicas, and a resumed run
   draws exactly what an uninterrupted one would. With `noise_draws = D > 1`
   every image gets `D` stratified times `t_k = (k + u_k) / D` (each still
   U(0, 1)) and noises that share one encoder pass. The model's other draws
   (a self-conditioned model's per-batch coin, the video model's past-mask
   dropping) come from a seed keyed by (seed, step);
2. forward + backward, XLA-compiled (`jit_compile`); the loss of each replica is
   its local mean divided by the number of replicas, so the summed gradients
   are the global-batch mean;
3. all-reduce the gradients, clip them by their GLOBAL norm (the optimizer's own
   `global_clipnorm` would clip each replica's part separately under
   MirroredStrategy), apply with AdamW, update the EMA.
Steps 3 runs outside XLA: compiling `apply_gradients` fails under
MirroredStrategy (DEVELOPERS.md, "Known pitfalls").
"""

import time
from typing import Optional

from absl import logging
import orbit
import tensorflow as tf

from tasks import optim


class Pix2SeqDTrainer(orbit.StandardTrainer):
  """Trains a `Pix2SeqD` model (models/pix2seq_d.py) with `steps_per_loop` steps per call.

  Attributes:
    global_step: the run's step counter (int64 tf.Variable), saved in checkpoints.
  """

  def __init__(self, *, model, optimizer, ema, strategy: tf.distribute.Strategy,
               train_dataset, global_batch_size: int, total_steps: int,
               clip_norm: float = 1.0, seed: int = 0, jit_compile: bool = True,
               noise_draws: int = 1,
               t_power: float = 1.0,
               global_step: Optional[tf.Variable] = None):
    """Builds the trainer; create it inside `strategy.scope()`.

    Args:
      model: a built `Pix2SeqD` (has `compute_loss` and `trainable_variables`).
      optimizer: a Keras optimizer (tasks/optim.py).
      ema: the model's EMA (models/ema.py) or None.
      strategy: the distribution strategy the model was built under.
      train_dataset: a distributed dataset of `(inputs, labels)`.
      global_batch_size: examples per step over all replicas.
      total_steps: the run's length (for the progress line's ETA).
      clip_norm: global gradient-norm clip (REFERENCE §5: 1.0); 0 disables.
      seed: seed of the per-example noise.
      jit_compile: XLA-compile the forward/backward pass.
      noise_draws: `(t, eps)` draws per image per step, sharing one encoder
        pass (`Pix2SeqD.compute_loss`); 1 = Algorithm 1 as written.
      t_power: training times are `t = u ** t_power` for the (stratified)
        uniform draw `u`: 1 = `t ~ U(0, 1)` (Algorithm 1); > 1 trains more
        at small t (little noise), < 1 more at large t (mostly noise).
      global_step: the step variable; created if not given.
    """
    self.model = model
    self.optimizer = optimizer
    self.ema = ema
    self.strategy = strategy
    self.global_batch_size = global_batch_size
    self.total_steps = total_steps
    self.clip_norm = clip_norm
    self.seed = seed
    if noise_draws < 1:
      raise ValueError(f'noise_draws={noise_draws}; expected >= 1.')
    self.noise_draws = noise_draws
    if t_power <= 0:
      raise ValueError(f't_power={t_power}; expected > 0.')
    self.t_power = t_power
    self.global_step = (global_step if global_step is not None else
                        orbit.utils.create_global_step())
    self._loss_sum = _first_replica_variable('loss_sum', tf.float32)
    self._grad_norm_sum = _first_replica_variable('grad_norm_sum', tf.float32)
    self._steps_in_loop = _first_replica_variable('steps_in_loop', tf.int64)
    self._forward_backward = self._build_forward_backward(jit_compile)
    self._loop_start_time = None
    self._loop_start_step = None
    self.last_outputs = {}  # The last `train_loop_end` outputs.
    self._run_start_time = time.time()
    super().__init__(train_dataset, options=orbit.StandardTrainerOptions(
        use_tf_while_loop=True))
    # Created now (not lazily by orbit) so that checkpoints can include it.
    self._train_iter = iter(self.train_dataset)
    # Single-device iterators are checkpointable (exact resume of the data
    # order); tf.distribute's DistributedIterator is not in TF 2.20, so the
    # caller reseeds the data instead (tasks/train_lib.py).
    self.iterator_checkpointable = isinstance(
        self._train_iter, tf.__internal__.tracking.Trackable)
    optim.exclude_from_weight_decay(optimizer, model.trainable_variables)

  def _build_forward_backward(self, jit_compile: bool):
    """The forward/backward pass, XLA-compiled on its own when that works.

    A nested `tf.function` inside `strategy.run` may not hold a cross-replica
    synchronisation (TF raises "`merge_call` called while defining a new
    graph"), and synchronized BatchNorm all-reduces its batch statistics in
    the forward pass. So with synchronized BatchNorm on several replicas the
    pass runs inline in the step's graph (not separately XLA-compiled; on TPU
    the whole step is compiled anyway); likewise without `jit_compile`, where
    the nesting buys nothing.
    """
    synchronized = any(getattr(layer, 'synchronized', False)
                       for layer in self.model._flatten_layers())  # pylint: disable=protected-access
    if jit_compile and synchronized and self.strategy.num_replicas_in_sync > 1:
      logging.warning('Synchronized BatchNorm on %d replicas: the forward/'
                      'backward pass is not XLA-compiled on its own (its '
                      'all-reduce cannot sit in a nested function).',
                      self.strategy.num_replicas_in_sync)
      return self._forward_backward_fn
    if not jit_compile:
      return self._forward_backward_fn
    return tf.function(self._forward_backward_fn, jit_compile=True)

  def reset_dataset(self, train_dataset) -> None:
    """Replaces the training data (a resumed distributed run reseeds it)."""
    self.train_dataset = train_dataset
    self._train_iter = iter(train_dataset)

  def checkpoint_items(self) -> dict:
    """What a training checkpoint holds: model, optimizer, EMA, step, data position."""
    items = dict(model=self.model, optimizer=self.optimizer,
                 global_step=self.global_step)
    if self.iterator_checkpointable:
      items['train_iterator'] = self._train_iter
    if self.ema is not None:
      items['ema'] = self.ema
    return items

  def train_loop_begin(self):
    self._loss_sum.assign(0.0)
    self._grad_norm_sum.assign(0.0)
    self._steps_in_loop.assign(0)
    self._loop_start_time = time.time()
    self._loop_start_step = int(self.global_step.numpy())

  def train_step(self, iterator):
    inputs, labels = next(iterator)
    self.strategy.run(self._replica_step, args=(inputs, labels))

  def _draw_seed(self, index):
    """Stateless seed keyed by (seed, step, `index`): a global example index,
    or -1 for the draws shared by the whole step."""
    step = tf.cast(self.global_step, tf.int64)
    return tf.stack([tf.cast(self.seed, tf.int64) * 1000003 + step,
                     tf.cast(index, tf.int64)])

  def _draw_noise(self, label_map):
    """Per-example `t [B * D]` and `eps [B * D, h, w, bits]`, independent of sharding.

    Example-major: the `D = noise_draws` draws of example `i` are rows
    `i * D ... i * D + D - 1`; with `D = 1` this is one `t ~ U(0, 1)` each
    (then `t ** t_power`).
    """
    context = tf.distribute.get_replica_context()
    local_batch = label_map.shape[0]
    first = tf.cast(context.replica_id_in_sync_group, tf.int64) * local_batch
    indices = first + tf.range(local_batch, dtype=tf.int64)
    draws = self.noise_draws
    bits_shape = label_map.shape[1:3] + [sum(self.model.n_bits)]

    def one_example(index):
      seeds = tf.random.experimental.stateless_split(self._draw_seed(index), 2)
      uniform = tf.random.stateless_uniform([draws], seed=seeds[0])
      t = (tf.range(draws, dtype=tf.float32) + uniform) / draws
      if self.t_power != 1.0:
        t = t**self.t_power
      eps = tf.random.stateless_normal([draws] + bits_shape, seed=seeds[1])
      return t, eps

    t, eps = tf.map_fn(one_example, indices,
                       fn_output_signature=(tf.float32, tf.float32))
    return (tf.reshape(t, [local_batch * draws]),
            tf.reshape(eps, [local_batch * draws] + bits_shape))

  def _forward_backward_fn(self, images, label_map, past_label_maps, t, noise,
                          seed):
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      loss, _ = self.model.compute_loss(
          images, label_map, past_label_maps=past_label_maps, t=t, noise=noise,
          training=True, seed=seed)
      scaled_loss = loss / num_replicas
    grads = tape.gradient(scaled_loss, variables)
    return loss, grads

  def _replica_step(self, inputs, labels):
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync
    t, noise = self._draw_noise(labels['label_map'])
    # The same on every replica: a per-batch coin is one coin per global batch.
    seed = self._draw_seed(-1)
    # Only tensors the model uses enter the compiled function (XLA takes no strings).
    loss, grads = self._forward_backward(
        inputs['images'], labels['label_map'], inputs.get('past_label_maps'),
        t, noise, seed)
    grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grad_norm = tf.linalg.global_norm(grads)
    if self.clip_norm:
      grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=grad_norm)
    # The optimizer sums over replicas again (Keras 3 all-reduces inside
    # apply_gradients): hand it 1/N of the already-reduced gradient.
    grads = [g / num_replicas for g in grads]
    self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
    if self.ema is not None:
      self.ema.update()
    mean_loss = context.all_reduce(tf.distribute.ReduceOp.MEAN, loss)
    self._loss_sum.assign_add(mean_loss)
    self._grad_norm_sum.assign_add(grad_norm)
    self._steps_in_loop.assign_add(1)
    self.global_step.assign_add(1)

  def train_loop_end(self):
    steps = max(int(self._steps_in_loop.numpy()), 1)
    loss = float(self._loss_sum.numpy()) / steps
    step = int(self.global_step.numpy())
    if not tf.math.is_finite(loss):
      raise FloatingPointError(
          f'training loss is {loss} at step {step}; stopping. The last good '
          'checkpoint in the model directory is kept; lower the learning '
          'rate or check the data before resuming.')
    elapsed = max(time.time() - self._loop_start_time, 1e-9)
    steps_per_sec = (step - self._loop_start_step) / elapsed
    learning_rate = self.optimizer.learning_rate
    if callable(learning_rate):
      learning_rate = learning_rate(self.optimizer.iterations)
    remaining = max(self.total_steps - step, 0)
    eta = remaining / steps_per_sec if steps_per_sec > 0 else float('inf')
    logging.info('step %d/%d  loss %.4f  %.2f steps/s  %.1f examples/s  ETA %s',
                 step, self.total_steps, loss, steps_per_sec,
                 steps_per_sec * self.global_batch_size, _format_seconds(eta))
    self.last_outputs = {
        'loss': loss,
        'learning_rate': float(learning_rate),
        'grad_norm': float(self._grad_norm_sum.numpy()) / steps,
        'steps_per_second': steps_per_sec,
        'examples_per_second': steps_per_sec * self.global_batch_size,
    }
    return self.last_outputs


def _first_replica_variable(name, dtype):
  return tf.Variable(tf.zeros([], dtype), name=name, trainable=False,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def _format_seconds(seconds: float) -> str:
  if seconds == float('inf'):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
