"""Tests for tasks/budget.py with a fake clock (no timed test)."""

import numpy as np
import pytest
import tensorflow as tf

from tasks import budget as budget_lib
from tasks import optim


class FakeMachine:
  """A clock and a controller: each trained step advances the clock by the
  machine's current seconds per step, `seconds_per_step(clock)`."""

  def __init__(self, seconds_per_step, loop_overhead=0.0):
    self.now = 0.0
    self.seconds_per_step = seconds_per_step
    self.loop_overhead = loop_overhead
    self.global_step = tf.Variable(0, dtype=tf.int64)
    self.loops = []
    self.final_checkpoints = 0

  def clock(self):
    return self.now

  def train(self, steps, checkpoint_at_completion=True):
    start = int(self.global_step.numpy())
    for _ in range(start, steps):
      self.now += self.seconds_per_step(self.now)
      self.global_step.assign_add(1)
    if steps > start:
      self.now += self.loop_overhead
      self.loops.append(steps - start)
    if checkpoint_at_completion:
      self.final_checkpoints += 1


def _run(seconds_per_step, deadline=600.0, initial=1.0, steps_per_loop=50,
         **kwargs):
  machine = FakeMachine(seconds_per_step, **kwargs)
  budget = budget_lib.TimeBudget(deadline, initial_steps_per_second=initial,
                                 clock=machine.clock)
  total = tf.Variable(0, dtype=tf.int64)
  final = budget_lib.train_within_budget(machine, machine.global_step, budget,
                                         steps_per_loop, total)
  return machine, budget, total, final


@pytest.mark.parametrize('name,seconds_per_step', [
    ('steady', lambda t: 0.5),
    ('halves at 5 min', lambda t: 0.5 if t < 300 else 1.0),
    ('doubles at 5 min', lambda t: 1.0 if t < 300 else 0.5),
    ('load comes and goes', lambda t: 0.4 + 0.6 * (int(t // 90) % 2)),
    ('first loop traced, 10x slower', lambda t: 5.0 if t < 50 else 0.5),
])
def test_ends_within_a_minute_of_the_deadline(name, seconds_per_step):
  machine, budget, total, final = _run(seconds_per_step, loop_overhead=1.0)
  assert abs(machine.now - 600.0) < 60.0, (name, machine.now)
  # The schedule's length is the steps trained, and the final checkpoint
  # is written once.
  assert int(total.numpy()) == final == int(machine.global_step.numpy())
  assert machine.final_checkpoints == 1
  assert all(0 < n <= 50 for n in machine.loops)
  assert len(budget.history) == len(machine.loops) + 1


def test_a_fixed_plan_from_the_first_speed_would_end_early():
  # What the budget replaces: 0.5 s/step measured at first, then twice as
  # fast. Planning once gives 1200 steps, done after 450 s of 600.
  machine, budget, _, final = _run(lambda t: 0.5 if t < 300 else 0.25)
  assert budget.history[1]['total_steps'] < 1300
  assert final > 1700 and abs(machine.now - 600.0) < 5.0


def test_plan_uses_the_last_loops_speed_and_min_steps():
  now = [0.0]
  budget = budget_lib.TimeBudget(100.0, initial_steps_per_second=2.0,
                                 clock=lambda: now[0], min_steps=5)
  assert budget.plan(0) == 200
  now[0] = 10.0
  assert budget.plan(10) == 10 + 90  # 1 step/s over the last loop.
  now[0] = 15.0
  assert budget.plan(30) == 30 + 85 * 4
  now[0] = 150.0  # Past the deadline: stop now, but not before min_steps.
  assert budget.plan(31) == 31
  budget = budget_lib.TimeBudget(10.0, initial_steps_per_second=1.0,
                                 clock=lambda: 20.0, min_steps=5)
  assert budget.plan(0) == 5
  with pytest.raises(ValueError, match='initial_steps_per_second'):
    budget_lib.TimeBudget(1.0, initial_steps_per_second=0.0)


def test_schedule_length_follows_the_variable():
  total = tf.Variable(110, dtype=tf.int64)
  schedule = optim.WarmupLinearDecay(1e-4, total, warmup_steps=10,
                                     end_factor=0.1)
  np.testing.assert_allclose(float(schedule(60)), 1e-4 * (1 - 0.9 * 0.5),
                             rtol=1e-5)
  total.assign(210)  # Re-planned: step 60 is now a quarter into the decay.
  np.testing.assert_allclose(float(schedule(60)), 1e-4 * (1 - 0.9 * 0.25),
                             rtol=1e-5)
  fixed = optim.WarmupLinearDecay(1e-4, 210, warmup_steps=10, end_factor=0.1)
  for step in (0, 5, 10, 60, 210, 300):
    np.testing.assert_allclose(float(schedule(step)), float(fixed(step)),
                               rtol=1e-6)
  assert schedule.get_config()['total_steps'] == 210
  with pytest.raises(ValueError, match='integer'):
    optim.WarmupLinearDecay(1e-4, tf.Variable(1.0))



class _StepClockBudget(budget_lib.TimeBudget):
  """A budget whose clock reads 2 fake seconds per trained step."""

  def __init__(self, deadline, **kwargs):
    self.fake_now = 0.0
    super().__init__(deadline, clock=lambda: self.fake_now, **kwargs)

  def plan(self, step):
    self.fake_now = 2.0 * step
    return super().plan(step)


def test_run_experiment_trains_to_the_budget(tmp_path, synthetic_records):
  """The real training loop (tiny model), timed by the fake clock."""
  import gin  # pylint: disable=g-import-not-at-top
  from tasks import config  # pylint: disable=g-import-not-at-top
  from tasks import distribute  # pylint: disable=g-import-not-at-top
  from tasks import train_lib  # pylint: disable=g-import-not-at-top
  from tests.tasks.conftest import data_bindings  # pylint: disable=g-import-not-at-top

  # The 10 s budget holds 5 steps; the initial guess (1 step/s) plans 10
  # until the first loop (2 steps) is measured.
  budget = _StepClockBudget(10.0, initial_steps_per_second=1.0)
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin(['experiments/coco_stage1_tiny.gin'],
                     data_bindings(synthetic_records) +
                     ['run_experiment.jit_compile = False',
                      'run_experiment.checkpoint_interval = 100'],
                     finalize=False)
    peak = config.gin_value('build_optimizer.learning_rate') or 1e-4
    end_factor = config.gin_value('build_optimizer.end_lr_factor') or 0.1
    results = train_lib.run_experiment(
        str(tmp_path), 'train', distribute.build_strategy('default'),
        argv=['test'], time_budget=budget)
  finally:
    gin.clear_config()
  assert results['global_step'] == 5
  assert [h['total_steps'] for h in budget.history] == [10, 5, 5, 5]
  # The last learning rate is the end of the decay over the 5 planned steps.
  assert results['train']['learning_rate'] == pytest.approx(
      peak * end_factor, rel=1e-5)
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('ckpt-5')
  reader = tf.train.load_checkpoint(str(tmp_path))
  key = 'planned_train_steps/.ATTRIBUTES/VARIABLE_VALUE'
  assert int(reader.get_tensor(key)) == 5
