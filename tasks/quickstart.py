"""Offline quickstart (issue 7): synthetic data -> records -> train -> PQ -> pictures.

One call runs the whole chain on a CPU, with nothing downloaded:

1. `data`: the built-in synthetic panoptic set (data/synthetic.py, the real COCO
   panoptic layout) is written and converted to TFRecords + `categories.json`
   (data/coco_panoptic.py), exactly as COCO would be. A data folder whose
   settings match is reused.
2. `train`: `tasks.train_lib.run_experiment(mode='train')` on the gin
   experiment (gin/experiments/quickstart.gin: the paper's algorithm at a
   small size). Unless given, the steps fill the time budget: by default
   re-planned at every training loop from the speed measured so far and the
   time left, the learning-rate schedule following the plan
   (tasks/quickstart_schedule.py, tasks/budget.py), so a machine whose load changes
   still ends on time; with `quickstart_settings.replan_budget = False`, the
   step count is fixed before training from the speed of two short loops
   in a scratch folder.
3. `eval`: `run_experiment(mode='eval')`: DDIM sampling of the held-out split,
   post-processing and PQ / SQ / RQ, things / stuff (tasks/evaluator.py).
4. `export`: a SavedModel through `tasks.export`, when that module exists and
   works (optional; a failure is recorded, not raised).
5. `pictures` (tasks/quickstart_pictures.py): `overlays/*.png` (image | ground truth | prediction, coloured
   panoptic maps) and `trajectory.png` (the label map predicted at every DDIM
   step for one image, paper Fig. 11).

Everything ends up in `output_dir/summary.json`: the validation metrics, the
train steps, the seconds of every stage, the parameter count and the settings.
"""

import os
import time
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf

from data import coco_panoptic
from data import source_files
from data import synthetic
from models import pix2seq_d
from tasks import config
from tasks import distribute
from tasks import export
from tasks import quickstart_pictures
from tasks import quickstart_pretrain
from tasks import quickstart_schedule
from tasks import train_lib

SUMMARY_NAME = 'summary.json'
DATA_SETTINGS_NAME = 'settings.json'


# --------------------------------------------------------------------- data ---


@gin.configurable
def quickstart_data(num_train: int = 2000, num_val: int = 200,
                    image_size: int = 64, seed: int = 0,
                    num_shards: int = 4) -> dict:
  """The synthetic set's settings (gin: `quickstart_data.num_train = 2000`).

  Returns:
    The arguments as a dict (recorded next to the data and in the summary).
  """
  return dict(num_train=num_train, num_val=num_val, image_size=image_size,
              seed=seed, num_shards=num_shards)


def record_paths(data_dir: str) -> dict:
  """Where `make_records` writes the TFRecords and the category table."""
  records_dir = os.path.join(data_dir, 'tfrecords')
  return {
      'train': os.path.join(records_dir, 'train-*'),
      'val': os.path.join(records_dir, 'val-*'),
      'categories': os.path.join(records_dir, 'train.categories.json'),
  }


def data_bindings(data_dir: str) -> list:
  """Gin bindings pointing the experiment's macros at `record_paths(data_dir)`."""
  paths = record_paths(data_dir)
  return [f"TRAIN_FILE_PATTERN = '{paths['train']}'",
          f"EVAL_FILE_PATTERN = '{paths['val']}'",
          f"CATEGORIES_JSON = '{paths['categories']}'"]


def make_records(data_dir: str, settings: dict, num_workers: int = 1) -> bool:
  """Writes the synthetic set and its TFRecords, unless `data_dir` has them.

  Args:
    data_dir: the folder (COCO panoptic layout + `tfrecords/`).
    settings: `quickstart_data()`.
    num_workers: processes rendering images / building examples.

  Returns:
    True if the data was written, False if it was reused.
  """
  settings_path = os.path.join(data_dir, DATA_SETTINGS_NAME)
  if tf.io.gfile.exists(settings_path):
    if source_files.read_json(settings_path) == settings:
      logging.info('data: reusing %s (same settings).', data_dir)
      return False
  for split in ('train', 'val'):
    folder = os.path.join(data_dir, 'tfrecords')
    if tf.io.gfile.isdir(folder):
      for name in tf.io.gfile.glob(os.path.join(folder, f'{split}-*')):
        tf.io.gfile.remove(name)
  logging.info('data: rendering %d train + %d val synthetic images (%d px) '
               'into %s', settings['num_train'], settings['num_val'],
               settings['image_size'], data_dir)
  synthetic.make_synthetic(
      data_dir, num_train=settings['num_train'], num_val=settings['num_val'],
      image_size=settings['image_size'], seed=settings['seed'],
      num_workers=num_workers)
  for split in ('train', 'val'):
    logging.info('data: converting %s to TFRecords', split)
    written = coco_panoptic.convert(
        os.path.join(data_dir, 'annotations', f'panoptic_{split}.json'),
        os.path.join(data_dir, 'panoptic', split),
        os.path.join(data_dir, 'images', split),
        os.path.join(data_dir, 'tfrecords', split),
        num_shards=settings['num_shards'], num_workers=num_workers,
        progress=True)
    logging.info('data: %s: %d records, %d segments', split,
                 written['examples_written'], written.get('segments', 0))
  source_files.write_json_atomic(settings_path, settings)
  return True


