"""End-to-end runs of tools/evaluate_{panoptic,davis,stq}.py on small generated data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tasks.metrics import files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(module, *flags):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  return subprocess.run([sys.executable, '-m', module, *flags], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True, timeout=120)


def _write_panoptic(tmp_path):
  """Two images; the prediction misses one person and shifts the sky."""
  gt_dir, pred_dir = tmp_path / 'gt', tmp_path / 'pred'
  gt = np.zeros((8, 10), np.int64)
  gt[:4] = 5        # sky (stuff)
  gt[4:, :5] = 1    # person
  gt[4:, 5:] = 2    # person
  gt[7, 9] = 0      # void
  pred = gt.copy()
  pred[4:, 5:] = 0  # person 2 missed
  pred[4, 5:] = 5   # the sky grows by 5 pixels
  segments = [{'id': 1, 'category_id': 1, 'iscrowd': 0},
              {'id': 2, 'category_id': 1, 'iscrowd': 0},
              {'id': 5, 'category_id': 9, 'iscrowd': 0}]
  gt_annotations, pred_annotations = [], []
  for image_id in (1, 2):
    name = f'{image_id:012d}.png'
    files.write_png(str(gt_dir / name), files.id_to_rgb(gt))
    files.write_png(str(pred_dir / name), files.id_to_rgb(pred))
    gt_annotations.append({'image_id': image_id, 'file_name': name,
                           'segments_info': segments})
    pred_annotations.append({'image_id': image_id, 'file_name': name,
                             'segments_info': [s for s in segments if s['id'] != 2]})
  categories = [{'id': 1, 'name': 'person', 'isthing': 1},
                {'id': 9, 'name': 'sky', 'isthing': 0}]
  (tmp_path / 'gt.json').write_text(json.dumps(
      {'annotations': gt_annotations, 'categories': categories}))
  (tmp_path / 'pred.json').write_text(json.dumps({'annotations': pred_annotations}))
  return ['--gt_json', str(tmp_path / 'gt.json'), '--gt_dir', str(gt_dir),
          '--pred_json', str(tmp_path / 'pred.json'), '--pred_dir', str(pred_dir)]


def test_evaluate_panoptic_end_to_end(tmp_path):
  output = tmp_path / 'out' / 'pq.json'
  run = _run('tools.evaluate_panoptic', *_write_panoptic(tmp_path),
             '--output_json', str(output))
  assert run.returncode == 0, run.stderr
  assert 'Things' in run.stdout and 'person' in run.stdout
  results = json.loads(output.read_text())
  assert set(results) == {'All', 'Things', 'Stuff', 'per_class'}
  for split in ('All', 'Things', 'Stuff'):
    assert set(results[split]) == {'pq', 'sq', 'rq', 'n'}
  # Person: 2 TP (IoU 1) + 2 FN -> PQ 2 / 3. Sky: all 40 GT pixels and 5
  # more predicted -> IoU 40 / 45 in both images.
  assert results['per_class']['1']['pq'] == pytest.approx(2 / 3)
  assert results['per_class']['9']['pq'] == pytest.approx(8 / 9)
  assert results['All']['pq'] == pytest.approx((2 / 3 + 8 / 9) / 2)
  assert not (tmp_path / 'out' / 'pq.json.tmp').exists()


def test_evaluate_panoptic_bad_input_names_the_file(tmp_path):
  flags = _write_panoptic(tmp_path)
  os.remove(tmp_path / 'pred' / '000000000002.png')
  run = _run('tools.evaluate_panoptic', *flags)
  assert run.returncode != 0
  assert '000000000002.png not found' in run.stderr


def _write_palette_png(path, labels):
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(labels.astype(np.uint8), mode='P')
  image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
  image.save(path)


def test_evaluate_davis_end_to_end(tmp_path):
  shape = (12, 16)
  for sequence in ('bear', 'car'):
    for t in range(4):
      gt = np.zeros(shape, np.int64)
      gt[2:6, 2 + t:6 + t] = 1
      gt[8:11, 10:14] = 2
      gt[0, :] = 255
      pred = np.where(gt == 255, 0, gt)
      if sequence == 'car':
        pred = np.where(pred == 2, 0, pred)  # object 2 never found
      _write_palette_png(tmp_path / 'gt' / sequence / f'{t:05d}.png', gt)
      _write_palette_png(tmp_path / 'pred' / sequence / f'{t:05d}.png', pred)
  output = tmp_path / 'davis.json'
  run = _run('tools.evaluate_davis', '--gt_dir', str(tmp_path / 'gt'),
             '--pred_dir', str(tmp_path / 'pred'), '--output_json', str(output))
  assert run.returncode == 0, run.stderr
  results = json.loads(output.read_text())
  for key in ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean',
              'F-Recall', 'F-Decay'):
    assert key in results and key in run.stdout
  # 4 objects, 3 perfect and one never found (J = F = 0 in every frame).
  assert results['num_objects'] == 4
  assert results['J-Mean'] == pytest.approx(0.75)
  assert results['F-Mean'] == pytest.approx(0.75)
  assert results['J&F-Mean'] == pytest.approx(0.75)


@pytest.mark.parametrize('case', ['reverse', 'void'])
def test_evaluate_davis_matches_the_official_numbers(fixtures_dir, tmp_path, case):
  """Real DAVIS masks (`davis_real/`); `official.json` is davis2017-evaluation's."""
  root = os.path.join(fixtures_dir, 'davis_real', case)
  output = tmp_path / 'davis.json'
  run = _run('tools.evaluate_davis', '--gt_dir', os.path.join(root, 'gt'),
             '--pred_dir', os.path.join(root, 'pred'), '--output_json', str(output))
  assert run.returncode == 0, run.stderr
  results = json.loads(output.read_text())
  official = json.loads(open(os.path.join(root, 'official.json')).read())
  for key, value in official.items():
    assert abs(results[key] - value) < 1e-9, (key, results[key], value)
  # The per-object rows carry the package's names and say which is which.
  assert 'judo_1' in results['per_object']
  assert 'object' in run.stdout and 'proposal' in run.stdout


def _kitti_png(path, classes, tracks):
  rgb = np.stack([classes, tracks // 256, tracks % 256], axis=-1)
  files.write_png(str(path), rgb.astype(np.uint8))


def test_evaluate_stq_end_to_end(tmp_path):
  classes = np.full((4, 6), 0)
  classes[1:3, 1:5] = 13
  classes[0, 0] = 255
  tracks = np.where(classes == 13, 300, 0)  # a track id above 255
  for t in range(3):
    _kitti_png(tmp_path / 'gt' / '0002' / f'{t:06d}.png', classes, tracks)
    # The prediction switches the car's id after the first frame.
    _kitti_png(tmp_path / 'pred' / '0002' / f'{t:06d}.png', classes,
               np.where(classes == 13, 1 if t == 0 else 2, 0))
  output = tmp_path / 'stq.json'
  run = _run('tools.evaluate_stq', '--gt_dir', str(tmp_path / 'gt'),
             '--pred_dir', str(tmp_path / 'pred'), '--output_json', str(output))
  assert run.returncode == 0, run.stderr
  results = json.loads(output.read_text())
  assert {'STQ', 'AQ', 'SQ'} <= set(results)
  # Tube of 24 px: TPA 8 (IoU 8/24) and 16 (IoU 16/24): AQ = 5/9. Road IoU:
  # the void pixel is in neither row nor column, SQ = 1.
  assert results['AQ'] == pytest.approx(5 / 9)
  assert results['SQ'] == pytest.approx(1.0)
  assert results['STQ'] == pytest.approx(np.sqrt(5 / 9))
