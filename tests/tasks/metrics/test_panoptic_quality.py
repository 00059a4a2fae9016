"""Tests for tasks/metrics/panoptic_quality.py.

The reference is cityscapesscripts' copy of panopticapi's `pq_compute`
(`evalPanopticSemanticLabeling.pq_compute_single_core` + `average_pq`), run on
the real COCO and Cityscapes fixtures against perturbed predictions, and on
generated images with void and crowd regions.
"""

import contextlib
import io
import json
import os

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs_pq
from cityscapesscripts.helpers.labels import labels as cs_labels

from tasks.metrics import files
from tasks.metrics import panoptic_quality

COCO = 'coco_panoptic_real'
CITYSCAPES = 'cityscapes_panoptic_real'


def _cityscapes_categories():
  return [{'id': l.trainId, 'name': l.name, 'isthing': int(l.hasInstances)}
          for l in cs_labels if 0 <= l.trainId < 19]


def _load_fixture(fixtures_dir, dataset):
  """Returns (gt_json path, gt_dir, gt payload, categories list)."""
  if dataset == COCO:
    root = os.path.join(fixtures_dir, COCO)
    gt_json = os.path.join(root, 'panoptic_examples.json')
    gt_dir = os.path.join(root, 'panoptic_examples')
    payload = files.read_json(gt_json)
    return gt_json, gt_dir, payload, payload['categories']
  root = os.path.join(fixtures_dir, CITYSCAPES, 'gtFine')
  gt_json = os.path.join(root, 'cityscapes_panoptic_dummy_trainId.json')
  gt_dir = os.path.join(root, 'cityscapes_panoptic_dummy_trainId')
  return gt_json, gt_dir, files.read_json(gt_json), _cityscapes_categories()


def _gt_map(gt_dir, ann):
  return files.rgb_to_id(files.read_png(os.path.join(gt_dir, ann['file_name'])))


def _write_prediction(tmp_path, name, gt_payload, predictions):
  """Writes COCO-format predictions; `predictions[image_id] = (map, segments)`."""
  pred_dir = tmp_path / name
  pred_dir.mkdir()
  annotations = []
  for ann in gt_payload['annotations']:
    segment_map, segments = predictions[ann['image_id']]
    file_name = str(ann['image_id']) + '.png'
    files.write_png(str(pred_dir / file_name), files.id_to_rgb(segment_map))
    annotations.append({'image_id': ann['image_id'], 'file_name': file_name,
                        'segments_info': segments})
  pred_json = tmp_path / f'{name}.json'
  pred_json.write_text(json.dumps({'annotations': annotations}))
  return str(pred_json), str(pred_dir)


def _reference(gt_json, gt_dir, pred_json, pred_dir, categories):
  """cityscapesscripts' (= panopticapi's) PQ, single process, output hushed."""
  with open(gt_json) as f:
    gt = json.load(f)
  with open(pred_json) as f:
    pred = {a['image_id']: a for a in json.load(f)['annotations']}
  pairs = [(a, pred[a['image_id']]) for a in gt['annotations']]
  by_id = {c['id']: c for c in categories}
  with contextlib.redirect_stdout(io.StringIO()):
    stat = cs_pq.pq_compute_single_core(0, pairs, gt_dir, pred_dir, by_id)
  return cs_pq.average_pq(stat, by_id)


def _assert_same(ours, reference):
  for split in ('All', 'Things', 'Stuff'):
    assert ours[split]['n'] == reference[split]['n'], split
    for key in ('pq', 'sq', 'rq'):
      assert ours[split][key] == pytest.approx(reference[split][key], abs=1e-6), (
          split, key)
  assert set(ours['per_class']) == set(reference['per_class'])
  for category_id, row in reference['per_class'].items():
    for key in ('pq', 'sq', 'rq'):
      assert ours['per_class'][category_id][key] == pytest.approx(
          row[key], abs=1e-6), (category_id, key)


def _segments_of(segment_map, categories_by_id):
  """segments_info for every non-zero id of `segment_map`."""
  return [{'id': int(i), 'category_id': int(categories_by_id[int(i)])}
          for i in np.unique(segment_map) if i != 0]


