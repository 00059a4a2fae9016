"""The offline quickstart (issue 7) end to end at a tiny size (experiments/quickstart_smoke.gin)."""

import json
import os
import time

import gin
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from models import pix2seq_d
from tasks import config
from tasks import distribute
from tasks import partial_restore
from tasks import quickstart
from tasks import quickstart_pretrain
from tasks import quickstart_schedule
from tasks import train_lib


def test_smoke_quickstart_writes_summary_overlays_and_trajectory(tmp_path):
  output_dir = str(tmp_path / 'qs')
  # With the encoder-pretraining stage (off by default; its path is a
  # superset of the default one): 2 steps of it, then 4 of diffusion.
  summary = quickstart.run_quickstart(
      output_dir, gin_files=['experiments/quickstart_smoke.gin'],
      gin_bindings=['quickstart_settings.encoder_pretrain_fraction = 0.2',
                    'quickstart_settings.encoder_pretrain_steps = 2',
                    "quickstart_settings.pretrained_encoder = ''"],
      train_steps=4, argv=['test'])
  with open(os.path.join(output_dir, quickstart.SUMMARY_NAME)) as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(summary))
  for key in ('pq', 'pq_things', 'pq_stuff', 'sq', 'rq', 'miou_things',
              'miou_stuff', 'merged', 'split'):
    assert 0.0 <= written['val'][key] <= 1.0
  assert written['train_steps'] == 4
  assert written['encoder_pretrain'] == {'train_steps': 2}
  pretrain_dir = os.path.join(output_dir, 'encoder_pretrain')
  assert tf.train.latest_checkpoint(pretrain_dir).endswith('-2')
  # The diffusion run started from that encoder and the shipped decoder prior
  # (and recorded both).
  prior = os.path.join(quickstart_pretrain.REPO_ROOT,
                       'models/pretrained/quickstart_decoder_prior')
  with open(os.path.join(written['model_dir'], config.CONFIG_NAME)) as f:
    recorded = ' '.join(f.read().replace('\\\n', ' ').split())  # Unwrapped.
  assert (f"run_experiment.init_checkpoint = ['{pretrain_dir}', '{prior}']"
          in recorded)
  assert ("run_experiment.init_checkpoint_parts = ['encoder', 'decoder']"
          in recorded)
  for stage in ('data', 'pretrain', 'train', 'eval', 'pictures', 'total'):
    assert written['seconds'][stage] >= 0.0
  assert written['parameters']['total_params'] > 100_000
  assert written['settings']['n_bits'] == [4, 4]
  assert written['settings']['b_scale'] == pytest.approx(0.2)  # quickstart.gin
  assert written['settings']['loss_p'] == pytest.approx(0.2)
  assert written['export']['status'] == 'skipped'  # disabled in the smoke config
  # One overlay per val image: image | ground truth | prediction, 4x magnified.
  overlays = sorted(os.listdir(os.path.join(output_dir, 'overlays')))
  assert overlays == ['1.png', '2.png', '3.png', '4.png']
  overlay = np.asarray(Image.open(os.path.join(output_dir, 'overlays', '1.png')))
  assert overlay.shape == (256, 3 * 256 + 2 * 4, 3)
  # The ground-truth panel shows the stored segments: several colours.
  assert len(np.unique(overlay[:, 260:516].reshape(-1, 3), axis=0)) >= 3
  # Trajectory: the image and one panel per DDIM step (EVAL_STEPS = 2).
  trajectory = np.asarray(Image.open(os.path.join(output_dir, 'trajectory.png')))
  assert trajectory.shape == (256, 3 * 256 + 2 * 4, 3)
  # The run record and the evaluator's outputs are where the summary says.
  assert os.path.exists(written['metrics_json'])
  assert os.path.exists(os.path.join(written['model_dir'], config.CONFIG_NAME))


