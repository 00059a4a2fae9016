"""Panoptic evaluation of checkpoints with the EMA weights (issue 6; REFERENCE §6, §8).

Per batch, on the devices: the encoder once, the DDIM loop (models/sampler.py),
majority class per instance and the `min_pixels` filter (tasks/postprocess.py),
all in one compiled function. On the host: each mask is resized back to its
image's original size, scored against the original-size ground truth (PQ with
panopticapi semantics, mean IoU) and written in COCO panoptic format
(`<model_dir>/eval/step_<N>/panoptic/<source_id>.png` + `panoptic.json`, with
the dataset's category ids) next to `metrics.json`.

Besides PQ, two failure modes are reported apart (issue 12): recognition,
`miou_things` / `miou_stuff` (the semantic mIoU averaged over the thing /
stuff classes, ids ignored), and separation, `merged` / `split` (the shares of
ground-truth thing segments merged with another segment or split over several,
classes ignored; tasks/metrics/separation.py).
"""

import json
import os
from typing import Optional, Sequence

from absl import logging
import gin
import numpy as np
import orbit
import tensorflow as tf

from data import parsers
from data import records
from models import sampler
from tasks import postprocess
from tasks import visualize
from tasks.metrics import files
from tasks.metrics import mean_iou
from tasks.metrics import panoptic_quality
from tasks.metrics import separation