def _perturb_shift(gt_map, segments):
  shifted = np.roll(gt_map, (9, -13), axis=(0, 1))
  category = {s['id']: s['category_id'] for s in segments}
  return shifted, _segments_of(shifted, category)


def _perturb_edit(gt_map, segments, categories):
  """Merges two things, splits the largest stuff, deletes two, relabels one."""
  pred = gt_map.copy()
  category = {s['id']: s['category_id'] for s in segments}
  is_thing = {c['id']: c['isthing'] for c in categories}
  plain = [s for s in segments if not s['iscrowd']]
  area = {i: int(n) for i, n in zip(*np.unique(gt_map, return_counts=True))}
  things = [s for s in plain if is_thing[s['category_id']]]
  by_category = {}
  for s in things:
    by_category.setdefault(s['category_id'], []).append(s['id'])
  mergeable = [ids for ids in by_category.values() if len(ids) >= 2]
  if mergeable:
    first, second = mergeable[0][:2]
    pred[pred == second] = first
  stuff = [s for s in plain if not is_thing[s['category_id']]]
  largest = max(stuff, key=lambda s: area[s['id']])['id']
  rows, cols = np.nonzero(pred == largest)
  right = cols > np.median(cols)
  new_id = int(gt_map.max()) + 1
  pred[rows[right], cols[right]] = new_id
  category[new_id] = category[largest]
  for s in sorted(plain, key=lambda s: area[s['id']])[:2]:
    pred[pred == s['id']] = 0
  relabelled = things[-1]['id']
  other = next(c['id'] for c in categories
               if c['id'] != category[relabelled] and not c['isthing'])
  category[relabelled] = other
  return pred, _segments_of(pred, category)