def test_data_is_reused_when_settings_match(tmp_path):
  settings = quickstart.quickstart_data(num_train=2, num_val=1, num_shards=1)
  data_dir = str(tmp_path / 'data')
  assert quickstart.make_records(data_dir, settings)
  assert not quickstart.make_records(data_dir, settings)
  assert quickstart.make_records(data_dir, dict(settings, num_train=3))
  paths = quickstart.record_paths(data_dir)
  assert os.path.exists(paths['categories'])


def test_train_steps_follow_the_budget():
  assert quickstart_schedule.train_steps_for_minutes(
      15, steps_per_minute=60, overhead_minutes=3, margin=1.0) == 720
  assert quickstart_schedule.train_steps_for_minutes(
      15, steps_per_minute=60, overhead_minutes=3, margin=0.5) == 360
  assert quickstart_schedule.train_steps_for_minutes(
      1, steps_per_minute=60, overhead_minutes=3, min_steps=10) == 10




def test_schedule_measures_the_speed_in_a_scratch_folder(tmp_path):
  data_dir = str(tmp_path / 'data')
  config.import_configurables()
  config.parse_gin(['experiments/quickstart_smoke.gin'],
                   quickstart.data_bindings(data_dir) +
                   ['measure_steps_per_minute.loop_steps = 2',
                    'run_experiment.train_steps = 7'], finalize=False)
  quickstart.make_records(data_dir, quickstart.quickstart_data(), 1)
  model_dir = str(tmp_path / 'model')
  start = time.time()
  strategy = distribute.build_strategy('default')
  schedule = quickstart_schedule.schedule_train_steps(model_dir, strategy, 30.0, start)
  assert schedule['steps_per_minute'] > 0
  assert 0 < schedule['minutes_left'] < 30.0
  assert schedule['train_steps'] == quickstart_schedule.train_steps_for_minutes(
      schedule['minutes_left'], schedule['steps_per_minute'])
  # The measurement leaves nothing behind and restores the experiment's bindings.
  assert sorted(os.listdir(tmp_path)) == ['data']
  assert gin.query_parameter('run_experiment.train_steps') == 7
  assert gin.query_parameter('run_experiment.steps_per_loop') == 2


def test_budget_is_replanned_by_default_and_fixed_on_request(tmp_path):
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin(['experiments/quickstart_smoke.gin'], [], finalize=False)
    settings = quickstart.quickstart_settings()
    assert settings['replan_budget'] is True
    # Training ends overhead_minutes (1.5 in quickstart.gin) before the
    # budget; the smoke file's min_steps (4) holds.
    now = [1000.0]
    budget = quickstart_schedule.make_time_budget(15.0, 1000.0, 120.0,
                                         clock=lambda: now[0])
    assert budget.deadline == 1000.0 + 13.5 * 60
    assert budget.min_steps == 4
    assert budget.plan(0) == 13.5 * 60 * 2
    now[0] = 1100.0  # 100 steps in 100 s: 1 step/s for the 710 s left.
    assert budget.plan(100) == 100 + 710
    stages = quickstart._Stages()  # pylint: disable=protected-access
    start = time.time()
    schedule, time_budget = quickstart_schedule.plan_training(
        str(tmp_path / 'model'), None, 15.0, start, None, settings, stages)
    assert time_budget is not None and schedule['replan']
    assert 0 < gin.query_parameter('run_experiment.train_steps') <= 13.5 * 120
    assert 'calibrate' not in stages.seconds  # Nothing trained to plan.
    # Explicit steps win over the budget.
    schedule, time_budget = quickstart_schedule.plan_training(
        str(tmp_path / 'model'), None, 15.0, start, 7, settings, stages)
    assert time_budget is None and schedule == {'train_steps': 7}
    assert gin.query_parameter('run_experiment.train_steps') == 7
    # The encoder-pretraining stage takes its share of the training time
    # left: at 100 s of 810, 0.2 * 710 s; the diffusion stage gets the rest.
    assert quickstart_pretrain.encoder_pretrain_deadline(
        15.0, 1000.0, 0.2, clock=lambda: 1100.0) == pytest.approx(1100.0 + 142.0)
    assert quickstart_pretrain.encoder_pretrain_deadline(
        15.0, 1000.0, 0.2, clock=lambda: 3000.0) == 3000.0  # Past the end.
    for bad in (1.0, -0.1):
      gin.bind_parameter('quickstart_settings.encoder_pretrain_fraction', bad)
      with pytest.raises(ValueError, match='encoder_pretrain_fraction'):
        quickstart.quickstart_settings()
    gin.bind_parameter('quickstart_settings.encoder_pretrain_fraction', 0.2)
    gin.bind_parameter('quickstart_settings.replan_budget', 'yes')
    with pytest.raises(ValueError, match='replan_budget'):
      quickstart.quickstart_settings()
  finally:
    gin.clear_config()


