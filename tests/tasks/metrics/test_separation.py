"""Tests for tasks/metrics/separation.py on hand-built label maps."""

import numpy as np

from tasks.metrics import separation


def _counts(gt, pred, crowd=()):
  gt, pred = np.asarray(gt), np.asarray(pred)
  return separation.separation_counts(gt[..., 0], gt[..., 1], pred[..., 0],
                                      pred[..., 1], thing_class_ids=[1],
                                      gt_crowd_instance_ids=crowd)


def _maps(classes, ids):
  return np.stack([np.asarray(classes), np.asarray(ids)], -1)


# Two discs (class 1, ids 1 and 2) and sky (class 2, id 9).
GT = _maps([[1, 1, 1, 1, 2, 2],
            [1, 1, 1, 1, 2, 2]],
           [[1, 1, 2, 2, 9, 9],
            [1, 1, 2, 2, 9, 9]])


def test_perfect_prediction_neither_merged_nor_split():
  pred = GT.copy()
  pred[..., 1] += 20  # Ids need not agree, only the partition.
  assert _counts(GT, pred) == {'segments': 2, 'merged': 0, 'split': 0}


def test_two_things_sharing_one_id_are_both_merged():
  pred = _maps(GT[..., 0], [[7, 7, 7, 7, 8, 8], [7, 7, 7, 7, 8, 8]])
  assert _counts(GT, pred) == {'segments': 2, 'merged': 2, 'split': 0}


def test_thing_bleeding_into_the_stuff_segment_is_merged():
  # Disc 2 is predicted as part of the sky segment (its best, and the sky's).
  pred = _maps([[1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 2, 2]],
               [[3, 3, 8, 8, 8, 8], [3, 3, 8, 8, 8, 8]])
  assert _counts(GT, pred) == {'segments': 2, 'merged': 1, 'split': 0}


def test_split_counts_only_predicted_pixels():
  # One 6-pixel disc (id 1) on sky.
  gt = _maps([[1, 1, 1, 2], [1, 1, 1, 2]], [[1, 1, 1, 9], [1, 1, 1, 9]])
  thirds = _maps([[1, 1, 1, 2], [1, 1, 1, 2]], [[4, 5, 6, 9], [4, 5, 6, 9]])
  # 2 of 6 pixels < half: split.
  assert _counts(gt, thirds) == {'segments': 1, 'merged': 0, 'split': 1}
  # 3 pixels id 4, 2 pixels id 5, 1 void: 3 of the 5 predicted pixels.
  mostly = _maps([[1, 1, 1, 2], [1, 1, 0, 2]], [[4, 4, 4, 9], [5, 5, 0, 9]])
  assert _counts(gt, mostly) == {'segments': 1, 'merged': 0, 'split': 0}
  # Exactly half is not less than half.
  halves = _maps([[1, 1, 1, 2], [1, 1, 1, 2]], [[4, 4, 4, 9], [5, 5, 5, 9]])
  assert _counts(gt, halves)['split'] == 0
  # Nothing predicted: counted, neither merged nor split.
  missed = _maps([[0, 0, 0, 2], [0, 0, 0, 2]], [[0, 0, 0, 9], [0, 0, 0, 9]])
  assert _counts(gt, missed) == {'segments': 1, 'merged': 0, 'split': 0}


def test_crowd_segments_are_neither_evaluated_nor_merge_partners():
  # Disc 2 is a crowd region; one predicted segment covers both discs.
  pred = _maps(GT[..., 0], [[7, 7, 7, 7, 8, 8], [7, 7, 7, 7, 8, 8]])
  assert _counts(GT, pred, crowd=[2]) == {'segments': 1, 'merged': 0,
                                          'split': 0}


def test_streaming_shares_over_images():
  metric = separation.Separation(thing_class_ids=[1])
  merged = _maps(GT[..., 0], [[7, 7, 7, 7, 8, 8], [7, 7, 7, 7, 8, 8]])
  for pred in (GT, merged):
    metric.update(GT[..., 0], GT[..., 1], pred[..., 0], pred[..., 1])
  assert metric.result() == {'merged': 0.5, 'split': 0.0, 'segments': 4}
  metric.reset()
  assert metric.result() == {'merged': 0.0, 'split': 0.0, 'segments': 0}
