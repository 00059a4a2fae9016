"""The dataset programs end to end, as a user runs them (`python -m tools.X --flags`).

Each program's `main` runs in this process with its absl flags parsed from a
command line (`_run_main`); one run goes through a real subprocess to check
the exit status and the error message of a failing conversion.
"""

import importlib
import json
import os
import subprocess
import sys

from absl import flags
import numpy as np
from PIL import Image

from data import records
from tests.conftest import REPO_ROOT
from tests.data import record_reading

FLAGS = flags.FLAGS


def _run_main(tool, args, capsys):
  """Runs `tools.<tool>.main` on `--flag` arguments; returns its stdout.

  The programs define flags of the same names (absl flags are global), so the
  module's flags are removed and the module forgotten after the run.
  """
  name = f'tools.{tool}'
  module = importlib.import_module(name)
  try:
    FLAGS([name] + args)
    capsys.readouterr()
    module.main([name])
    return capsys.readouterr().out
  finally:
    for flag in FLAGS.get_key_flags_for_module(module):
      delattr(FLAGS, flag.name)
    sys.modules.pop(name)


def _write_instances_dataset(root):
  os.makedirs(root / 'images')
  Image.fromarray(np.full((8, 10, 3), 200, np.uint8)).save(
      root / 'images' / 'a.png')
  with open(root / 'instances.json', 'w') as f:
    json.dump({
        'images': [{'id': 1, 'file_name': 'a.png', 'height': 8, 'width': 10}],
        'annotations': [{'id': 5, 'image_id': 1, 'category_id': 3,
                         'segmentation': [[1, 1, 6, 1, 6, 5, 1, 5]]}],
        'categories': [{'id': 3, 'name': 'box'}]}, f)


def _write_kitti_step_dataset(root):
  for frame in range(3):
    panoptic_map = np.zeros((6, 8, 3), np.uint8)  # road, track 0
    panoptic_map[2:4, frame:frame + 2] = (13, 0, 1)  # car, track 1
    for folder, array in (('images', np.zeros((6, 8, 3), np.uint8)),
                          ('panoptic_maps', panoptic_map)):
      directory = root / folder / 'val' / '0003'
      os.makedirs(directory, exist_ok=True)
      Image.fromarray(array).save(directory / f'{frame:06d}.png')


def test_dataset_programs(fixtures_dir, tmp_path, capsys):
  synthetic_dir = tmp_path / 'synthetic'
  out = tmp_path / 'records'
  cityscapes = os.path.join(fixtures_dir, 'cityscapes_panoptic_real')
  coco = os.path.join(fixtures_dir, 'coco_panoptic_real')
  _write_instances_dataset(tmp_path / 'mine')
  _write_kitti_step_dataset(tmp_path / 'kitti')

  stdout = _run_main('make_synthetic', [
      f'--output_dir={synthetic_dir}', '--num_train=5', '--num_val=2',
      '--image_size=32', '--seed=9', '--video', '--num_videos=2',
      '--num_val_videos=1', '--num_frames=4'], capsys)
  assert 'panoptic_train_json' in stdout
  stdout = _run_main('create_coco_panoptic_tfrecord', [
      f'--annotations_json={synthetic_dir}/annotations/panoptic_train.json',
      f'--panoptic_dir={synthetic_dir}/panoptic/train',
      f'--image_dir={synthetic_dir}/images/train',
      f'--output_prefix={out}/synthetic', '--num_shards=2'], capsys)
  assert 'wrote 5 images into 2 of 2 shard(s)' in stdout
  assert len(record_reading.read_image_records(f'{out}/synthetic')) == 5
  stdout = _run_main('create_davis_tfrecord', [
      f'--davis_root={synthetic_dir}', '--split=train',
      f'--output_prefix={out}/synthetic_video', '--num_shards=1'], capsys)
  assert 'wrote 2 videos' in stdout
  stdout = _run_main('create_cityscapes_panoptic_tfrecord', [
      '--annotations_json=' + os.path.join(
          cityscapes, 'gtFine', 'cityscapes_panoptic_dummy_trainId.json'),
      '--panoptic_dir=' + os.path.join(
          cityscapes, 'gtFine', 'cityscapes_panoptic_dummy_trainId'),
      '--image_dir=' + os.path.join(cityscapes, 'leftImg8bit'),
      f'--output_prefix={out}/cityscapes', '--num_shards=1'], capsys)
  assert 'wrote 1 images' in stdout
  stdout = _run_main('create_coco_instances_tfrecord', [
      f'--annotations_json={tmp_path}/mine/instances.json',
      f'--image_dir={tmp_path}/mine/images', f'--output_prefix={out}/mine',
      '--num_shards=1'], capsys)
  assert 'wrote 1 images' in stdout
  stdout = _run_main('create_kitti_step_tfrecord', [
      f'--root={tmp_path}/kitti', '--split=val', f'--output_prefix={out}/kitti',
      '--max_frames_per_record=2', '--num_shards=1'], capsys)
  assert 'wrote 2 videos' in stdout
  (context, lists), _ = record_reading.read_video_records(f'{out}/kitti')
  assert context[records.VIDEO_ID] == b'0003'
  assert len(lists[records.FRAME_NAME]) == 2
  for prefix in ('cityscapes', 'mine', 'kitti', 'synthetic',
                 'synthetic_video'):
    assert os.path.exists(f'{out}/{prefix}.categories.json')

  coco_flags = [f'--annotations_json={coco}/panoptic_examples.json',
                f'--panoptic_dir={coco}/panoptic_examples',
                f'--image_dir={tmp_path}/nowhere', '--num_shards=1']
  stdout = _run_main('create_coco_panoptic_tfrecord', coco_flags + [
      f'--output_prefix={out}/skipped', '--skip_bad'], capsys)
  assert 'skipped: 2 (missing_file: 2)' in stdout
  failed = subprocess.run(
      [sys.executable, '-m', 'tools.create_coco_panoptic_tfrecord'] +
      coco_flags + [f'--output_prefix={out}/bad'], cwd=REPO_ROOT,
      capture_output=True, text=True, timeout=120, check=False)
  assert failed.returncode != 0
  assert f'{tmp_path}/nowhere/000000142238.jpg: file not found' in failed.stderr
