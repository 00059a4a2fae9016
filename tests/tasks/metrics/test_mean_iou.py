"""Tests for tasks/metrics/mean_iou.py against hand-computed values."""

import numpy as np
import pytest

from tasks.metrics import mean_iou


def test_hand_computed():
  gt = np.array([[1, 1, 2, 0],
                 [2, 2, 3, 3]])
  pred = np.array([[1, 2, 2, 1],
                   [2, 0, 3, 3]])
  miou = mean_iou.MeanIoU(class_ids=[1, 2, 3, 4], void_id=0)
  miou.update(gt, pred)
  result = miou.result()
  # Class 1: TP 1, union 2 + 1 - 1; class 2: TP 2, union 3 + 3 - 2 (the
  # predicted 0 on a class-2 pixel is a miss); class 3: 2 / 2; the prediction
  # on the void pixel counts nowhere; class 4 never occurs.
  assert result['per_class'] == {1: 0.5, 2: 0.5, 3: 1.0, 4: 0.0}
  assert result['n'] == 3
  assert result['mIoU'] == pytest.approx(2.0 / 3.0)


def test_streaming_and_merge_equal_one_pass():
  rng = np.random.default_rng(0)
  images = [(rng.integers(0, 5, (6, 7)), rng.integers(0, 5, (6, 7)))
            for _ in range(4)]
  whole = mean_iou.MeanIoU(range(1, 5))
  parts = [mean_iou.MeanIoU(range(1, 5)), mean_iou.MeanIoU(range(1, 5))]
  for k, (gt, pred) in enumerate(images):
    whole.update(gt, pred)
    parts[k % 2].update(gt, pred)
  parts[0].merge(parts[1])
  assert parts[0].result() == whole.result()
  # Independent formula on the concatenated pixels.
  gt = np.concatenate([g.ravel() for g, _ in images])
  pred = np.concatenate([p.ravel() for _, p in images])
  keep = gt != 0
  ious = [np.sum((gt == c) & (pred == c) & keep) /
          np.sum(((gt == c) | (pred == c)) & keep) for c in range(1, 5)]
  assert whole.result()['mIoU'] == pytest.approx(np.mean(ious))


def test_errors():
  miou = mean_iou.MeanIoU([1, 2])
  with pytest.raises(ValueError,
                     match=r'frame.png: unknown ground-truth class id\(s\) \[7\]'):
    miou.update(np.array([[1, 7]]), np.array([[1, 1]]), name='frame.png')
  with pytest.raises(ValueError, match='differ in size'):
    miou.update(np.array([[1, 2]]), np.array([[1, 1, 1]]))
  with pytest.raises(ValueError, match='also a class id'):
    mean_iou.MeanIoU([0, 1], void_id=0)


def test_mean_over_a_subset_of_classes():
  miou = mean_iou.MeanIoU([1, 2, 3])
  # Class 1: IoU 1/2; class 2: 1/1; class 3 absent everywhere.
  miou.update(np.array([[1, 1, 2]]), np.array([[1, 0, 2]]))
  assert miou.mean_over([1, 2]) == {'mIoU': 0.75, 'n': 2}
  assert miou.mean_over([1, 3]) == {'mIoU': 0.5, 'n': 1}
  assert miou.mean_over([3]) == {'mIoU': 0.0, 'n': 0}
  with pytest.raises(ValueError, match='7'):
    miou.mean_over([7])
