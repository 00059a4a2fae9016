"""DAVIS 2017 unsupervised video object segmentation: J&F (REFERENCE §8).

Reproduces davis2017-evaluation (davisvideochallenge/davis2017-evaluation,
`davis2017/{davis,results,metrics,utils,evaluation}.py` and
`evaluation_method.py`) for `task='unsupervised'`:

- Ground-truth objects of a sequence are ids 1..N, N = the largest id in its
  first ground-truth frame once void is set to 0 (`DAVIS.get_all_masks`:
  `np.max(masks[0, ...])`); ids above N are background.
- Void (255 in the ground truth) is left out of every score, as the package
  does: `DAVIS.get_all_masks` takes `masks_void = masks == 255` *before* it
  sets the 255s to 0, and the evaluation passes these void masks to
  `db_eval_iou` (void pixels leave the intersection and the union) and to
  `db_eval_boundary` / `f_measure` (`foreground_mask * ~void` and
  `gt_mask * ~void` before the boundaries are taken). Setting both the ground
  truth and the prediction to background on void pixels gives exactly these
  numbers: the ground truth is never foreground there, so the intersection is
  unchanged, and the prediction no longer adds void pixels to the union or to
  its boundary.
- Proposals are ids 1..P, P = the largest predicted id over all frames of the
  sequence (`Results.read_masks`); the package refuses P > 20 (it exits with
  an error), and so do we (`ValueError`), rather than dropping proposals.
- J (`db_eval_iou`): |A & B| / |A | B|, 1 when both masks are empty.
- F (`db_eval_boundary` / `f_measure`): one-pixel boundaries from `_seg2bmap`,
  tolerance `bound_pix = ceil(0.008 * ||(H, W)||)` pixels; each boundary is
  dilated by the disk {dx^2 + dy^2 <= bound_pix^2} (skimage's `disk` under
  `cv2.dilate`), computed here exactly as "Euclidean distance to the boundary
  <= bound_pix" with a distance transform. Precision = matched predicted
  boundary / predicted boundary, recall = matched ground-truth boundary /
  ground-truth boundary; an empty predicted boundary gives (P, R) = (1, 0), an
  empty ground-truth boundary (0, 1), both empty (1, 1); F = 2PR / (P + R),
  0 when P + R = 0.
- Matching (`DAVISEvaluation._evaluate_unsupervised`): proposals are padded
  with empty masks up to N, the score of (proposal, object) is
  (mean_t J + mean_t F) / 2, and `scipy.optimize.linear_sum_assignment`
  maximises the total. Every object is matched; one left over when P < N gets
  an empty proposal, which scores 0 on the frames where the object is visible
  and 1 on the frames where it is absent (the package's zero padding).
- Per object (`utils.db_statistics`): mean; recall = fraction of frames with a
  value > 0.5; decay = mean of the first minus mean of the last of 4 bins with
  bounds `round(linspace(1, T, 5) + 1e-10) - 1` (int here; the package casts to
  uint8, which wraps for sequences of more than 256 frames).
- All frames count: only the semi-supervised branch of
  `DAVISEvaluation.evaluate` drops the first and last frame
  (`all_gt_masks[:, 1:-1]`); the unsupervised one keeps every frame.
- Reported (`evaluation_method.py`): J-Mean, J-Recall, J-Decay (and F-) are
  averages over all objects of all sequences; J&F-Mean = (J-Mean + F-Mean) / 2.
- Per-object rows are named as the package's per-sequence table names them:
  `<sequence>_<k>`, k = 1..N the rank of the matched pair in proposal order
  (`linear_sum_assignment`'s row order), which is *not* the ground-truth
  object id; each row also carries its `object` and `proposal` ids.

Frames must be given in order (the package sorts frame file names).
"""

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage
from scipy import optimize

from tasks.metrics import files

VOID_LABEL = 255
MAX_PROPOSALS = 20
BOUND_TH = 0.008
KEYS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall',
        'F-Decay')


