"""Tests for tasks/metrics/davis.py: hand-computed J, F, matching and statistics."""

import os
import shutil

import numpy as np
import pytest
from scipy import ndimage

from tasks.metrics import davis
from tasks.metrics import files


def _square(shape, top, left, size):
  mask = np.zeros(shape, np.int64)
  mask[top:top + size, left:left + size] = 1
  return mask


def test_seg2bmap_hand_computed():
  mask = np.zeros((4, 4), bool)
  mask[1:3, 1:3] = True
  # The contour of the 3x3 box grown towards the origin by half a pixel.
  np.testing.assert_array_equal(davis.seg2bmap(mask), [[1, 1, 1, 0],
                                                       [1, 0, 1, 0],
                                                       [1, 1, 1, 0],
                                                       [0, 0, 0, 0]])


def test_boundary_tolerance():
  assert davis.boundary_tolerance((480, 854)) == 8  # ceil(7.83)
  assert davis.boundary_tolerance((10, 10)) == 1  # ceil(0.113)
  assert davis.boundary_tolerance((10, 10), bound_th=3) == 3


@pytest.mark.parametrize('shift,expected_j,expected_f', [
    (0, 1.0, 1.0),
    # Boundaries 1 px apart, within the 1-px tolerance of a 10x10 frame.
    (1, 12 / 20, 1.0),
    # 2 px apart: of the 16 predicted boundary pixels (the contour of rows
    # 1..5 x cols 3..7), 6 are more than 1 px from the ground truth's contour
    # (rows 1..5 x cols 1..5): (1, 7), (5, 7), (2..4, 7) and (3, 3); by
    # symmetry the same for recall, so P = R = F = 10 / 16.
    (2, 8 / 24, 10 / 16),
])
def test_boundary_tolerance_case(shift, expected_j, expected_f):
  gt = _square((10, 10), 2, 2, 4)
  pred = _square((10, 10), 2, 2 + shift, 4)
  j, f = davis.frame_scores(gt, pred, num_objects=1, num_proposals=1)
  assert j[0, 0] == pytest.approx(expected_j)
  assert f[0, 0] == pytest.approx(expected_f)


def _reference_f(gt, pred, radius):
  """davis2017 f_measure written out with scipy's binary dilation by a disk."""
  grid = np.arange(-radius, radius + 1)
  disk = grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2
  gt_b, fg_b = davis.seg2bmap(gt), davis.seg2bmap(pred)
  gt_dil = ndimage.binary_dilation(gt_b, structure=disk)
  fg_dil = ndimage.binary_dilation(fg_b, structure=disk)
  n_fg, n_gt = fg_b.sum(), gt_b.sum()
  if n_fg == 0 and n_gt > 0:
    precision, recall = 1, 0
  elif n_fg > 0 and n_gt == 0:
    precision, recall = 0, 1
  elif n_fg == 0 and n_gt == 0:
    precision, recall = 1, 1
  else:
    precision = np.sum(fg_b & gt_dil) / n_fg
    recall = np.sum(gt_b & fg_dil) / n_gt
  if precision + recall == 0:
    return 0.0
  return 2 * precision * recall / (precision + recall)


def test_f_matches_disk_dilation_reference():
  rng = np.random.default_rng(0)
  shape = (120, 200)
  gt = np.zeros(shape, np.int64)
  pred = np.zeros(shape, np.int64)
  for label in (1, 2, 3):
    for labels in (gt, pred):
      top, left = rng.integers(0, 90), rng.integers(0, 150)
      labels[top:top + rng.integers(5, 30), left:left + 40] = label
  pred = ndimage.median_filter(pred, 3)  # ragged edges
  bound_th = 0.03
  radius = davis.boundary_tolerance(shape, bound_th)
  assert radius == 7
  j, f = davis.frame_scores(gt, pred, num_objects=3, num_proposals=4,
                            bound_th=bound_th)
  for p in range(1, 5):
    for g in range(1, 4):
      assert f[p - 1, g - 1] == pytest.approx(
          _reference_f(gt == g, pred == p, radius)), (p, g)
      union = np.sum((gt == g) | (pred == p))
      expected_j = np.sum((gt == g) & (pred == p)) / union if union else 1.0
      assert j[p - 1, g - 1] == pytest.approx(expected_j)


def test_dilate_equals_disk_dilation():
  rng = np.random.default_rng(1)
  boundary = rng.random((50, 70)) > 0.995
  for radius in (1, 3, 8):
    grid = np.arange(-radius, radius + 1)
    disk = grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2
    np.testing.assert_array_equal(
        davis.dilate(boundary, radius),
        ndimage.binary_dilation(boundary, structure=disk))
  assert not davis.dilate(np.zeros((5, 5), bool), 2).any()


