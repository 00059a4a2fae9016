"""Mean IoU of the semantic channel, from a streaming confusion matrix (REFERENCE §8).

`IoU_c = TP_c / (TP_c + FP_c + FN_c)` over all pixels seen, the mean taken over
the classes with a non-empty union (present in the ground truth or predicted),
as in the Cityscapes / deeplab2 confusion-matrix mIoU. Ground-truth void pixels
are left out entirely; a predicted id that is not a class (e.g. void) on a
labelled pixel is a false negative of the true class and a false positive of
none.
"""

from typing import Any, Dict, Sequence

import numpy as np


class MeanIoU:
  """Streaming confusion-matrix mean IoU.

  Usage:
    miou = MeanIoU(class_ids=range(1, 134), void_id=0)
    miou.update(gt_category_map, pred_category_map)  # per image
    miou.merge(other); miou.result()['mIoU']
  """

  def __init__(self, class_ids: Sequence[int], void_id: int = 0):
    """Args:
      class_ids: the evaluated class ids (e.g. the contiguous 1..C).
      void_id: the ground-truth id that is ignored.
    """
    self.class_ids = np.array(sorted(int(c) for c in class_ids), np.int64)
    if not self.class_ids.size or np.unique(self.class_ids).size != self.class_ids.size:
      raise ValueError('class_ids must be non-empty and unique.')
    if void_id in self.class_ids:
      raise ValueError(f'void_id {void_id} is also a class id.')
    self.void_id = int(void_id)
    self.reset()

  def reset(self) -> None:
    num_classes = self.class_ids.size
    # Rows: ground-truth class; columns: predicted class, the last one for
    # any predicted id that is not a class.
    self.confusion = np.zeros((num_classes, num_classes + 1), np.int64)

  def _class_index(self, values: np.ndarray) -> np.ndarray:
    """Index of each value in `class_ids`; `num_classes` where it is none."""
    num_classes = self.class_ids.size
    position = np.minimum(np.searchsorted(self.class_ids, values), num_classes - 1)
    return np.where(self.class_ids[position] == values, position, num_classes)

  def update(self, gt_class_map: np.ndarray, pred_class_map: np.ndarray,
             name: str = 'image') -> None:
    """Adds one image.

    Args:
      gt_class_map: int `[H, W]` ground-truth class ids (`void_id` ignored).
      pred_class_map: int `[H, W]` predicted class ids.
      name: names the image in errors.

    Raises:
      ValueError: shapes differ, or the ground truth has an unknown class.
    """
    gt = np.asarray(gt_class_map).astype(np.int64).ravel()
    pred = np.asarray(pred_class_map).astype(np.int64).ravel()
    if np.shape(gt_class_map) != np.shape(pred_class_map):
      raise ValueError(f'{name}: prediction {np.shape(pred_class_map)} and '
                       f'ground truth {np.shape(gt_class_map)} differ in size.')
    labelled = gt != self.void_id
    gt_index = self._class_index(gt[labelled])
    num_classes = self.class_ids.size
    if np.any(gt_index == num_classes):
      unknown = sorted(set(gt[labelled][gt_index == num_classes].tolist()))
      raise ValueError(f'{name}: unknown ground-truth class id(s) {unknown}.')
    pred_index = self._class_index(pred[labelled])
    counts = np.bincount(gt_index * (num_classes + 1) + pred_index,
                         minlength=num_classes * (num_classes + 1))
    self.confusion += counts.reshape(num_classes, num_classes + 1)

  def merge(self, other: 'MeanIoU') -> None:
    """Adds another accumulator's confusion matrix (same classes)."""
    if not np.array_equal(other.class_ids, self.class_ids):
      raise ValueError('cannot merge MeanIoU with different classes.')
    self.confusion += other.confusion

  def mean_over(self, class_ids: Sequence[int]) -> Dict[str, Any]:
    """Mean IoU over a subset of the classes (e.g. the thing or stuff classes).

    Same rule as `result`: the classes of the subset with a non-empty union
    are averaged; 0 with `n = 0` when none occurred.

    Returns:
      `{'mIoU': float, 'n': classes averaged}`.
    """
    result = self.result()
    unknown = sorted(set(int(c) for c in class_ids) - set(result['per_class']))
    if unknown:
      raise ValueError(f'class ids {unknown} are not evaluated classes.')
    present = [c for c in class_ids if int(c) in result['present']]
    values = [result['per_class'][int(c)] for c in present]
    return {'mIoU': float(np.mean(values)) if values else 0.0,
            'n': len(values)}

  def result(self) -> Dict[str, Any]:
    """Returns `{'mIoU': float, 'n': classes averaged, 'per_class': {id: IoU},
    'present': [ids with a non-empty union]}`.

    Classes with an empty union get IoU 0 in `per_class` and are left out of
    the mean; `mIoU` is 0 when no class occurred.
    """
    num_classes = self.class_ids.size
    tp = np.diag(self.confusion[:, :num_classes])
    predicted = self.confusion[:, :num_classes].sum(axis=0)
    union = self.confusion.sum(axis=1) + predicted - tp
    present = union > 0
    iou = np.divide(tp, union, out=np.zeros(num_classes), where=present)
    n = int(present.sum())
    return {'mIoU': float(iou[present].mean()) if n else 0.0, 'n': n,
            'per_class': {int(c): float(v) for c, v in zip(self.class_ids, iou)},
            'present': [int(c) for c in self.class_ids[present]]}
