"""How the quickstarts size training to their wall-clock budget (tasks/quickstart.py, step 2).

Two ways, chosen by `quickstart_settings.replan_budget`:

- re-planned (default): a `tasks.budget.TimeBudget` ending training
  `train_steps_for_minutes.overhead_minutes` before the budget ends re-plans
  the total step count at every training loop from the speed measured so far
  (`make_time_budget`), the learning-rate schedule following the plan;
- fixed: the step count is set before training from the speed of two short
  loops in a scratch folder (`schedule_train_steps`).
"""

import contextlib
import io
import time
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf

from tasks import budget as budget_lib
from tasks import config
from tasks import train_lib

DEFAULT_OVERHEAD_MINUTES = 2.0
DEFAULT_MIN_STEPS = 10


@gin.configurable
def train_steps_for_minutes(minutes: float, steps_per_minute: float,
                            overhead_minutes: float = DEFAULT_OVERHEAD_MINUTES,
                            margin: float = 0.9,
                            min_steps: int = DEFAULT_MIN_STEPS) -> int:
  """Training steps that fit what is left of a wall-clock budget.

  Args:
    minutes: the minutes left for training and everything after it.
    steps_per_minute: training speed measured on this machine, now
      (`measure_steps_per_minute`).
    overhead_minutes: what the stages after the steps take (tracing the
      training step again, evaluation, export, pictures).
    margin: fraction of the measured speed planned for (a shared machine's
      speed varies).
    min_steps: lower bound.

  Returns:
    `max(min_steps, (minutes - overhead_minutes) * steps_per_minute * margin)`.
  """
  return max(min_steps,
             int((minutes - overhead_minutes) * steps_per_minute * margin))


@gin.configurable(denylist=['model_dir', 'strategy', 'argv'])
def measure_steps_per_minute(model_dir: str, strategy, argv: Sequence[str] = (),
                             loop_steps: int = 25) -> float:
  """The gin experiment's training speed on this machine, measured now.

  Trains two loops of `loop_steps` steps in a scratch folder next to
  `model_dir` (deleted afterwards) and keeps the second loop's speed: the
  first one includes tracing. The data, model and batch are the experiment's.

  Returns:
    Training steps per minute.
  """
  scratch = model_dir.rstrip('/') + '_speed'
  names = ('run_experiment.train_steps', 'run_experiment.steps_per_loop',
           'run_experiment.checkpoint_interval')
  saved = {name: config.gin_value(name) for name in names}
  try:
    gin.bind_parameter(names[0], 2 * loop_steps)
    gin.bind_parameter(names[1], loop_steps)
    gin.bind_parameter(names[2], 10 * loop_steps)
    with contextlib.redirect_stdout(io.StringIO()):
      result = train_lib.run_experiment(scratch, 'train', strategy,
                                        argv=list(argv) or ['quickstart'])
  finally:
    for name, value in saved.items():
      if value is not None:
        gin.bind_parameter(name, value)
    if tf.io.gfile.exists(scratch):
      tf.io.gfile.rmtree(scratch)
  return 60.0 * result['train']['steps_per_second']


def schedule_train_steps(model_dir: str, strategy, minutes: float,
                         start_time: float, argv: Sequence[str] = ()) -> dict:
  """`minutes` of wall clock (from `start_time`) as a number of training steps.

  Returns:
    `{'train_steps', 'steps_per_minute' (measured), 'minutes_left'}`.
  """
  steps_per_minute = measure_steps_per_minute(model_dir, strategy, argv)
  minutes_left = minutes - (time.time() - start_time) / 60.0
  train_steps = train_steps_for_minutes(minutes_left, steps_per_minute)
  logging.info('quickstart: %.0f training steps/min measured; %.1f of %.1f '
               'minutes left -> %d steps', steps_per_minute, minutes_left,
               minutes, train_steps)
  return {'train_steps': train_steps, 'steps_per_minute': steps_per_minute,
          'minutes_left': minutes_left}


def make_time_budget(minutes: float, start_time: float,
                     initial_steps_per_minute: float,
                     clock=time.time) -> budget_lib.TimeBudget:
  """A `TimeBudget` ending training `overhead_minutes` before the budget ends.

  `overhead_minutes` and `min_steps` are `train_steps_for_minutes`' (one
  binding for both ways of planning).

  Args:
    minutes: the whole call's budget.
    start_time: when the call started (`clock` seconds).
    initial_steps_per_minute: speed assumed until the first loop is measured.
    clock: the clock (tests pass a fake).
  """
  overhead = config.gin_value('train_steps_for_minutes.overhead_minutes')
  min_steps = config.gin_value('train_steps_for_minutes.min_steps')
  overhead = DEFAULT_OVERHEAD_MINUTES if overhead is None else overhead
  return budget_lib.TimeBudget(
      start_time + 60.0 * (minutes - overhead),
      initial_steps_per_second=initial_steps_per_minute / 60.0, clock=clock,
      min_steps=DEFAULT_MIN_STEPS if min_steps is None else min_steps)


def plan_training(model_dir: str, strategy, minutes: float, start_time: float,
                  train_steps: Optional[int], settings: dict, stages,
                  argv: Sequence[str] = ()) -> tuple:
  """How the quickstarts size training (module docstring, step 2).

  Binds `run_experiment.train_steps` (with a time budget: the first plan, the
  schedule's length until the first loop is measured).

  Returns:
    `(schedule, time_budget)`: the schedule dict for the summary and the
    `TimeBudget` to pass to `run_experiment` (None: train `train_steps`).
  """
  schedule, time_budget = {'train_steps': train_steps}, None
  if train_steps is None and settings['replan_budget']:
    time_budget = make_time_budget(minutes, start_time,
                                   settings['initial_steps_per_minute'])
    remaining = max(time_budget.deadline - time.time(), 0.0)
    schedule = {'replan': True,
                'train_until_minute': (time_budget.deadline - start_time) / 60,
                'train_steps': max(time_budget.min_steps, int(
                    remaining * time_budget.steps_per_second))}
  elif train_steps is None:
    with stages('calibrate'):
      schedule = schedule_train_steps(model_dir, strategy, minutes, start_time,
                                      argv)
  gin.bind_parameter('run_experiment.train_steps', int(schedule['train_steps']))
  return schedule, time_budget
