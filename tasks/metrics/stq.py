"""Segmentation and Tracking Quality (STQ) for KITTI-STEP (REFERENCE §8).

Weber et al., "STEP: Segmenting and Tracking Every Pixel" (NeurIPS 2021
Datasets and Benchmarks), §4; the semantics are those of deeplab2's
`evaluation/numpy/segmentation_and_tracking_quality.py` (`STQuality`), the
benchmark's reference code:

- A tube is a (class, track id) pair, key `class << 16 | track`, over all
  frames of a sequence. Ground-truth tubes: pixels of a thing class
  (`things_list`) with track id != 0; a thing pixel with track id 0 is crowd.
  Predicted tubes: predicted thing-class pixels that are not on ground-truth
  crowd (their pixels on void or on stuff do count in the tube's size).
- Association quality, per sequence:
  `sum_g 1/|g| sum_{p: |p & g| > 0} TPA(p, g) * TPA(p, g) / (|p| + |g| - TPA(p, g))`
  with `TPA(p, g) = |p & g|`; `AQ` = the sum over sequences divided by the
  number of ground-truth tubes of all sequences.
- Segmentation quality: mean IoU of the confusion matrix summed over all
  sequences, over the classes with a non-empty union; ground-truth
  `ignore_label` pixels are removed. As in deeplab2, `ignore_label` >=
  `num_classes` is one extra column: a predicted `ignore_label` on a labelled
  pixel is a false negative of the true class and also gives that column a
  non-empty union, i.e. one more IoU-0 entry in the mean.
- `STQ = sqrt(AQ * SQ)`.

Where deeplab2 divides by zero (no class at all), SQ here is 0. `merge` also
accepts frames of one sequence split across workers (all statistics are sums).
"""

import collections
from typing import Any, Dict, Optional, Sequence

import numpy as np

from tasks.metrics import files

TRACK_BITS = 16
# Intersection key: ground-truth tube * TUBE_RANGE + predicted tube.
TUBE_RANGE = 1 << 24
KITTI_STEP_THINGS = (11, 13)  # pedestrian, car (Cityscapes trainIds)


class _Sequence:
  """Accumulated counts of one sequence."""

  def __init__(self, size: int):
    self.confusion = np.zeros((size, size), np.int64)
    self.gt_tubes = collections.Counter()
    self.pred_tubes = collections.Counter()
    self.intersections = collections.Counter()
    self.num_frames = 0

  def add(self, other: '_Sequence') -> None:
    self.confusion += other.confusion
    self.gt_tubes.update(other.gt_tubes)
    self.pred_tubes.update(other.pred_tubes)
    self.intersections.update(other.intersections)
    self.num_frames += other.num_frames


def _count(counter: collections.Counter, ids: np.ndarray) -> None:
  """Adds the pixel count of every id (one np.unique, a loop over ids only)."""
  values, counts = np.unique(ids, return_counts=True)
  counter.update(dict(zip(values.tolist(), counts.tolist())))


def _mean_iou(confusion: np.ndarray) -> float:
  """Mean IoU over the entries with a non-empty union (deeplab2's formula)."""
  tp = np.diag(confusion).astype(np.float64)
  union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
  present = union > 0
  if not present.any():
    return 0.0
  return float(np.sum(tp[present] / union[present]) / present.sum())


