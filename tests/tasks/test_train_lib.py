"""Training on the tiny configuration (issue 5): in-process, strategies, resume, stages."""

import json
import os
import socket
import subprocess
import sys
import time

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import config
from tasks import distribute
from tasks import train_lib
from tests.tasks.conftest import data_bindings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(model_dir, records, mode='train', bindings=(), gin_file='experiments/coco_stage1_tiny.gin',
         strategy=None):
  config.import_configurables()
  config.parse_gin([gin_file], data_bindings(records) + list(bindings),
                   finalize=False)
  return train_lib.run_experiment(str(model_dir), mode,
                                  strategy or distribute.build_strategy('default'),
                                  argv=['test'])


def test_tiny_train_and_eval_writes_checkpoints_record_and_predictions(
    tmp_path, synthetic_records):
  results = _run(tmp_path, synthetic_records, mode='train_and_eval')
  assert results['global_step'] == 4
  metrics = results['eval']
  assert metrics['step'] == 4 and 0.0 <= metrics['pq'] <= 1.0
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('ckpt-4')
  assert 'run_experiment.train_steps = 4' in (tmp_path / config.CONFIG_NAME).read_text()
  assert (tmp_path / config.COMMAND_LINE_NAME).read_text() == 'test\n'
  step_dir = tmp_path / 'eval' / 'step_4'
  predictions = json.loads((step_dir / 'panoptic.json').read_text())
  assert len(predictions['annotations']) == 4
  for annotation in predictions['annotations']:
    assert (step_dir / 'panoptic' / annotation['file_name']).exists()
  assert json.loads((step_dir / 'metrics.json').read_text())['step'] == 4
  # TensorBoard: eval scalars and input | ground truth | prediction pictures.
  tags = set()
  for root, _, names in os.walk(tmp_path / 'eval_images'):
    for name in names:
      for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
        for value in event.summary.value:
          tags.add(value.tag)
          if value.tag == 'input_groundtruth_prediction':
            picture = tf.image.decode_png(tf.make_ndarray(value.tensor)[2])
            assert picture.shape[0] == 64 and picture.shape[1] >= 3 * 64
  assert 'input_groundtruth_prediction' in tags


def _loss_history(model_dir):
  """Per-step training loss from the TensorBoard events (one value per loop)."""
  values = {}
  for root, _, names in os.walk(os.path.join(model_dir, 'train')):
    for name in names:
      for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
        for value in event.summary.value:
          if value.tag == 'loss':
            values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def _train_subprocess(model_dir, records, extra_flags=(), bindings=(), env=None):
  command = [sys.executable, '-m', 'tools.train', f'--model_dir={model_dir}',
             '--gin_file=experiments/coco_stage1_tiny.gin', *extra_flags]
  for binding in data_bindings(records) + list(bindings):
    command.append(f'--gin_bindings={binding}')
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        timeout=600, env=env)


def test_default_and_mirrored_two_cpus_give_the_same_loss(tmp_path, synthetic_records):
  # Two noise draws per image and self-conditioning's per-batch coin: the
  # draws, too, must not depend on sharding.
  same = ['run_experiment.jit_compile = False', 'run_experiment.seed = 3',
          'run_experiment.noise_draws = 2', 'build_model.self_condition = True']
  default = _train_subprocess(tmp_path / 'default', synthetic_records, bindings=same)
  assert default.returncode == 0, default.stderr[-3000:]
  mirrored = _train_subprocess(tmp_path / 'mirrored', synthetic_records,
                               extra_flags=['--strategy=mirrored', '--cpu_devices=2',
                                            '--verbosity=1'],
                               bindings=same)
  assert mirrored.returncode == 0, mirrored.stderr[-3000:]
  # Two replicas really ran (TensorFlow's device lines need --verbosity=1).
  assert 'device:CPU:1' in mirrored.stderr
  a, b = _loss_history(tmp_path / 'default'), _loss_history(tmp_path / 'mirrored')
  assert a.keys() == b.keys() == {2, 4}
  np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)],
                             rtol=1e-4)


def _free_port():
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


