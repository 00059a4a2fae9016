"""Sweeps (issue 11): parsing, validation, a tiny end-to-end sweep, re-runs, the report."""

import json
import os

import gin
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tasks import config
from tasks import quickstart
from tasks import quickstart_video
from tasks import sweep
from tasks import sweep_report

SMOKE = ['experiments/quickstart_smoke.gin']


def test_values_split_at_top_level_commas_only():
  assert sweep.split_values('0.03,0.1, 1.0') == ['0.03', '0.1', '1.0']
  assert sweep.split_values("(4, 4),(6, 6)") == ['(4, 4)', '(6, 6)']
  assert sweep.split_values("'a,b','c'") == ["'a,b'", "'c'"]
  assert sweep.split_values('[1, (2, 3)],4') == ['[1, (2, 3)]', '4']


@pytest.mark.parametrize('text', ['B_SCALE', 'B_SCALE=', '=0.1', 'B_SCALE=0.1,',
                                  'B_SCALE=0.1,,0.3', 'B_SCALE=0.1,0.1'])
def test_malformed_axes_are_rejected(text):
  with pytest.raises(ValueError, match='--sweep'):
    sweep.parse_axis(text, '--sweep')


def test_grid_and_separate_combinations():
  b = sweep.Axis('B_SCALE', ('0.1', '0.3'))
  p = sweep.Axis('LOSS_P', ('0', '0.2'))
  assert sweep.combine_axes([b, p], 'grid') == [
      (('B_SCALE', '0.1'), ('LOSS_P', '0')), (('B_SCALE', '0.1'), ('LOSS_P', '0.2')),
      (('B_SCALE', '0.3'), ('LOSS_P', '0')), (('B_SCALE', '0.3'), ('LOSS_P', '0.2'))]
  assert sweep.combine_axes([b, p], 'separate') == [
      (), (('B_SCALE', '0.1'),), (('B_SCALE', '0.3'),), (('LOSS_P', '0'),),
      (('LOSS_P', '0.2'),)]
  assert sweep.combine_axes([], 'grid') == [()]
  with pytest.raises(ValueError, match='combine'):
    sweep.combine_axes([b], 'diagonal')


def _plan(train=(), evals=(), combine='grid', bindings=()):
  return sweep.plan_sweep(
      SMOKE, quickstart.data_bindings('/nonexistent') + list(bindings),
      [sweep.parse_axis(t) for t in train],
      [sweep.parse_axis(t, '--eval_only_sweep') for t in evals], combine)


def test_plan_drops_base_values_so_the_base_run_is_shared():
  plan = _plan(["B_SCALE=0.03,0.2", "LOSS_P=0,0.2", "build_model.loss_type='xent','l2'"],
               ['EVAL_STEPS=1,2'], combine='separate')
  # B_SCALE=0.2, LOSS_P=0.2 and loss_type='xent' are the quickstart's own values.
  assert plan.train_settings == [
      (), (('B_SCALE', '0.03'),), (('LOSS_P', '0'),),
      (('build_model.loss_type', "'l2'"),)]
  assert plan.eval_settings == [(), (('EVAL_STEPS', '1'),)]  # smoke: 2 steps
  assert plan.base_values['B_SCALE'] == pytest.approx(0.2)
  assert [sweep.setting_name(s) for s in plan.train_settings] == [
      'base', 'B_SCALE=0.03', 'LOSS_P=0', 'loss_type=l2']


@pytest.mark.parametrize('axis, message', [
    ('B_SCALEX=0.1,0.3', 'no such gin macro'),
    ('build_model.b_scalex=0.1', 'not a valid gin binding'),
    ('no_such_configurable.x=1', 'not a valid gin binding'),
    ('B_SCALE=0.1.2', 'not a valid gin binding'),
    ('B_SCALE=undefined_name', 'not a valid gin binding'),
    ('run_experiment.seed=1,2', 'set by the sweep itself'),
])
def test_bad_sweeps_are_rejected_before_any_run(axis, message):
  with pytest.raises(ValueError, match=message):
    _plan([axis])


def test_an_axis_swept_twice_is_rejected():
  with pytest.raises(ValueError, match='swept twice'):
    _plan(['B_SCALE=0.1'], ['B_SCALE=0.3'])