class SegmentationTrackingQuality:
  """Streaming STQ / AQ / SQ (deeplab2 semantics, see the module docstring).

  Usage:
    stq = SegmentationTrackingQuality()  # KITTI-STEP: 19 classes, things 11, 13
    for each frame: stq.update(sequence_id, gt_class, gt_track, pred_class, pred_track)
    stq.result()['STQ']
  """

  def __init__(self, num_classes: int = 19,
               things_list: Sequence[int] = KITTI_STEP_THINGS,
               ignore_label: int = 255):
    """Args:
      num_classes: classes 0..num_classes-1 (Cityscapes trainIds: 19).
      things_list: the tracked (thing) classes.
      ignore_label: the void class of the ground truth.
    """
    if not 0 < num_classes < 256:
      raise ValueError(f'num_classes must lie in [1, 255], got {num_classes}.')
    self.num_classes = num_classes
    self.things_list = tuple(int(c) for c in things_list)
    self.ignore_label = int(ignore_label)
    # deeplab2: an ignore label outside the classes is one extra index.
    self._size = num_classes + 1 if ignore_label >= num_classes else num_classes
    self._kept_rows = np.array([c for c in range(self._size)
                                if c != min(ignore_label, num_classes)])
    self.reset()

  def reset(self) -> None:
    self._sequences: Dict[str, _Sequence] = collections.OrderedDict()

  def _class_index(self, classes: np.ndarray, name: str, side: str) -> np.ndarray:
    valid = ((classes >= 0) & (classes < self.num_classes)) | (
        classes == self.ignore_label)
    if not valid.all():
      bad = sorted(set(classes[~valid].tolist()))[:10]
      raise ValueError(f'{name}: {side} class id(s) {bad} are neither in '
                       f'[0, {self.num_classes}) nor {self.ignore_label}.')
    if self.ignore_label >= self.num_classes:
      return np.where(classes == self.ignore_label, self.num_classes, classes)
    return classes

  def update(self, sequence_id: Any, gt_class: np.ndarray, gt_track: np.ndarray,
             pred_class: np.ndarray, pred_track: np.ndarray,
             name: Optional[str] = None) -> None:
    """Adds one frame of a sequence (frames may come in any order).

    Args:
      sequence_id: the sequence (any hashable; the folder name in the tool).
      gt_class: int `[H, W]` ground-truth class, `ignore_label` = void.
      gt_track: int `[H, W]` ground-truth track id (0 on a thing = crowd).
      pred_class: int `[H, W]` predicted class.
      pred_track: int `[H, W]` predicted track id.
      name: names the frame in errors.

    Raises:
      ValueError: shapes differ, an id is out of range.
    """
    name = name or f'sequence {sequence_id}'
    arrays = [np.asarray(a).astype(np.int64) for a in
              (gt_class, gt_track, pred_class, pred_track)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 2:
      raise ValueError(f'{name}: class and track maps must be equal 2-D shapes, '
                       f'got {[a.shape for a in arrays]}.')
    gt_class, gt_track, pred_class, pred_track = (a.ravel() for a in arrays)
    for track, side in ((gt_track, 'ground-truth'), (pred_track, 'predicted')):
      if track.size and (track.min() < 0 or track.max() >= 1 << TRACK_BITS):
        raise ValueError(f'{name}: {side} track ids must lie in [0, 65536).')
    gt_index = self._class_index(gt_class, name, 'ground-truth')
    pred_index = self._class_index(pred_class, name, 'predicted')

    state = self._sequences.setdefault(sequence_id, _Sequence(self._size))
    state.confusion += np.bincount(
        gt_index * self._size + pred_index,
        minlength=self._size * self._size).reshape(self._size, self._size)

    gt_thing = np.isin(gt_class, self.things_list)
    crowd = gt_thing & (gt_track == 0)
    gt_mask = gt_thing & ~crowd
    pred_mask = np.isin(pred_class, self.things_list) & ~crowd
    gt_tube = (gt_class << TRACK_BITS) | gt_track
    pred_tube = (pred_class << TRACK_BITS) | pred_track
    _count(state.gt_tubes, gt_tube[gt_mask])
    _count(state.pred_tubes, pred_tube[pred_mask])
    both = gt_mask & pred_mask
    _count(state.intersections, gt_tube[both] * TUBE_RANGE + pred_tube[both])
    state.num_frames += 1

  def merge(self, other: 'SegmentationTrackingQuality') -> None:
    """Adds another accumulator's counts (sequences may overlap: counts add)."""
    if (other.num_classes, other.things_list, other.ignore_label) != (
        self.num_classes, self.things_list, self.ignore_label):
      raise ValueError('cannot merge SegmentationTrackingQuality with different '
                       'settings.')
    # pylint: disable=protected-access
    for sequence_id, state in other._sequences.items():
      self._sequences.setdefault(sequence_id, _Sequence(self._size)).add(state)
    # pylint: enable=protected-access

  def _association(self, state: _Sequence) -> float:
    """Sum over ground-truth tubes of AQ(g) (before normalising)."""
    if not state.intersections:
      return 0.0
    keys = np.array(list(state.intersections.keys()), np.int64)
    tpa = np.array(list(state.intersections.values()), np.float64)
    gt_size = np.array([state.gt_tubes[g] for g in (keys // TUBE_RANGE).tolist()],
                       np.float64)
    pred_size = np.array([state.pred_tubes[p] for p in (keys % TUBE_RANGE).tolist()],
                         np.float64)
    iou = tpa / (gt_size + pred_size - tpa)
    return float(np.sum(tpa * iou / gt_size))

  def result(self) -> Dict[str, Any]:
    """STQ, AQ, SQ over all sequences, and per sequence.

    Returns:
      `{'STQ', 'AQ', 'SQ', 'num_tubes', 'per_sequence': {sequence_id:
      {'STQ', 'AQ', 'SQ', 'num_tubes', 'num_frames'}}}`.
    """
    per_sequence = {}
    association_sum, num_tubes = 0.0, 0
    confusion = np.zeros((self._size, self._size), np.int64)
    for sequence_id, state in self._sequences.items():
      association = self._association(state)
      tubes = len(state.gt_tubes)
      association_sum += association
      num_tubes += tubes
      kept = np.zeros_like(state.confusion)
      kept[self._kept_rows] = state.confusion[self._kept_rows]
      confusion += kept
      aq = association / tubes if tubes else 0.0
      sq = _mean_iou(kept)
      per_sequence[sequence_id] = {'STQ': float(np.sqrt(aq * sq)), 'AQ': aq,
                                   'SQ': sq, 'num_tubes': tubes,
                                   'num_frames': state.num_frames}
    aq = association_sum / num_tubes if num_tubes else 0.0
    sq = _mean_iou(confusion)
    return {'STQ': float(np.sqrt(aq * sq)), 'AQ': aq, 'SQ': sq,
            'num_tubes': num_tubes, 'per_sequence': per_sequence}


def format_results(results: Dict[str, Any]) -> str:
  """A small table: STQ, AQ, SQ overall and per sequence (in %)."""
  lines = [f'{"sequence":>12s} {"STQ":>6s} {"AQ":>6s} {"SQ":>6s}']
  for sequence_id, row in results['per_sequence'].items():
    lines.append(f'{str(sequence_id):>12s} {100 * row["STQ"]:6.1f} '
                 f'{100 * row["AQ"]:6.1f} {100 * row["SQ"]:6.1f}')
  lines.append(f'{"all":>12s} {100 * results["STQ"]:6.1f} '
               f'{100 * results["AQ"]:6.1f} {100 * results["SQ"]:6.1f}')
  return '\n'.join(lines)


def read_kitti_step_png(path: str) -> np.ndarray:
  """A KITTI-STEP panoptic PNG as (class, track) int64 `[2, H, W]`.

  R is the class, `G * 256 + B` the track id (REFERENCE §7).
  """
  rgb = files.read_png(path)
  if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
    raise ValueError(f'{path}: expected an RGB KITTI-STEP panoptic PNG, got '
                     f'shape {rgb.shape}.')
  rgb = rgb.astype(np.int64)
  return np.stack([rgb[..., 0], rgb[..., 1] * 256 + rgb[..., 2]])


def evaluate_stq_dirs(gt_dir: str, pred_dir: str, num_classes: int = 19,
                      things_list: Sequence[int] = KITTI_STEP_THINGS,
                      ignore_label: int = 255) -> Dict[str, Any]:
  """STQ of `<pred_dir>/<seq>/<frame>.png` against `<gt_dir>/<seq>/<frame>.png`.

  Every ground-truth frame needs a prediction of the same name; a predicted
  sequence without ground truth is an error too.

  Args:
    gt_dir: e.g. `panoptic_maps/val` of KITTI-STEP.
    pred_dir: the predictions, same layout and encoding.
    num_classes: see `SegmentationTrackingQuality`.
    things_list: see `SegmentationTrackingQuality`.
    ignore_label: see `SegmentationTrackingQuality`.

  Returns:
    `SegmentationTrackingQuality.result()`.
  """
  gt_sequences = files.list_video_frames(gt_dir)
  pred_sequences = files.list_video_frames(pred_dir)
  if not gt_sequences:
    raise ValueError(f'{gt_dir}: no sequence folders.')
  for sequence in pred_sequences:
    if sequence not in gt_sequences:
      raise ValueError(f'{pred_dir}/{sequence}: prediction for a sequence that '
                       f'is not in the ground truth {gt_dir}.')
  metric = SegmentationTrackingQuality(num_classes, things_list, ignore_label)
  for sequence, frames in gt_sequences.items():
    for frame in frames:
      gt_png = f'{gt_dir}/{sequence}/{frame}.png'
      pred_png = f'{pred_dir}/{sequence}/{frame}.png'
      gt = read_kitti_step_png(gt_png)
      pred = read_kitti_step_png(pred_png)
      if gt.shape != pred.shape:
        raise ValueError(f'{pred_png}: size {pred.shape[1:]} differs from the '
                         f'ground truth {gt_png} {gt.shape[1:]}.')
      metric.update(sequence, gt[0], gt[1], pred[0], pred[1], name=pred_png)
  return metric.result()