def test_multi_worker_two_processes_on_localhost(tmp_path, synthetic_records):
  ports = [_free_port(), _free_port()]
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  processes = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {'cluster': cluster, 'task': {'type': 'worker', 'index': index}}))
    command = [sys.executable, '-m', 'tools.train', f'--model_dir={tmp_path}',
               '--gin_file=experiments/coco_stage1_tiny.gin',
               '--strategy=multi_worker', '--all_reduce=ring']
    command += [f'--gin_bindings={b}' for b in data_bindings(synthetic_records)
                + ['run_experiment.jit_compile = False']]
    processes.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, env=env))
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  assert tf.train.latest_checkpoint(str(tmp_path)).endswith('ckpt-4')
  assert (tmp_path / config.CONFIG_NAME).exists()
  assert set(_loss_history(tmp_path)) == {2, 4}
  # The non-chief worker saved into its scratch folder, not over the chief.
  assert (tmp_path / '.worker_1').is_dir()


def _latest_step(model_dir):
  """The step of the newest checkpoint a resume would load, or 0 if none."""
  latest = tf.train.latest_checkpoint(str(model_dir))
  return int(latest.rsplit('-', 1)[1]) if latest else 0


def test_resume_after_kill_equals_uninterrupted_run(tmp_path, synthetic_records):
  steps = ['run_experiment.jit_compile = False', 'run_experiment.seed = 5',
           'run_experiment.train_steps = 8',
           'run_experiment.steps_per_loop = 1', 'run_experiment.checkpoint_interval = 1',
           'run_experiment.max_checkpoints = 20']
  flags = ['--deterministic']
  full = _train_subprocess(tmp_path / 'full', synthetic_records, flags, steps)
  assert full.returncode == 0, full.stderr[-3000:]
  # Kill (SIGKILL, no clean-up) as soon as the second checkpoint is recorded
  # in the `checkpoint` state file (its .index is written before that file).
  resumed = tmp_path / 'resumed'
  command = [sys.executable, '-m', 'tools.train', f'--model_dir={resumed}',
             '--gin_file=experiments/coco_stage1_tiny.gin', *flags]
  command += [f'--gin_bindings={b}' for b in data_bindings(synthetic_records) + steps]
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _latest_step(resumed) < 2 and time.time() < deadline:
    if process.poll() is not None:
      break
    time.sleep(0.05)
  process.kill()
  assert process.wait() != 0, 'the run finished before it could be killed'
  killed_at = _latest_step(resumed)
  assert 2 <= killed_at < 8
  rest = _train_subprocess(resumed, synthetic_records, flags, steps)
  assert rest.returncode == 0, rest.stderr[-3000:]
  a = tf.train.load_checkpoint(str(tmp_path / 'full'))
  b = tf.train.load_checkpoint(str(resumed))
  assert int(b.get_tensor('global_step/.ATTRIBUTES/VARIABLE_VALUE')) == 8
  # Weights (listed under the optimizer's references), Adam slots, EMA, BN stats.
  names = [n for n in a.get_variable_to_shape_map()
           if n.startswith(('model/', 'ema/', 'optimizer/'))]
  assert any(n.startswith('ema/') for n in names) and len(names) > 500
  for name in names:
    if a.get_variable_to_dtype_map()[name].is_floating:
      np.testing.assert_allclose(a.get_tensor(name), b.get_tensor(name),
                                 rtol=1e-5, atol=1e-6, err_msg=name)


def test_stage2_starts_from_stage1_at_another_resolution(tmp_path, synthetic_records):
  _run(tmp_path / 'stage1', synthetic_records,
       bindings=['run_experiment.jit_compile = False'])
  config.import_configurables()
  import gin  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  results = _run(tmp_path / 'stage2', synthetic_records,
                 gin_file='experiments/coco_stage2_tiny.gin',
                 bindings=[f"INIT_CHECKPOINT = '{tmp_path / 'stage1'}'",
                           'run_experiment.jit_compile = False'])
  assert results['global_step'] == 2
  stage1 = tf.train.load_checkpoint(str(tmp_path / 'stage1'))
  stage2 = tf.train.load_checkpoint(str(tmp_path / 'stage2'))
  # Trained from stage 1's weights and EMA: two steps at lr 1e-5 leave every
  # weight within 1e-3 of stage 1's (a fresh initialisation would not be).
  # (Keras 3 checkpoints list the weights under the optimizer's references.)
  names = [n for n in stage1.get_variable_to_shape_map()
           if n.startswith('optimizer/_trainable_variables/')]
  assert len(names) > 100
  for name in names:
    np.testing.assert_allclose(stage1.get_tensor(name), stage2.get_tensor(name),
                               atol=1e-3, err_msg=name)
  # The EMA shadows came along too (BatchNorm statistics among them move more
  # at the new resolution, so most, not all, stay within 1e-3).
  shadows = [n for n in stage1.get_variable_to_shape_map() if n.startswith('ema/')]
  close = [np.allclose(stage1.get_tensor(n), stage2.get_tensor(n), atol=1e-3)
           for n in shadows]
  assert np.mean(close) > 0.9