def test_a_pretrained_encoder_is_found_from_the_repository_root(tmp_path):
  assert quickstart_pretrain.pretrained_bindings('', '') == []
  with pytest.raises(FileNotFoundError,
                     match='quickstart_settings.pretrained_encoder: .*nowhere'):
    quickstart_pretrain.pretrained_bindings('nowhere')
  with pytest.raises(FileNotFoundError,
                     match='quickstart_settings.pretrained_decoder: .*nowhere'):
    quickstart_pretrain.pretrained_bindings(decoder='nowhere')
  # A relative path is the repository's (the shipped encoder), an absolute
  # one is taken as it is.
  root = quickstart_pretrain.REPO_ROOT
  folder = tmp_path / 'enc'
  folder.mkdir()
  tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                             str(folder), max_to_keep=1).save()
  relative = os.path.relpath(str(folder), root)
  for path in (str(folder), relative):
    assert quickstart_pretrain.pretrained_bindings(path) == [
        f"run_experiment.init_checkpoint = '{os.path.join(root, path)}'",
        "run_experiment.init_checkpoint_parts = 'encoder'"]
    assert quickstart_pretrain.pretrained_bindings(decoder=path) == [
        f"run_experiment.init_checkpoint = '{os.path.join(root, path)}'",
        "run_experiment.init_checkpoint_parts = 'decoder'"]
  # Both: one sequence each, the encoder first (train_lib.init_checkpoint_sources).
  both = quickstart_pretrain.pretrained_bindings(relative, str(folder))
  paths = [os.path.join(root, relative), str(folder)]
  assert both == [
      f'run_experiment.init_checkpoint = {paths!r}',
      "run_experiment.init_checkpoint_parts = ['encoder', 'decoder']"]
  try:
    config.import_configurables()
    config.parse_gin([], both, finalize=False)
    assert train_lib.init_checkpoint_sources(
        config.gin_value('run_experiment.init_checkpoint'),
        config.gin_value('run_experiment.init_checkpoint_parts')) == [
            (paths[0], 'encoder'), (paths[1], 'decoder')]
  finally:
    gin.clear_config()
  try:
    config.import_configurables()
    gin.bind_parameter('quickstart_settings.pretrained_encoder', relative)
    gin.bind_parameter('quickstart_settings.encoder_pretrain_fraction', 0.2)
    with pytest.raises(ValueError, match='set one'):
      quickstart.quickstart_settings()
  finally:
    gin.clear_config()


def test_the_pretrained_encoder_bindings_yield_to_explicit_ones():
  shipped = 'models/pretrained/quickstart_encoder'
  try:
    config.import_configurables()
    config.parse_gin(['experiments/quickstart.gin'], [], finalize=False)
    quickstart_pretrain.parse_pretrained_parts(
        quickstart.quickstart_settings(), [])
    assert config.gin_value('run_experiment.init_checkpoint') == [
        os.path.join(quickstart_pretrain.REPO_ROOT, shipped),
        os.path.join(quickstart_pretrain.REPO_ROOT,
                     'models/pretrained/quickstart_decoder_prior')]
    assert config.gin_value('run_experiment.init_checkpoint_parts') == [
        'encoder', 'decoder']
    explicit = ["run_experiment.init_checkpoint = '/other'"]
    gin.clear_config()
    config.parse_gin(['experiments/quickstart.gin'], explicit, finalize=False)
    quickstart_pretrain.parse_pretrained_parts(
        quickstart.quickstart_settings(), explicit)
    assert config.gin_value('run_experiment.init_checkpoint') == '/other'
  finally:
    gin.clear_config()