class PanopticEvaluator(orbit.StandardEvaluator):
  """Samples masks for the eval set and computes PQ / SQ / RQ and mIoU."""

  def __init__(self, *, model, ema, strategy, dataset, model_dir: str,
               global_step: tf.Variable, categories: Sequence[dict],
               image_size, mask_size, num_steps: int = 20, td: float = 2.0,
               min_pixels: int = 80, seed: int = 0,
               write_predictions: bool = True, jit_compile: bool = True,
               num_summary_images: int = 3, min_pixels_at: str = 'mask',
               void_votes: bool = False, stuff_as_one_segment: bool = False,
               readout: str = 'threshold'):
    """Args mirror `build_evaluator`; `dataset` is a distributed eval dataset."""
    self.model = model
    self.ema = ema
    self.strategy = strategy
    self.model_dir = model_dir
    self.global_step = global_step
    self.categories = list(categories)
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.num_steps = num_steps
    self.td = td
    self.min_pixels = min_pixels
    self.min_pixels_at = postprocess.check_min_pixels_at(min_pixels_at)
    self.void_votes = bool(void_votes)
    self.stuff_as_one_segment = postprocess.check_stuff_as_one_segment(
        stuff_as_one_segment)
    self.readout = sampler.check_readout(readout)
    self.seed = seed
    self.write_predictions = write_predictions
    self.num_summary_images = num_summary_images
    self._summary_pictures = []
    self._last_metrics_json = 'null'
    self._class_to_dataset_id = {c['class_id']: c['id'] for c in self.categories}
    self._postprocess = postprocess.Postprocessor.for_model(
        model.n_bits, self.categories, min_pixels=min_pixels,
        min_pixels_at=self.min_pixels_at, void_votes=self.void_votes,
        stuff_as_one_segment=self.stuff_as_one_segment)
    pq_categories = [dict(id=c['class_id'], name=c['name'], isthing=c['isthing'])
                     for c in self.categories]
    self._pq = panoptic_quality.PanopticQuality(pq_categories)
    self._miou = mean_iou.MeanIoU([c['class_id'] for c in self.categories])
    self._thing_class_ids = [c['class_id'] for c in self.categories
                             if c['isthing']]
    self._separation = separation.Separation(self._thing_class_ids)
    self._predict = tf.function(self._predict_fn, jit_compile=jit_compile)
    self._annotations = []
    self._output_dir = None
    super().__init__(dataset, options=orbit.StandardEvaluatorOptions(
        use_tf_function=False))

  @property
  def last_metrics(self) -> Optional[dict]:
    """The last evaluation's metrics (what `metrics.json` holds), or None."""
    return json.loads(self._last_metrics_json)

  def _predict_fn(self, images, batch_offset):
    context = tf.distribute.get_replica_context()
    seed = tf.stack([tf.cast(self.seed, tf.int32),
                     batch_offset + context.replica_id_in_sync_group])
    outputs = sampler.sample(self.model, images, mask_size=self.mask_size,
                             num_steps=self.num_steps, td=self.td, seed=seed,
                             readout=self.readout)
    return self._postprocess(outputs['label_map'], 'mask')

  def eval_begin(self):
    self._pq.reset()
    self._miou.reset()
    self._separation.reset()
    self._annotations = []
    self._summary_pictures = []
    self._batches = 0
    step = int(self.global_step.numpy())
    self._output_dir = os.path.join(self.model_dir, 'eval', f'step_{step}')
    if self.write_predictions:
      tf.io.gfile.makedirs(os.path.join(self._output_dir, 'panoptic'))
    if self.ema is not None:
      self._swap = self.ema.swap()
      self._swap.__enter__()
    return None

  def eval_step(self, iterator):
    inputs, labels = next(iterator)
    offset = tf.constant(self._batches * 1000, tf.int32)
    self._batches += 1
    predictions = self.strategy.run(self._predict, args=(inputs['images'], offset))
    local = lambda x: self.strategy.experimental_local_results(x)
    outputs = {'predictions': local(predictions),
               'labels': tf.nest.map_structure(local, labels)}
    if len(self._summary_pictures) < self.num_summary_images:
      outputs['images'] = local(inputs['images'])
    return outputs

  def eval_reduce(self, state=None, step_outputs=None):
    predictions = step_outputs['predictions']
    labels = step_outputs['labels']
    for replica, prediction in enumerate(predictions):
      replica_labels = {k: v[replica].numpy() for k, v in labels.items()}
      for i, label_map in enumerate(prediction.numpy()):
        if 'valid' in replica_labels and not replica_labels['valid'][i]:
          continue
        self._score_one(label_map, {k: v[i] for k, v in replica_labels.items()})
        if 'images' in step_outputs and (
            len(self._summary_pictures) < self.num_summary_images):
          self._summary_pictures.append(self._picture(
              step_outputs['images'][replica][i].numpy(),
              replica_labels['label_map'][i], label_map))
    return state

  def _picture(self, image, gt_label_map, label_map):
    """input | ground truth | prediction, at the model's input size."""
    size = image.shape[:2]
    panels = [np.round(image * 255).astype(np.uint8)]
    for labels in (gt_label_map, label_map):
      panels.append(visualize.upscale_nearest(
          visualize.segment_colors(labels, self.categories), size))
    return visualize.side_by_side(panels)

  def _score_one(self, label_map, labels):
    image_info = labels['image_info']
    pred = parsers.label_map_to_original(
        tf.constant(label_map), tf.constant(image_info), self.image_size)
    if self.min_pixels_at == 'original':
      pred = self._postprocess(pred[tf.newaxis], 'original')[0]
    pred = pred.numpy()
    height, width = pred.shape[:2]
    gt = labels['original_label_map'][:height, :width]
    crowd_ids = np.flatnonzero(labels['segment_is_crowd'])
    source_id = labels['source_id'].decode()
    self._pq.update_from_label_maps(gt[..., 0], gt[..., 1], pred[..., 0],
                                    pred[..., 1], crowd_ids,
                                    gt_name=source_id, pred_name=source_id)
    self._miou.update(gt[..., 0], pred[..., 0], name=source_id)
    self._separation.update(gt[..., 0], gt[..., 1], pred[..., 0], pred[..., 1],
                            crowd_ids)
    if self.write_predictions:
      self._write_prediction(source_id, pred)

  def _write_prediction(self, source_id, pred):
    segment_map, segments = panoptic_quality.segments_from_label_maps(
        pred[..., 0], pred[..., 1])
    file_name = f'{source_id}.png'
    files.write_png(os.path.join(self._output_dir, 'panoptic', file_name),
                    files.id_to_rgb(segment_map))
    for segment in segments:
      segment['category_id'] = self._class_to_dataset_id[segment['category_id']]
      segment['area'] = int(np.sum(segment_map == segment['id']))
    image_id = int(source_id) if source_id.isdigit() else source_id
    self._annotations.append(dict(image_id=image_id, file_name=file_name,
                                  segments_info=segments))

  def eval_end(self, state=None):
    if self.ema is not None:
      self._swap.__exit__(None, None, None)
    pq = self._pq.result()
    miou = self._miou.result()
    separated = self._separation.result()
    stuff = [c['class_id'] for c in self.categories if not c['isthing']]
    metrics = {
        'pq': pq['All']['pq'], 'sq': pq['All']['sq'], 'rq': pq['All']['rq'],
        'pq_things': pq['Things']['pq'], 'pq_stuff': pq['Stuff']['pq'],
        'miou': miou['mIoU'],
        # Recognition (classes, ids ignored) and separation (ids, classes
        # ignored): module docstring.
        'miou_things': self._miou.mean_over(self._thing_class_ids)['mIoU'],
        'miou_stuff': self._miou.mean_over(stuff)['mIoU'],
        'merged': separated['merged'], 'split': separated['split'],
    }
    payload = dict(metrics, step=int(self.global_step.numpy()),
                   num_steps=self.num_steps, td=self.td,
                   min_pixels=self.min_pixels,
                   stuff_as_one_segment=self.stuff_as_one_segment,
                   readout=self.readout, panoptic=pq,
                   mean_iou=miou, separation=separated)
    tf.io.gfile.makedirs(self._output_dir)
    files.write_json(os.path.join(self._output_dir, 'metrics.json'), payload)
    if self._summary_pictures:
      # Periodic image summaries: input | ground truth | prediction.
      writer = tf.summary.create_file_writer(
          os.path.join(self.model_dir, 'eval_images'))
      with writer.as_default():
        tf.summary.image('input_groundtruth_prediction',
                         np.stack(self._summary_pictures),
                         step=int(self.global_step.numpy()),
                         max_outputs=self.num_summary_images)
      writer.close()
    if self.write_predictions:
      dataset_categories = [dict(id=c['id'], name=c['name'], isthing=c['isthing'])
                            for c in self.categories]
      files.write_json(os.path.join(self._output_dir, 'panoptic.json'),
                       dict(annotations=self._annotations,
                            categories=dataset_categories))
    logging.info('eval at step %d: %s', int(self.global_step.numpy()),
                 ', '.join(f'{k} {v:.4f}' for k, v in metrics.items()))
    # Kept as JSON text: tf.Module would wrap a dict attribute in trackable types.
    self._last_metrics_json = json.dumps(payload)
    return metrics


