"""Training to a wall-clock deadline on a machine whose speed changes (issue 12).

A step count fixed from one early speed measurement ends early when the
machine gets faster (a quickstart measured under load planned 803 steps and
finished 4.4 minutes early) and late when it gets slower. Here the total is
re-planned at every training-loop boundary:

    total = step + (deadline - now) * speed of the last loop,

so the error at the end is bounded by how much the speed changes within the
last loop (`steps_per_loop` steps, seconds on a CPU), not over the whole run.

The learning-rate schedule follows the plan: its total step count is a
variable (`tasks.optim.WarmupLinearDecay` accepts a `tf.Variable`) that each
re-plan assigns, so the linear decay always runs to the end of the planned
run. Of the two ways to make the schedule follow the budget — a function of
the fraction of time used, or a step schedule whose length is updated — the
second keeps the schedule a pure function of the step between re-plans
(identical steps give identical learning rates, as in a fixed run) and stores
the plan in the checkpoint like any other variable.

The clock is injectable (`TimeBudget(clock=...)`): tests drive it by hand.
"""

import time
from typing import Callable, Optional

from absl import logging
import tensorflow as tf


class TimeBudget:
  """Plans the total training steps that end at `deadline` (module docstring).

  Attributes:
    deadline: the clock reading at which training should end.
    steps_per_second: the speed the last plan used.
    history: one dict per plan: `step`, `seconds_left`, `steps_per_second`,
      `total_steps`.
  """

  def __init__(self, deadline: float, *, initial_steps_per_second: float,
               clock: Callable[[], float] = time.time, min_steps: int = 1):
    """Args:
      deadline: when training should end, in `clock` seconds.
      initial_steps_per_second: the speed assumed before the first loop is
        measured (it shapes only the first loop's learning rate: a guess too
        high keeps the first loop nearer the peak, corrected at its end).
      clock: returns the current time in seconds (`time.time`; tests pass a
        fake).
      min_steps: the plan never ends before this step (a run whose deadline
        has passed still trains this many).
    """
    if not initial_steps_per_second > 0:
      raise ValueError(f'initial_steps_per_second={initial_steps_per_second} '
                       'must be > 0.')
    self.deadline = float(deadline)
    self.clock = clock
    self.min_steps = int(min_steps)
    self.steps_per_second = float(initial_steps_per_second)
    self.history = []
    self._last_mark = None  # (time, step) of the previous plan.

  def plan(self, step: int) -> int:
    """The total step count to train to, planned at `step` (a loop boundary).

    The speed is that of the steps since the previous plan (the last loop,
    including its checkpoint and summary time); at the first call, the
    initial speed.

    Returns:
      `max(min_steps, step + floor(seconds_left * steps_per_second))`.
    """
    now = float(self.clock())
    if self._last_mark is not None:
      last_time, last_step = self._last_mark
      if step > last_step and now > last_time:
        self.steps_per_second = (step - last_step) / (now - last_time)
    self._last_mark = (now, step)
    seconds_left = max(self.deadline - now, 0.0)
    total = max(self.min_steps,
                step + int(seconds_left * self.steps_per_second))
    self.history.append(dict(step=int(step), seconds_left=seconds_left,
                             steps_per_second=self.steps_per_second,
                             total_steps=int(total)))
    return total

  def summary(self) -> dict:
    """`{'plans': number of plans, 'first', 'last'}`: what was planned."""
    return {'plans': len(self.history),
            'first': self.history[0] if self.history else None,
            'last': self.history[-1] if self.history else None}


def train_within_budget(controller, global_step: tf.Variable,
                        budget: TimeBudget, steps_per_loop: int,
                        total_steps: tf.Variable,
                        trainer: Optional[object] = None) -> int:
  """Trains loop by loop, re-planning the total before each loop.

  Args:
    controller: the `orbit.Controller` (its `train(steps, ...)` is called
      with one loop's target at a time; checkpoints keep their interval).
    global_step: the run's step variable.
    budget: the `TimeBudget`.
    steps_per_loop: steps per loop (the last one may be shorter).
    total_steps: the learning-rate schedule's total (int64 variable),
      assigned each plan and, at the end, the steps actually trained.
    trainer: if given, its `total_steps` (the progress line's ETA) follows.

  Returns:
    The final step. A checkpoint of it is saved.
  """
  step = int(global_step.numpy())
  total = budget.plan(step)
  while step < total:
    total_steps.assign(total)
    if trainer is not None:
      trainer.total_steps = total
    controller.train(steps=min(step + steps_per_loop, total),
                     checkpoint_at_completion=False)
    step = int(global_step.numpy())
    total = budget.plan(step)
    logging.info('time budget: step %d, %.1f s left at %.2f steps/s -> '
                 'total %d', step, budget.history[-1]['seconds_left'],
                 budget.steps_per_second, total)
  total_steps.assign(step)
  controller.train(steps=step)  # Trains nothing; saves the final checkpoint.
  return step
