"""Panoptic quality (PQ = SQ x RQ) as a streaming numpy accumulator (REFERENCE §8).

The semantics are those of the COCO reference implementation, `pq_compute` of
cocodataset/panopticapi (`panopticapi/evaluation.py`), which cityscapesscripts
ships unchanged as `evaluation/evalPanopticSemanticLabeling.py` (Kirillov et
al., "Panoptic Segmentation", CVPR 2019, eq. 1):

- Ground-truth segment id 0 is void. A predicted segment id 0 is "no segment".
- Per category, a predicted and a ground-truth segment match when IoU > 0.5
  (which makes matches unique), with the predicted segment's void pixels left
  out of the union: `IoU = |p & g| / (|p| + |g| - |p & g| - |p & void|)`.
- Crowd ground-truth segments are never matched and never false negatives.
  An unmatched predicted segment is not a false positive when more than half
  of its pixels lie on void plus the crowd region of its own category. As in
  panopticapi (its `crowd_labels_dict`), the crowd region of a category is one
  segment: the category's last crowd segment in `segments_info` order (COCO and
  Cityscapes have at most one per category and image).
- Per category: `PQ = sum_TP IoU / (TP + FP/2 + FN/2)`, `SQ = sum_TP IoU / TP`
  (0 without TP), `RQ = TP / (TP + FP/2 + FN/2)`. `All`, `Things` and `Stuff`
  average over the categories with `TP + FP + FN > 0`; `n` counts them.

Where this differs from panopticapi, no value on well-formed input changes:
- Ground-truth areas are counted in the PNG (panopticapi reads them from the
  JSON's `area`; in COCO and Cityscapes both agree).
- Inconsistent input raises, naming the file: ids in a ground-truth PNG
  missing from its `segments_info` and unknown ground-truth categories
  (panopticapi ignores them silently), besides the prediction checks that
  panopticapi makes too.
- A split without any category present gives 0 with `n = 0` (panopticapi
  divides by zero).

The core takes segment-id maps and `segments_info` lists, as panopticapi does;
`segments_from_label_maps` turns the model's category + instance maps into that
form, and `evaluate_panoptic_files` reads COCO-format JSON + PNG folders.
"""

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from tasks.metrics import files

# Segment ids are below 256**3 (three 8-bit PNG channels): panopticapi's OFFSET
# for combining a ground-truth and a predicted id into one integer.
OFFSET = 256 * 256 * 256
VOID = 0
# `segments_from_label_maps`: segment id = category * INSTANCE_RANGE + instance.
INSTANCE_RANGE = 65536

Categories = Union[Mapping[int, Mapping[str, Any]], Sequence[Mapping[str, Any]]]


def normalize_categories(categories: Categories, where: str = 'categories'
                         ) -> List[Dict[str, Any]]:
  """Checks a category table and returns it as a list sorted by id.

  Args:
    categories: a list of dicts with `id`, `name`, `isthing` (COCO's
      `categories`), a dict `{id: such dict}`, or a dict with a `categories`
      list (the project's `*.categories.json`).
    where: the source, for errors.

  Returns:
    `[{'id': int, 'name': str, 'isthing': 0 or 1}, ...]` sorted by id.
  """
  if isinstance(categories, Mapping) and 'categories' in categories:
    categories = categories['categories']
  if isinstance(categories, Mapping):
    categories = list(categories.values())
  table = []
  for category in categories:
    missing = {'id', 'name', 'isthing'} - set(category)
    if missing:
      raise ValueError(f'{where}: category {category} lacks {sorted(missing)}.')
    table.append({'id': int(category['id']), 'name': str(category['name']),
                  'isthing': int(bool(category['isthing']))})
  if not table:
    raise ValueError(f'{where}: no categories.')
  ids = [c['id'] for c in table]
  if len(set(ids)) != len(ids):
    raise ValueError(f'{where}: duplicate category ids.')
  return sorted(table, key=lambda c: c['id'])


