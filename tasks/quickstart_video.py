"""Offline video quickstart (issue 7, `--video`): synthetic videos -> J&F.

The image quickstart's chain (tasks/quickstart.py) for the video model, on a
CPU, with nothing downloaded:

1. `data`: the built-in synthetic videos (data/synthetic.py: moving shapes
   that enter, leave and occlude each other, in the DAVIS 2017 layout) are
   written and converted to video TFRecords + `categories.json`
   (data/davis.py), exactly as DAVIS would be. A data folder whose settings
   match is reused.
2. `train`: `tasks.train_lib.run_experiment(mode='train')` on the gin
   experiment (gin/experiments/quickstart_video.gin: the video model, whose
   decoder also sees the masks of the past frames, paper §3.4), its encoder
   and decoder started from `quickstart_settings.pretrained_encoder` and
   `pretrained_decoder` when set (the image quickstart's shipped encoder and
   decoder prior fit: same encoder, same frame size, same decoder). Unless
   given, the steps fill the time budget as in the image quickstart
   (`quickstart_schedule.plan_training`: re-planned at every loop by default).
3. `eval`: `run_experiment(mode='eval')` with the streaming video evaluator
   (tasks/video_evaluator.py): every held-out video is segmented frame by
   frame, each frame conditioned on the model's own predictions for the past
   frames (tasks/video.py), and scored with DAVIS unsupervised J&F; the
   predictions are written as DAVIS PNGs in `model/eval/step_<N>/`.
4. `export`: a SavedModel with the stateless video signatures
   (tasks/export.py; optional: a failure is recorded, not raised).
5. `pictures`: for the first `num_videos` held-out videos,
   `pictures/<video>/<frame>.png` (frame | ground truth | prediction, the
   DAVIS objects coloured over the frame) and `pictures/<video>.gif` (those
   strips animated). The prediction panel shows the evaluator's own PNGs, so
   the pictures are exactly what J&F scored; object numbers (hence colours)
   of the prediction follow first appearance and need not match the ground
   truth's (unsupervised: J&F matches them by assignment).

Everything ends up in `output_dir/summary.json`: the J&F metrics, the train
steps, the seconds of every stage, the parameter count and the settings.
"""

import io
import os
import time
from typing import Optional, Sequence

from absl import logging
import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from data import davis
from data import source_files
from data import synthetic
from models import pix2seq_d
from tasks import config
from tasks import distribute
from tasks import quickstart
from tasks import quickstart_pictures
from tasks import quickstart_pretrain
from tasks import quickstart_schedule
from tasks import train_lib
from tasks import visualize
from tasks import video_evaluator

SUMMARY_NAME = quickstart.SUMMARY_NAME
DATA_SETTINGS_NAME = quickstart.DATA_SETTINGS_NAME
# The synthetic videos' folders (data/synthetic.py writes DAVIS's layout).
FRAMES_DIR = os.path.join('JPEGImages', '480p')
LABELS_DIR = os.path.join('Annotations_unsupervised', '480p')
VOID_COLOR = (64, 64, 64)


# --------------------------------------------------------------------- data ---


@gin.configurable
def quickstart_video_data(num_train_videos: int = 300, num_val_videos: int = 20,
                          num_frames: int = 10, image_size: int = 64,
                          seed: int = 0, num_shards: int = 4) -> dict:
  """The synthetic video set's settings (gin: `quickstart_video_data.num_frames = 10`).

  Returns:
    The arguments as a dict (recorded next to the data and in the summary).
  """
  return dict(num_train_videos=num_train_videos, num_val_videos=num_val_videos,
              num_frames=num_frames, image_size=image_size, seed=seed,
              num_shards=num_shards)


