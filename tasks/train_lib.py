"""Experiments: build everything from gin, then train / evaluate with orbit (issue 5).

Gin says what to build (the model, datasets, optimizer, schedule); the caller
(`tools/train.py`) says where and how to run (model directory, strategy, mode).
Checkpoints hold the model, optimizer, EMA, step and the input iterator's
position, so a killed run restarts exactly where its last checkpoint was.
`init_checkpoint` starts a new run from part of another run (staged schedule:
stage 2 from stage 1, the decoder from unconditional pretraining).
"""

import os
import sys
from typing import Optional, Sequence

from absl import logging
import gin
import keras
import orbit
import tensorflow as tf

from data import pipeline
from models import ema as ema_lib
from models import pix2seq_d
from models import precision
from tasks import budget as budget_lib
from tasks import config
from tasks import evaluator as evaluator_lib
from tasks import optim
from tasks import partial_restore
from tasks import trainer as trainer_lib

MODES = ('train', 'eval', 'train_and_eval', 'continuous_eval')

# What `init_checkpoint` restores: the whole model (strict), with or without its
# EMA, or parts whose variables are restored where path and shape match
# (tasks/partial_restore.py).
INIT_PARTS = ('model_and_ema', 'model', 'encoder', 'decoder',
              'encoder_and_decoder')


def _orbit_log(message: str) -> None:
  """orbit's Controller line, logged once (at INFO).

  `orbit.controller._log` logs every line *and* prints it; with the trainer's
  own progress line each training loop came out three times. Replaced here,
  orbit's lines are logged once (shown with `--verbosity=1`, tools/console.py).
  """
  logging.info('%s', message)


# pylint: disable=protected-access
orbit.controller._log = _orbit_log
# pylint: enable=protected-access
logging.ABSLLogger.register_frame_to_skip(__file__, _orbit_log.__name__)


class EvalCheckpoint(tf.train.Checkpoint):
  """The evaluation modes' view of a training checkpoint.

  A training checkpoint also holds the optimizer state, the raw weights next
  to their EMA and the input iterator's position; an evaluation restores only
  the EMA averages, straight into the model (`ema.averages_view`; the raw
  weights without an EMA) and the step, and the rest is expected to stay
  unused (TensorFlow warned about it when the restore was garbage-collected).
  Everything the evaluation does have must be in the checkpoint. Read as
  `pix2seq_d.restore_for_inference` reads (`precision.read_checkpoint`: each
  value cast to its variable's dtype, so a model built under the
  inference-only 'bfloat16' policy reads float32 checkpoints).
  """

  def restore(self, save_path, options=None):
    del options  # Local reads; nothing to configure.
    precision.read_checkpoint(self, save_path)
    return None  # Read and checked; CheckpointManager ignores the status.


def _dataset_fn(scope: str, global_batch_size: int, is_training: bool,
                seed: Optional[int] = None):
  """A `dataset_fn(input_context)` building the gin-scoped `build_dataset`."""

  def dataset_fn(input_context=None):
    with gin.config_scope(scope):
      return pipeline.build_dataset(
          global_batch_size=global_batch_size, is_training=is_training,
          input_context=input_context, seed=seed)

  return dataset_fn


def _worker_dirs(model_dir: str, strategy) -> tuple:
  """`(checkpoint_dir, summary_dir or None, is_chief)` of this worker.

  Under MultiWorkerMirroredStrategy every worker takes part in saving (the
  variables' values are gathered collectively), but only the chief's files are
  the run's: the others write to a scratch folder inside model_dir.
  """
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None)
  task_id = getattr(resolver, 'task_id', None) or 0
  is_chief = task_type in (None, 'chief') or (task_type == 'worker' and task_id == 0
                                              and 'chief' not in (
                                                  resolver.cluster_spec().jobs))
  if is_chief:
    return model_dir, model_dir, True
  return os.path.join(model_dir, f'.{task_type}_{task_id}'), None, False