def _index_of(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
  """Position of each `query` value in the (unsorted, unique) `keys`, -1 if absent."""
  if keys.size == 0:
    return np.full(query.shape, -1, dtype=np.int64)
  order = np.argsort(keys)
  sorted_keys = keys[order]
  position = np.minimum(np.searchsorted(sorted_keys, query), keys.size - 1)
  return np.where(sorted_keys[position] == query, order[position], -1)


def _as_segment_map(segment_map: np.ndarray, name: str) -> np.ndarray:
  segment_map = np.asarray(segment_map)
  if segment_map.ndim != 2 or not np.issubdtype(segment_map.dtype, np.integer):
    raise ValueError(f'{name}: expected a 2-D integer segment-id map, got '
                     f'{segment_map.dtype} {segment_map.shape}.')
  segment_map = segment_map.astype(np.int64)
  if segment_map.size and (segment_map.min() < 0 or segment_map.max() >= OFFSET):
    raise ValueError(f'{name}: segment ids must lie in [0, {OFFSET}).')
  return segment_map


def segments_from_label_maps(category_map: np.ndarray, instance_map: np.ndarray,
                             crowd_instance_ids: Iterable[int] = ()
                             ) -> Tuple[np.ndarray, List[Dict[str, int]]]:
  """Turns a category map and an instance map into a segment-id map + segments_info.

  Each distinct (category, instance) pair with category != 0 is one segment
  with id `category * 65536 + instance`; category 0 is void (`data.records`'
  VOID_CLASS_ID). Model outputs give every segment its own instance index
  (REFERENCE §1); a pair key also keeps apart two segments that share an
  instance id but not a category.

  Args:
    category_map: int `[H, W]` class ids in [0, 256), 0 = void.
    instance_map: int `[H, W]` instance ids in [0, 65536).
    crowd_instance_ids: instance ids of crowd segments (ground truth only);
      from a record, `np.flatnonzero(segment_is_crowd) + 1`.

  Returns:
    `(segment_map, segments_info)`: int64 `[H, W]` ids (0 = void) and
    `[{'id', 'category_id', 'iscrowd'}, ...]`.
  """
  category = np.asarray(category_map).astype(np.int64)
  instance = np.asarray(instance_map).astype(np.int64)
  if category.shape != instance.shape or category.ndim != 2:
    raise ValueError(f'category map {category.shape} and instance map '
                     f'{instance.shape} must be equal 2-D shapes.')
  if category.size and (category.min() < 0 or category.max() >= 256):
    raise ValueError('category ids must lie in [0, 256).')
  if instance.size and (instance.min() < 0 or instance.max() >= INSTANCE_RANGE):
    raise ValueError(f'instance ids must lie in [0, {INSTANCE_RANGE}).')
  segment_map = np.where(category == VOID, VOID,
                         category * INSTANCE_RANGE + instance)
  ids = np.unique(segment_map)
  ids = ids[ids != VOID]
  crowd = np.isin(ids % INSTANCE_RANGE, np.asarray(list(crowd_instance_ids),
                                                   dtype=np.int64))
  segments = [{'id': int(i), 'category_id': int(i // INSTANCE_RANGE),
               'iscrowd': int(c)} for i, c in zip(ids, crowd)]
  return segment_map, segments


class PanopticQuality:
  """Streaming PQ / SQ / RQ (panopticapi semantics, see the module docstring).

  Usage:
    pq = PanopticQuality(categories)
    for each image: pq.update(gt_map, gt_segments, pred_map, pred_segments)
    pq.merge(other_worker_pq)  # optional
    results = pq.result()

  State: per category the sum of matched IoUs and the TP / FP / FN counts.
  """

  def __init__(self, categories: Categories):
    """Args: categories: see `normalize_categories` (`id`, `name`, `isthing`)."""
    self.categories = normalize_categories(categories)
    self._category_ids = np.array([c['id'] for c in self.categories], np.int64)
    self._is_thing = np.array([c['isthing'] == 1 for c in self.categories])
    self.reset()

  def reset(self) -> None:
    num_categories = len(self.categories)
    self.iou = np.zeros(num_categories, np.float64)
    self.tp = np.zeros(num_categories, np.int64)
    self.fp = np.zeros(num_categories, np.int64)
    self.fn = np.zeros(num_categories, np.int64)
    self.num_images = 0

  def _segment_table(self, segments: Sequence[Mapping[str, Any]], name: str
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """segments_info -> (ids, category indices, crowd flags) as arrays; checks them."""
    try:
      ids = np.array([int(s['id']) for s in segments], np.int64)
      category_ids = np.array([int(s['category_id']) for s in segments], np.int64)
    except KeyError as e:
      raise ValueError(f'{name}: a segment lacks {e} in segments_info.') from e
    crowd = np.array([int(s.get('iscrowd', 0)) == 1 for s in segments], bool)
    if np.unique(ids).size != ids.size:
      raise ValueError(f'{name}: duplicate segment ids in segments_info.')
    if np.any(ids == VOID):
      raise ValueError(f'{name}: segment id 0 (void) in segments_info.')
    category_index = _index_of(self._category_ids, category_ids)
    if np.any(category_index < 0):
      unknown = sorted(set(category_ids[category_index < 0].tolist()))
      raise ValueError(f'{name}: unknown category id(s) {unknown} (not among '
                       f'the {len(self.categories)} categories).')
    return ids, category_index, crowd

  def update(self, gt_segment_map: np.ndarray,
             gt_segments: Sequence[Mapping[str, Any]],
             pred_segment_map: np.ndarray,
             pred_segments: Sequence[Mapping[str, Any]], *,
             gt_name: str = 'ground truth', pred_name: str = 'prediction') -> None:
    """Adds one image.

    Args:
      gt_segment_map: int `[H, W]` ground-truth segment ids, 0 = void.
      gt_segments: ground-truth segments_info: dicts with `id`,
        `category_id` and `iscrowd` (0 if absent).
      pred_segment_map: int `[H, W]` predicted segment ids, 0 = none.
      pred_segments: predicted segments_info: dicts with `id`, `category_id`.
      gt_name: names the ground truth (its file) in errors.
      pred_name: names the prediction (its file) in errors.

    Raises:
      ValueError: sizes differ, a PNG id is missing from segments_info (or a
        predicted segments_info id from the PNG), or a category is unknown.
    """
    gt_map = _as_segment_map(gt_segment_map, gt_name)
    pred_map = _as_segment_map(pred_segment_map, pred_name)
    if gt_map.shape != pred_map.shape:
      raise ValueError(f'{pred_name}: image size {pred_map.shape} differs from '
                       f'the ground truth {gt_name} {gt_map.shape}.')
    # Per segment: its id, its category's index in self.categories, crowd.
    gt_ids, gt_class, gt_crowd = self._segment_table(gt_segments, gt_name)
    pred_ids, pred_class, _ = self._segment_table(pred_segments, pred_name)
    num_categories = len(self.categories)

    # Every (ground-truth id, predicted id) pair with its pixel count, from one
    # np.unique of combined ids (panopticapi's gt_pred_map).
    pairs, intersection = np.unique(gt_map * OFFSET + pred_map,
                                    return_counts=True)
    pair_gt, pair_pred = pairs // OFFSET, pairs % OFFSET
    g = _index_of(gt_ids, pair_gt)
    p = _index_of(pred_ids, pair_pred)
    for index, ids, name in ((g, pair_gt, gt_name), (p, pair_pred, pred_name)):
      unknown = sorted(set(ids[(index < 0) & (ids != VOID)].tolist()))
      if unknown:
        raise ValueError(f'{name}: segment id(s) {unknown} in the PNG are not '
                         'in segments_info.')

    on_gt, on_pred = g >= 0, p >= 0
    gt_area = np.bincount(g[on_gt], weights=intersection[on_gt],
                          minlength=gt_ids.size)
    pred_area = np.bincount(p[on_pred], weights=intersection[on_pred],
                            minlength=pred_ids.size)
    if np.any(pred_area == 0):
      missing = pred_ids[pred_area == 0].tolist()
      raise ValueError(f'{pred_name}: segment id(s) {missing} in segments_info '
                       'are not in the PNG.')
    on_void = (pair_gt == VOID) & on_pred
    pred_void = np.bincount(p[on_void], weights=intersection[on_void],
                            minlength=pred_ids.size)

    # Matching: same category, non-crowd ground truth, IoU > 0.5.
    both = on_gt & on_pred
    g, p, intersection = g[both], p[both], intersection[both]
    candidate = ~gt_crowd[g] & (gt_class[g] == pred_class[p])
    cg, cp, ci = g[candidate], p[candidate], intersection[candidate]
    iou = ci / (pred_area[cp] + gt_area[cg] - ci - pred_void[cp])
    match = iou > 0.5
    matched_gt, matched_pred = cg[match], cp[match]
    gt_matched = np.zeros(gt_ids.size, bool)
    gt_matched[matched_gt] = True
    pred_matched = np.zeros(pred_ids.size, bool)
    pred_matched[matched_pred] = True

    # The crowd region of a category: its last crowd segment, as panopticapi's
    # dict overwrite. A loop over segments, not pixels.
    crowd_of_category = np.full(num_categories, -1, np.int64)
    for index in np.flatnonzero(gt_crowd):
      crowd_of_category[gt_class[index]] = index
    own_crowd = g == crowd_of_category[pred_class[p]]
    pred_crowd = np.bincount(p[own_crowd], weights=intersection[own_crowd],
                             minlength=pred_ids.size)
    ignored = (pred_void + pred_crowd) / pred_area > 0.5

    self.tp += np.bincount(gt_class[matched_gt], minlength=num_categories)
    self.iou += np.bincount(gt_class[matched_gt], weights=iou[match],
                            minlength=num_categories)
    self.fn += np.bincount(gt_class[~gt_matched & ~gt_crowd],
                           minlength=num_categories)
    self.fp += np.bincount(pred_class[~pred_matched & ~ignored],
                           minlength=num_categories)
    self.num_images += 1

  def update_from_label_maps(self, gt_category_map: np.ndarray,
                             gt_instance_map: np.ndarray,
                             pred_category_map: np.ndarray,
                             pred_instance_map: np.ndarray,
                             gt_crowd_instance_ids: Iterable[int] = (), *,
                             gt_name: str = 'ground truth',
                             pred_name: str = 'prediction') -> None:
    """Adds one image as category + instance maps (`segments_from_label_maps`).

    Args:
      gt_category_map: int `[H, W]` ground-truth class ids, 0 = void.
      gt_instance_map: int `[H, W]` ground-truth instance ids.
      pred_category_map: int `[H, W]` predicted class ids, 0 = none.
      pred_instance_map: int `[H, W]` predicted instance ids.
      gt_crowd_instance_ids: ground-truth instance ids that are crowd regions.
      gt_name: names the ground truth in errors.
      pred_name: names the prediction in errors.
    """
    gt_map, gt_segments = segments_from_label_maps(
        gt_category_map, gt_instance_map, gt_crowd_instance_ids)
    pred_map, pred_segments = segments_from_label_maps(
        pred_category_map, pred_instance_map)
    self.update(gt_map, gt_segments, pred_map, pred_segments,
                gt_name=gt_name, pred_name=pred_name)

  def merge(self, other: 'PanopticQuality') -> None:
    """Adds the statistics of another accumulator (e.g. another worker's)."""
    if other.categories != self.categories:
      raise ValueError('cannot merge PanopticQuality with different categories.')
    self.iou += other.iou
    self.tp += other.tp
    self.fp += other.fp
    self.fn += other.fn
    self.num_images += other.num_images

  def result(self) -> Dict[str, Any]:
    """PQ, SQ, RQ overall, for things and stuff, and per category.

    Returns:
      `{'All' | 'Things' | 'Stuff': {'pq', 'sq', 'rq', 'n'},
        'per_class': {category_id: {'pq', 'sq', 'rq', 'tp', 'fp', 'fn'}}}`,
      fractions in [0, 1]. Categories with TP + FP + FN = 0 get zeros in
      `per_class` and are left out of the averages (as in panopticapi).
    """
    zeros = np.zeros(len(self.categories))
    denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
    present = denominator > 0
    pq = np.divide(self.iou, denominator, out=zeros.copy(), where=present)
    sq = np.divide(self.iou, self.tp, out=zeros.copy(), where=self.tp > 0)
    rq = np.divide(self.tp, denominator, out=zeros.copy(), where=present)
    results = {}
    for name, selected in (('All', np.ones_like(present)),
                           ('Things', self._is_thing),
                           ('Stuff', ~self._is_thing)):
      counted = present & selected
      n = int(counted.sum())
      results[name] = {
          'pq': float(pq[counted].mean()) if n else 0.0,
          'sq': float(sq[counted].mean()) if n else 0.0,
          'rq': float(rq[counted].mean()) if n else 0.0,
          'n': n,
      }
    results['per_class'] = {
        int(category_id): {'pq': float(pq[i]), 'sq': float(sq[i]),
                           'rq': float(rq[i]), 'tp': int(self.tp[i]),
                           'fp': int(self.fp[i]), 'fn': int(self.fn[i])}
        for i, category_id in enumerate(self._category_ids)}
    return results


def format_results(results: Mapping[str, Any],
                   categories: Categories) -> str:
  """The per-category and summary table (in %), like panopticapi's print_results.

  Categories without ground truth or prediction are summarised in one line.
  """
  names = {c['id']: c['name'] for c in normalize_categories(categories)}
  lines = [f'{"Category":20s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s}  '
           f'{"TP":>5s} {"FP":>5s} {"FN":>5s}']
  absent = 0
  for category_id in sorted(results['per_class']):
    row = results['per_class'][category_id]
    if row['tp'] + row['fp'] + row['fn'] == 0:
      absent += 1
      continue
    lines.append(f'{names[int(category_id)][:20]:20s}| {100 * row["pq"]:5.1f}  '
                 f'{100 * row["sq"]:5.1f}  {100 * row["rq"]:5.1f}  '
                 f'{row["tp"]:5d} {row["fp"]:5d} {row["fn"]:5d}')
  if absent:
    lines.append(f'({absent} categories neither in the ground truth nor predicted)')
  lines.append('-' * 58)
  lines.append(f'{"":20s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s}  {"N":>5s}')
  for name in ('All', 'Things', 'Stuff'):
    row = results[name]
    lines.append(f'{name:20s}| {100 * row["pq"]:5.1f}  {100 * row["sq"]:5.1f}  '
                 f'{100 * row["rq"]:5.1f}  {row["n"]:5d}')
  return '\n'.join(lines)


def evaluate_panoptic_files(gt_json: str, gt_dir: str, pred_json: str,
                            pred_dir: str, categories_json: Optional[str] = None
                            ) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
  """PQ of COCO-format panoptic predictions against COCO-format ground truth.

  Both sides are a JSON with `annotations` (`image_id`, `file_name`,
  `segments_info`) and a folder of PNGs with ids `R + 256 G + 256^2 B`
  (REFERENCE §7). Annotations are paired by `image_id`.

  Args:
    gt_json: ground-truth JSON; its `categories` are used unless
      `categories_json` is given.
    gt_dir: folder of the ground-truth PNGs.
    pred_json: prediction JSON.
    pred_dir: folder of the predicted PNGs.
    categories_json: optional category table (a list of `{id, name, isthing}`
      or a dict with such a `categories` list), e.g. for Cityscapes, whose
      panoptic JSON carries none.

  Returns:
    `(results, categories)`: `PanopticQuality.result()` and the category table.

  Raises:
    FileNotFoundError: a JSON or PNG is missing (named).
    ValueError: inconsistent input (the file and the problem are named).
  """
  gt = files.read_json(gt_json)
  pred = files.read_json(pred_json)
  if categories_json:
    categories = normalize_categories(files.read_json(categories_json),
                                      categories_json)
  elif 'categories' in gt:
    categories = normalize_categories(gt['categories'], gt_json)
  else:
    raise ValueError(f'{gt_json} has no categories; pass a categories JSON.')
  for path, payload in ((gt_json, gt), (pred_json, pred)):
    if 'annotations' not in payload:
      raise ValueError(f'{path}: no "annotations" list.')

  gt_image_ids = {ann['image_id'] for ann in gt['annotations']}
  pred_by_image = {}
  for ann in pred['annotations']:
    image_id = ann['image_id']
    if image_id not in gt_image_ids:
      raise ValueError(f'{pred_json}: prediction for image {image_id!r}, which '
                       f'is not in the ground truth {gt_json}.')
    if image_id in pred_by_image:
      raise ValueError(f'{pred_json}: two predictions for image {image_id!r}.')
    pred_by_image[image_id] = ann

  pq = PanopticQuality(categories)
  for gt_ann in gt['annotations']:
    image_id = gt_ann['image_id']
    if image_id not in pred_by_image:
      raise ValueError(f'{pred_json}: no prediction for image {image_id!r}.')
    pred_ann = pred_by_image[image_id]
    gt_png = os.path.join(gt_dir, gt_ann['file_name'])
    pred_png = os.path.join(pred_dir, pred_ann['file_name'])
    pq.update(files.rgb_to_id(files.read_png(gt_png), gt_png),
              gt_ann['segments_info'],
              files.rgb_to_id(files.read_png(pred_png), pred_png),
              pred_ann['segments_info'], gt_name=gt_png, pred_name=pred_png)
  return pq.result(), categories
