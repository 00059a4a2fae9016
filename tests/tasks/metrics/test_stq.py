"""Tests for tasks/metrics/stq.py against hand-computed values (deeplab2 semantics)."""

import numpy as np
import pytest

from tasks.metrics import files
from tasks.metrics import stq

ROAD, PERSON, CAR, VOID = 0, 11, 13, 255


def _row(*values):
  return np.array([values])


def _single_frame(gt_class, gt_track, pred_class, pred_track):
  metric = stq.SegmentationTrackingQuality()
  metric.update('seq', _row(*gt_class), _row(*gt_track), _row(*pred_class),
                _row(*pred_track))
  return metric.result()


def test_split_track():
  # One car tube of 5 pixels predicted as tracks 1 (2 px) and 2 (3 px):
  # AQ = (2 * 2/5 + 3 * 3/5) / 5 = 0.52; SQ = 1.
  result = _single_frame([CAR] * 5, [1] * 5, [CAR] * 5, [1, 1, 2, 2, 2])
  assert result['AQ'] == pytest.approx(0.52)
  assert result['SQ'] == pytest.approx(1.0)
  assert result['STQ'] == pytest.approx(np.sqrt(0.52))


def test_predicted_tube_keeps_its_pixels_on_void():
  # The predicted car tube has 4 px, 2 of them on void: IoU 2 / 4, AQ 0.5.
  # Void rows are out of the confusion matrix, so SQ = 1.
  result = _single_frame([CAR, CAR, VOID, VOID], [1, 1, 0, 0],
                         [CAR] * 4, [7] * 4)
  assert result['AQ'] == pytest.approx(0.5)
  assert result['SQ'] == pytest.approx(1.0)
  assert result['STQ'] == pytest.approx(np.sqrt(0.5))


def test_crowd_pixels_are_left_out():
  # Track 0 of a thing class is crowd: out of both tubes; AQ = 1.
  result = _single_frame([CAR, CAR, CAR], [0, 1, 1], [CAR] * 3, [5] * 3)
  assert result['AQ'] == pytest.approx(1.0)
  assert result['num_tubes'] == 1


def test_class_is_part_of_the_predicted_tube():
  # Track 1 predicted as car on 2 px and as person on 2 px: two tubes,
  # AQ = (2 * 2/4 + 2 * 2/4) / 4 = 0.5; SQ: car 2/4, person 0/2 -> 0.25.
  result = _single_frame([CAR] * 4, [1] * 4, [CAR, CAR, PERSON, PERSON], [1] * 4)
  assert result['AQ'] == pytest.approx(0.5)
  assert result['SQ'] == pytest.approx(0.25)


def test_predicted_void_adds_a_zero_entry_to_sq():
  # deeplab2: road IoU 1/2, car 1, and the ignore column (1 false positive,
  # no true positive) counts as a third entry: SQ = 1.5 / 3.
  result = _single_frame([ROAD, ROAD, CAR, CAR], [0, 0, 1, 1],
                         [ROAD, VOID, CAR, CAR], [0, 0, 1, 1])
  assert result['SQ'] == pytest.approx(0.5)
  assert result['AQ'] == pytest.approx(1.0)


def test_aq_normalises_by_all_tubes_and_tracks_over_frames():
  metric = stq.SegmentationTrackingQuality()
  # Sequence a: one tube over two frames, tracked with one id (AQ sum 1).
  for _ in range(2):
    metric.update('a', _row(CAR, CAR), _row(1, 1), _row(CAR, CAR), _row(4, 4))
  # Sequence b: three 2-px tubes predicted as one 6-px tube: each
  # 2 * (2/6) / 2 = 1/3, sum 1.
  metric.update('b', _row(*[CAR] * 6), _row(1, 1, 2, 2, 3, 3),
                _row(*[CAR] * 6), _row(*[9] * 6))
  result = metric.result()
  assert result['num_tubes'] == 4
  assert result['AQ'] == pytest.approx(2 / 4)
  assert result['per_sequence']['a']['AQ'] == pytest.approx(1.0)
  assert result['per_sequence']['a']['num_frames'] == 2
  assert result['per_sequence']['b']['AQ'] == pytest.approx(1 / 3)
  assert result['STQ'] == pytest.approx(np.sqrt(0.5 * result['SQ']))