def restore_init_checkpoint(path: str, parts: str, model, ema) -> None:
  """Restores part of another run's checkpoint into a freshly built model.

  Args:
    path: a checkpoint prefix or a directory (its latest checkpoint is used).
    parts: one of INIT_PARTS: 'model_and_ema' (weights and their EMA shadow,
      no optimizer state), 'model' (weights only), or 'encoder', 'decoder',
      'encoder_and_decoder': every variable of the part whose path and shape
      match (stage 1's decoder from the unconditional prior, which has no
      image inputs; a video model from an image model). The EMA of a
      partially restored model starts from the restored weights.
    model: the built `Pix2SeqD`.
    ema: the model's EMA, or None.

  Raises:
    ValueError: unknown `parts`, or no checkpoint at `path` (a folder
      without one, or a prefix without its `.index`).
  """
  if parts not in INIT_PARTS:
    raise ValueError(f'init_checkpoint_parts={parts!r} is not one of {INIT_PARTS}.')
  try:
    path = partial_restore.resolve_checkpoint(path)
  except FileNotFoundError as e:
    raise ValueError(f'run_experiment.init_checkpoint: {e}') from e
  if parts in ('encoder', 'decoder', 'encoder_and_decoder'):
    for name in parts.split('_and_'):
      part = getattr(model, name)
      if part is None:
        raise ValueError(f'init_checkpoint_parts={parts!r} but the model has no '
                         f'{name}.')
      partial_restore.restore_matching(path, part, ('model', name))
    if ema is not None:
      ema.copy_from_model()
    return
  if parts == 'model_and_ema' and ema is not None:
    tree = tf.train.Checkpoint(model=model, ema=ema)
  else:
    tree = tf.train.Checkpoint(model=model)
  status = tree.read(path)
  status.expect_partial()
  status.assert_existing_objects_matched()
  logging.info('Initialised %s from %s.', parts, path)


def init_checkpoint_sources(paths, parts) -> list:
  """Pairs `run_experiment.init_checkpoint` with its `init_checkpoint_parts`.

  One path with one part (the usual case), or a sequence of paths with a
  sequence of parts of the same length, restored in that order: e.g. the
  shipped encoder and an unconditional decoder prior,
  `init_checkpoint = ['ENC', 'PRIOR']`, `init_checkpoint_parts =
  ['encoder', 'decoder']`.

  Returns:
    `[(path, part), ...]`; [] when `paths` is None or empty.

  Raises:
    ValueError: naming both settings, when a sequence of paths does not come
      with a sequence of parts of its length (or a single path with a
      sequence of parts).
  """
  if not paths:
    return []
  if isinstance(paths, str):
    if not isinstance(parts, str):
      raise ValueError(f'run_experiment.init_checkpoint={paths!r} is one path but '
                       f'init_checkpoint_parts={parts!r} is not one part.')
    return [(paths, parts)]
  paths = list(paths)
  if isinstance(parts, str) or len(list(parts)) != len(paths):
    raise ValueError(f'run_experiment.init_checkpoint={paths!r} gives {len(paths)} '
                     f'checkpoints; init_checkpoint_parts={parts!r} must give one '
                     'part for each (a sequence of the same length).')
  return list(zip(paths, parts))


