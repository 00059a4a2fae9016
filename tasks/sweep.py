"""Sweeps: one training run per setting and seed, evaluated and tabled (issue 11).

`python -m tools.sweep --sweep="B_SCALE=0.03,0.1,0.3,1.0" --seeds=2
--train_steps=N --output_dir=D` trains the quickstart's model on the
quickstart's data once for every setting and seed, evaluates each run, and
writes `D/results.{json,md,png}` plus TensorBoard HParams summaries
(tasks/sweep_report.py). It is how the paper's ablations (Tables 3-5, Fig. 6)
are reproduced at small scale (README "Ablations at small scale").

- A *setting* is a tuple of gin bindings `(name, value text)`. `--sweep`
  axes form a grid (`combine='grid'`) or are varied one at a time from the
  base configuration (`combine='separate'`, the paper's ablation style: b is
  swept at p = 0.2, p at b = 0.1, and the base run is shared).
- A binding whose value equals the base configuration's is dropped from the
  setting, so `B_SCALE=0.1` and `LOSS_P=0.2` name the same run (`base`) and
  it trains once.
- Runs are ordinary model_dirs, `D/runs/<setting>__seed<k>/`, trained one
  after another for exactly `train_steps` steps (not a wall-clock budget,
  which load would distort) with `run_experiment.seed = k` (initialisation,
  data order, noise). A finished run records `sweep_run.json` and is skipped
  on a re-run; a killed one resumes from its last checkpoint.
- `--eval_only_sweep` axes (sampling steps, td, min_pixels, ...) re-evaluate
  every trained run with each value; each evaluation is cached in
  `D/runs/<run>/sweep_eval/<eval setting>.json`.
- Everything is validated (unknown gin name, unparsable value, empty axis)
  before the first run starts.
"""

import dataclasses
import itertools
import os
import re
import time
from typing import Callable, Optional, Sequence

from absl import logging
import gin
import keras
import tensorflow as tf

from data import source_files
from tasks import config
from tasks import distribute
from tasks import quickstart
from tasks import quickstart_pretrain
from tasks import train_lib

COMBINE_MODES = ('grid', 'separate')
RUN_RECORD = 'sweep_run.json'
EVAL_DIR = 'sweep_eval'
BASE_NAME = 'base'
# Bindings the sweep sets itself: sweeping them would silently be overridden.
RESERVED = ('run_experiment.seed', 'run_experiment.train_steps')


@dataclasses.dataclass(frozen=True)
class Axis:
  """One swept gin name and its values, as gin literal texts."""
  name: str
  values: tuple


def split_values(text: str) -> list:
  """Splits `'0.1,(4, 4),"a,b"'` at the commas outside brackets and quotes."""
  values, depth, quote, current = [], 0, None, ''
  for char in text:
    if quote:
      quote = None if char == quote else quote
    elif char in '\'"':
      quote = char
    elif char in '([{':
      depth += 1
    elif char in ')]}':
      depth -= 1
    elif char == ',' and depth == 0:
      values.append(current.strip())
      current = ''
      continue
    current += char
  values.append(current.strip())
  return values


def parse_axis(text: str, flag: str = '--sweep') -> Axis:
  """Parses `'NAME=v1,v2,...'`.

  Raises:
    ValueError: no `=`, no name, or an empty value, naming the flag.
  """
  name, sep, rest = text.partition('=')
  name = name.strip()
  values = split_values(rest) if sep else []
  if not sep or not name or not rest.strip() or any(not v for v in values):
    raise ValueError(f'{flag}={text!r}: expected NAME=VALUE[,VALUE...] with '
                     'no empty value (e.g. "B_SCALE=0.03,0.1").')
  if len(set(values)) != len(values):
    raise ValueError(f'{flag}={text!r}: a value is listed twice.')
  return Axis(name, tuple(values))


def combine_axes(axes: Sequence[Axis], combine: str) -> list:
  """The settings spanned by `axes`: a grid, or each axis alone.

  Returns:
    A list of settings, each a tuple of `(name, value text)`; `[()]` (the
    base setting alone) when there are no axes. With 'separate' the base
    setting comes first.
  """
  if combine not in COMBINE_MODES:
    raise ValueError(f'combine={combine!r} is not one of {COMBINE_MODES}.')
  if not axes:
    return [()]
  if combine == 'grid':
    return [tuple(zip([a.name for a in axes], values))
            for values in itertools.product(*[a.values for a in axes])]
  return [()] + [((axis.name, value),) for axis in axes for value in axis.values]