def test_init_checkpoint_parts_are_validated(tmp_path):
  with pytest.raises(ValueError, match='init_checkpoint_parts'):
    train_lib.restore_init_checkpoint(str(tmp_path), 'everything', None, None)
  with pytest.raises(ValueError, match='init_checkpoint: no checkpoint'):
    train_lib.restore_init_checkpoint(str(tmp_path), 'model', None, None)
  # A prefix without its .index file is named, not left to a reader error.
  with pytest.raises(ValueError, match=r'ckpt-7\.index missing'):
    train_lib.restore_init_checkpoint(str(tmp_path / 'ckpt-7'), 'model',
                                      None, None)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(
    tmp_path, synthetic_records):
  bad = ['run_experiment.jit_compile = False', 'build_optimizer.learning_rate = 1e30',
         'run_experiment.clip_norm = 0.0', 'run_experiment.train_steps = 40']
  with pytest.raises(FloatingPointError, match='loss is nan'):
    _run(tmp_path, synthetic_records, bindings=bad)
  latest = tf.train.latest_checkpoint(str(tmp_path))
  assert latest is not None
  reader = tf.train.load_checkpoint(latest)
  names = [n for n in reader.get_variable_to_shape_map()
           if n.startswith(('optimizer/_trainable_variables/', 'ema/'))]
  assert names
  for name in names:
    assert np.all(np.isfinite(reader.get_tensor(name))), name


def test_eval_modes_reread_the_saved_config(tmp_path, synthetic_records):
  model_dir = tmp_path / 'run'
  _run(model_dir, synthetic_records, bindings=['run_experiment.jit_compile = False'])
  # --mode=eval with no --gin_file: the run's config.gin says what to build.
  command = [sys.executable, '-m', 'tools.train', f'--model_dir={model_dir}',
             '--mode=eval', '--gin_bindings=build_evaluator.jit_compile = False']
  evaluated = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                             timeout=600)
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  metrics = json.loads((model_dir / 'eval' / 'step_4' / 'metrics.json').read_text())
  assert metrics['step'] == 4 and metrics['num_steps'] == 2
  # continuous_eval evaluates the latest checkpoint, then stops after the timeout.
  command[4] = '--mode=continuous_eval'
  command.append('--gin_bindings=run_experiment.eval_timeout = 1')
  continuous = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              timeout=600)
  assert continuous.returncode == 0, continuous.stderr[-3000:]
  assert 'eval at step 4' in continuous.stderr