def test_db_statistics_hand_computed():
  mean, recall, decay = davis.db_statistics(np.arange(10) / 10)
  # Bins bounds round(linspace(1, 10, 5) + 1e-10) - 1 = [0, 2, 5, 7, 9]:
  # first bin frames 0..2 (mean 0.1), last bin frames 7..9 (mean 0.8).
  assert mean == pytest.approx(0.45)
  assert recall == pytest.approx(0.4)
  assert decay == pytest.approx(-0.7)
  assert davis.db_statistics(np.array([0.7])) == pytest.approx((0.7, 1.0, 0.0))


def test_matching_is_optimal_not_greedy():
  scores = np.array([[0.9, 0.8], [0.7, 0.1]])[:, :, None]
  proposal, obj, j, _ = davis.match_proposals(scores, scores)
  # Greedy would take (0, 0) then (1, 1): 1.0; the optimum is 0.8 + 0.7.
  np.testing.assert_array_equal(proposal, [0, 1])
  np.testing.assert_array_equal(obj, [1, 0])
  np.testing.assert_allclose(j[:, 0], [0.8, 0.7])


def test_more_proposals_than_objects_and_unmatched_proposal():
  shape = (10, 10)
  a = _square(shape, 0, 0, 3)
  b = _square(shape, 6, 6, 3)
  c = _square(shape, 0, 6, 2)
  metric = davis.DavisJF()
  for _ in range(3):
    gt = a * 1 + b * 2
    pred = b * 1 + a * 2 + c * 3  # swapped ids, one extra proposal
    metric.update('seq', gt, pred)
  result = metric.result()
  for key in ('J&F-Mean', 'J-Mean', 'F-Mean', 'J-Recall', 'F-Recall'):
    assert result[key] == 1.0, key
  assert result['J-Decay'] == 0.0 and result['F-Decay'] == 0.0
  assert result['num_objects'] == 2
  # Rows are named as davis2017-evaluation's per-sequence table: by rank in
  # proposal order, not by object id.
  assert result['per_object']['seq_1'] == {'J-Mean': 1.0, 'F-Mean': 1.0,
                                           'object': 2, 'proposal': 1}
  assert result['per_object']['seq_2'] == {'J-Mean': 1.0, 'F-Mean': 1.0,
                                           'object': 1, 'proposal': 2}


def test_object_without_proposal_scores_like_an_empty_mask():
  shape = (10, 10)
  a = _square(shape, 0, 0, 3)
  b = _square(shape, 6, 6, 3)
  metric = davis.DavisJF()
  for t in range(4):
    gt = a + (2 * b if t < 3 else 0)  # object 2 leaves in the last frame
    metric.update('seq', gt, a)
  result = metric.result()
  # Object 1: J = F = 1 in all 4 frames. Object 2 gets the empty padding
  # proposal: 0 while visible, 1 (both empty) in frame 3; decay
  # mean(frames 0, 1) - mean(frames 2, 3) = -0.5.
  for measure in ('J', 'F'):
    assert result[f'{measure}-Mean'] == pytest.approx(0.625)
    assert result[f'{measure}-Recall'] == pytest.approx(0.625)
    assert result[f'{measure}-Decay'] == pytest.approx(-0.25)
  assert result['J&F-Mean'] == pytest.approx(0.625)


def test_void_is_left_out_and_objects_come_from_frame_0():
  gt = np.zeros((6, 6), np.int64)
  gt[0:2, 0:2] = 1
  gt[4:6, 4:6] = 255
  pred = np.where(gt > 0, 1, 0)  # covers the object and the void
  later = gt.copy()
  later[2:4, 2:4] = 2  # an object absent from frame 0 is not evaluated
  metric = davis.DavisJF()
  metric.update('seq', gt, pred)
  metric.update('seq', later, pred)
  result = metric.result()
  assert result['num_objects'] == 1
  # The predicted void pixels are neither false positives nor boundary
  # (davis2017-evaluation's void masks); void as background would give 0.5.
  assert result['J-Mean'] == pytest.approx(1.0)
  assert result['F-Mean'] == pytest.approx(1.0)


def _reference_void_scores(gt, pred, void, radius):
  """davis2017 db_eval_iou / f_measure with void pixels, written out."""
  keep = ~void
  union = np.sum((gt | pred) & keep)
  j = np.sum(gt & pred & keep) / union if union else 1.0
  return j, _reference_f(gt & keep, pred & keep, radius)