def _perturb_void_crowd(gt_map, segments, categories):
  """Adds segments over void and over crowd regions, of own and other category."""
  pred = gt_map.copy()
  category = {s['id']: s['category_id'] for s in segments}
  next_id = int(gt_map.max()) + 1
  void = gt_map == 0
  cols = np.arange(gt_map.shape[1])[None, :].repeat(gt_map.shape[0], 0)
  left = void & (cols < gt_map.shape[1] // 2)
  # Entirely on void: not a false positive.
  pred[left] = next_id
  category[next_id] = categories[0]['id']
  # Right void plus as many pixels of the largest segment: at most half on void.
  right = void & ~left
  ids, counts = np.unique(gt_map[gt_map != 0], return_counts=True)
  largest = ids[np.argmax(counts)]
  donor = np.flatnonzero((gt_map == largest).ravel())[:int(right.sum())]
  pred[right] = next_id + 1
  pred.ravel()[donor] = next_id + 1
  category[next_id + 1] = categories[-1]['id']
  next_id += 2
  crowds = [s for s in segments if s['iscrowd']]
  for k, crowd in enumerate(crowds):
    region = gt_map == crowd['id']
    pred[region] = next_id
    # Own category covers the crowd (ignored); the second crowd gets a foreign
    # category (a false positive).
    own = k % 2 == 0
    category[next_id] = crowd['category_id'] if own else next(
        c['id'] for c in categories if c['id'] != crowd['category_id'])
    next_id += 1
  return pred, _segments_of(pred, category)


@pytest.mark.parametrize('dataset', [COCO, CITYSCAPES])
def test_matches_cityscapesscripts_on_real_fixtures(dataset, fixtures_dir,
                                                   tmp_path):
  gt_json, gt_dir, gt, categories = _load_fixture(fixtures_dir, dataset)
  maps = {a['image_id']: (_gt_map(gt_dir, a), a['segments_info'])
          for a in gt['annotations']}
  scenarios = {
      'identity': lambda m, s: (m, _segments_of(
          m, {x['id']: x['category_id'] for x in s})),
      'shift': _perturb_shift,
      'edit': lambda m, s: _perturb_edit(m, s, categories),
      'void_crowd': lambda m, s: _perturb_void_crowd(m, s, categories),
  }
  for name, perturb in scenarios.items():
    predictions = {i: perturb(m, s) for i, (m, s) in maps.items()}
    pred_json, pred_dir = _write_prediction(tmp_path, name, gt, predictions)
    ours, _ = panoptic_quality.evaluate_panoptic_files(
        gt_json, gt_dir, pred_json, pred_dir,
        categories_json=None if dataset == COCO else _categories_file(
            tmp_path, categories))
    _assert_same(ours, _reference(gt_json, gt_dir, pred_json, pred_dir,
                                  categories))
    if name == 'identity':
      assert ours['All']['pq'] == 1.0 and ours['All']['n'] > 0
    else:
      assert ours['All']['pq'] < 1.0, name


def _categories_file(tmp_path, categories):
  path = tmp_path / 'categories.json'
  path.write_text(json.dumps(categories))
  return str(path)


GENERATED_CATEGORIES = [
    {'id': 1, 'name': 'person', 'isthing': 1},
    {'id': 2, 'name': 'car', 'isthing': 1},
    {'id': 3, 'name': 'dog', 'isthing': 1},
    {'id': 7, 'name': 'road', 'isthing': 0},
    {'id': 8, 'name': 'sky', 'isthing': 0},
    {'id': 9, 'name': 'grass', 'isthing': 0},
]


def _random_image(rng, size=(48, 64)):
  """Ground truth of random rectangles with void and crowd; a perturbed prediction."""
  height, width = size
  gt = np.zeros(size, np.int64)
  gt_segments = []
  category_ids = [c['id'] for c in GENERATED_CATEGORIES]
  for segment_id in range(1, 13):
    top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
    h, w = rng.integers(4, 24), rng.integers(4, 30)
    gt[top:top + h, left:left + w] = segment_id
    gt_segments.append({'id': segment_id,
                        'category_id': int(rng.choice(category_ids)),
                        'iscrowd': int(rng.random() < 0.25)})
  # Two crowd regions of one category: panopticapi keeps only the last.
  gt_segments[-1]['category_id'] = gt_segments[-2]['category_id'] = 1
  gt_segments[-1]['iscrowd'] = gt_segments[-2]['iscrowd'] = 1
  top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
  gt[top:top + 8, left:left + 10] = 0
  area = dict(zip(*np.unique(gt, return_counts=True)))
  gt_segments = [dict(s, area=int(area[s['id']])) for s in gt_segments
                 if s['id'] in area]

  pred = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))),
                 axis=(0, 1)) * 10
  category = {s['id'] * 10: s['category_id'] for s in gt_segments}
  for extra in range(200, 206):
    top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
    h, w = rng.integers(3, 16), rng.integers(3, 20)
    pred[top:top + h, left:left + w] = extra
    category[extra] = int(rng.choice(category_ids))
  for segment_id in list(category):
    if rng.random() < 0.2:
      category[segment_id] = int(rng.choice(category_ids))
  return gt, gt_segments, pred, _segments_of(pred, category)


def test_matches_cityscapesscripts_on_generated_void_and_crowd(tmp_path):
  rng = np.random.default_rng(0)
  gt_dir, pred_dir = tmp_path / 'gt', tmp_path / 'pred'
  gt_dir.mkdir()
  pred_dir.mkdir()
  gt_annotations, pred_annotations = [], []
  ours = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  for image_id in range(8):
    gt, gt_segments, pred, pred_segments = _random_image(rng)
    name = f'{image_id}.png'
    files.write_png(str(gt_dir / name), files.id_to_rgb(gt))
    files.write_png(str(pred_dir / name), files.id_to_rgb(pred))
    gt_annotations.append({'image_id': image_id, 'file_name': name,
                           'segments_info': gt_segments})
    pred_annotations.append({'image_id': image_id, 'file_name': name,
                             'segments_info': pred_segments})
    ours.update(gt, gt_segments, pred, pred_segments)
  gt_json, pred_json = tmp_path / 'gt.json', tmp_path / 'pred.json'
  gt_json.write_text(json.dumps({'annotations': gt_annotations,
                                 'categories': GENERATED_CATEGORIES}))
  pred_json.write_text(json.dumps({'annotations': pred_annotations}))
  reference = _reference(str(gt_json), str(gt_dir), str(pred_json),
                         str(pred_dir), GENERATED_CATEGORIES)
  result = ours.result()
  _assert_same(result, reference)
  assert 0.0 < result['All']['pq'] < 1.0
  assert sum(r['fp'] for r in result['per_class'].values()) > 0