def test_runs_start_from_the_quickstarts_pretrained_parts():
  """A sweep on quickstart.gin trains what tools.quickstart trains."""
  try:
    sweep.configure(['experiments/quickstart.gin'], [], [])
    encoder, decoder = config.gin_value('run_experiment.init_checkpoint')
    assert encoder.endswith('models/pretrained/quickstart_encoder')
    assert decoder.endswith('models/pretrained/quickstart_decoder_prior')
    assert config.gin_value('run_experiment.init_checkpoint_parts') == [
        'encoder', 'decoder']
    # The settings can themselves be swept ('' = from scratch) ...
    sweep.configure(['experiments/quickstart.gin'], [],
                    ["quickstart_settings.pretrained_decoder = ''"])
    assert config.gin_value('run_experiment.init_checkpoint') == encoder
    assert config.gin_value('run_experiment.init_checkpoint_parts') == 'encoder'
    sweep.configure(['experiments/quickstart.gin'], [],
                    ["quickstart_settings.pretrained_encoder = ''",
                     "quickstart_settings.pretrained_decoder = ''"])
    assert config.gin_value('run_experiment.init_checkpoint') is None
    # ... and an explicit init checkpoint wins over it.
    sweep.configure(['experiments/quickstart.gin'],
                    ["run_experiment.init_checkpoint = '/other'"], [])
    assert config.gin_value('run_experiment.init_checkpoint') == '/other'
  finally:
    gin.clear_config()


def test_tiny_sweep_trains_evaluates_reports_and_skips_finished_runs(tmp_path):
  output_dir = str(tmp_path / 'sweep')
  data_dir = str(tmp_path / 'data')
  base = quickstart.data_bindings(data_dir)
  sweep.configure(SMOKE, base, [])
  quickstart.make_records(data_dir, quickstart.quickstart_data(), 1)
  train_axes = [sweep.parse_axis('B_SCALE=0.2,0.4')]
  eval_axes = [sweep.parse_axis('EVAL_STEPS=1,2', '--eval_only_sweep')]
  plan = sweep.plan_sweep(SMOKE, base, train_axes, eval_axes)
  reports = []
  results = sweep.run_sweep(output_dir, SMOKE, base, plan, seeds=1,
                            train_steps=3, checkpoint_interval=2,
                            on_result=lambda r: reports.append(len(r)))
  # 2 runs x 2 evaluations, in order; the report grows after each evaluation.
  assert [(r['run'], r['eval_setting']) for r in results] == [
      ('base__seed0', [['EVAL_STEPS', '1']]), ('base__seed0', []),
      ('B_SCALE=0.4__seed0', [['EVAL_STEPS', '1']]), ('B_SCALE=0.4__seed0', [])]
  assert reports == [1, 2, 3, 4]
  for result in results:
    assert result['train_steps'] == 3
    assert 0.0 <= result['metrics']['pq'] <= 1.0
    assert result['train_seconds'] > 0
  # Each run is a normal model_dir, trained with its own binding.
  run = os.path.join(output_dir, 'runs', 'B_SCALE=0.4__seed0')
  with open(os.path.join(run, 'config.gin')) as f:
    assert 'B_SCALE = 0.4' in f.read()
  assert tf.train.latest_checkpoint(run).endswith('ckpt-3')
  # The base evaluation writes predictions; the eval-only variants do not
  # (they would overwrite them).
  assert os.path.exists(os.path.join(run, 'eval', 'step_3', 'panoptic.json'))

  # A re-run trains and evaluates nothing: the same results, no new files.
  stamp = os.path.getmtime(os.path.join(run, 'ckpt-3.index'))
  again = sweep.run_sweep(output_dir, SMOKE, base, plan, seeds=1,
                          train_steps=3, checkpoint_interval=2)
  assert again == results
  assert os.path.getmtime(os.path.join(run, 'ckpt-3.index')) == stamp
  # A different step count in the same folder is refused, not mixed in.
  with pytest.raises(ValueError, match='trained for 3 steps'):
    sweep.run_sweep(output_dir, SMOKE, base, plan, seeds=1, train_steps=5)

  paths = sweep_report.write_report(output_dir, 'results', results,
                                    ['B_SCALE'], ['EVAL_STEPS'],
                                    plan.base_values, 'grid', command='cmd')
  with open(paths['json']) as f:
    assert json.load(f)['results'] == json.loads(json.dumps(results))
  with open(paths['md']) as f:
    table = f.read()
  assert '| base (B_SCALE=0.2) | base (EVAL_STEPS=2) | 1 |' in table
  assert '| B_SCALE=0.4 | EVAL_STEPS=1 | 1 |' in table
  assert Image.open(paths['png']).size[0] > 400
  # HParams: the experiment config and one trial per evaluation.
  hparams_dir = os.path.join(output_dir, 'hparams')
  trials = sorted(n for n in os.listdir(hparams_dir)
                  if os.path.isdir(os.path.join(hparams_dir, n)))
  assert trials == ['B_SCALE=0.4__seed0', 'B_SCALE=0.4__seed0__EVAL_STEPS=1',
                    'base__seed0', 'base__seed0__EVAL_STEPS=1']
  assert any(n.startswith('events') for n in os.listdir(hparams_dir))


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
  output_dir = str(tmp_path / 'sweep')
  data_dir = str(tmp_path / 'data')
  base = quickstart.data_bindings(data_dir)
  sweep.configure(SMOKE, base, [])
  quickstart.make_records(data_dir, quickstart.quickstart_data(), 1)
  plan = sweep.plan_sweep(SMOKE, base, [], [])
  model_dir = sweep.run_dir(output_dir, (), 0)
  # A run that stopped after its step-2 checkpoint: no sweep_run.json yet.
  sweep.train_run(model_dir, SMOKE, base, (), 0, 2, checkpoint_interval=2)
  os.remove(os.path.join(model_dir, sweep.RUN_RECORD))
  results = sweep.run_sweep(output_dir, SMOKE, base, plan, seeds=1,
                            train_steps=4, checkpoint_interval=2)
  assert results[0]['train_steps'] == 4
  with open(os.path.join(model_dir, sweep.RUN_RECORD)) as f:
    assert json.load(f)['global_step'] == 4


