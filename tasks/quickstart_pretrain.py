"""The quickstart's optional first stage: the image encoder pretrained alone (issue 12).

The paper starts from a pre-trained encoder (§4); at the quickstart's scale
there is none, and the tiny encoder learns to tell the shapes apart slowly
inside diffusion training (README "What limits the quickstart"). With
`quickstart_settings.encoder_pretrain_fraction > 0` the quickstart first
trains the encoder alone on each pixel's class (models/semantic_pretrainer.py,
experiments/encoder_pretrain.gin parsed after the experiment's files; ~7x the
steps per second of a diffusion step) for that share of the training time,
then starts the diffusion training from its encoder
(`init_checkpoint_parts = 'encoder'`).
"""

import os
import time
from typing import Optional, Sequence

import gin
import tensorflow as tf

from tasks import budget as budget_lib
from tasks import config
from tasks import partial_restore
from tasks import quickstart_schedule
from tasks import train_lib

ENCODER_PRETRAIN_GIN = 'experiments/encoder_pretrain.gin'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _shipped_path(setting: str, path: str) -> str:
  """`path` relative to the repository root unless absolute; must hold a checkpoint."""
  if not os.path.isabs(path) and '://' not in path:
    path = os.path.join(REPO_ROOT, path)
  try:
    partial_restore.resolve_checkpoint(path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'quickstart_settings.{setting}: {e}') from e
  return path


def pretrained_bindings(encoder: str = '', decoder: str = '') -> list:
  """Bindings that start the diffusion training from shipped parts.

  Args:
    encoder: `quickstart_settings.pretrained_encoder`: an encoder init
      checkpoint folder or prefix (`tools.extract_part`), relative to the
      repository root unless absolute; '' = none (from scratch).
    decoder: `quickstart_settings.pretrained_decoder`: the same for the
      decoder (the unconditional mask prior, experiments/decoder_pretrain.gin).

  Returns:
    [] for neither; one `init_checkpoint` with its part for one; both as
    sequences (`train_lib.init_checkpoint_sources`) for both.

  Raises:
    FileNotFoundError: naming the setting and the path, when it holds no
      checkpoint.
  """
  sources = [(_shipped_path(f'pretrained_{part}', path), part)
             for path, part in ((encoder, 'encoder'), (decoder, 'decoder')) if path]
  if not sources:
    return []
  if len(sources) == 1:
    (path, part), = sources
    return [f"run_experiment.init_checkpoint = '{path}'",
            f"run_experiment.init_checkpoint_parts = '{part}'"]
  paths, parts = [list(x) for x in zip(*sources)]
  return [f'run_experiment.init_checkpoint = {paths!r}',
          f'run_experiment.init_checkpoint_parts = {parts!r}']


def parse_pretrained_parts(settings: dict, bindings: Sequence[str] = ()) -> None:
  """Adds the bindings of the settings' shipped parts to the parsed gin config.

  The one place the quickstarts (image and video) and `tools.sweep` turn
  `pretrained_encoder` / `pretrained_decoder` into init-checkpoint bindings
  (`pretrained_bindings`). `bindings` (the command line's, a sweep's) are
  parsed again after them, so an explicit `run_experiment.init_checkpoint`
  still wins.

  Args:
    settings: `quickstart.quickstart_settings()`.
    bindings: the bindings the config was parsed with.
  """
  init = pretrained_bindings(settings['pretrained_encoder'],
                             settings['pretrained_decoder'])
  if init:
    config.parse_gin((), init + list(bindings), finalize=False)


def encoder_pretrain_deadline(minutes: float, start_time: float,
                              fraction: float, clock=time.time) -> float:
  """When the encoder-pretraining stage ends: `fraction` of the training time left.

  Training (both stages) ends `overhead_minutes` before the budget
  (`quickstart_schedule.make_time_budget`); the diffusion training that
  follows the stage gets the rest.
  """
  end = quickstart_schedule.make_time_budget(minutes, start_time, 1.0,
                                             clock=clock).deadline
  now = float(clock())
  return now + fraction * max(end - now, 0.0)


def pretrain_encoder_stage(pretrain_dir: str, strategy, gin_files: Sequence[str],
                           bindings: Sequence[str], settings: dict,
                           minutes: float, start_time: float,
                           train_steps: Optional[int],
                           argv: Sequence[str] = ()) -> tuple:
  """Trains the encoder alone (module docstring) under the stage's gin file.

  `settings['encoder_pretrain_gin']` is parsed after `gin_files`. Training
  runs for the stage's share of the time (`encoder_pretrain_deadline`,
  re-planned at every loop like the main training) or, when the diffusion
  training's steps are given, for `encoder_pretrain_steps` (default as many).

  Args:
    pretrain_dir: the stage's model_dir (replaced).
    strategy: the distribution strategy.
    gin_files, bindings: the experiment's gin files and bindings.
    settings: `quickstart_settings()`.
    minutes, start_time: the quickstart's budget and start.
    train_steps: the diffusion training's explicit steps, or None (budget).
    argv: the command line, recorded with the stage.

  Returns:
    `(summary, init_bindings)`: what the stage trained (`{'train_steps',
    'budget'?}`), and the bindings that start the diffusion training from its
    encoder (and from `settings['pretrained_decoder']`, if any). The gin
    config is left cleared: the caller parses its own again.
  """
  if tf.io.gfile.exists(pretrain_dir):
    tf.io.gfile.rmtree(pretrain_dir)
  gin.clear_config()
  config.parse_gin(list(gin_files) + [settings['encoder_pretrain_gin']],
                   list(bindings), finalize=False)
  time_budget = None
  if train_steps is None:
    time_budget = budget_lib.TimeBudget(
        encoder_pretrain_deadline(minutes, start_time,
                                  settings['encoder_pretrain_fraction']),
        initial_steps_per_second=(
            settings['encoder_pretrain_steps_per_minute'] / 60.0))
    stage_steps = time_budget.plan(0)
  else:
    stage_steps = settings['encoder_pretrain_steps'] or train_steps
  gin.bind_parameter('run_experiment.train_steps', int(stage_steps))
  trained = train_lib.run_experiment(pretrain_dir, 'train', strategy,
                                     argv=list(argv) or ['quickstart'],
                                     time_budget=time_budget)
  gin.clear_config()
  summary = {'train_steps': trained['global_step']}
  if time_budget is not None:
    summary['budget'] = time_budget.summary()
  if '://' not in pretrain_dir:
    pretrain_dir = os.path.abspath(pretrain_dir)
  return summary, pretrained_bindings(pretrain_dir, settings['pretrained_decoder'])