def _flatten(result):
  """{('All', 'pq'): value, (1, 'tp'): value, ...} for comparing results."""
  flat = {}
  for split in ('All', 'Things', 'Stuff'):
    flat.update({(split, k): v for k, v in result[split].items()})
  for category_id, row in result['per_class'].items():
    flat.update({(category_id, k): v for k, v in row.items()})
  return flat


def _categories(*things_and_stuff):
  return [{'id': i, 'name': f'c{i}', 'isthing': t} for i, t in things_and_stuff]


def test_void_is_left_out_of_the_union():
  # Segment 1 (thing 1) and 2 (stuff 2); the last two columns are void.
  gt = np.array([[1, 1, 1, 1, 0, 0],
                 [2, 2, 2, 2, 0, 0]])
  pred = np.array([[10, 10, 10, 10, 10, 0],
                   [20, 20, 20, 0, 0, 0]])
  pq = panoptic_quality.PanopticQuality(_categories((1, 1), (2, 0)))
  pq.update(gt, [{'id': 1, 'category_id': 1}, {'id': 2, 'category_id': 2}],
            pred, [{'id': 10, 'category_id': 1}, {'id': 20, 'category_id': 2}])
  result = pq.result()
  # IoU(10, 1) = 4 / (5 + 4 - 4 - 1) = 1; IoU(20, 2) = 3 / (3 + 4 - 3) = 0.75.
  assert result['per_class'][1] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0,
                                    'tp': 1, 'fp': 0, 'fn': 0}
  assert result['per_class'][2]['pq'] == pytest.approx(0.75)
  assert result['All'] == pytest.approx({'pq': 0.875, 'sq': 0.875, 'rq': 1.0,
                                         'n': 2})
  assert result['Things']['pq'] == 1.0 and result['Stuff']['pq'] == 0.75


def test_crowd_rules_and_strict_threshold():
  # 5 = crowd of category 1; 1 = a person; 2 = stuff.
  gt = np.array([[5, 5, 5, 5, 1, 1],
                 [2, 2, 2, 2, 2, 2]])
  pred = np.array([[10, 10, 10, 11, 11, 12],
                   [20, 20, 20, 20, 20, 20]])
  gt_segments = [{'id': 5, 'category_id': 1, 'iscrowd': 1},
                 {'id': 1, 'category_id': 1, 'iscrowd': 0},
                 {'id': 2, 'category_id': 2, 'iscrowd': 0}]
  pred_segments = [{'id': 10, 'category_id': 1},  # 3/3 on its crowd: ignored
                   {'id': 11, 'category_id': 3},  # half on crowd of another
                   {'id': 12, 'category_id': 1},  # IoU 1/2, not > 0.5
                   {'id': 20, 'category_id': 2}]
  pq = panoptic_quality.PanopticQuality(_categories((1, 1), (2, 0), (3, 1)))
  pq.update(gt, gt_segments, pred, pred_segments)
  per_class = pq.result()['per_class']
  assert (per_class[1]['tp'], per_class[1]['fp'], per_class[1]['fn']) == (0, 1, 1)
  assert (per_class[3]['tp'], per_class[3]['fp'], per_class[3]['fn']) == (0, 1, 0)
  assert per_class[2]['pq'] == 1.0
  result = pq.result()
  assert result['All']['n'] == 3
  assert result['All']['pq'] == pytest.approx(1.0 / 3)
  assert result['Things'] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'n': 2}