def seg2bmap(mask: np.ndarray) -> np.ndarray:
  """One-pixel-wide boundary of a binary mask (davis2017 `metrics._seg2bmap`).

  A pixel is on the boundary when it differs from its right, lower or
  lower-right neighbour; the last row compares with the right neighbour, the
  last column with the lower one, and the corner is never boundary. The
  boundary lies half a pixel towards the origin from the true one.

  Args:
    mask: `[H, W]`, non-zero = foreground.

  Returns:
    bool `[H, W]`.
  """
  seg = np.asarray(mask).astype(bool)
  east = np.zeros_like(seg)
  south = np.zeros_like(seg)
  south_east = np.zeros_like(seg)
  east[:, :-1] = seg[:, 1:]
  south[:-1, :] = seg[1:, :]
  south_east[:-1, :-1] = seg[1:, 1:]
  boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
  boundary[-1, :] = seg[-1, :] ^ east[-1, :]
  boundary[:, -1] = seg[:, -1] ^ south[:, -1]
  boundary[-1, -1] = False
  return boundary


def boundary_tolerance(shape: Tuple[int, int], bound_th: float = BOUND_TH) -> int:
  """`bound_pix` of `f_measure`: `bound_th` if >= 1, else ceil(bound_th * diagonal)."""
  if bound_th >= 1:
    return int(bound_th)
  return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def dilate(boundary: np.ndarray, radius: int) -> np.ndarray:
  """Binary dilation by the disk {dx^2 + dy^2 <= radius^2} (cv2.dilate, skimage disk).

  The dilated set is every pixel within Euclidean distance `radius` of a
  boundary pixel; a distance transform on the boundary's bounding box (grown
  by `radius`) computes it exactly and fast.
  """
  out = np.zeros(boundary.shape, bool)
  rows = np.flatnonzero(boundary.any(axis=1))
  if rows.size == 0:
    return out
  cols = np.flatnonzero(boundary.any(axis=0))
  top, bottom = max(rows[0] - radius, 0), min(rows[-1] + radius + 1, boundary.shape[0])
  left, right = max(cols[0] - radius, 0), min(cols[-1] + radius + 1, boundary.shape[1])
  crop = boundary[top:bottom, left:right]
  out[top:bottom, left:right] = ndimage.distance_transform_edt(~crop) <= radius
  return out