def test_noise_draws_are_stratified_per_example():
  """`noise_draws = D`: D times per example, t_k in [k / D, (k + 1) / D)."""
  from tasks import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top

  def draw(draws, seed=0, step=5, t_power=1.0):
    fake = types.SimpleNamespace(
        noise_draws=draws, seed=seed, global_step=tf.constant(step, tf.int64),
        t_power=t_power,
        model=types.SimpleNamespace(n_bits=(4, 4)))
    fake._draw_seed = lambda index: trainer_lib.Pix2SeqDTrainer._draw_seed(  # pylint: disable=protected-access
        fake, index)
    return trainer_lib.Pix2SeqDTrainer._draw_noise(
        fake, tf.zeros([3, 8, 8, 2], tf.int32))

  t, eps = draw(4)
  assert t.shape == (12,) and eps.shape == (12, 8, 8, 8)
  np.testing.assert_array_equal(
      np.floor(t.numpy() * 4).reshape(3, 4), np.tile(np.arange(4), (3, 1)))
  assert len(np.unique(eps.numpy()[:, 0, 0, 0])) == 12  # Independent noises.
  t_again, _ = draw(4)
  np.testing.assert_array_equal(t.numpy(), t_again.numpy())
  t_other, _ = draw(4, step=6)
  assert not np.array_equal(t.numpy(), t_other.numpy())
  t_one, _ = draw(1)
  assert t_one.shape == (3,) and np.all((t_one.numpy() >= 0) & (t_one.numpy() < 1))
  # t_power warps the same stratified draws: t = u ** power.
  t_warped, eps_warped = draw(4, t_power=2.0)
  np.testing.assert_allclose(t_warped.numpy(), t.numpy()**2, rtol=1e-6)
  np.testing.assert_array_equal(eps_warped.numpy(), eps.numpy())


def test_t_power_must_be_positive():
  from tasks import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match='t_power=0'):
    trainer_lib.Pix2SeqDTrainer(
        model=None, optimizer=None, ema=None,
        strategy=tf.distribute.get_strategy(), train_dataset=None,
        global_batch_size=2, total_steps=1, t_power=0.0)


def test_coco_instances_tiny_on_real_photos(tmp_path, fixtures_dir):
  """The README's own-data walk-through at a tiny size on real COCO photos.

  Real JPEGs of varied sizes (640 px on the long side) through the instance
  converter, training and evaluation; predictions carry COCO's category ids.
  """
  from data import coco_instances  # pylint: disable=g-import-not-at-top
  root = os.path.join(fixtures_dir, 'coco_instances_real')
  prefix = str(tmp_path / 'records' / 'val2017')
  coco_instances.convert(
      os.path.join(root, 'annotations', 'instances_val2017.json'),
      os.path.join(root, 'val2017'), prefix, num_shards=1)
  records = {'train': prefix + '-*', 'val': prefix + '-*',
             'categories': prefix + '.categories.json'}
  results = _run(tmp_path / 'run', records, mode='train_and_eval',
                 gin_file='experiments/coco_instances_small_tiny.gin')
  assert results['global_step'] == 2
  assert 0.0 <= results['eval']['pq'] <= 1.0
  predictions = json.loads(
      (tmp_path / 'run' / 'eval' / 'step_2' / 'panoptic.json').read_text())
  coco_ids = {c['id'] for c in json.loads(open(
      os.path.join(root, 'annotations', 'instances_val2017.json')).read())['categories']}
  assert len(predictions['annotations']) == 4
  for annotation in predictions['annotations']:
    for segment in annotation['segments_info']:
      assert segment['category_id'] in coco_ids


def test_eval_mode_reads_the_ema_into_the_model_as_train_and_eval_uses_it(
    tmp_path, synthetic_records):
  """--mode=eval builds no EMA shadow and no optimizer slots, yet predicts
  exactly what train_and_eval's evaluation (model + EMA swapped in) did; the
  raw weights (a config without EMA) predict otherwise."""
  bindings = ['build_ema.decay = 0.5', 'build_evaluator.jit_compile = False',
              'run_experiment.jit_compile = False']
  step_dir = tmp_path / 'eval' / 'step_4' / 'panoptic'
  predictions = {}
  for name, mode, extra in (('train_and_eval', 'train_and_eval', []),
                            ('eval', 'eval', []),
                            ('raw', 'eval', ['build_ema.decay = 0']),
                            # Weights stored in bfloat16 (inference only):
                            # the float32 averages are cast as they are read.
                            ('bf16', 'eval',
                             ["set_dtype_policy.policy = 'bfloat16'"])):
    gin.clear_config()
    try:
      _run(tmp_path, synthetic_records, mode=mode, bindings=bindings + extra)
    finally:
      keras.config.set_dtype_policy('float32')
    predictions[name] = {p.name: p.read_bytes() for p in step_dir.iterdir()}
  assert predictions['eval'] == predictions['train_and_eval']
  assert predictions['raw'] != predictions['eval']
  assert predictions['bf16'].keys() == predictions['eval'].keys()
