"""The quickstart's pictures: overlays and the denoising trajectory (tasks/quickstart.py, step 5).

`write_pictures` samples the first held-out images with the EMA weights, as
the evaluator does, and writes `overlays/<source_id>.png` (image | ground
truth | prediction, coloured panoptic maps) and `trajectory.png` (the label
map predicted at every DDIM step for one image, paper Fig. 11).
"""

import io
import os
from typing import Optional

import gin
import numpy as np
from PIL import Image
import tensorflow as tf

from data import parsers
from data import pipeline
from data import records
from data import source_files
from models import pix2seq_d
from models import sampler
from tasks import config
from tasks import partial_restore
from tasks import postprocess
from tasks import visualize

def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def restore_for_inference(model_dir: str):
  """Builds the gin model holding the latest checkpoint's EMA weights (if any).

  Returns:
    The model (`pix2seq_d.restore_for_inference`: no EMA shadow copy).
  """
  latest = partial_restore.resolve_checkpoint(model_dir)
  model = pix2seq_d.build_model()
  pix2seq_d.restore_for_inference(model, latest)
  return model


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
  if readout is None:
    readout = config.gin_value('build_evaluator.readout') or 'threshold'
  sampler.check_readout(readout)
  model = restore_for_inference(model_dir)
  with gin.config_scope('eval'):
    dataset = pipeline.build_dataset(global_batch_size=num_images,
                                     is_training=False)
  inputs, labels = next(iter(dataset))
  images = inputs['images']
  n_bits = model.n_bits

  # One sampler call with the EMA weights (as the evaluator): the overlays use
  # the last step, the trajectory picture every step of the first image.
  outputs = sampler.sample(model, images, mask_size=tuple(mask_size),
                           num_steps=num_steps, td=td,
                           seed=tf.constant([seed, 0], tf.int32),
                           trajectory_size=num_steps, readout=readout)
  predictions = postprocess.Postprocessor.for_model(
      n_bits, categories, min_pixels=min_pixels,
      stuff_as_one_segment=stuff_as_one_segment)(outputs['label_map'])

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
  steps = postprocess.Postprocessor.for_model(n_bits, categories, min_pixels=0)(
      outputs['trajectory'][:, 0]).numpy()
  panels = [first] + [visualize.upscale_nearest(visualize.segment_colors(s, categories), panel)
                      for s in steps]
  path = os.path.join(output_dir, 'trajectory.png')
  source_files.write_bytes_atomic(path, _png(visualize.side_by_side(panels)))
  written['trajectory'] = path
  return written