def test_only_the_last_crowd_segment_of_a_category_counts():
  gt = np.array([[5, 5, 6, 6, 2, 2]])
  gt_segments = [{'id': 5, 'category_id': 1, 'iscrowd': 1},
                 {'id': 6, 'category_id': 1, 'iscrowd': 1},
                 {'id': 2, 'category_id': 2}]
  pred_segments = [{'id': 10, 'category_id': 1}, {'id': 20, 'category_id': 2}]
  categories = _categories((1, 1), (2, 0))
  on_first = panoptic_quality.PanopticQuality(categories)
  on_first.update(gt, gt_segments, np.array([[10, 10, 0, 0, 20, 20]]),
                  pred_segments)
  on_last = panoptic_quality.PanopticQuality(categories)
  on_last.update(gt, gt_segments, np.array([[0, 0, 10, 10, 20, 20]]),
                 pred_segments)
  assert on_first.result()['per_class'][1]['fp'] == 1
  assert on_last.result()['per_class'][1]['fp'] == 0


def test_label_map_adapter_equals_segment_maps():
  rng = np.random.default_rng(1)
  gt, gt_segments, pred, pred_segments = _random_image(rng)
  # The same images as (category, instance) maps.
  gt_category_of = {s['id']: s['category_id'] for s in gt_segments}
  pred_category_of = {s['id']: s['category_id'] for s in pred_segments}
  lookup = np.vectorize(lambda table, i: table.get(i, 0), excluded={0})
  gt_category = lookup(gt_category_of, gt)
  pred_category = lookup(pred_category_of, pred)
  crowd_ids = [s['id'] for s in gt_segments if s['iscrowd']]
  by_segments = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  by_segments.update(gt, gt_segments, pred, pred_segments)
  by_labels = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  by_labels.update_from_label_maps(gt_category, gt, pred_category, pred,
                                   gt_crowd_instance_ids=crowd_ids)
  assert _flatten(by_labels.result()) == pytest.approx(
      _flatten(by_segments.result()), abs=1e-12)


def test_segments_from_label_maps():
  category = np.array([[0, 1, 1], [2, 2, 1]])
  instance = np.array([[7, 3, 3], [3, 3, 4]])
  segment_map, segments = panoptic_quality.segments_from_label_maps(
      category, instance, crowd_instance_ids=[4])
  np.testing.assert_array_equal(
      segment_map, [[0, 65536 + 3, 65536 + 3], [2 * 65536 + 3] * 2 + [65536 + 4]])
  assert segments == [
      {'id': 65536 + 3, 'category_id': 1, 'iscrowd': 0},
      {'id': 65536 + 4, 'category_id': 1, 'iscrowd': 1},
      {'id': 2 * 65536 + 3, 'category_id': 2, 'iscrowd': 0}]


def test_merge_equals_one_pass():
  rng = np.random.default_rng(2)
  images = [_random_image(rng) for _ in range(4)]
  whole = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  first = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  second = panoptic_quality.PanopticQuality(GENERATED_CATEGORIES)
  for k, image in enumerate(images):
    whole.update(*image)
    (first if k < 2 else second).update(*image)
  first.merge(second)
  assert _flatten(first.result()) == pytest.approx(
      _flatten(whole.result()), abs=1e-12)
  assert first.num_images == 4
  with pytest.raises(ValueError, match='different categories'):
    first.merge(panoptic_quality.PanopticQuality(_categories((1, 1))))


def test_empty_split_gives_zero():
  pq = panoptic_quality.PanopticQuality(_categories((1, 1), (2, 0)))
  pq.update(np.array([[1, 1]]), [{'id': 1, 'category_id': 1}],
            np.array([[1, 1]]), [{'id': 1, 'category_id': 1}])
  result = pq.result()
  assert result['Stuff'] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'n': 0}
  assert result['per_class'][2] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0,
                                    'tp': 0, 'fp': 0, 'fn': 0}