# ------------------------------------------------------------------ export ---


def try_export(model_dir: str, export_dir: str) -> dict:
  """Exports a SavedModel of the trained model (`tasks.export`).

  The quickstart's last stage is optional for the person running it: an
  export failure is recorded in `summary.json` (and logged) rather than
  discarding the trained model and its evaluation.

  Returns:
    `{'status': 'ok', 'export_dir', 'global_step'}` or `{'status': 'failed', 'error'}`.
  """
  try:
    # The experiment's gin config is parsed already: the export reads it.
    info = export.export_saved_model(model_dir, export_dir, overwrite=True)
  except (ValueError, OSError, tf.errors.OpError) as e:
    logging.warning('export failed: %s', e)
    return {'status': 'failed', 'error': f'{type(e).__name__}: {e}'[:500]}
  return {'status': 'ok', 'export_dir': export_dir,
          'global_step': (info or {}).get('global_step')}


# -------------------------------------------------------------------- main ---


class _Stages:
  """Seconds per stage, with a progress line at the start and end of each."""

  def __init__(self):
    self.seconds = {}

  def __call__(self, name):
    stages = self

    class _Stage:

      def __enter__(self):
        logging.info('=== quickstart stage %s ...', name)
        self.start = time.time()

      def __exit__(self, *exc_info):
        stages.seconds[name] = round(time.time() - self.start, 1)
        logging.info('=== quickstart stage %s done in %.1f s', name,
                     stages.seconds[name])

    return _Stage()


@gin.configurable
def quickstart_settings(num_workers: int = 2, export: bool = True,
                        pictures: bool = True, replan_budget: bool = True,
                        initial_steps_per_minute: float = 120.0,
                        encoder_pretrain_fraction: float = 0.0,
                        encoder_pretrain_steps: Optional[int] = None,
                        encoder_pretrain_gin: str = (
                            quickstart_pretrain.ENCODER_PRETRAIN_GIN),
                        encoder_pretrain_steps_per_minute: float = 900.0,
                        pretrained_encoder: str = '',
                        pretrained_decoder: str = '') -> dict:
  """Settings of the chain itself (gin: `quickstart_settings.export = False`).

  Args:
    num_workers: processes writing the data.
    export: run the export stage.
    pictures: write the overlays and the trajectory.
    replan_budget: re-plan the training steps at every loop from the speed
      measured so far (tasks/budget.py); False: fix them before training
      from a short calibration (`schedule_train_steps`).
    initial_steps_per_minute: with `replan_budget`, the speed assumed until
      the first loop is measured (shapes only the first loop's learning
      rate; the quickstart's first loop is its warmup).
    encoder_pretrain_fraction: the share of the training time spent first
      on training the image encoder alone on each pixel's class
      (tasks/quickstart_pretrain.py; the diffusion training then starts
      from that encoder); 0 = no such stage.
    encoder_pretrain_steps: that stage's steps when the diffusion training's
      steps are given (`train_steps`, tests); default: as many.
    encoder_pretrain_gin: the stage's gin file, parsed after the experiment's.
    encoder_pretrain_steps_per_minute: the stage's speed assumed until its
      first loop is measured (its re-planned time budget).
    pretrained_encoder: an encoder init checkpoint the diffusion training
      starts from (the paper's pre-trained encoder; relative to the
      repository root unless absolute; `tools.extract_part` writes one;
      quickstart.gin: the shipped models/pretrained/quickstart_encoder);
      '' = the encoder starts from scratch. Not with an encoder stage.
    pretrained_decoder: a decoder init checkpoint the diffusion training
      starts from (the paper's unconditional mask prior, §4:
      experiments/decoder_pretrain.gin, then `tools.extract_part
      --part=decoder`; quickstart.gin: the shipped
      models/pretrained/quickstart_decoder_prior); every variable whose path
      and shape match is restored. '' = from scratch.
  """
  if not isinstance(replan_budget, bool):
    raise ValueError(f'quickstart_settings.replan_budget={replan_budget!r} '
                     'must be True or False.')
  if not initial_steps_per_minute > 0:
    raise ValueError('quickstart_settings.initial_steps_per_minute='
                     f'{initial_steps_per_minute} must be > 0.')
  if not 0.0 <= encoder_pretrain_fraction < 1.0:
    raise ValueError('quickstart_settings.encoder_pretrain_fraction='
                     f'{encoder_pretrain_fraction} must be in [0, 1).')
  if encoder_pretrain_steps is not None and encoder_pretrain_steps < 1:
    raise ValueError('quickstart_settings.encoder_pretrain_steps='
                     f'{encoder_pretrain_steps} must be >= 1 (or None).')
  if not encoder_pretrain_steps_per_minute > 0:
    raise ValueError('quickstart_settings.encoder_pretrain_steps_per_minute='
                     f'{encoder_pretrain_steps_per_minute} must be > 0.')
  if pretrained_encoder and encoder_pretrain_fraction > 0:
    raise ValueError('quickstart_settings.pretrained_encoder and '
                     'encoder_pretrain_fraction > 0 both give the encoder; '
                     'set one.')
  return dict(num_workers=num_workers, export=export, pictures=pictures,
              replan_budget=replan_budget,
              initial_steps_per_minute=float(initial_steps_per_minute),
              encoder_pretrain_fraction=float(encoder_pretrain_fraction),
              encoder_pretrain_steps=encoder_pretrain_steps,
              encoder_pretrain_gin=encoder_pretrain_gin,
              encoder_pretrain_steps_per_minute=float(
                  encoder_pretrain_steps_per_minute),
              pretrained_encoder=pretrained_encoder,
              pretrained_decoder=pretrained_decoder)