def test_identity_switch_over_time():
  metric = stq.SegmentationTrackingQuality()
  # One 2-px car tube over 3 frames; the prediction switches id after frame 0.
  for t in range(3):
    metric.update('s', _row(CAR, CAR), _row(1, 1), _row(CAR, CAR),
                  _row(*[1 if t == 0 else 2] * 2))
  # TPA 2 with IoU 2/6 and TPA 4 with IoU 4/6: (2/3 + 8/3) / 6 = 5/9.
  assert metric.result()['AQ'] == pytest.approx(5 / 9)


def test_merge_equals_one_pass():
  rng = np.random.default_rng(0)
  frames = []
  for t in range(6):
    classes = rng.choice([ROAD, 2, PERSON, CAR, VOID], (5, 6))
    frames.append(('s%d' % (t % 2), classes, rng.integers(0, 3, (5, 6)),
                   rng.choice([ROAD, 2, PERSON, CAR], (5, 6)),
                   rng.integers(0, 3, (5, 6))))
  whole = stq.SegmentationTrackingQuality()
  parts = [stq.SegmentationTrackingQuality(), stq.SegmentationTrackingQuality()]
  for k, frame in enumerate(frames):
    whole.update(*frame)
    parts[k % 3 == 0].update(*frame)  # both parts see frames of both sequences
  parts[0].merge(parts[1])
  merged, expected = parts[0].result(), whole.result()
  for key in ('STQ', 'AQ', 'SQ', 'num_tubes'):
    assert merged[key] == pytest.approx(expected[key])
  assert 0 < expected['STQ'] < 1
  assert expected['AQ'] == pytest.approx(_brute_force_aq(frames))


def _brute_force_aq(frames):
  """AQ from boolean masks of every (ground-truth, predicted) tube pair."""
  total, tubes = 0.0, 0
  for sequence in sorted({f[0] for f in frames}):
    gc, gt, pc, pt = (np.concatenate([f[k].ravel() for f in frames if f[0] == sequence])
                      for k in range(1, 5))
    thing = np.isin(gc, (PERSON, CAR))
    crowd = thing & (gt == 0)
    pred_thing = np.isin(pc, (PERSON, CAR)) & ~crowd
    for g in {(c, t) for c, t in zip(gc[thing & ~crowd], gt[thing & ~crowd])}:
      g_mask = (gc == g[0]) & (gt == g[1]) & ~crowd
      tubes += 1
      for p in {(c, t) for c, t in zip(pc[pred_thing], pt[pred_thing])}:
        p_mask = (pc == p[0]) & (pt == p[1]) & pred_thing
        tpa = np.sum(g_mask & p_mask)
        if tpa:
          total += tpa * tpa / np.sum(g_mask | p_mask) / g_mask.sum()
  return total / tubes


def test_errors():
  metric = stq.SegmentationTrackingQuality()
  with pytest.raises(ValueError, match=r'f.png: predicted class id\(s\) \[19\]'):
    metric.update('s', _row(0), _row(0), _row(19), _row(0), name='f.png')
  with pytest.raises(ValueError, match='equal 2-D shapes'):
    metric.update('s', _row(0), _row(0), _row(0, 0), _row(0, 0))
  with pytest.raises(ValueError, match='different settings'):
    metric.merge(stq.SegmentationTrackingQuality(things_list=(11,)))


def test_evaluate_dirs_errors(tmp_path):
  rgb = np.zeros((3, 4, 3), np.uint8)
  files.write_png(str(tmp_path / 'gt' / 's' / '000000.png'), rgb)
  files.write_png(str(tmp_path / 'gt' / 's' / '000001.png'), rgb)
  files.write_png(str(tmp_path / 'pred' / 's' / '000000.png'), rgb)
  with pytest.raises(FileNotFoundError, match=r'pred/s/000001.png not found'):
    stq.evaluate_stq_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  files.write_png(str(tmp_path / 'pred' / 's' / '000001.png'), rgb[:2])
  with pytest.raises(ValueError, match=r'pred/s/000001.png: size \(2, 4\) differs'):
    stq.evaluate_stq_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  files.write_png(str(tmp_path / 'pred' / 's' / '000001.png'), rgb[..., 0])
  with pytest.raises(ValueError, match=r'000001.png: expected an RGB'):
    stq.evaluate_stq_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  files.write_png(str(tmp_path / 'pred' / 'x' / '000000.png'), rgb)
  with pytest.raises(ValueError, match=r'pred/x: prediction for a sequence'):
    stq.evaluate_stq_dirs(str(tmp_path / 'gt'), str(tmp_path / 'pred'))
  result = stq.evaluate_stq_dirs(str(tmp_path / 'gt'), str(tmp_path / 'gt'))
  assert result['SQ'] == 1.0 and result['num_tubes'] == 0 and result['AQ'] == 0.0