def test_video_sweep_reports_j_and_f(tmp_path):
  video_smoke = ['experiments/quickstart_video_smoke.gin']
  data_dir = str(tmp_path / 'data')
  base = quickstart.data_bindings(data_dir)
  sweep.configure(video_smoke, base, [])
  quickstart_video.make_video_records(
      data_dir, quickstart_video.quickstart_video_data(), 1)
  plan = sweep.plan_sweep(video_smoke, base, [sweep.parse_axis('LOSS_P=0')], [])
  results = sweep.run_sweep(str(tmp_path / 'sweep'), video_smoke, base, plan,
                            seeds=1, train_steps=2)
  assert [r['run'] for r in results] == ['LOSS_P=0__seed0']
  assert sweep_report.metric_keys(results)[:3] == ['JandF-Mean', 'J-Mean', 'F-Mean']
  assert 0.0 <= results[0]['metrics']['JandF-Mean'] <= 1.0


def _result(train, evals, seed, pq):
  return dict(run=f'r{seed}', seed=seed, train_setting=train, eval_setting=evals,
              train_steps=10, train_seconds=2.0, metrics=dict(pq=pq, sq=0.5))


def test_table_shows_mean_and_half_range_over_seeds():
  results = [_result([], [], 0, 0.10), _result([], [], 1, 0.20),
             _result([['B_SCALE', '0.3']], [], 0, 0.30),
             _result([['B_SCALE', '0.3']], [], 1, 0.30)]
  table = sweep_report.markdown_table(results, 'B_SCALE=0.1')
  assert '| base (B_SCALE=0.1) | 2 | 0.150 ± 0.050 | 0.500 ± 0.000 | 2 |' in table
  assert '| B_SCALE=0.3 | 2 | 0.300 ± 0.000 | 0.500 ± 0.000 | 2 |' in table


def test_plot_points_per_axis_in_separate_mode():
  results = [_result([], [], 0, 0.1), _result([['B_SCALE', '0.3']], [], 0, 0.3),
             _result([['LOSS_P', '0']], [], 0, 0.2)]
  points = sweep_report.axis_points(results, 'B_SCALE', '0.1', 'separate', 'pq')
  assert points == {'base': [('0.1', 0, 0.1), ('0.3', 0, 0.3)]}
  grid = sweep_report.axis_points(results, 'B_SCALE', '0.1', 'grid', 'pq')
  assert set(grid) == {'base', 'LOSS_P=0'}
  png = sweep_report.plot_png(results, ['B_SCALE', 'LOSS_P'],
                              {'B_SCALE': 0.1, 'LOSS_P': 0.2}, 'separate')
  assert png[:8] == b'\x89PNG\r\n\x1a\n'
  assert np.asarray(Image.open(__import__('io').BytesIO(png))).shape[1] == 900