def make_video_records(data_dir: str, settings: dict,
                       num_workers: int = 1) -> bool:
  """Writes the synthetic videos and their TFRecords, unless `data_dir` has them.

  The records are where `quickstart.record_paths(data_dir)` says (the image
  quickstart's names), so `quickstart.data_bindings` points gin at them.

  Args:
    data_dir: the folder (DAVIS 2017 layout + `tfrecords/`).
    settings: `quickstart_video_data()`.
    num_workers: processes rendering videos / building examples.

  Returns:
    True if the data was written, False if it was reused.
  """
  settings_path = os.path.join(data_dir, DATA_SETTINGS_NAME)
  if tf.io.gfile.exists(settings_path):
    if source_files.read_json(settings_path) == settings:
      logging.info('data: reusing %s (same settings).', data_dir)
      return False
    tf.io.gfile.remove(settings_path)
  # Other settings: start afresh (fewer frames would leave stale frames in
  # the sequence folders, which the converter would pick up).
  for folder in ('JPEGImages', 'Annotations_unsupervised', 'ImageSets',
                 'tfrecords'):
    path = os.path.join(data_dir, folder)
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
  for split, count in (('train', settings['num_train_videos']),
                       ('val', settings['num_val_videos'])):
    logging.info('data: rendering %d %s synthetic videos of %d frames (%d px) '
                 'into %s', count, split, settings['num_frames'],
                 settings['image_size'], data_dir)
    synthetic.write_video_split(
        data_dir, split, count, image_size=settings['image_size'],
        num_frames=settings['num_frames'], seed=settings['seed'],
        num_workers=num_workers)
  for split in ('train', 'val'):
    logging.info('data: converting %s to TFRecords', split)
    davis.convert(data_dir, split, os.path.join(data_dir, 'tfrecords', split),
                  num_shards=settings['num_shards'], num_workers=num_workers,
                  progress=True)
  source_files.write_json_atomic(settings_path, settings)
  return True


# ----------------------------------------------------------------- pictures ---


def _encode(image: Image.Image, **save_args) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, **save_args)
  return buffer.getvalue()


def object_overlay(frame: np.ndarray, objects: np.ndarray,
                   alpha: float = 0.6) -> np.ndarray:
  """Colours DAVIS objects over a frame.

  Args:
    frame: uint8 `[H, W, 3]`.
    objects: uint8 `[H, W]` DAVIS labels: 0 background (frame shown as is),
      k object k (the DAVIS palette's colour k, blended with `alpha`), 255
      void (dark grey).

  Returns:
    uint8 `[H, W, 3]`, object boundaries darkened.
  """
  palette = np.array(synthetic.davis_palette(), np.float32).reshape(256, 3)
  picture = frame.astype(np.float32)
  is_object = (objects > 0) & (objects != davis.VOID_LABEL)
  blended = (1.0 - alpha) * picture + alpha * palette[objects]
  picture = np.where(is_object[..., None], blended, picture)
  picture[objects == davis.VOID_LABEL] = VOID_COLOR
  edge = np.zeros(objects.shape, bool)
  edge[:-1] |= objects[:-1] != objects[1:]
  edge[1:] |= objects[:-1] != objects[1:]
  edge[:, :-1] |= objects[:, :-1] != objects[:, 1:]
  edge[:, 1:] |= objects[:, :-1] != objects[:, 1:]
  picture = np.where(edge[..., None], picture * 0.4, picture)
  return np.clip(picture, 0, 255).round().astype(np.uint8)


def _read_frame(path: str) -> np.ndarray:
  with Image.open(io.BytesIO(source_files.read_bytes(path))) as image:
    return np.asarray(image.convert('RGB'), np.uint8)


