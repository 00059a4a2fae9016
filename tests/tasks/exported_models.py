"""Tiny models, trained or built, and their exports, made once per test session.

`tests/tasks/test_export.py` and `tests/tools/test_predict.py` share them (the
cache lives in this module, so a pytest run builds each at most once):

- `image_export`: the tiny COCO stage-1 experiment trained 4 steps in-process
  on the synthetic records, then exported by the `tools.export_saved_model`
  program in a subprocess. A few steps from the usual initialisation leave
  the model predicting (almost) only void, with analog bits so close to 0
  that their signs are float noise; so training starts (`init_checkpoint`)
  from the initialisation with its ≈0 weights randomised
  (`randomize_near_zero_weights`): masks with segments and decisive bits.
  EMA decay 0.5 makes the EMA weights differ from the raw ones.
- `video_export`: the tiny model with 2 past frames, built and randomised the
  same way (not trained), saved as a checkpoint + config.gin, then exported
  in-process.
"""

import os
import subprocess
import sys

import gin
import keras
import numpy as np
import tensorflow as tf

from data import records
from models import pix2seq_d
from tasks import config
from tasks import distribute
from tasks import export
from tasks import train_lib
from tests.tasks.conftest import data_bindings
from tests.tasks.conftest import make_synthetic_records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_BINDINGS = [
    'build_ema.decay = 0.5',
    'run_experiment.jit_compile = False',
    'run_experiment.seed = 1',
]
VIDEO_CATEGORIES = [
    dict(class_id=1, id=7, name='person', isthing=1),
    dict(class_id=2, id=9, name='animal', isthing=1),
    dict(class_id=3, id=20, name='background', isthing=0),
]
_CACHE = {}


def _quiet_env():
  env = dict(os.environ)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def image_export(tmp_path_factory) -> dict:
  """`{records, model_dir, export_dir, info, export_stdout}` of the trained tiny model."""
  if 'image' in _CACHE:
    return _CACHE['image']
  root = tmp_path_factory.mktemp('export_image')
  data = make_synthetic_records(str(root / 'data'), num_train=8, num_val=2)
  model_dir = str(root / 'model')
  init_dir = str(root / 'init')
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin(['experiments/coco_stage1_tiny.gin'],
                     data_bindings(data) + TRAIN_BINDINGS, finalize=False)
    _save_random_model(init_dir, seed=1)
    gin.clear_config()
    config.parse_gin(['experiments/coco_stage1_tiny.gin'],
                     data_bindings(data) + TRAIN_BINDINGS +
                     [f"run_experiment.init_checkpoint = '{init_dir}'"],
                     finalize=False)
    train_lib.run_experiment(model_dir, 'train',
                             distribute.build_strategy('default'),
                             argv=['test'])
  finally:
    gin.clear_config()
  export_dir = str(root / 'export' / '1')
  result = subprocess.run(
      [sys.executable, '-m', 'tools.export_saved_model',
       f'--model_dir={model_dir}', f'--output_dir={export_dir}'],
      cwd=REPO, capture_output=True, text=True, timeout=600, env=_quiet_env())
  if result.returncode != 0:
    raise RuntimeError(f'export failed:\n{result.stderr[-5000:]}')
  _CACHE['image'] = dict(records=data, model_dir=model_dir,
                         export_dir=export_dir,
                         info=export.read_export_info(export_dir),
                         export_stdout=result.stdout)
  return _CACHE['image']


def randomize_near_zero_weights(model, scale: float = 0.5,
                                bias_scale: float = 0.01, seed: int = 0) -> int:
  """Gives the ≈0-initialised weights (kernels, biases, norm offsets) random values.

  An untrained model has ≈0 output kernels and zero biases: it predicts
  nearly uniform logits, whose analog bits are ≈0 (signs decided by float
  rounding) and decode to (almost) only void. Kernels get N(0, scale²),
  vectors N(0, bias_scale²): decisive, varied masks.

  Returns:
    The number of variables changed.
  """
  rng = np.random.default_rng(seed)
  changed = 0
  for variable in model.trainable_variables:
    value = variable.numpy()
    if np.abs(value).max() < 1e-4:
      std = scale if value.ndim > 1 else bias_scale
      variable.assign(rng.normal(0.0, std, value.shape).astype(value.dtype))
      changed += 1
  return changed


def _save_random_model(directory: str, seed: int = 0):
  """Builds the gin-configured model, randomises its ≈0 weights, saves model + EMA."""
  keras.utils.set_random_seed(seed)
  model = pix2seq_d.build_model()
  ema = pix2seq_d.build_ema(model)
  assert randomize_near_zero_weights(model, seed=seed) > 0
  ema.update(decay=0.0)  # The EMA shadow = the randomised weights.
  tf.train.Checkpoint(model=model, ema=ema).save(os.path.join(directory, 'ckpt'))


def video_export(tmp_path_factory) -> dict:
  """`{model_dir, export_dir, info, categories_json}` of a built tiny video model."""
  if 'video' in _CACHE:
    return _CACHE['video']
  root = tmp_path_factory.mktemp('export_video')
  model_dir = str(root / 'model')
  categories_json = records.write_categories(str(root / 'video'),
                                             VIDEO_CATEGORIES)
  gin.clear_config()
  try:
    config.import_configurables()
    config.parse_gin(['model/pix2seq_d_tiny.gin'],
                     ['build_model.num_past_frames = 2', 'build_ema.decay = 0.9'],
                     finalize=False)
    _save_random_model(model_dir)
    config.save_run_record(model_dir, ['test'])
    gin.clear_config()
    export.parse_export_gin(
        model_dir, gin_bindings=[
            f"export_saved_model.categories_json = '{categories_json}'",
            'export_saved_model.num_steps = 3',
            'export_saved_model.td = 1.0',
            'export_saved_model.min_pixels = 2',
        ], finalize=False)
    export_dir = str(root / 'export' / '1')
    info = export.export_saved_model(model_dir, export_dir)
  finally:
    gin.clear_config()
  _CACHE['video'] = dict(model_dir=model_dir, export_dir=export_dir, info=info,
                         categories_json=categories_json)
  return _CACHE['video']