def _boundaries(labels: np.ndarray, ids: np.ndarray, radius: int
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Boundaries and dilated boundaries of the masks `labels == id`, float32 `[K, H*W]`."""
  boundary = np.zeros((len(ids), labels.size), np.float32)
  dilated = np.zeros((len(ids), labels.size), np.float32)
  for k, label in enumerate(ids):
    mask_boundary = seg2bmap(labels == label)
    boundary[k] = mask_boundary.ravel()
    dilated[k] = dilate(mask_boundary, radius).ravel()
  return boundary, dilated


def frame_scores(gt_labels: np.ndarray, pred_labels: np.ndarray,
                 num_objects: int, num_proposals: int,
                 bound_th: float = BOUND_TH) -> Tuple[np.ndarray, np.ndarray]:
  """J and F of every (proposal, object) pair in one frame.

  Args:
    gt_labels: int `[H, W]`: 0 background, 1..N objects, 255 void (left out
      of J and F, see the module docstring); ids above `num_objects` count as
      background.
    pred_labels: int `[H, W]` proposal ids in [0, num_proposals].
    num_objects: N.
    num_proposals: the number of proposal rows (ids 1..num_proposals; absent
      ids are empty masks).
    bound_th: boundary tolerance, a fraction of the diagonal (or pixels if >= 1).

  Returns:
    `(j, f)`, float64 `[num_proposals, num_objects]` each.
  """
  gt = np.asarray(gt_labels).astype(np.int64)
  pred = np.asarray(pred_labels).astype(np.int64)
  if pred.size and (pred.min() < 0 or pred.max() > num_proposals):
    raise ValueError(f'proposal ids must lie in [0, {num_proposals}].')
  # davis2017-evaluation's void rule: void pixels leave the intersection, the
  # union and both boundaries; as background in both maps they do exactly that.
  void = gt == VOID_LABEL
  gt = np.where(void | (gt > num_objects), 0, gt)
  pred = np.where(void, 0, pred)
  if gt.size >= 2 ** 24:
    raise ValueError(f'frames of {gt.shape} exceed the exact float32 pixel counts.')

  # Region similarity: every intersection from one bincount of combined ids.
  counts = np.bincount((gt * (num_proposals + 1) + pred).ravel(),
                       minlength=(num_objects + 1) * (num_proposals + 1))
  counts = counts.reshape(num_objects + 1, num_proposals + 1)
  intersection = counts[1:, 1:].T
  pred_area = counts[:, 1:].sum(axis=0)[:, None]
  gt_area = counts[1:, :].sum(axis=1)[None, :]
  union = pred_area + gt_area - intersection
  j = np.where(union == 0, 1.0, intersection / np.maximum(union, 1))

  # Boundary F-measure: boundaries and their dilations once per mask (objects
  # and the proposals present), then the matched boundary pixels of every
  # pair as products of the flattened masks (float32 counts of < 2**24
  # pixels are exact).
  radius = boundary_tolerance(gt.shape, bound_th)
  proposals = np.unique(pred[pred > 0])
  gt_boundary, gt_dilated = _boundaries(gt, np.arange(1, num_objects + 1), radius)
  fg_boundary, fg_dilated = _boundaries(pred, proposals, radius)
  fg_match = np.zeros((num_proposals, num_objects))
  gt_match = np.zeros((num_proposals, num_objects))
  fg_match[proposals - 1] = fg_boundary @ gt_dilated.T
  gt_match[proposals - 1] = fg_dilated @ gt_boundary.T
  n_fg = np.zeros(num_proposals)
  n_fg[proposals - 1] = fg_boundary.sum(axis=1)
  n_fg = n_fg[:, None]
  n_gt = gt_boundary.sum(axis=1)[None, :]
  precision = np.where(n_fg == 0, 1.0,
                       np.where(n_gt == 0, 0.0, fg_match / np.maximum(n_fg, 1)))
  recall = np.where(n_gt == 0, 1.0,
                    np.where(n_fg == 0, 0.0, gt_match / np.maximum(n_gt, 1)))
  total = precision + recall
  f = np.divide(2 * precision * recall, total, out=np.zeros_like(total),
                where=total > 0)
  return j, f


def db_statistics(values: np.ndarray) -> Tuple[float, float, float]:
  """Mean, recall (> 0.5) and decay of per-frame values (davis2017 `db_statistics`)."""
  values = np.asarray(values, np.float64)
  mean = float(np.nanmean(values))
  recall = float(np.nanmean(values > 0.5))
  bounds = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
  bins = [values[bounds[i]:bounds[i + 1] + 1] for i in range(4)]
  decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
  return mean, recall, decay


def match_proposals(j: np.ndarray, f: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """One-to-one proposal-object assignment maximising the summed (J + F) / 2.

  Args:
    j: `[P, N, T]` per-frame J of every (proposal, object), P >= N.
    f: `[P, N, T]` per-frame F.

  Returns:
    `(proposal, object, j_matched, f_matched)`: `[N]` proposal and object
    indices of the pairs (sorted by proposal, as linear_sum_assignment returns
    them) and `[N, T]` per-frame values of each pair.
  """
  scores = (j.mean(axis=2) + f.mean(axis=2)) / 2
  proposal, obj = optimize.linear_sum_assignment(-scores)
  return proposal, obj, j[proposal, obj], f[proposal, obj]


class _Sequence:
  """Per-frame J and F of every (proposal, object) pair of one sequence."""

  def __init__(self, num_objects: int, num_rows: int, shape: Tuple[int, int]):
    self.num_objects = num_objects
    self.num_rows = num_rows
    self.shape = shape
    self.num_proposals = 0
    self.j: List[np.ndarray] = []
    self.f: List[np.ndarray] = []


class DavisJF:
  """Streaming DAVIS 2017 unsupervised J&F (see the module docstring).

  Usage:
    metric = DavisJF()
    for each sequence, for each frame in order:
      metric.update(sequence_id, gt_mask, pred_mask)
    metric.result()['J&F-Mean']
  """

  def __init__(self, max_proposals: int = MAX_PROPOSALS,
               bound_th: float = BOUND_TH):
    """Args:
      max_proposals: the most proposal ids per sequence (the package's 20).
      bound_th: boundary tolerance as a fraction of the image diagonal.
    """
    self.max_proposals = max_proposals
    self.bound_th = bound_th
    self.reset()

  def reset(self) -> None:
    self._sequences: Dict[str, _Sequence] = {}

  def update(self, sequence_id: str, gt_mask: np.ndarray, pred_mask: np.ndarray,
             frame_name: Optional[str] = None) -> None:
    """Adds the next frame of a sequence.

    Args:
      sequence_id: the sequence name; frames of a sequence come in order.
      gt_mask: int `[H, W]` ground truth: 0 background, 1..N objects, 255 void.
      pred_mask: int `[H, W]` proposals: 0 background, 1..P (P <= max_proposals).
      frame_name: names the frame (e.g. its file) in errors; default: the
        sequence and the frame's index.

    Raises:
      ValueError: shapes differ or P > max_proposals.
    """
    gt = np.asarray(gt_mask).astype(np.int64)
    pred = np.asarray(pred_mask).astype(np.int64)
    state = self._sequences.get(sequence_id)
    where = frame_name or f'{sequence_id} frame {len(state.j) if state else 0}'
    if gt.ndim != 2 or pred.shape != gt.shape:
      raise ValueError(f'{where}: prediction {pred.shape} and ground truth '
                       f'{gt.shape} must be equal 2-D shapes.')
    if pred.size and pred.min() < 0:
      raise ValueError(f'{where}: negative proposal id.')
    top = int(pred.max(initial=0))
    if top > self.max_proposals:
      raise ValueError(f'{where}: proposal id {top} is above the maximum of '
                       f'{self.max_proposals} proposals per sequence.')
    if state is None:
      num_objects = int(np.where(gt == VOID_LABEL, 0, gt).max(initial=0))
      state = _Sequence(num_objects, max(self.max_proposals, num_objects),
                        gt.shape)
      self._sequences[sequence_id] = state
    elif gt.shape != state.shape:
      raise ValueError(f'{where}: frame size {gt.shape} differs from the '
                       f'sequence\'s {state.shape}.')
    j, f = frame_scores(gt, pred, state.num_objects, state.num_rows,
                        self.bound_th)
    state.j.append(j)
    state.f.append(f)
    state.num_proposals = max(state.num_proposals, top)

  def merge(self, other: 'DavisJF') -> None:
    """Adds another accumulator's sequences (each sequence on one worker only)."""
    # pylint: disable=protected-access
    shared = set(self._sequences) & set(other._sequences)
    if shared:
      raise ValueError(f'cannot merge DavisJF: sequences {sorted(shared)} in both.')
    self._sequences.update(other._sequences)
    # pylint: enable=protected-access

  def result(self) -> Dict[str, Any]:
    """The DAVIS table.

    Returns:
      `{'J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall',
        'F-Decay'}` (floats; NaN when no object was seen), `num_objects`,
      `num_sequences`, and `per_object`: `{'<sequence>_<k>': {'J-Mean',
      'F-Mean', 'object', 'proposal'}}`, k = 1..N the rank of the matched pair
      in proposal order as in the package's per-sequence table (not the
      object id: that is `object`).
    """
    stats = {'J': [], 'F': []}
    per_object = {}
    for sequence_id, state in self._sequences.items():
      if state.num_objects == 0:
        continue
      rows = max(state.num_proposals, state.num_objects)
      j = np.stack(state.j, axis=-1)[:rows]
      f = np.stack(state.f, axis=-1)[:rows]
      proposal, obj, j_matched, f_matched = match_proposals(j, f)
      for k in range(obj.size):
        j_stats = db_statistics(j_matched[k])
        f_stats = db_statistics(f_matched[k])
        stats['J'].append(j_stats)
        stats['F'].append(f_stats)
        per_object[f'{sequence_id}_{k + 1}'] = {
            'J-Mean': j_stats[0], 'F-Mean': f_stats[0],
            'object': int(obj[k]) + 1, 'proposal': int(proposal[k]) + 1}
    results = {}
    for measure in ('J', 'F'):
      table = np.array(stats[measure]).reshape(-1, 3)
      means = table.mean(axis=0) if len(table) else np.full(3, np.nan)
      results[f'{measure}-Mean'] = float(means[0])
      results[f'{measure}-Recall'] = float(means[1])
      results[f'{measure}-Decay'] = float(means[2])
    results['J&F-Mean'] = (results['J-Mean'] + results['F-Mean']) / 2
    results['num_objects'] = len(per_object)
    results['num_sequences'] = len(self._sequences)
    results['per_object'] = per_object
    return results


def format_results(results: Dict[str, Any]) -> str:
  """The global DAVIS table, as evaluation_method.py prints it."""
  header = ''.join(f'{k:>10s}' for k in KEYS)
  values = ''.join(f'{results[k]:10.3f}' for k in KEYS)
  return f'{header}\n{values}\n({results["num_objects"]} objects in ' \
         f'{results["num_sequences"]} sequences)'


def format_per_object(results: Dict[str, Any]) -> str:
  """The per-object table, rows named as the package's per-sequence table.

  `<sequence>_<k>` is the k-th matched pair in proposal order (the package's
  naming); the `object` and `proposal` columns say which ground-truth object
  and which predicted id it pairs.
  """
  lines = [f'{"Sequence":<24s}{"J-Mean":>10s}{"F-Mean":>10s}'
           f'{"object":>8s}{"proposal":>10s}']
  for name, row in results['per_object'].items():
    lines.append(f'{name:<24s}{row["J-Mean"]:10.3f}{row["F-Mean"]:10.3f}'
                 f'{row["object"]:8d}{row["proposal"]:10d}')
  return '\n'.join(lines)


def _read_index_png(path: str) -> np.ndarray:
  mask = files.read_png(path)
  if mask.ndim != 2:
    raise ValueError(f'{path}: expected an indexed (single-channel) PNG, got '
                     f'shape {mask.shape}.')
  return mask


def evaluate_davis_dirs(gt_dir: str, pred_dir: str,
                        max_proposals: int = MAX_PROPOSALS) -> Dict[str, Any]:
  """J&F of `<pred_dir>/<seq>/<frame>.png` against `<gt_dir>/<seq>/<frame>.png`.

  Every ground-truth sequence and frame needs a prediction of the same name;
  a predicted sequence without ground truth is an error too.

  Args:
    gt_dir: e.g. `DAVIS/Annotations_unsupervised/480p`.
    pred_dir: the predictions, same layout.
    max_proposals: the most proposals per sequence.

  Returns:
    `DavisJF.result()`.
  """
  gt_sequences = files.list_video_frames(gt_dir)
  pred_sequences = files.list_video_frames(pred_dir)
  if not gt_sequences:
    raise ValueError(f'{gt_dir}: no sequence folders.')
  for sequence in pred_sequences:
    if sequence not in gt_sequences:
      raise ValueError(f'{pred_dir}/{sequence}: prediction for a sequence that '
                       f'is not in the ground truth {gt_dir}.')
  metric = DavisJF(max_proposals=max_proposals)
  for sequence, frames in gt_sequences.items():
    if sequence not in pred_sequences:
      raise FileNotFoundError(f'{pred_dir}/{sequence}: no predictions for '
                              'this sequence.')
    for frame in frames:
      gt_png = f'{gt_dir}/{sequence}/{frame}.png'
      pred_png = f'{pred_dir}/{sequence}/{frame}.png'
      gt = _read_index_png(gt_png)
      pred = _read_index_png(pred_png)
      if gt.shape != pred.shape:
        raise ValueError(f'{pred_png}: size {pred.shape} differs from the '
                         f'ground truth {gt_png} {gt.shape}.')
      metric.update(sequence, gt, pred, frame_name=pred_png)
  return metric.result()