@pytest.mark.parametrize('gt_segments,pred,pred_segments,message', [
    ([{'id': 1, 'category_id': 1}], [[1, 2]], [{'id': 1, 'category_id': 1}],
     r'pred.png: segment id\(s\) \[2\] in the PNG are not in segments_info'),
    ([{'id': 1, 'category_id': 1}], [[1, 1]],
     [{'id': 1, 'category_id': 1}, {'id': 3, 'category_id': 1}],
     r'pred.png: segment id\(s\) \[3\] in segments_info are not in the PNG'),
    ([{'id': 1, 'category_id': 1}], [[1, 1]], [{'id': 1, 'category_id': 99}],
     r'pred.png: unknown category id\(s\) \[99\]'),
    ([{'id': 1, 'category_id': 42}], [[1, 1]], [{'id': 1, 'category_id': 1}],
     r'gt.png: unknown category id\(s\) \[42\]'),
    ([], [[1, 1]], [{'id': 1, 'category_id': 1}],
     r'gt.png: segment id\(s\) \[1\] in the PNG are not in segments_info'),
    ([{'id': 1, 'category_id': 1}], [[1, 1, 1]], [{'id': 1, 'category_id': 1}],
     r'pred.png: image size \(1, 3\) differs'),
])
def test_bad_input_names_the_file(gt_segments, pred, pred_segments, message):
  pq = panoptic_quality.PanopticQuality(_categories((1, 1)))
  with pytest.raises(ValueError, match=message):
    pq.update(np.array([[1, 1]]), gt_segments, np.array(pred), pred_segments,
              gt_name='gt.png', pred_name='pred.png')


def _tiny_dataset(tmp_path):
  gt_dir, pred_dir = tmp_path / 'gt', tmp_path / 'pred'
  gt_dir.mkdir()
  pred_dir.mkdir()
  files.write_png(str(gt_dir / 'a.png'), files.id_to_rgb(np.array([[1, 1], [2, 0]])))
  files.write_png(str(pred_dir / 'a.png'), files.id_to_rgb(np.array([[1, 1], [2, 2]])))
  gt = {'annotations': [{'image_id': 7, 'file_name': 'a.png', 'segments_info': [
      {'id': 1, 'category_id': 1, 'iscrowd': 0},
      {'id': 2, 'category_id': 2, 'iscrowd': 0}]}],
        'categories': _categories((1, 1), (2, 0))}
  pred = {'annotations': [{'image_id': 7, 'file_name': 'a.png', 'segments_info': [
      {'id': 1, 'category_id': 1}, {'id': 2, 'category_id': 2}]}]}
  return gt_dir, pred_dir, gt, pred


def _evaluate(tmp_path, gt, pred, gt_dir, pred_dir):
  gt_json, pred_json = tmp_path / 'gt.json', tmp_path / 'pred.json'
  gt_json.write_text(json.dumps(gt))
  pred_json.write_text(json.dumps(pred))
  return panoptic_quality.evaluate_panoptic_files(
      str(gt_json), str(gt_dir), str(pred_json), str(pred_dir))


def test_evaluate_files_tiny(tmp_path):
  gt_dir, pred_dir, gt, pred = _tiny_dataset(tmp_path)
  results, categories = _evaluate(tmp_path, gt, pred, gt_dir, pred_dir)
  assert results['All'] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': 2}
  table = panoptic_quality.format_results(results, categories)
  assert 'c1' in table and 'Things' in table


def test_evaluate_files_errors_name_the_file(tmp_path):
  gt_dir, pred_dir, gt, pred = _tiny_dataset(tmp_path)
  pred['annotations'][0]['file_name'] = 'missing.png'
  with pytest.raises(FileNotFoundError, match='missing.png'):
    _evaluate(tmp_path, gt, pred, gt_dir, pred_dir)
  (tmp_path / 'b').mkdir()
  gt_dir, pred_dir, gt, pred = _tiny_dataset(tmp_path / 'b')
  pred['annotations'].append({'image_id': 8, 'file_name': 'a.png',
                              'segments_info': []})
  with pytest.raises(ValueError, match=r'pred.json: prediction for image 8'):
    _evaluate(tmp_path, gt, pred, gt_dir, pred_dir)
  pred['annotations'] = []
  with pytest.raises(ValueError, match=r'pred.json: no prediction for image 7'):
    _evaluate(tmp_path, gt, pred, gt_dir, pred_dir)
  del gt['categories']
  with pytest.raises(ValueError, match=r'gt.json has no categories'):
    _evaluate(tmp_path, gt, pred, gt_dir, pred_dir)