@gin.configurable(denylist=['data_dir', 'predictions_dir', 'output_dir'])
def write_video_pictures(data_dir: str, predictions_dir: str, output_dir: str,
                         *, num_videos: int = 2, display_scale: int = 4,
                         gif_frame_ms: int = 250) -> dict:
  """Writes per-frame strips and an animated GIF for the first val videos.

  Args:
    data_dir: the synthetic set (DAVIS layout: frames, ground truth, lists).
    predictions_dir: the evaluator's DAVIS PNGs, `<video>/<frame>.png`
      (`model/eval/step_<N>/`).
    output_dir: `pictures/` goes here.
    num_videos: the first videos of `ImageSets/2017/val.txt` drawn.
    display_scale: nearest-neighbour magnification of every panel.
    gif_frame_ms: display time of one GIF frame.

  Returns:
    `{'strips': {video: [png paths]}, 'gifs': {video: gif path}}`.

  Raises:
    FileNotFoundError: a frame without its prediction PNG.
  """
  picture_dir = os.path.join(output_dir, 'pictures')
  written = {'strips': {}, 'gifs': {}}
  for video_id in davis.read_split(data_dir, 'val')[:num_videos]:
    frame_dir = os.path.join(data_dir, FRAMES_DIR, video_id)
    video_dir = os.path.join(picture_dir, video_id)
    tf.io.gfile.makedirs(video_dir)
    strips, paths = [], []
    for name in source_files.list_files(frame_dir, '.jpg'):
      stem = os.path.splitext(name)[0]
      frame = _read_frame(os.path.join(frame_dir, name))
      truth = source_files.read_indexed_png(
          os.path.join(data_dir, LABELS_DIR, video_id, f'{stem}.png'))
      prediction_path = os.path.join(predictions_dir, video_id, f'{stem}.png')
      if not tf.io.gfile.exists(prediction_path):
        raise FileNotFoundError(f'{prediction_path}: no prediction for frame '
                                f'{name} of {video_id} (was it evaluated?).')
      prediction = source_files.read_indexed_png(prediction_path)
      display = (frame.shape[0] * display_scale, frame.shape[1] * display_scale)
      strip = visualize.side_by_side([
          visualize.upscale_nearest(panel, display)
          for panel in (frame, object_overlay(frame, truth),
                        object_overlay(frame, prediction))])
      path = os.path.join(video_dir, f'{stem}.png')
      source_files.write_bytes_atomic(
          path, _encode(Image.fromarray(strip), format='PNG'))
      strips.append(Image.fromarray(strip))
      paths.append(path)
    written['strips'][video_id] = paths
    if strips:
      gif = os.path.join(picture_dir, f'{video_id}.gif')
      source_files.write_bytes_atomic(gif, _encode(
          strips[0], format='GIF', save_all=True, append_images=strips[1:],
          duration=gif_frame_ms, loop=0))
      written['gifs'][video_id] = gif
  return written


# -------------------------------------------------------------------- main ---


def davis_summary(metrics: dict) -> dict:
  """The evaluator's DAVIS metrics under plain names.

  Args:
    metrics: `metrics.json` of the video evaluator ('J&F-Mean', 'J-Mean', ...).

  Returns:
    `{'j_and_f', 'j_mean', 'j_recall', 'j_decay', 'f_mean', 'f_recall',
    'f_decay', 'frames'}`.
  """
  summary = {}
  for key in video_evaluator.davis_keys():
    name = 'j_and_f' if key == 'J&F-Mean' else key.replace('-', '_').lower()
    summary[name] = metrics[key]
  summary['frames'] = metrics['frames']
  return summary


