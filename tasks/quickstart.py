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
   (`make_time_budget`, tasks/budget.py), so a machine whose load changes
   still ends on time; with `quickstart_settings.replan_budget = False`, the
   step count is fixed before training from the speed of two short loops
   in a scratch folder (`schedule_train_steps`).
3. `eval`: `run_experiment(mode='eval')`: DDIM sampling of the held-out split,
   post-processing and PQ / SQ / RQ, things / stuff (tasks/evaluator.py).
4. `export`: a SavedModel through `tasks.export`, when that module exists and
   works (optional; a failure is recorded, not raised).
5. `pictures`: `overlays/*.png` (image | ground truth | prediction, coloured
   panoptic maps) and `trajectory.png` (the label map predicted at every DDIM
   step for one image, paper Fig. 11).

Everything ends up in `output_dir/summary.json`: the validation metrics, the
train steps, the seconds of every stage, the parameter count and the settings.
"""

import contextlib
import io
import os
import time
from typing import Optional, Sequence

from absl import logging
import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from data import coco_panoptic
from data import parsers
from data import pipeline
from data import records
from data import source_files
from data import synthetic
from models import pix2seq_d
from models import sampler
from tasks import budget as budget_lib
from tasks import config
from tasks import distribute
from tasks import export
from tasks import postprocess
from tasks import train_lib
from tasks import visualize

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


# ----------------------------------------------------------------- schedule ---


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


# ----------------------------------------------------------------- pictures ---


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def restore_for_inference(model_dir: str):
  """Builds the gin model and restores the latest checkpoint of `model_dir`.

  Returns:
    `(model, ema)`; the caller swaps the EMA weights in (`ema.swap()`) when
    `ema` is not None, as the evaluator does.
  """
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None:
    raise FileNotFoundError(f'no checkpoint in {model_dir}.')
  model = pix2seq_d.build_model()
  ema = pix2seq_d.build_ema(model)
  items = dict(model=model)
  if ema is not None:
    items['ema'] = ema
  tf.train.Checkpoint(**items).read(latest).expect_partial()
  return model, ema


@gin.configurable(denylist=['model_dir', 'output_dir'])
def write_pictures(model_dir: str, output_dir: str, *, num_images: int = 8,
                   display_scale: int = 4,
                   categories_json: str = gin.REQUIRED,
                   image_size=gin.REQUIRED, mask_size=gin.REQUIRED,
                   num_steps: int = 10, td: float = 2.0, min_pixels: int = 0,
                   seed: int = 0,
                   stuff_as_one_segment: Optional[bool] = None,
                   readout: Optional[str] = None) -> dict:
  """Writes `overlays/*.png` and `trajectory.png` for the first eval images.

  Args:
    model_dir: the trained run (its latest checkpoint, EMA weights if any).
    output_dir: where `overlays/` and `trajectory.png` go.
    num_images: overlays written (the first eval images).
    display_scale: nearest-neighbour magnification of every panel.
    categories_json: the converter's category table (colours, ids).
    image_size: model input `(H, W)`.
    mask_size: generated mask `(h, w)`.
    num_steps, td, min_pixels, seed: sampling and post-processing, as the
      evaluator's (gin binds the same macros).
    stuff_as_one_segment: each stuff class one segment per image
      (tasks/postprocess.py); None: `build_evaluator.stuff_as_one_segment`.
    readout: 'threshold' or 'argmax' (models/sampler.py); None:
      `build_evaluator.readout` (default 'threshold').

  Returns:
    `{'overlays': [paths], 'trajectory': path}`.
  """
  categories = records.read_categories(categories_json)
  if stuff_as_one_segment is None:
    stuff_as_one_segment = bool(
        config.gin_value('build_evaluator.stuff_as_one_segment'))
  stuff_ids = (postprocess.stuff_class_ids(categories)
               if postprocess.check_stuff_as_one_segment(stuff_as_one_segment)
               else ())
  if readout is None:
    readout = config.gin_value('build_evaluator.readout') or 'threshold'
  sampler.check_readout(readout)
  model, ema = restore_for_inference(model_dir)
  with gin.config_scope('eval'):
    dataset = pipeline.build_dataset(global_batch_size=num_images,
                                     is_training=False)
  inputs, labels = next(iter(dataset))
  images = inputs['images']
  n_bits = model.n_bits

  # One sampler call with the EMA weights (as the evaluator): the overlays use
  # the last step, the trajectory picture every step of the first image.
  with ema.swap() if ema is not None else contextlib.nullcontext():
    outputs = sampler.sample(model, images, mask_size=tuple(mask_size),
                             num_steps=num_steps, td=td,
                             seed=tf.constant([seed, 0], tf.int32),
                             trajectory_size=num_steps, readout=readout)
  predictions = postprocess.majority_class_and_min_pixels(
      outputs['label_map'], min_pixels, num_ids=2**n_bits[1],
      num_classes=2**n_bits[0], num_valid_classes=len(categories),
      stuff_class_ids=stuff_ids)

  overlay_dir = os.path.join(output_dir, 'overlays')
  tf.io.gfile.makedirs(overlay_dir)
  written = {'overlays': []}
  valid = labels.get('valid', tf.ones([images.shape[0]], tf.bool)).numpy()
  for i in range(images.shape[0]):
    if not valid[i]:
      continue
    image_info = labels['image_info'][i]
    original = [int(v) for v in image_info[0].numpy()]
    scaled = [int(round(float(v))) for v in image_info[1].numpy()]
    display = (original[0] * display_scale, original[1] * display_scale)
    picture = (images[i].numpy()[:scaled[0], :scaled[1]] * 255).round()
    picture = visualize.upscale_nearest(picture.astype(np.uint8), display)
    gt = labels['original_label_map'][i].numpy()[:original[0], :original[1]]
    pred = parsers.label_map_to_original(predictions[i], image_info,
                                         tuple(image_size)).numpy()
    row = visualize.side_by_side([picture,
                         visualize.upscale_nearest(visualize.segment_colors(gt, categories), display),
                         visualize.upscale_nearest(visualize.segment_colors(pred, categories), display)])
    source_id = labels['source_id'][i].numpy().decode()
    path = os.path.join(overlay_dir, f'{source_id}.png')
    source_files.write_bytes_atomic(path, _png(row))
    written['overlays'].append(path)

  # Trajectory: the image, then the (majority-class) label map of each step.
  panel = (image_size[0] * display_scale, image_size[1] * display_scale)
  first = visualize.upscale_nearest((images[0].numpy() * 255).round().astype(np.uint8), panel)
  steps = postprocess.majority_class_and_min_pixels(
      outputs['trajectory'][:, 0], 0, num_ids=2**n_bits[1], num_classes=2**n_bits[0],
      num_valid_classes=len(categories)).numpy()
  panels = [first] + [visualize.upscale_nearest(visualize.segment_colors(s, categories), panel)
                      for s in steps]
  path = os.path.join(output_dir, 'trajectory.png')
  source_files.write_bytes_atomic(path, _png(visualize.side_by_side(panels)))
  written['trajectory'] = path
  return written


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
                        initial_steps_per_minute: float = 120.0) -> dict:
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
  """
  if not isinstance(replan_budget, bool):
    raise ValueError(f'quickstart_settings.replan_budget={replan_budget!r} '
                     'must be True or False.')
  if not initial_steps_per_minute > 0:
    raise ValueError('quickstart_settings.initial_steps_per_minute='
                     f'{initial_steps_per_minute} must be > 0.')
  return dict(num_workers=num_workers, export=export, pictures=pictures,
              replan_budget=replan_budget,
              initial_steps_per_minute=float(initial_steps_per_minute))


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
  config.parse_gin(gin_files, data_bindings(data_dir) + list(gin_bindings),
                   finalize=False)
  settings = quickstart_settings()
  data_settings = quickstart_data()
  stages = _Stages()
  strategy = distribute.build_strategy('default')

  with stages('data'):
    make_records(data_dir, data_settings, settings['num_workers'])
  if tf.io.gfile.exists(model_dir):
    # A new run each time (the data, not the model, is reused).
    logging.info('removing the previous run in %s', model_dir)
    tf.io.gfile.rmtree(model_dir)
  schedule, time_budget = plan_training(model_dir, strategy, minutes, start,
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
      pictures = write_pictures(model_dir, output_dir)

  model, _ = restore_for_inference(model_dir)
  summary = {
      'val': {k: metrics[k] for k in ('pq', 'pq_things', 'pq_stuff', 'sq', 'rq',
                                      'miou', 'miou_things', 'miou_stuff',
                                      'merged', 'split')},
      'val_panoptic': metrics['panoptic'],
      'train_steps': trained['global_step'],
      'seconds': dict(stages.seconds, total=round(time.time() - start, 1)),
      'parameters': pix2seq_d.parameter_counts(model),
      'settings': {
          'minutes': minutes,
          'schedule': schedule,
          'data': data_settings,
          'gin_files': list(gin_files),
          'gin_bindings': list(gin_bindings),
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