def _base_value(name: str):
  """The base configuration's value of a macro or binding (None if unbound)."""
  return config.gin_value(('%' + name) if '.' not in name else name)


def canonical(setting, base_values: dict) -> tuple:
  """`setting` without the bindings whose value equals the base's."""
  return tuple((name, text) for name, text in setting
               if gin.config.parse_value(text) != base_values.get(name, object()))


def setting_name(setting) -> str:
  """A folder-safe name: `B_SCALE=0.3`, `loss_type=l2+LOSS_P=0`, or `base`."""
  if not setting:
    return BASE_NAME
  parts = []
  for name, text in setting:
    short = name.split('/')[-1].split('.')[-1]
    value = re.sub(r'[^A-Za-z0-9._-]+', '_', text.strip('\'"')).strip('_')
    parts.append(f'{short}={value}')
  return '+'.join(parts)


def bindings(setting) -> list:
  return [f'{name} = {text}' for name, text in setting]


@dataclasses.dataclass
class Plan:
  """What a sweep will do, checked before anything runs."""
  train_settings: list
  eval_settings: list
  base_values: dict


def plan_sweep(gin_files: Sequence[str], base_bindings: Sequence[str],
               train_axes: Sequence[Axis], eval_axes: Sequence[Axis],
               combine: str = 'grid') -> Plan:
  """Validates the sweep against the gin configuration and lists its settings.

  Every setting's bindings are parsed on top of the base configuration, so
  an unknown configurable or parameter, an unknown macro or a value that
  does not parse is an error here, before the first run.

  Raises:
    ValueError: naming the flag value at fault.
  """
  names = [axis.name for axis in list(train_axes) + list(eval_axes)]
  for name in names:
    if names.count(name) > 1:
      raise ValueError(f'{name} is swept twice (--sweep / --eval_only_sweep).')
    if name in RESERVED:
      raise ValueError(f'{name} is set by the sweep itself: use --seeds / '
                       '--train_steps.')
  config.import_configurables()
  gin.clear_config()
  config.parse_gin(gin_files, base_bindings, finalize=False)
  base_values = {name: _base_value(name) for name in names}
  for axis in list(train_axes) + list(eval_axes):
    if '.' not in axis.name and base_values[axis.name] is None:
      raise ValueError(f'--sweep {axis.name}: no such gin macro in '
                       f'{list(gin_files)} (macros are UPPER_CASE names bound '
                       'in the files; parameters are configurable.param).')
    for text in axis.values:
      try:
        gin.config.parse_value(text)
        gin.parse_config(f'{axis.name} = {text}')
      except (ValueError, SyntaxError) as e:
        raise ValueError(f'--sweep {axis.name}={text}: not a valid gin binding '
                         f'({str(e).splitlines()[0]}).') from e
  gin.clear_config()
  unique = lambda settings: list(dict.fromkeys(
      canonical(s, base_values) for s in settings))
  return Plan(train_settings=unique(combine_axes(train_axes, combine)),
              eval_settings=unique(combine_axes(eval_axes, combine)),
              base_values=base_values)


def run_dir(output_dir: str, setting, seed: int) -> str:
  return os.path.join(output_dir, 'runs', f'{setting_name(setting)}__seed{seed}')


def configure(gin_files, base_bindings, extra) -> None:
  """Parses the run's gin configuration, as the quickstart would.

  The quickstart's `quickstart_settings.pretrained_encoder` and
  `pretrained_decoder` (set in experiments/quickstart.gin) become the
  init-checkpoint bindings the quickstart itself adds
  (`quickstart_pretrain.parse_pretrained_parts`), so
  a sweep measures what `tools.quickstart` trains.
  """
  gin.clear_config()
  bindings = list(base_bindings) + list(extra)
  config.parse_gin(gin_files, bindings, finalize=False)
  quickstart_pretrain.parse_pretrained_parts(quickstart.quickstart_settings(),
                                               bindings)


def run_bindings(setting, seed: int, train_steps: int) -> list:
  """The gin bindings of one run: its setting, seed and step count."""
  return bindings(setting) + [f'run_experiment.seed = {seed}',
                              f'run_experiment.train_steps = {train_steps}']


