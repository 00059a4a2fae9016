"""A sweep's results as JSON, a Markdown table, a plot and HParams summaries (issue 11).

`write_report(output_dir, name, results, ...)` writes

- `D/<name>.json`: every evaluation of every run (bindings, seed, steps,
  metrics, train seconds);
- `D/<name>.md`: one row per setting, each metric as `mean ± half-range`
  over the seeds (with two seeds: the two values are mean ± that number);
- `D/<name>.png`: the main metric against each swept value, one point per
  seed and a line through the means (one panel per axis);
- `D/hparams/`: TensorBoard HParams summaries, one trial per evaluation
  (`tensorboard --logdir D/hparams`, HParams tab).

Everything is written to a temporary name and renamed.
"""

import collections
import io
import json
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from data import source_files

# Columns of the table, in this order, where the evaluator reports them.
METRIC_ORDER = ('pq', 'pq_things', 'pq_stuff', 'sq', 'rq', 'miou',
                'miou_things', 'miou_stuff', 'merged', 'split',
                'JandF-Mean', 'J-Mean', 'F-Mean', 'J-Recall', 'F-Recall',
                'J-Decay', 'F-Decay', 'STQ', 'AQ', 'SQ')


def metric_keys(results: Sequence[dict]) -> list:
  """The metrics every result has, in METRIC_ORDER (others after, sorted)."""
  if not results:
    return []
  common = set(results[0]['metrics'])
  for result in results[1:]:
    common &= set(result['metrics'])
  common.discard('eval_seconds')
  return ([k for k in METRIC_ORDER if k in common] +
          sorted(common - set(METRIC_ORDER)))


def literal(value) -> str:
  """A base value as gin literal text, as the swept values are written."""
  return repr(value) if isinstance(value, str) else str(value)


def _label(setting) -> str:
  return ', '.join(f'{name}={text}' for name, text in setting) or 'base'


def group_results(results: Sequence[dict]) -> 'collections.OrderedDict':
  """`{(train label, eval label): [results of each seed]}` in sweep order."""
  groups = collections.OrderedDict()
  for result in results:
    key = (_label(result['train_setting']), _label(result['eval_setting']))
    groups.setdefault(key, []).append(result)
  return groups


def _mean_spread(values) -> tuple:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float((values.max() - values.min()) / 2)


def markdown_table(results: Sequence[dict], train_base: str = '',
                   eval_base: str = '') -> str:
  """One row per (train setting, eval setting): `mean ± half-range` per metric.

  Args:
    results: `tasks.sweep.run_sweep`'s.
    train_base, eval_base: the base values of the swept names, shown next to
      `base` (e.g. `B_SCALE=0.1`).
  """
  with_base = lambda label, base: (f'{label} ({base})' if label == 'base'
                                   and base else label)
  keys = metric_keys(results)
  has_eval = any(r['eval_setting'] for r in results)
  header = ['training setting'] + (['evaluation'] if has_eval else []) + [
      'seeds'] + keys + ['train s (mean)']
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  for (train_label, eval_label), runs in group_results(results).items():
    cells = [with_base(train_label, train_base)]
    if has_eval:
      cells.append(with_base(eval_label, eval_base))
    cells.append(str(len(runs)))
    for key in keys:
      mean, spread = _mean_spread([r['metrics'][key] for r in runs])
      cells.append(f'{mean:.3f} ± {spread:.3f}')
    cells.append(f'{np.mean([r["train_seconds"] for r in runs]):.0f}')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _as_number(text):
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def axis_points(results: Sequence[dict], axis: str, base_text: str,
                combine: str, metric: str) -> dict:
  """`{series label: [(x text, seed, value)]}` for one axis's panel.

  With 'separate', a panel holds the base runs and the runs that vary this
  axis alone; with 'grid', every run, one series per value of the others.
  """
  series = collections.OrderedDict()
  for result in results:
    bound = dict(map(tuple, result['train_setting'] + result['eval_setting']))
    others = tuple((k, v) for k, v in bound.items() if k != axis)
    if combine == 'separate' and others:
      continue
    label = _label(others) if others else 'base'
    series.setdefault(label, []).append(
        (bound.get(axis, base_text), result['seed'], result['metrics'][metric]))
  return series