def run_quickstart(output_dir: str,
                   gin_files: Sequence[str] = ('experiments/quickstart.gin',),
                   gin_bindings: Sequence[str] = (),
                   minutes: float = 15.0,
                   train_steps: Optional[int] = None,
                   argv: Sequence[str] = ()) -> dict:
  """Runs the image quickstart end to end (module docstring); returns the summary.

  Args:
    output_dir: everything goes here: `data/`, `model/`, `overlays/`,
      `trajectory.png`, `export/`, `summary.json`.
    gin_files: the experiment (default gin/experiments/quickstart.gin).
    gin_bindings: extra bindings (they win over the files).
    minutes: the wall-clock budget of the whole call; the training steps are
      sized to it (`plan_training`).
    train_steps: explicit training steps (overrides `minutes`; tests).
    argv: the command line, recorded with the run.

  Returns:
    The summary written to `output_dir/summary.json`.
  """
  start = time.time()
  data_dir = os.path.join(output_dir, 'data')
  model_dir = os.path.join(output_dir, 'model')
  config.import_configurables()
  bindings = data_bindings(data_dir) + list(gin_bindings)
  config.parse_gin(gin_files, bindings, finalize=False)
  settings = quickstart_settings()
  quickstart_pretrain.parse_pretrained_parts(settings, bindings)
  data_settings = quickstart_data()
  stages = _Stages()
  strategy = distribute.build_strategy('default')

  with stages('data'):
    make_records(data_dir, data_settings, settings['num_workers'])
  if tf.io.gfile.exists(model_dir):
    # A new run each time (the data, not the model, is reused).
    logging.info('removing the previous run in %s', model_dir)
    tf.io.gfile.rmtree(model_dir)
  pretrained = None
  if settings['encoder_pretrain_fraction'] > 0:
    with stages('pretrain'):
      pretrained, init_bindings = quickstart_pretrain.pretrain_encoder_stage(
          os.path.join(output_dir, 'encoder_pretrain'), strategy, gin_files,
          bindings, settings, minutes, start, train_steps, argv)
    config.parse_gin(gin_files, bindings + init_bindings, finalize=False)
  schedule, time_budget = quickstart_schedule.plan_training(model_dir, strategy, minutes, start,
                                        train_steps, settings, stages, argv)
  with stages('train'):
    trained = train_lib.run_experiment(model_dir, 'train', strategy,
                                       argv=list(argv) or ['quickstart'],
                                       time_budget=time_budget)
  if time_budget is not None:
    schedule.update(time_budget.summary(), train_steps=trained['global_step'])
  with stages('eval'):
    evaluated = train_lib.run_experiment(model_dir, 'eval', strategy,
                                         argv=list(argv) or ['quickstart'])
  metrics_json = os.path.join(model_dir, 'eval',
                              f'step_{evaluated["global_step"]}', 'metrics.json')
  metrics = source_files.read_json(metrics_json)
  export_result = {'status': 'skipped', 'reason': 'disabled'}
  if settings['export']:
    with stages('export'):
      export_result = try_export(model_dir, os.path.join(output_dir, 'export'))
  pictures = {}
  if settings['pictures']:
    with stages('pictures'):
      pictures = quickstart_pictures.write_pictures(model_dir, output_dir)

  model = quickstart_pictures.restore_for_inference(model_dir)
  summary = {
      'val': {k: metrics[k] for k in ('pq', 'pq_things', 'pq_stuff', 'sq', 'rq',
                                      'miou', 'miou_things', 'miou_stuff',
                                      'merged', 'split')},
      'val_panoptic': metrics['panoptic'],
      'train_steps': trained['global_step'],
      'encoder_pretrain': pretrained,
      'seconds': dict(stages.seconds, total=round(time.time() - start, 1)),
      'parameters': pix2seq_d.parameter_counts(model),
      'settings': {
          'minutes': minutes,
          'schedule': schedule,
          'data': data_settings,
          'gin_files': list(gin_files),
          'gin_bindings': list(gin_bindings),
          'pretrained_encoder': settings['pretrained_encoder'],
          'pretrained_decoder': settings['pretrained_decoder'],
          'image_size': list(gin.query_parameter('%IMAGE_SIZE')),
          'mask_size': list(gin.query_parameter('%MASK_SIZE')),
          'n_bits': list(model.n_bits),
          'b_scale': model.b_scale,
          'loss_p': model.loss_p,
          'loss_type': model.loss_type,
          'max_instances': gin.query_parameter('%MAX_INSTANCES'),
          'global_batch_size': gin.query_parameter(
              'run_experiment.global_batch_size'),
          'eval_num_steps': metrics['num_steps'],
          'eval_td': metrics['td'],
          'eval_min_pixels': metrics['min_pixels'],
      },
      'export': export_result,
      'pictures': pictures,
      'model_dir': model_dir,
      'metrics_json': metrics_json,
  }
  source_files.write_json_atomic(os.path.join(output_dir, SUMMARY_NAME), summary)
  logging.info('quickstart: PQ %.4f (things %.4f, stuff %.4f) after %d steps; '
               '%.0f s in all; summary in %s', metrics['pq'],
               metrics['pq_things'], metrics['pq_stuff'],
               trained['global_step'], summary['seconds']['total'],
               os.path.join(output_dir, SUMMARY_NAME))
  return summary