@gin.configurable(denylist=['model', 'ema', 'strategy', 'model_dir',
                            'eval_batch_size', 'dataset_fn', 'global_step'])
def build_evaluator(model, ema, strategy, model_dir, eval_batch_size, dataset_fn,
                    global_step, *, categories_json: str = gin.REQUIRED,
                    image_size=gin.REQUIRED, mask_size=gin.REQUIRED,
                    num_steps: int = 20, td: float = 2.0, min_pixels: int = 80,
                    seed: int = 0, write_predictions: bool = True,
                    jit_compile: bool = True,
                    num_summary_images: int = 3,
                    min_pixels_at: str = 'mask',
                    void_votes: bool = False,
                    stuff_as_one_segment: bool = False,
                    readout: str = 'threshold') -> PanopticEvaluator:
  """Builds the evaluator (gin: `build_evaluator.num_steps = 20`, ...).

  Args:
    model: the `Pix2SeqD` model.
    ema: its EMA (evaluation uses the EMA weights), or None.
    strategy: the distribution strategy.
    model_dir: outputs go to `model_dir/eval/step_<N>/`.
    eval_batch_size: global eval batch size (unused here; the dataset has it).
    dataset_fn: `dataset_fn(input_context)` of the eval set.
    global_step: the run's step variable.
    categories_json: the `P.categories.json` written by the converter.
    image_size: the model's input size `(H, W)`.
    mask_size: the generated mask size `(h, w)`.
    num_steps: DDIM steps (REFERENCE §6: 20 for COCO).
    td: time difference (2.0 for COCO, 1.5 for Cityscapes).
    min_pixels: drop smaller segments (80 for COCO and Cityscapes at mask
      size; the authors' released evaluation: 40 at the original size).
    seed: seed of the initial noise.
    write_predictions: also write COCO panoptic PNG + JSON predictions.
    jit_compile: XLA-compile the sampler.
    num_summary_images: eval examples shown in TensorBoard (`eval_images/`) as
      input | ground truth | prediction at each evaluation.
    min_pixels_at: 'mask' (count a segment's pixels in the generated mask) or
      'original' (in the mask mapped back to the original image, after the
      nearest-neighbour resize: the authors' released code), see
      tasks/postprocess.py.
    void_votes: void pixels vote in the majority class and a void-majority
      segment is dropped (the authors' released code); False: void does not vote.
    stuff_as_one_segment: after the majority class, all pixels of each stuff
      class (`isthing == 0`) become one segment per image, whatever ids the
      decoder gave them (tasks/postprocess.py). The quickstart pictures and
      the export follow this binding unless given their own.
    readout: how the last DDIM step's decoder output becomes the mask
      (models/sampler.py): 'threshold' (`bit2int(x0 > 0)`, Algorithm 2) or
      'argmax' (each bit group's most probable pattern). The quickstart
      pictures and the export follow this binding unless given their own.

  Returns:
    A `PanopticEvaluator`.
  """
  del eval_batch_size
  dataset = strategy.distribute_datasets_from_function(dataset_fn)
  return PanopticEvaluator(
      model=model, ema=ema, strategy=strategy, dataset=dataset,
      model_dir=model_dir, global_step=global_step,
      categories=records.read_categories(categories_json),
      image_size=image_size, mask_size=mask_size, num_steps=num_steps, td=td,
      min_pixels=min_pixels, seed=seed, write_predictions=write_predictions,
      jit_compile=jit_compile, num_summary_images=num_summary_images,
      min_pixels_at=min_pixels_at, void_votes=void_votes,
      stuff_as_one_segment=stuff_as_one_segment, readout=readout)
