"""Separation of thing segments: the shares merged and split (issue 12).

PQ mixes two failures: a segment of the wrong class (recognition, measured by
the semantic mIoU of the thing / stuff classes, `mean_iou.MeanIoU.mean_over`)
and segments whose ids do not follow the objects (separation). Separation is
measured here, ignoring classes entirely, over the ground-truth THING segments
that are not crowd regions (the "evaluated segments"):

- A ground-truth segment's best predicted segment is the predicted segment
  (non-void: class != 0) that overlaps it in the most pixels (ties: the
  smaller segment id); it has none when no pixel of it is predicted non-void.
- `merged`: the share of evaluated segments whose best predicted segment is
  also the best predicted segment of another ground-truth segment of the same
  image (any other non-void, non-crowd segment, thing or stuff: a thing that
  bled into the stuff around it counts as merged too).
- `split`: the share of evaluated segments whose best predicted segment
  covers less than half of the segment's pixels that are predicted non-void
  (segments with no such pixel are not split).

Both shares have the same denominator (all evaluated segments); a segment
can be both merged and split. Ground-truth void pixels are left out.
Predicted segments are (class, instance) pairs, as in
`panoptic_quality.segments_from_label_maps`.
"""

from typing import Any, Dict, Iterable

import numpy as np

from tasks.metrics import panoptic_quality

VOID = 0


def separation_counts(gt_category_map: np.ndarray, gt_instance_map: np.ndarray,
                      pred_category_map: np.ndarray,
                      pred_instance_map: np.ndarray, thing_class_ids: Iterable[int],
                      gt_crowd_instance_ids: Iterable[int] = ()) -> Dict[str, int]:
  """Counts one image's evaluated, merged and split thing segments.

  Args:
    gt_category_map: int `[H, W]` ground-truth classes, 0 = void.
    gt_instance_map: int `[H, W]` ground-truth instance ids.
    pred_category_map: int `[H, W]` predicted classes, 0 = void.
    pred_instance_map: int `[H, W]` predicted instance ids.
    thing_class_ids: the classes whose segments are evaluated.
    gt_crowd_instance_ids: ground-truth instance ids of crowd regions.

  Returns:
    `{'segments', 'merged', 'split'}` counts.
  """
  gt_map, gt_segments = panoptic_quality.segments_from_label_maps(
      gt_category_map, gt_instance_map, gt_crowd_instance_ids)
  pred_map, _ = panoptic_quality.segments_from_label_maps(
      pred_category_map, pred_instance_map)
  things = set(int(c) for c in thing_class_ids)
  counted = [s for s in gt_segments if not s['iscrowd']]
  evaluated = [s['id'] for s in counted if s['category_id'] in things]
  if not evaluated:
    return {'segments': 0, 'merged': 0, 'split': 0}
  # Overlaps of every (ground-truth, predicted) pair of non-void segments.
  both = (gt_map != VOID) & (pred_map != VOID)
  pairs, overlaps = np.unique(
      gt_map[both] * panoptic_quality.OFFSET + pred_map[both],
      return_counts=True)
  pair_gt = pairs // panoptic_quality.OFFSET
  pair_pred = pairs % panoptic_quality.OFFSET
  best, best_overlap, predicted = {}, {}, {}
  for gt_id in [s['id'] for s in counted]:
    rows = np.flatnonzero(pair_gt == gt_id)
    if not rows.size:
      continue
    # np.unique sorts the pairs, so argmax picks the smallest id among ties.
    top = rows[np.argmax(overlaps[rows])]
    best[gt_id] = int(pair_pred[top])
    best_overlap[gt_id] = int(overlaps[top])
    predicted[gt_id] = int(overlaps[rows].sum())
  merged = split = 0
  for gt_id in evaluated:
    if gt_id not in best:
      continue
    if any(other != gt_id and pred == best[gt_id]
           for other, pred in best.items()):
      merged += 1
    if 2 * best_overlap[gt_id] < predicted[gt_id]:
      split += 1
  return {'segments': len(evaluated), 'merged': merged, 'split': split}


class Separation:
  """Streaming `merged` / `split` shares (module docstring).

  Usage:
    separation = Separation(thing_class_ids=[1, 2])
    separation.update(gt_classes, gt_ids, pred_classes, pred_ids, crowd_ids)
    separation.result()  # {'merged', 'split', 'segments'}
  """

  def __init__(self, thing_class_ids: Iterable[int]):
    self.thing_class_ids = tuple(sorted(int(c) for c in thing_class_ids))
    self.reset()

  def reset(self) -> None:
    self.counts = {'segments': 0, 'merged': 0, 'split': 0}

  def update(self, gt_category_map, gt_instance_map, pred_category_map,
             pred_instance_map, gt_crowd_instance_ids: Iterable[int] = ()
             ) -> None:
    """Adds one image (arguments as `separation_counts`)."""
    counts = separation_counts(gt_category_map, gt_instance_map,
                               pred_category_map, pred_instance_map,
                               self.thing_class_ids, gt_crowd_instance_ids)
    for key, value in counts.items():
      self.counts[key] += value

  def result(self) -> Dict[str, Any]:
    """`{'merged': share, 'split': share, 'segments': count}` (0 without segments)."""
    segments = self.counts['segments']
    share = lambda key: self.counts[key] / segments if segments else 0.0
    return {'merged': share('merged'), 'split': share('split'),
            'segments': segments}
