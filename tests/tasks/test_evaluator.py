"""Tests for tasks/evaluator.py on hand-built masks (no model, no sampling).

The evaluator's host side (`_postprocess`, `_score_one`, `eval_end`) is run
on label maps whose post-processing and metrics are known.
"""

import json
import types

import numpy as np
import tensorflow as tf

from models import diffusion
from models import losses
from tasks import evaluator as evaluator_lib

# Class 1 is a thing, class 2 stuff (contiguous class ids; dataset ids differ).
CATEGORIES = [dict(class_id=1, id=11, name='disc', isthing=1),
              dict(class_id=2, id=22, name='sky', isthing=0)]


def _evaluator(tmp_path, **kwargs):
  return evaluator_lib.PanopticEvaluator(
      model=types.SimpleNamespace(n_bits=(4, 4)), ema=None,
      strategy=tf.distribute.get_strategy(),
      dataset=tf.data.Dataset.range(1), model_dir=str(tmp_path),
      global_step=tf.Variable(7, dtype=tf.int64), categories=CATEGORIES,
      image_size=(4, 6), mask_size=(4, 6), min_pixels=0, jit_compile=False,
      write_predictions=False, num_summary_images=0, **kwargs)


def _labels(gt, crowd=()):
  height, width = gt.shape[:2]
  is_crowd = np.zeros([8], bool)
  is_crowd[list(crowd)] = True  # Indexed by segment index (0 = void).
  return {'image_info': np.array([[height, width], [height, width], [1, 1],
                                  [0, 0]], np.float32),
          'original_label_map': gt, 'segment_is_crowd': is_crowd,
          'source_id': b'1'}


def _evaluate(evaluator, pairs):
  """Post-processes and scores `[(prediction, ground truth)]`; returns metrics."""
  evaluator.eval_begin()
  for pred, gt in pairs:
    processed = evaluator._postprocess(tf.constant(pred[None]), 'mask')  # pylint: disable=protected-access
    evaluator._score_one(processed.numpy()[0], _labels(gt))  # pylint: disable=protected-access
  return evaluator.eval_end()


# Ground truth: a disc (thing, id 1) on sky (stuff, id 2).
GT = np.stack([np.array([[2, 2, 2, 2, 2, 2],
                         [2, 1, 1, 2, 2, 2],
                         [2, 1, 1, 2, 2, 2],
                         [2, 2, 2, 2, 2, 2]]),
               np.array([[2, 2, 2, 2, 2, 2],
                         [2, 1, 1, 2, 2, 2],
                         [2, 1, 1, 2, 2, 2],
                         [2, 2, 2, 2, 2, 2]])], -1)


def test_stuff_as_one_segment_turns_a_split_stuff_class_into_a_match(tmp_path):
  # The decoder split the sky into ids 3, 4, 5 (two columns each).
  pred = GT.copy()
  pred[..., 1] = np.where(GT[..., 0] == 2, 3, 1)
  pred[:, 2:4, 1] = np.where(GT[:, 2:4, 0] == 2, 4, 1)
  pred[:, 4:, 1] = 5
  split = _evaluate(_evaluator(tmp_path), [(pred, GT)])
  merged = _evaluate(_evaluator(tmp_path, stuff_as_one_segment=True),
                     [(pred, GT)])
  # Without the merge no sky part has IoU > 0.5 (6, 6, 8 of 20): stuff
  # PQ 0; with it the sky is one segment equal to the ground truth.
  assert split['pq_stuff'] == 0.0
  assert merged['pq_stuff'] == 1.0 and merged['pq'] == 1.0
  assert split['pq_things'] == merged['pq_things'] == 1.0
  payload = json.loads(
      (tmp_path / 'eval' / 'step_7' / 'metrics.json').read_text())
  assert payload['stuff_as_one_segment'] is True


def test_recognition_and_separation_metrics(tmp_path):
  # Image 1: the disc gets the sky's class but its own id (recognition
  # failure, separated). Image 2: the disc shares the sky's id 3 (its class
  # is outvoted by the majority: merged into the sky).
  wrong_class = np.stack([np.full([4, 6], 2), GT[..., 1] + 2], -1)
  shared_id = np.stack([GT[..., 0], np.full([4, 6], 3)], -1)
  evaluator = _evaluator(tmp_path)
  metrics = _evaluate(evaluator, [(wrong_class, GT), (shared_id, GT)])
  # Class 1 never predicted: IoU 0. Class 2: 40 ground-truth pixels, all 48
  # predicted: 40 / 48.
  assert metrics['miou_things'] == 0.0
  np.testing.assert_allclose(metrics['miou_stuff'], 40 / 48)
  np.testing.assert_allclose(metrics['miou'], 40 / 48 / 2)
  assert metrics['merged'] == 0.5 and metrics['split'] == 0.0
  payload = json.loads(
      (tmp_path / 'eval' / 'step_7' / 'metrics.json').read_text())
  assert payload['merged'] == 0.5 and payload['separation']['segments'] == 2
  assert payload['miou_things'] == 0.0


def test_split_thing_and_crowd_ground_truth(tmp_path):
  # The disc (4 pixels) split over ids 5, 6, 7, 8, one pixel each: its
  # largest part covers 1 of its 4 predicted pixels, less than half.
  pred = GT.copy()
  pred[1:3, 1:3, 1] = [[5, 6], [7, 8]]
  metrics = _evaluate(_evaluator(tmp_path), [(pred, GT)])
  assert metrics['split'] == 1.0 and metrics['merged'] == 0.0
  # As a crowd region the disc is not evaluated.
  evaluator = _evaluator(tmp_path)
  evaluator.eval_begin()
  processed = evaluator._postprocess(tf.constant(pred[None]), 'mask')  # pylint: disable=protected-access
  evaluator._score_one(processed.numpy()[0], _labels(GT, crowd=[1]))  # pylint: disable=protected-access
  metrics = evaluator.eval_end()
  assert metrics['split'] == 0.0
  assert evaluator.last_metrics['separation']['segments'] == 0


class _SplitDecoder:
  """Fixed group logits: class 1 for sure; instance ids 1 (0.45), 2 (0.40),
  3 (0.15), whose thresholded bit average is id 3 (models/sampler.py)."""

  n_bits = (2, 2)
  b_scale = 0.1
  self_condition = False
  num_past_frames = 0
  gamma_fn = staticmethod(diffusion.cosine_gamma)
  logits = np.log(np.array([[1e-4, 0.9997, 1e-4, 1e-4],
                            [1e-9, 0.45, 0.40, 0.15]], np.float32))

  def encode(self, images, training=False):
    del training
    return {'tokens': tf.zeros([tf.shape(images)[0], 1, 1])}

  def denoise(self, x_t, gamma, encoded, past_bits=None, training=False,
              x0_prev=None):
    del gamma, encoded, past_bits, training, x0_prev
    logits = tf.broadcast_to(self.logits,
                             tf.concat([tf.shape(x_t)[:3], [2, 4]], 0))
    return logits, losses.bits_from_logits(logits, self.b_scale)


def test_readout_reaches_the_evaluators_sampler(tmp_path):
  ids = {}
  for readout in ('threshold', 'argmax'):
    evaluator = _evaluator(tmp_path, readout=readout)
    evaluator.model = _SplitDecoder()
    prediction = evaluator._predict(tf.zeros([1, 4, 6, 3]), tf.constant(0))  # pylint: disable=protected-access
    ids[readout] = set(np.unique(prediction.numpy()[..., 1]))
  assert ids == {'threshold': {3}, 'argmax': {1}}
