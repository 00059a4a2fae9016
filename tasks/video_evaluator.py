"""Streaming video evaluation: DAVIS J&F or KITTI-STEP STQ (paper §3.4, §4.1; REFERENCE §6, §8).

Each video is segmented frame by frame by `tasks/video.py`'s
`StreamingSegmenter` (the model conditions on its own past predictions; the
first frame gets more steps), with the EMA weights. Predictions are mapped back
to the original frame size and
- `metric='davis'`: the predicted thing instances become DAVIS object ids
  1..20, numbered in order of first appearance in the video (so an instance
  keeps its id across frames), scored with `tasks/metrics/davis.py` and written
  as indexed PNGs `<out>/<video>/<frame>.png`;
- `metric='stq'`: classes become Cityscapes trainIds (class id - 1, void 255),
  thing instances track ids, scored with `tasks/metrics/stq.py` and written as
  KITTI-STEP PNGs (R = class, G*256 + B = track id).
The video is streamed one frame at a time on one device: its memory is flat in
the video's length.
"""

import json
import os
from typing import Optional

from absl import logging
import gin
import numpy as np
import orbit
from PIL import Image
import tensorflow as tf

from data import parsers
from data import pipeline
from data import records
from tasks import video as video_lib
from tasks.metrics import davis
from tasks.metrics import files
from tasks.metrics import stq

METRICS = ('davis', 'stq')
DAVIS_VOID = 255
MAX_DAVIS_OBJECTS = 20


def _davis_palette() -> list:
  """The DAVIS colour map (bit-interleaved, as the dataset's PNGs use)."""
  palette = []
  for index in range(256):
    r = g = b = 0
    value = index
    for shift in range(7, -1, -1):
      r |= ((value >> 0) & 1) << shift
      g |= ((value >> 1) & 1) << shift
      b |= ((value >> 2) & 1) << shift
      value >>= 3
    palette += [r, g, b]
  return palette


class VideoEvaluator(orbit.AbstractEvaluator):
  """Streams every eval video through the model and scores it."""

  def __init__(self, *, model, ema, dataset_fn, model_dir: str,
               global_step: tf.Variable, categories, image_size, mask_size,
               metric: str, segmenter_kwargs: dict, write_predictions: bool = True):
    if metric not in METRICS:
      raise ValueError(f'build_video_evaluator.metric={metric!r} is not one of '
                       f'{list(METRICS)}.')
    self.model = model
    self.ema = ema
    self.dataset_fn = dataset_fn
    self.model_dir = model_dir
    self.global_step = global_step
    self.categories = list(categories)
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.metric = metric
    self.write_predictions = write_predictions
    self.thing_classes = {c['class_id'] for c in self.categories if c['isthing']}
    self.segmenter = video_lib.StreamingSegmenter(model, mask_size,
                                                  **segmenter_kwargs)
    self._last_metrics_json = 'null'
    self._palette = _davis_palette()

  @property
  def last_metrics(self) -> Optional[dict]:
    return json.loads(self._last_metrics_json)

  def _new_accumulator(self):
    if self.metric == 'davis':
      return davis.DavisJF()
    num_classes = len(self.categories)
    things = [c['class_id'] - 1 for c in self.categories if c['isthing']]
    return stq.SegmentationTrackingQuality(num_classes=num_classes,
                                           things_list=things)

  def evaluate(self, num_steps):
    """Evaluates `num_steps` frames (-1: all) and returns the metrics."""
    num_steps = int(num_steps)
    step = int(self.global_step.numpy())
    output_dir = os.path.join(self.model_dir, 'eval', f'step_{step}')
    accumulator = self._new_accumulator()
    swap = self.ema.swap() if self.ema is not None else None
    if swap is not None:
      swap.__enter__()
    try:
      current_video, object_ids, frames = None, {}, 0
      for inputs, labels in self.dataset_fn(None):
        if 0 <= num_steps <= frames:
          break
        video_id = labels['video_id'][0].numpy().decode()
        if video_id != current_video:
          self.segmenter.reset()
          current_video, object_ids = video_id, {}
        label_map = self.segmenter(inputs['images'][0])
        image_info = labels['image_info'][0]
        pred = parsers.label_map_to_original(
            tf.constant(label_map), image_info, self.image_size).numpy()
        height, width = pred.shape[:2]
        gt = labels['original_label_map'][0].numpy()[:height, :width]
        frame_name = labels['frame_name'][0].numpy().decode()
        self._score_frame(accumulator, video_id, frame_name, gt, pred,
                          object_ids, output_dir)
        frames += 1
    finally:
      if swap is not None:
        swap.__exit__(None, None, None)
    results = accumulator.result()
    if self.metric == 'davis':
      metrics = {k: float(results[k]) for k in davis_keys()}
    else:
      metrics = {k: float(results[k]) for k in ('STQ', 'AQ', 'SQ')}
    payload = dict(metrics, step=step, frames=frames, metric=self.metric)
    files.write_json(os.path.join(output_dir, 'metrics.json'), payload)
    logging.info('video eval at step %d (%d frames): %s', step, frames, metrics)
    self._last_metrics_json = json.dumps(payload)
    return {k.replace('&', 'and'): v for k, v in metrics.items()}

  def _score_frame(self, accumulator, video_id, frame_name, gt, pred,
                   object_ids, output_dir):
    if self.metric == 'davis':
      gt_objects = self._davis_ground_truth(gt)
      pred_objects = self._davis_objects(pred, object_ids)
      accumulator.update(video_id, gt_objects, pred_objects, frame_name=frame_name)
      if self.write_predictions:
        self._write_indexed_png(
            os.path.join(output_dir, video_id, f'{frame_name}.png'), pred_objects)
      return
    gt_class, gt_track = self._step_maps(gt)
    pred_class, pred_track = self._step_maps(pred)
    accumulator.update(video_id, gt_class, gt_track, pred_class, pred_track,
                       name=f'{video_id}/{frame_name}')
    if self.write_predictions:
      rgb = np.stack([pred_class, pred_track // 256, pred_track % 256],
                     -1).astype(np.uint8)
      files.write_png(os.path.join(output_dir, video_id, f'{frame_name}.png'), rgb)

  def _davis_ground_truth(self, gt):
    """Objects 1..N from the thing segments (stored index - 1); void 255."""
    classes, ids = gt[..., 0], gt[..., 1]
    objects = np.zeros(classes.shape, np.int64)
    things = np.isin(classes, list(self.thing_classes))
    objects[things] = ids[things] - 1
    objects[classes == records.VOID_CLASS_ID] = DAVIS_VOID
    return objects

  def _davis_objects(self, pred, object_ids):
    """Thing instances to DAVIS ids 1..20 in order of first appearance."""
    classes, ids = pred[..., 0], pred[..., 1]
    things = np.isin(classes, list(self.thing_classes)) & (ids > 0)
    present, counts = np.unique(ids[things], return_counts=True)
    for instance in present[np.argsort(-counts, kind='stable')]:
      if instance not in object_ids and len(object_ids) < MAX_DAVIS_OBJECTS:
        object_ids[int(instance)] = len(object_ids) + 1
    objects = np.zeros(classes.shape, np.int64)
    for instance, object_id in object_ids.items():
      objects[things & (ids == instance)] = object_id
    return objects

  def _step_maps(self, label_map):
    """(class, instance) to KITTI-STEP (trainId or 255, track id of things)."""
    classes, ids = label_map[..., 0], label_map[..., 1]
    train_id = np.where(classes == records.VOID_CLASS_ID, 255, classes - 1)
    things = np.isin(classes, list(self.thing_classes))
    track = np.where(things, ids, 0)
    return train_id.astype(np.int64), track.astype(np.int64)

  def _write_indexed_png(self, path, objects):
    image = Image.fromarray(objects.astype(np.uint8), mode='P')
    image.putpalette(self._palette)
    folder = os.path.dirname(path)
    tf.io.gfile.makedirs(folder)
    tmp = path + '.tmp'
    with tf.io.gfile.GFile(tmp, 'wb') as f:
      image.save(f, format='PNG')
    tf.io.gfile.rename(tmp, path, overwrite=True)


def davis_keys():
  return ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall',
          'F-Decay')