def plot_png(results: Sequence[dict], axes: Sequence[str], base_values: dict,
             combine: str) -> bytes:
  """The main metric against each axis's values (PNG bytes)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  metric = metric_keys(results)[0]
  axes = list(axes) or ['(base)']
  figure, panels = plt.subplots(1, len(axes), figsize=(4.5 * len(axes), 3.6),
                                squeeze=False)
  for panel, axis in zip(panels[0], axes):
    base_text = literal(base_values.get(axis))
    series = axis_points(results, axis, base_text, combine, metric)
    texts = sorted({x for points in series.values() for x, _, _ in points},
                   key=lambda t: (_as_number(t) is None, _as_number(t) or 0, t))
    numeric = all(_as_number(t) is not None for t in texts)
    position = {t: (_as_number(t) if numeric else i) for i, t in enumerate(texts)}
    for label, points in series.items():
      xs = [position[x] for x, _, _ in points]
      panel.scatter(xs, [v for _, _, v in points], s=14, alpha=0.5)
      by_x = collections.defaultdict(list)
      for x, _, value in points:
        by_x[position[x]].append(value)
      mean_x = sorted(by_x)
      panel.plot(mean_x, [np.mean(by_x[x]) for x in mean_x], marker='o',
                 label=f'{label} (mean)')
    values = [position[t] for t in texts]
    if numeric and values and min(values) > 0 and max(values) >= 20 * min(values):
      panel.set_xscale('log')
    if not numeric:
      panel.set_xticks(values, texts, rotation=20)
    panel.set_xlabel(axis)
    panel.set_ylabel(metric)
    panel.grid(alpha=0.3)
    panel.legend(fontsize=7)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=100)
  plt.close(figure)
  return buffer.getvalue()


def _hparam_value(text: str):
  number = _as_number(text)
  return number if number is not None else text.strip('\'"')


def write_hparams(hparams_dir: str, results: Sequence[dict], axes: Sequence[str],
                  base_values: dict) -> None:
  """One HParams trial per evaluation, plus the experiment's config."""
  from tensorboard.plugins.hparams import api as hp  # pylint: disable=g-import-not-at-top
  keys = metric_keys(results)
  names = list(axes) + ['seed']
  with tf.summary.create_file_writer(hparams_dir).as_default():
    hp.hparams_config(hparams=[hp.HParam(n) for n in names],
                      metrics=[hp.Metric(k) for k in keys])
  for result in results:
    bound = dict(map(tuple, result['train_setting'] + result['eval_setting']))
    values = {n: _hparam_value(bound.get(n, literal(base_values.get(n))))
              for n in axes}
    values['seed'] = result['seed']
    trial = result['run'] + ('__' + _label(result['eval_setting']).replace(
        ', ', '+') if result['eval_setting'] else '')
    trial_dir = os.path.join(hparams_dir, trial)
    if tf.io.gfile.exists(trial_dir):
      tf.io.gfile.rmtree(trial_dir)
    writer = tf.summary.create_file_writer(trial_dir)
    with writer.as_default():
      hp.hparams(values, trial_id=trial)
      for key in keys:
        tf.summary.scalar(key, result['metrics'][key], step=result['train_steps'])
    writer.close()


def write_report(output_dir: str, name: str, results: Sequence[dict],
                 train_axes: Sequence[str], eval_axes: Sequence[str],
                 base_values: dict, combine: str, command: str = '',
                 hparams: bool = True) -> dict:
  """Writes `<name>.json`, `<name>.md`, `<name>.png` (and `hparams/`).

  Args:
    output_dir: the sweep's folder.
    name: the report's file name (without extension).
    results: `tasks.sweep.run_sweep`'s.
    train_axes, eval_axes: the swept names (`--sweep`, `--eval_only_sweep`).
    base_values: their values in the base configuration.
    combine: 'grid' or 'separate' (how the axes were combined).
    command: the command line, written at the top of the table.
    hparams: also write the TensorBoard HParams summaries.

  Returns:
    `{'json', 'md', 'png'}` paths.
  """
  axes = list(train_axes) + list(eval_axes)
  tf.io.gfile.makedirs(output_dir)
  paths = {ext: os.path.join(output_dir, f'{name}.{ext}')
           for ext in ('json', 'md', 'png')}
  source_files.write_json_atomic(paths['json'], dict(
      command=command, train_axes=list(train_axes),
      eval_axes=list(eval_axes), combine=combine,
      base_values={k: str(v) for k, v in base_values.items()},
      results=list(results)))
  base = lambda names: ', '.join(f'{n}={literal(base_values.get(n))}' for n in names)
  text = ((f'Command: `{command}`\n\n' if command else '') +
          'Each metric: mean ± half the range over the seeds.\n\n' +
          markdown_table(results, base(train_axes), base(eval_axes)))
  source_files.write_bytes_atomic(paths['md'], text.encode())
  source_files.write_bytes_atomic(
      paths['png'], plot_png(results, axes, base_values, combine))
  if hparams:
    write_hparams(os.path.join(output_dir, 'hparams'), results, axes, base_values)
  return paths


def read_results(path: str) -> list:
  return json.loads(source_files.read_bytes(path))['results']