def train_run(model_dir: str, gin_files, base_bindings, setting, seed: int,
              train_steps: int, checkpoint_interval: int) -> dict:
  """Trains one run to `train_steps` (resuming a killed one) unless finished.

  Returns:
    The run record (`sweep_run.json`): bindings, seed, steps, train seconds.
  """
  record_path = os.path.join(model_dir, RUN_RECORD)
  if tf.io.gfile.exists(record_path):
    record = source_files.read_json(record_path)
    if record['train_steps'] == train_steps:
      logging.info('sweep: %s is finished, skipping.', model_dir)
      return record
    raise ValueError(f'{model_dir} was trained for {record["train_steps"]} '
                     f'steps, not {train_steps}: use another --output_dir.')
  configure(gin_files, base_bindings, run_bindings(setting, seed, train_steps) + [
      f'run_experiment.checkpoint_interval = {checkpoint_interval}',
      'run_experiment.max_checkpoints = 1'])
  keras.backend.clear_session()
  start = time.time()
  result = train_lib.run_experiment(
      model_dir, 'train', distribute.build_strategy('default'),
      argv=['tools.sweep'] + bindings(setting) + [f'seed={seed}'])
  record = dict(setting=[list(b) for b in setting], seed=seed,
                train_steps=train_steps, global_step=result['global_step'],
                train_seconds=round(time.time() - start, 1),
                final_loss=float(result.get('train', {}).get('loss', float('nan'))))
  source_files.write_json_atomic(record_path, record)
  return record


def eval_run(model_dir: str, gin_files, base_bindings, setting, seed: int,
             train_steps: int, eval_setting, write_predictions: bool) -> dict:
  """Evaluates a trained run with `eval_setting` (cached); returns its metrics."""
  path = os.path.join(model_dir, EVAL_DIR, setting_name(eval_setting) + '.json')
  if tf.io.gfile.exists(path):
    return source_files.read_json(path)
  extra = run_bindings(setting, seed, train_steps) + bindings(eval_setting)
  if not write_predictions:
    extra += ['build_evaluator.write_predictions = False',
              'build_video_evaluator.write_predictions = False']
  configure(gin_files, base_bindings, extra)
  keras.backend.clear_session()
  start = time.time()
  result = train_lib.run_experiment(model_dir, 'eval',
                                    distribute.build_strategy('default'))
  metrics = {k: float(v) for k, v in result['eval'].items()
             if isinstance(v, (int, float)) or hasattr(v, 'dtype')}
  metrics['eval_seconds'] = round(time.time() - start, 1)
  tf.io.gfile.makedirs(os.path.dirname(path))
  source_files.write_json_atomic(path, metrics)
  return metrics


def run_sweep(output_dir: str, gin_files: Sequence[str],
              base_bindings: Sequence[str], plan: Plan, seeds: int,
              train_steps: int, checkpoint_interval: int = 100,
              on_result: Optional[Callable[[list], None]] = None) -> list:
  """Trains and evaluates every setting x seed of `plan`, one after another.

  Args:
    output_dir: `runs/` goes here.
    gin_files, base_bindings: the base configuration (data bindings included).
    plan: `plan_sweep(...)`.
    seeds: runs per setting (seeds 0 .. seeds - 1).
    train_steps: training steps of every run.
    checkpoint_interval: steps between checkpoints (what a killed run loses).
    on_result: called with all results so far after each evaluation (the
      report is rewritten as the sweep goes).

  Returns:
    One dict per (train setting, seed, eval setting): `train_setting`,
    `eval_setting`, `seed`, `run`, `train_steps`, `train_seconds`, `metrics`.
  """
  results = []
  for setting in plan.train_settings:
    for seed in range(seeds):
      model_dir = run_dir(output_dir, setting, seed)
      logging.info('sweep: run %s (%d steps)', model_dir, train_steps)
      record = train_run(model_dir, gin_files, base_bindings, setting, seed,
                         train_steps, checkpoint_interval)
      for eval_setting in plan.eval_settings:
        metrics = eval_run(model_dir, gin_files, base_bindings, setting, seed,
                           train_steps, eval_setting,
                           write_predictions=not eval_setting)
        results.append(dict(
            run=os.path.basename(model_dir), seed=seed,
            train_setting=[list(b) for b in setting],
            eval_setting=[list(b) for b in eval_setting],
            train_steps=record['global_step'],
            train_seconds=record['train_seconds'], metrics=metrics))
        if on_result is not None:
          on_result(results)
  return results