@gin.configurable(denylist=['model', 'ema', 'strategy', 'model_dir',
                            'eval_batch_size', 'dataset_fn', 'global_step'])
def build_video_evaluator(model, ema, strategy, model_dir, eval_batch_size,
                          dataset_fn, global_step, *,
                          categories_json: str = gin.REQUIRED,
                          image_size=gin.REQUIRED, mask_size=gin.REQUIRED,
                          metric: str = 'davis',
                          past_frame_offsets=(-2, -1),
                          first_frame_steps: int = 32,
                          later_frame_steps: int = 8, td: float = 1.0,
                          min_pixels: int = 10, seed: int = 0,
                          write_predictions: bool = True,
                          jit_compile: bool = True,
                          readout: str = 'threshold') -> VideoEvaluator:
  """Builds the streaming video evaluator (REFERENCE §6 defaults: DAVIS).

  Args:
    model: a video `Pix2SeqD` (num_past_frames = len(past_frame_offsets)).
    ema: its EMA, or None.
    strategy: unused: videos stream on one device.
    model_dir: outputs go to `model_dir/eval/step_<N>/`.
    eval_batch_size: unused: one frame at a time.
    dataset_fn: unused; the eval data come from gin's `eval/` scope
      (`build_video_eval_dataset`).
    global_step: the run's step variable.
    categories_json: the `P.categories.json` written by the converter.
    image_size: model input size.
    mask_size: generated mask size.
    metric: 'davis' (J&F) or 'stq' (KITTI-STEP).
    past_frame_offsets: the offsets the model was trained with.
    first_frame_steps: DDIM steps on frame 0 (DAVIS: 32).
    later_frame_steps: DDIM steps on later frames (DAVIS: 8; KITTI-STEP: 10).
    td: time difference (DAVIS 1.0, KITTI-STEP 1.5).
    min_pixels: post-processing threshold (DAVIS 10).
    seed: noise seed.
    write_predictions: write DAVIS / KITTI-STEP PNGs.
    jit_compile: XLA-compile the per-frame function.
    readout: 'threshold' (`bit2int(x0 > 0)`) or 'argmax' (each bit group's
      most probable pattern), models/sampler.py.

  Returns:
    A `VideoEvaluator`.
  """
  del strategy, eval_batch_size, dataset_fn

  def video_dataset_fn(input_context=None):
    with gin.config_scope('eval'):
      return pipeline.build_video_eval_dataset(input_context=input_context)

  categories = records.read_categories(categories_json)
  return VideoEvaluator(
      model=model, ema=ema, dataset_fn=video_dataset_fn, model_dir=model_dir,
      global_step=global_step, categories=categories,
      image_size=image_size, mask_size=mask_size, metric=metric,
      write_predictions=write_predictions,
      segmenter_kwargs=dict(past_frame_offsets=past_frame_offsets,
                            first_frame_steps=first_frame_steps,
                            later_frame_steps=later_frame_steps, td=td,
                            min_pixels=min_pixels, seed=seed,
                            num_valid_classes=len(categories),
                            jit_compile=jit_compile, readout=readout))