def run_video_quickstart(output_dir: str,
                         gin_files: Sequence[str] = (
                             'experiments/quickstart_video.gin',),
                         gin_bindings: Sequence[str] = (),
                         minutes: float = 15.0,
                         train_steps: Optional[int] = None,
                         argv: Sequence[str] = ()) -> dict:
  """Runs the video quickstart end to end (module docstring); returns the summary.

  Args:
    output_dir: everything goes here: `data/`, `model/`, `pictures/`,
      `export/`, `summary.json`.
    gin_files: the experiment (default gin/experiments/quickstart_video.gin).
    gin_bindings: extra bindings (they win over the files).
    minutes: the wall-clock budget of the whole call; the training steps are
      sized to it (`quickstart_schedule.plan_training`).
    train_steps: explicit training steps (overrides `minutes`; tests).
    argv: the command line, recorded with the run.

  Returns:
    The summary written to `output_dir/summary.json`.
  """
  start = time.time()
  data_dir = os.path.join(output_dir, 'data')
  model_dir = os.path.join(output_dir, 'model')
  config.import_configurables()
  bindings = quickstart.data_bindings(data_dir) + list(gin_bindings)
  config.parse_gin(gin_files, bindings, finalize=False)
  settings = quickstart.quickstart_settings()
  if settings['encoder_pretrain_fraction'] > 0:
    raise ValueError(
        'quickstart_settings.encoder_pretrain_fraction: the video quickstart '
        'has no encoder-pretraining stage; start from a pre-trained encoder '
        'with quickstart_settings.pretrained_encoder instead.')
  quickstart_pretrain.parse_pretrained_parts(settings, bindings)
  data_settings = quickstart_video_data()
  stages = quickstart._Stages()  # pylint: disable=protected-access
  strategy = distribute.build_strategy('default')
  argv = list(argv) or ['quickstart --video']

  with stages('data'):
    make_video_records(data_dir, data_settings, settings['num_workers'])
  if tf.io.gfile.exists(model_dir):
    # A new run each time (the data, not the model, is reused).
    logging.info('removing the previous run in %s', model_dir)
    tf.io.gfile.rmtree(model_dir)
  schedule, time_budget = quickstart_schedule.plan_training(
      model_dir, strategy, minutes, start, train_steps, settings, stages, argv)
  with stages('train'):
    trained = train_lib.run_experiment(model_dir, 'train', strategy, argv=argv,
                                       time_budget=time_budget)
  if time_budget is not None:
    schedule.update(time_budget.summary(), train_steps=trained['global_step'])
  with stages('eval'):
    evaluated = train_lib.run_experiment(model_dir, 'eval', strategy, argv=argv)
  eval_dir = os.path.join(model_dir, 'eval', f'step_{evaluated["global_step"]}')
  metrics_json = os.path.join(eval_dir, 'metrics.json')
  metrics = source_files.read_json(metrics_json)
  export_result = {'status': 'skipped', 'reason': 'disabled'}
  if settings['export']:
    with stages('export'):
      export_result = quickstart.try_export(model_dir,
                                            os.path.join(output_dir, 'export'))
  pictures = {}
  if settings['pictures']:
    with stages('pictures'):
      pictures = write_video_pictures(data_dir, eval_dir, output_dir)

  model = quickstart_pictures.restore_for_inference(model_dir)
  summary = {
      'val': davis_summary(metrics),
      'train_steps': trained['global_step'],
      'seconds': dict(stages.seconds, total=round(time.time() - start, 1)),
      'parameters': pix2seq_d.parameter_counts(model),
      'settings': {
          'minutes': minutes,
          'schedule': schedule,
          'data': data_settings,
          'pretrained_encoder': settings['pretrained_encoder'],
          'pretrained_decoder': settings['pretrained_decoder'],
          'gin_files': list(gin_files),
          'gin_bindings': list(gin_bindings),
          'image_size': list(config.gin_value('%IMAGE_SIZE')),
          'mask_size': list(config.gin_value('%MASK_SIZE')),
          'n_bits': list(model.n_bits),
          'b_scale': model.b_scale,
          'loss_p': model.loss_p,
          'loss_type': model.loss_type,
          'num_past_frames': model.num_past_frames,
          'past_frame_offsets': list(config.gin_value(
              'build_video_evaluator.past_frame_offsets')),
          'model_past_drop_rate': model.past_drop_rate,
          'parser_past_drop_rate': config.gin_value(
              'train/VideoTrainParser.past_drop_rate'),
          'max_instances': config.gin_value('%MAX_INSTANCES'),
          'global_batch_size': config.gin_value('run_experiment.global_batch_size'),
          'eval_first_frame_steps': config.gin_value(
              'build_video_evaluator.first_frame_steps'),
          'eval_later_frame_steps': config.gin_value(
              'build_video_evaluator.later_frame_steps'),
          'eval_td': config.gin_value('build_video_evaluator.td'),
          'eval_min_pixels': config.gin_value('build_video_evaluator.min_pixels'),
      },
      'export': export_result,
      'pictures': pictures,
      'model_dir': model_dir,
      'metrics_json': metrics_json,
  }
  source_files.write_json_atomic(os.path.join(output_dir, SUMMARY_NAME), summary)
  logging.info('video quickstart: J&F %.4f (J %.4f, F %.4f) on %d frames after '
               '%d steps; %.0f s in all; summary in %s',
               summary['val']['j_and_f'], summary['val']['j_mean'],
               summary['val']['f_mean'], summary['val']['frames'],
               trained['global_step'], summary['seconds']['total'],
               os.path.join(output_dir, SUMMARY_NAME))
  return summary