def format_summary(summary: dict, output_dir: str) -> str:
  """The closing lines of `python -m tools.quickstart` (image or video).

  Args:
    summary: `run_quickstart()` or `run_video_quickstart()`'s summary.
    output_dir: where `summary.json` was written.

  Returns:
    The train steps and seconds per stage, the held-out numbers, and where
    the pictures, the export and `summary.json` are.
  """
  seconds = summary.get('seconds', {})
  stages = ', '.join(f'{k} {v:.0f} s' for k, v in seconds.items() if k != 'total')
  lines = [f'quickstart done: {summary.get("train_steps")} training steps, '
           f'{seconds.get("total", 0):.0f} s in all ({stages})']
  numbers = [f'{k} {v:.3f}' for k, v in summary.get('val', {}).items()
             if isinstance(v, float)]
  if numbers:
    lines.append('  held-out: ' + ', '.join(numbers))
  pictures = summary.get('pictures') or {}
  folders = sorted({os.path.dirname(p) for p in pictures.get('overlays', [])} |
                   {os.path.dirname(p) for p in pictures.get('gifs', {}).values()})
  if pictures.get('trajectory'):
    folders.append(pictures['trajectory'])
  if folders:
    lines.append('  pictures: ' + ', '.join(folders))
  export = summary.get('export') or {}
  if export.get('status') == 'ok':
    lines.append(f'  export:   {export["export_dir"]}')
  elif export.get('status') == 'failed':
    lines.append(f'  export:   failed ({export.get("error")})')
  lines.append(f'  summary:  {os.path.join(output_dir, "summary.json")}')
  return '\n'.join(lines)