@pytest.mark.parametrize('gin_file', ['experiments/quickstart.gin',
                                      'experiments/quickstart_video.gin'])
def test_the_shipped_encoder_fills_the_quickstart_model_entirely(gin_file):
  """models/pretrained/quickstart_encoder matches both quickstarts' encoder."""
  try:
    config.import_configurables()
    config.parse_gin([gin_file], [
        "quickstart_settings.pretrained_encoder = "
        "'models/pretrained/quickstart_encoder'"], finalize=False)
    bindings = quickstart_pretrain.pretrained_bindings(
        quickstart.quickstart_settings()['pretrained_encoder'])
    assert bindings[0].endswith("models/pretrained/quickstart_encoder'")
    model = pix2seq_d.build_model()
    restored, skipped = partial_restore.restore_matching(
        partial_restore.resolve_checkpoint(
            os.path.join(quickstart_pretrain.REPO_ROOT,
                         'models/pretrained/quickstart_encoder')),
        model.encoder, ('model', 'encoder'))
    assert not skipped and len(restored) == len(model.encoder.variables)
  finally:
    gin.clear_config()


@pytest.mark.parametrize('gin_file', ['experiments/quickstart.gin',
                                      'experiments/quickstart_video.gin'])
def test_the_shipped_decoder_prior_fills_all_but_the_image_inputs(gin_file):
  """Both quickstarts start from the shipped prior: all but conv_in and cross-attention."""
  shipped = 'models/pretrained/quickstart_decoder_prior'
  try:
    config.import_configurables()
    config.parse_gin([gin_file], [], finalize=False)
    assert config.gin_value('quickstart_settings.pretrained_decoder') == shipped
    model = pix2seq_d.build_model()
    restored, skipped = partial_restore.restore_matching(
        partial_restore.resolve_checkpoint(
            os.path.join(quickstart_pretrain.REPO_ROOT, shipped)),
        model.decoder, ('model', 'decoder'))
    assert len(restored) + len(skipped) == len(model.decoder.variables)
    assert skipped and all('conv_in' in p or 'cross' in p for p in skipped), skipped
    assert len(restored) > 5 * len(skipped)
  finally:
    gin.clear_config()


def test_format_summary_names_the_numbers_pictures_and_export():
  summary = {
      'val': {'pq': 0.1554, 'pq_things': 0.05, 'miou': 0.3},
      'train_steps': 1649,
      'seconds': {'data': 21.0, 'train': 671.2, 'total': 780.4},
      'pictures': {'overlays': ['/o/overlays/1.png', '/o/overlays/2.png'],
                   'trajectory': '/o/trajectory.png'},
      'export': {'status': 'ok', 'export_dir': '/o/export'}}
  assert quickstart.format_summary(summary, '/o') == (
      'quickstart done: 1649 training steps, 780 s in all (data 21 s, '
      'train 671 s)\n'
      '  held-out: pq 0.155, pq_things 0.050, miou 0.300\n'
      '  pictures: /o/overlays, /o/trajectory.png\n'
      '  export:   /o/export\n'
      '  summary:  /o/summary.json')
  video = {'val': {'j_and_f': 0.2, 'frames': 200}, 'train_steps': 3,
           'seconds': {'total': 5.0},
           'pictures': {'strips': {}, 'gifs': {'v': '/o/pictures/v.gif'}},
           'export': {'status': 'failed', 'error': 'OSError: disk full'}}
  assert quickstart.format_summary(video, '/o').splitlines()[1:4] == [
      '  held-out: j_and_f 0.200', '  pictures: /o/pictures',
      '  export:   failed (OSError: disk full)']