@gin.configurable(denylist=['model_dir', 'mode', 'strategy', 'time_budget'])
def run_experiment(model_dir: str,
                   mode: str,
                   strategy: tf.distribute.Strategy,
                   train_steps: int = gin.REQUIRED,
                   global_batch_size: int = gin.REQUIRED,
                   eval_batch_size: Optional[int] = None,
                   steps_per_loop: int = 100,
                   checkpoint_interval: int = 1000,
                   max_checkpoints: int = 3,
                   summary_interval: Optional[int] = None,
                   clip_norm: float = 1.0,
                   seed: int = 0,
                   jit_compile: bool = True,
                   noise_draws: int = 1,
                   t_power: float = 1.0,
                   init_checkpoint=None,
                   init_checkpoint_parts='model_and_ema',
                   eval_steps: Optional[int] = None,
                   eval_timeout: Optional[int] = None,
                   evaluator_builder=None,
                   model_builder=None,
                   argv: Sequence[str] = (),
                   time_budget: Optional[budget_lib.TimeBudget] = None) -> dict:
  """Runs one experiment; everything not named here comes from gin.

  Args:
    model_dir: where checkpoints, summaries, the run record and eval outputs go.
    mode: one of MODES.
    strategy: the distribution strategy (tasks/distribute.py).
    train_steps: total training steps of this run.
    global_batch_size: training examples per step over all replicas.
    eval_batch_size: evaluation examples per step (default: global_batch_size).
    steps_per_loop: steps inside one `tf.function` call (and per progress line).
    checkpoint_interval: steps between checkpoints.
    max_checkpoints: checkpoints kept.
    summary_interval: steps between TensorBoard scalars (default steps_per_loop).
    clip_norm: global gradient-norm clip of the all-reduced gradient.
    seed: seed of the model's initialisation, the data order, the
      augmentation and the diffusion noise.
    jit_compile: XLA-compile the forward/backward pass.
    noise_draws: `(t, eps)` draws per image per step sharing one encoder pass
      (tasks/trainer.py); 1 = Algorithm 1 as written.
    t_power: training times `t = u ** t_power`, `u` uniform (tasks/trainer.py);
      1 = Algorithm 1's `t ~ U(0, 1)`.
    init_checkpoint: a checkpoint (or directory) to start from when model_dir
      has none (the staged schedule), or a sequence of them, restored in
      order (`init_checkpoint_sources`).
    init_checkpoint_parts: what to take from it (INIT_PARTS), or a sequence:
      one part for each checkpoint.
    eval_steps: evaluation batches (default: the whole eval set).
    eval_timeout: seconds `continuous_eval` waits for a new checkpoint.
    evaluator_builder: builds the evaluator (default: the panoptic PQ one,
      `tasks.evaluator.build_evaluator`; video experiments bind
      `@build_video_evaluator`).
    model_builder: builds the model (default: `pix2seq_d.build_model`); the
      encoder-pretraining stage binds `@build_semantic_pretrainer`
      (models/semantic_pretrainer.py; mode 'train' only: it has no sampler).
    argv: the command line, recorded in model_dir.
    time_budget: mode 'train' only: train until this `TimeBudget`'s deadline
      instead of to `train_steps`, re-planning the total steps (and the
      learning-rate schedule's length) at every loop boundary
      (tasks/budget.py). `train_steps` is then only the schedule's length
      until the first plan. A built part passed by the caller (the
      quickstart), not a gin setting.

  Returns:
    `{'global_step'}` and, when this call trained, `'train'`: the last loop's
    outputs (loss, learning_rate, grad_norm, steps_per_second,
    examples_per_second); when it evaluated, `'eval'`: the metrics.
  """
  if mode not in MODES:
    raise ValueError(f'--mode={mode!r} is not one of {list(MODES)}.')
  if time_budget is not None and mode != 'train':
    raise ValueError(f"time_budget needs mode='train', got mode={mode!r}.")
  if model_builder is not None and mode != 'train':
    raise ValueError(f'run_experiment.model_builder={model_builder!r} trains '
                     f"only (mode='train'), got mode={mode!r}.")
  keras.utils.set_random_seed(seed)
  summary_interval = summary_interval or steps_per_loop
  eval_batch_size = eval_batch_size or global_batch_size
  results = {}

  training = mode in ('train', 'train_and_eval')
  init_sources = init_checkpoint_sources(init_checkpoint, init_checkpoint_parts)
  if training:  # 'bfloat16' (variables stored in bfloat16) is inference only.
    precision.check_trainable(precision.set_dtype_policy())
  ema = optimizer = planned_steps = None
  with strategy.scope():
    model = (model_builder or pix2seq_d.build_model)()
    # Evaluation alone needs no optimizer state and no second copy of the
    # weights: the checkpoint's EMA averages are read into the model itself.
    if training:
      ema = pix2seq_d.build_ema(model)
      # With a time budget the schedule's length is a variable the budget
      # re-plans (saved in the checkpoint so that a resume continues the plan).
      planned_steps = (tf.Variable(int(train_steps), dtype=tf.int64,
                                   trainable=False, name='planned_train_steps')
                       if time_budget is not None else None)
      optimizer = optim.build_optimizer(
          total_steps=planned_steps if planned_steps is not None else train_steps)
      optimizer.build(model.trainable_variables)
    global_step = orbit.utils.create_global_step()

  trainer = None
  if training:
    train_dataset = strategy.distribute_datasets_from_function(
        _dataset_fn('train', global_batch_size, is_training=True, seed=seed))
    with strategy.scope():
      trainer = trainer_lib.Pix2SeqDTrainer(
          model=model, optimizer=optimizer, ema=ema, strategy=strategy,
          train_dataset=train_dataset, global_batch_size=global_batch_size,
          total_steps=train_steps, clip_norm=clip_norm, seed=seed,
          jit_compile=jit_compile, noise_draws=noise_draws, t_power=t_power,
          global_step=global_step)
    items = trainer.checkpoint_items()
    if planned_steps is not None:
      items['planned_train_steps'] = planned_steps
    checkpoint = tf.train.Checkpoint(**items)
  elif pix2seq_d.ema_configured():
    checkpoint = EvalCheckpoint(ema=ema_lib.averages_view(model),
                                global_step=global_step)
  else:
    checkpoint = EvalCheckpoint(model=model, global_step=global_step)

  evaluator = None
  if mode != 'train':
    evaluator = (evaluator_builder or evaluator_lib.build_evaluator)(
        model=model, ema=ema, strategy=strategy, model_dir=model_dir,
        eval_batch_size=eval_batch_size,
        dataset_fn=_dataset_fn('eval', eval_batch_size, is_training=False),
        global_step=global_step)

  checkpoint_dir, summary_root, is_chief = _worker_dirs(model_dir, strategy)
  manager = tf.train.CheckpointManager(
      checkpoint, directory=checkpoint_dir, max_to_keep=max_checkpoints,
      step_counter=global_step, checkpoint_interval=checkpoint_interval)

  if mode in ('train', 'train_and_eval'):
    if manager.latest_checkpoint is None:
      for path, parts in init_sources:
        restore_init_checkpoint(path, parts, model, ema)
    if is_chief:
      config.save_run_record(model_dir, argv or sys.argv)

  controller = orbit.Controller(
      strategy=strategy, trainer=trainer, evaluator=evaluator,
      global_step=global_step, steps_per_loop=steps_per_loop,
      checkpoint_manager=manager, summary_interval=summary_interval,
      summary_dir=(os.path.join(summary_root, 'train')
                   if trainer and summary_root else None),
      eval_summary_dir=(os.path.join(summary_root, 'eval')
                        if evaluator and summary_root else None))

  if trainer is not None and not trainer.iterator_checkpointable:
    start_step = int(global_step.numpy())
    if start_step:
      # The distributed iterator's position is not in the checkpoint: continue
      # with a fresh data order seeded by the step, not a replay of the start.
      logging.warning('Resuming at step %d with the data reseeded (seed %d + '
                      'step): distributed iterators are not checkpointable.',
                      start_step, seed)
      trainer.reset_dataset(strategy.distribute_datasets_from_function(
          _dataset_fn('train', global_batch_size, is_training=True,
                      seed=seed + start_step)))

  if mode == 'train' and time_budget is not None:
    budget_lib.train_within_budget(controller, global_step, time_budget,
                                   steps_per_loop, planned_steps, trainer)
  elif mode == 'train':
    controller.train(steps=train_steps)
  elif mode == 'train_and_eval':
    controller.train_and_evaluate(train_steps=train_steps,
                                  eval_steps=eval_steps or -1,
                                  eval_interval=checkpoint_interval)
    results['eval'] = evaluator.last_metrics
  elif mode == 'eval':
    results['eval'] = controller.evaluate(steps=eval_steps or -1)
  else:
    controller.evaluate_continuously(steps=eval_steps or -1,
                                     timeout=eval_timeout)
    results['eval'] = evaluator.last_metrics
  if trainer is not None and trainer.last_outputs:
    results['train'] = dict(trainer.last_outputs)
  results['global_step'] = int(global_step.numpy())
  return results