def test_void_band_matches_the_packages_void_masks():
  rng = np.random.default_rng(2)
  shape = (60, 80)
  gt = np.zeros(shape, np.int64)
  pred = np.zeros(shape, np.int64)
  for label in (1, 2):
    for labels in (gt, pred):
      top, left = rng.integers(0, 40), rng.integers(0, 50)
      labels[top:top + rng.integers(8, 20), left:left + 25] = label
  # A 2-pixel void band around every ground-truth edge, as in the fixture.
  edges = ndimage.binary_dilation(davis.seg2bmap(gt > 0), iterations=2)
  void = edges & (rng.random(shape) > 0.1)
  gt_void = np.where(void, 255, gt)
  j, f = davis.frame_scores(gt_void, pred, num_objects=2, num_proposals=2)
  radius = davis.boundary_tolerance(shape)
  for p in (1, 2):
    for g in (1, 2):
      expected_j, expected_f = _reference_void_scores(
          gt_void == g, pred == p, void, radius)
      assert j[p - 1, g - 1] == pytest.approx(expected_j), (p, g)
      assert f[p - 1, g - 1] == pytest.approx(expected_f), (p, g)


@pytest.mark.parametrize('case', ['reverse', 'void'])
def test_real_davis_masks_match_the_official_evaluator(fixtures_dir, case):
  """`../shared/fixtures/davis_real`: davis2017-evaluation's own numbers."""
  root = os.path.join(fixtures_dir, 'davis_real', case)
  official = files.read_json(os.path.join(root, 'official.json'))
  result = davis.evaluate_davis_dirs(os.path.join(root, 'gt'),
                                     os.path.join(root, 'pred'))
  for key in davis.KEYS:
    assert abs(result[key] - official[key]) < 1e-9, (key, result[key],
                                                     official[key])


def test_sequences_average_over_objects_and_merge():
  shape = (10, 10)
  a = _square(shape, 0, 0, 4)
  first = davis.DavisJF()
  first.update('one', a, a)
  second = davis.DavisJF()
  second.update('two', a + 2 * _square(shape, 6, 6, 3), np.zeros(shape, int))
  first.merge(second)
  result = first.result()
  assert result['num_sequences'] == 2 and result['num_objects'] == 3
  assert result['J-Mean'] == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match='one'):
    first.merge(first)


def test_too_many_proposals_and_bad_shapes():
  metric = davis.DavisJF()
  gt = np.zeros((4, 4), np.int64)
  pred = np.zeros((4, 4), np.int64)
  pred[0, 0] = 20
  metric.update('ok', gt, pred)  # 20 proposals are allowed
  pred[0, 1] = 21
  with pytest.raises(ValueError, match='f.png: proposal id 21 is above the '
                     'maximum of 20'):
    metric.update('seq', gt, pred, frame_name='f.png')
  with pytest.raises(ValueError, match='seq frame 0: prediction'):
    metric.update('seq', gt, np.zeros((4, 5)))


def _write_frames(root, sequence, frames):
  for t, labels in enumerate(frames):
    files.write_png(str(root / sequence / f'{t:05d}.png'), labels.astype(np.uint8))


def test_evaluate_dirs_and_its_errors(tmp_path):
  labels = _square((8, 8), 1, 1, 4)
  _write_frames(tmp_path / 'gt', 's', [labels, labels])
  _write_frames(tmp_path / 'pred', 's', [labels, labels])
  result = davis.evaluate_davis_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  assert result['J&F-Mean'] == 1.0 and result['num_objects'] == 1

  os.remove(tmp_path / 'pred' / 's' / '00001.png')
  with pytest.raises(FileNotFoundError, match=r'pred/s/00001.png not found'):
    davis.evaluate_davis_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  _write_frames(tmp_path / 'pred', 's', [labels, np.zeros((8, 9))])
  with pytest.raises(ValueError, match=r'pred/s/00001.png: size \(8, 9\) differs'):
    davis.evaluate_davis_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  _write_frames(tmp_path / 'pred', 'other', [labels])
  with pytest.raises(ValueError, match=r'pred/other: prediction for a sequence'):
    davis.evaluate_davis_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  shutil.rmtree(tmp_path / 'pred' / 'other')
  _write_frames(tmp_path / 'gt', 'gt_only', [labels])
  with pytest.raises(FileNotFoundError, match=r'pred/gt_only: no predictions'):
    davis.evaluate_davis_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
