"""tools.predict (issue 8): images of every kind and a streamed video, through an export.

The exports are the session's tiny ones (`tests/tasks/exported_models.py`).
The image run is one `python -m tools.predict` subprocess over the shared
fixtures' real images and generated odd ones (grayscale, RGBA, palette,
16-bit, EXIF-rotated, 8x8, 4000x3000, a text file named x.png); the video run
calls the library on a folder of frames and checks it against the signature.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from data import records
from data import synthetic
from tasks import export
from tasks import predict
from tasks.metrics import davis
from tasks.metrics import files
from tests.conftest import SHARED_FIXTURES
from tests.tasks import exported_models

REPO = exported_models.REPO
FIXTURE_IMAGES = (
    'coco_panoptic_real/input_images/000000142238.jpg',
    'coco_panoptic_real/input_images/000000439180.jpg',
    'cityscapes_panoptic_real/leftImg8bit/dummy_000000_000000_leftImg8bit.png',
)
EXIF_ORIENTATION = 0x0112


def _gradient(height, width):
  rows, cols = np.mgrid[0:height, 0:width]
  return np.stack([rows * 255 // max(height - 1, 1),
                   cols * 255 // max(width - 1, 1),
                   (rows + cols) * 255 // max(height + width - 2, 1)],
                  axis=-1).astype(np.uint8)


def _exif_jpeg(image: np.ndarray, orientation: int) -> bytes:
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = orientation
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=95, exif=exif)
  return buffer.getvalue()


def write_odd_images(folder) -> dict:
  """Writes images in awkward formats; returns `{file name: upright (h, w)}`."""
  folder.mkdir(parents=True, exist_ok=True)
  sizes = {}
  Image.fromarray(_gradient(30, 40)[..., 0]).save(folder / 'gray.png')
  sizes['gray.png'] = (30, 40)
  rgba = np.concatenate([_gradient(36, 28), np.full((36, 28, 1), 90, np.uint8)],
                        axis=-1)
  Image.fromarray(rgba).save(folder / 'rgba.png')
  sizes['rgba.png'] = (36, 28)
  palette = Image.fromarray(_gradient(20, 20)).convert('P', palette=Image.ADAPTIVE)
  palette.info['transparency'] = 0
  palette.save(folder / 'palette.png')
  sizes['palette.png'] = (20, 20)
  sixteen = (_gradient(24, 32)[..., 1].astype(np.uint16) * 257)
  Image.fromarray(sixteen.astype('<u2')).save(folder / 'sixteen.png')
  sizes['sixteen.png'] = (24, 32)
  # Stored 24 high x 40 wide; orientation 6 = rotate 90 degrees clockwise.
  (folder / 'rotated.jpg').write_bytes(_exif_jpeg(_gradient(24, 40), 6))
  sizes['rotated.jpg'] = (40, 24)
  Image.fromarray(_gradient(8, 8)).save(folder / 'tiny.png')
  sizes['tiny.png'] = (8, 8)
  Image.fromarray(_gradient(3000, 4000)).save(folder / 'large.jpg', quality=80)
  sizes['large.jpg'] = (3000, 4000)
  (folder / 'x.png').write_text('this is not an image\n')
  return sizes


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  return exported_models.image_export(tmp_path_factory)


@pytest.fixture(scope='module')
def predicted(exported, tmp_path_factory):
  """One `tools.predict --trajectory` run over real and odd images."""
  root = tmp_path_factory.mktemp('predict')
  inputs = root / 'inputs'
  sizes = write_odd_images(inputs)
  for relative in FIXTURE_IMAGES:
    source = os.path.join(SHARED_FIXTURES, relative)
    (inputs / os.path.basename(relative)).symlink_to(source)
    with Image.open(source) as image:
      sizes[os.path.basename(relative)] = (image.height, image.width)
  output = root / 'output'
  result = subprocess.run(
      [sys.executable, '-m', 'tools.predict',
       f'--saved_model={exported["export_dir"]}', f'--input={inputs}',
       f'--output_dir={output}', '--num_steps=3', '--td=1.5', '--trajectory'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stderr[-5000:]
  return dict(output=output, inputs=inputs, sizes=sizes, stdout=result.stdout,
              stderr=result.stderr)


def _stem(name):
  return os.path.splitext(name)[0]


def test_every_image_gets_an_overlay_a_panoptic_png_and_a_trajectory(predicted):
  output = predicted['output']
  images = {k: v for k, v in predicted['sizes'].items() if k != 'x.png'}
  assert f'wrote {len(images)} prediction(s)' in predicted['stdout']
  assert 'predict: 100%' in predicted['stderr']  # The progress bar.
  for name, (height, width) in images.items():
    with Image.open(output / f'{_stem(name)}_overlay.png') as overlay:
      assert overlay.size == (width, height), name  # Upright, original size.
    panoptic = files.read_png(str(output / 'panoptic' / f'{_stem(name)}.png'))
    assert panoptic.shape == (height, width, 3), name
    with Image.open(output / f'{_stem(name)}_trajectory.png') as trajectory:
      panel_width = trajectory.size[0] // 3  # --num_steps=3: one panel a step.
      assert trajectory.size[0] == 3 * panel_width and max(
          panel_width, trajectory.size[1]) <= predict.TRAJECTORY_PANEL_SIDE


def test_a_non_image_is_reported_by_name_and_skipped(predicted):
  assert 'skipped' in predicted['stdout'] and 'x.png' in predicted['stdout']
  summary = json.loads((predicted['output'] / 'summary.json').read_text())
  assert list(summary['skipped']) == [str(predicted['inputs'] / 'x.png')]
  assert 'not a readable image' in summary['skipped'][str(predicted['inputs'] /
                                                          'x.png')]
  assert not (predicted['output'] / 'x_overlay.png').exists()


def test_panoptic_output_is_coco_format_and_scores_pq_1_against_itself(
    predicted, exported):
  output = predicted['output']
  payload = json.loads((output / 'panoptic.json').read_text())
  table = records.read_categories(exported['records']['categories'])
  assert payload['categories'] == [
      dict(id=c['id'], name=c['name'], isthing=c['isthing']) for c in table]
  dataset_ids = {c['id'] for c in table}
  assert len(payload['annotations']) == len(predicted['sizes'])
  segments = 0
  for annotation in payload['annotations']:
    ids = files.rgb_to_id(files.read_png(str(output / 'panoptic' /
                                             annotation['file_name'])))
    info = annotation['segments_info']
    assert sorted(np.unique(ids[ids > 0]).tolist()) == sorted(
        s['id'] for s in info)
    for segment in info:
      assert segment['category_id'] in dataset_ids
      assert segment['area'] == int((ids == segment['id']).sum())
      x, y, w, h = segment['bbox']
      rows, cols = np.nonzero(ids == segment['id'])
      assert (x, y, w, h) == (cols.min(), rows.min(), cols.max() - x + 1,
                              rows.max() - y + 1)
    segments += len(info)
  assert segments > 0
  assert {a['image_id'] for a in payload['annotations']} >= {142238, 439180}
  result_json = output / 'pq.json'
  result = subprocess.run(
      [sys.executable, '-m', 'tools.evaluate_panoptic',
       f'--gt_json={output / "panoptic.json"}', f'--gt_dir={output / "panoptic"}',
       f'--pred_json={output / "panoptic.json"}',
       f'--pred_dir={output / "panoptic"}', f'--output_json={result_json}'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  assert result.returncode == 0, result.stderr[-3000:]
  pq = json.loads(result_json.read_text())
  assert pq['All']['n'] > 0 and pq['All']['pq'] == pytest.approx(1.0)


def test_overlay_colours_the_segments_and_leaves_the_rest(predicted):
  name = 'dummy_000000_000000_leftImg8bit'
  original = predict.load_image(os.path.join(SHARED_FIXTURES, FIXTURE_IMAGES[2]))
  overlay = np.asarray(Image.open(predicted['output'] / f'{name}_overlay.png'))
  ids = files.rgb_to_id(files.read_png(str(predicted['output'] / 'panoptic' /
                                           f'{name}.png')))
  changed = np.any(overlay != original, axis=-1)
  void = ids == 0
  # Class names are drawn over a few pixels; everything else follows the mask.
  assert changed[void].mean() < 0.05
  if (~void).any():
    assert changed[~void].mean() > 0.9


def test_overlay_blends_segment_colours_exactly():
  image = _gradient(6, 5)
  category = np.zeros((6, 5), np.int32)
  instance = np.zeros((6, 5), np.int32)
  category[1:3, 1:4], instance[1:3, 1:4] = 2, 7
  category[4, :], instance[4, :] = 1, 0  # No instance id: not a segment.
  colors = np.zeros((256, 3), np.uint8)
  colors[7] = (200, 100, 0)
  picture = np.asarray(predict.overlay(image, category, instance, {2: 'cat'},
                                       colors, draw_labels=False))
  alpha = predict.OVERLAY_ALPHA
  expected = image.astype(np.float64)
  expected[1:3, 1:4] = (1 - alpha) * expected[1:3, 1:4] + alpha * np.array(
      [200, 100, 0])
  np.testing.assert_array_equal(picture, np.round(expected).astype(np.uint8))
  labelled = np.asarray(predict.overlay(np.zeros((60, 80, 3), np.uint8),
                                        np.full((60, 80), 2), np.full((60, 80), 7),
                                        {2: 'cat'}, colors))
  assert (labelled.min(axis=-1) > 180).any()  # The white class name.


# ----------------------------------------------------------------------------
# Reading images.


def test_load_image_handles_odd_formats(tmp_path):
  write_odd_images(tmp_path)
  gray = predict.load_image(str(tmp_path / 'gray.png'))
  assert gray.shape == (30, 40, 3)
  np.testing.assert_array_equal(gray[..., 0], _gradient(30, 40)[..., 0])
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  np.testing.assert_array_equal(predict.load_image(str(tmp_path / 'rgba.png')),
                                _gradient(36, 28))  # Alpha dropped.
  palette = Image.open(tmp_path / 'palette.png')
  expected = np.asarray(palette.convert('RGBA'))[..., :3]
  np.testing.assert_array_equal(predict.load_image(str(tmp_path / 'palette.png')),
                                expected)
  sixteen = predict.load_image(str(tmp_path / 'sixteen.png'))
  np.testing.assert_array_equal(sixteen[..., 0], _gradient(24, 32)[..., 1])
  rotated = predict.load_image(str(tmp_path / 'rotated.jpg'))
  assert rotated.shape == (40, 24, 3)
  # Rotated 90 degrees clockwise: the stored top-left corner is now top-right.
  stored = _gradient(24, 40).astype(int)
  np.testing.assert_allclose(rotated[0, -1], stored[0, 0], atol=12)
  np.testing.assert_allclose(rotated[-1, -1], stored[0, -1], atol=12)
  assert predict.load_image(str(tmp_path / 'tiny.png')).shape == (8, 8, 3)
  with pytest.raises(predict.NotAnImageError, match='x.png'):
    predict.load_image(str(tmp_path / 'x.png'))
  with pytest.raises(FileNotFoundError, match='missing.png'):
    predict.load_image(str(tmp_path / 'missing.png'))


def test_sixteen_bit_values_keep_their_high_byte(tmp_path):
  values = np.array([[0, 257, 32896, 65535]], np.uint16)
  Image.fromarray(values.astype('<u2')).save(tmp_path / 'sixteen.png')
  image = predict.load_image(str(tmp_path / 'sixteen.png'))
  np.testing.assert_array_equal(image[0, :, 0], [0, 1, 128, 255])


def test_output_names_keep_files_with_one_stem_apart():
  assert predict.output_names(['a/x.png', 'a/x.jpg', 'a/y.png']) == [
      'x_png', 'x_jpg', 'y']


# ----------------------------------------------------------------------------
# Video.


@pytest.fixture(scope='module')
def video(tmp_path_factory):
  return exported_models.video_export(tmp_path_factory)


def _moving_frames(count=3, height=48, width=64):
  background = _gradient(height, width)
  frames = []
  for i in range(count):
    frame = background.copy()
    frame[10:26, 8 + 6 * i:24 + 6 * i] = (250, 30, 30)
    frames.append(frame)
  return frames


def test_video_frames_stream_with_consistent_objects(video, tmp_path):
  folder = tmp_path / 'clip'
  folder.mkdir()
  frames = _moving_frames()
  for i, frame in enumerate(frames):
    Image.fromarray(frame).save(folder / f'{i:05d}.png')
  (folder / 'notes.txt').write_text('not a frame')
  model = predict.ExportedModel(video['export_dir'])
  output = tmp_path / 'output'
  summary = predict.predict_video(model, str(folder), str(output), num_steps=2,
                                  first_frame_num_steps=3, td=1.0, seed=4,
                                  max_objects=predict.MAX_DAVIS_OBJECTS,
                                  progress=False)
  assert summary['frames'] == {'clip': ['00000', '00001', '00002']}
  assert list(summary['skipped']) == [str(folder / 'notes.txt')]
  with Image.open(output / 'clip.gif') as gif:
    assert gif.n_frames == 3

  # The same stream through the signature: frame i conditions on the masks
  # the signature returned for frames i - 2 and i - 1 (void before frame 0).
  palette = np.array(synthetic.davis_palette(), np.uint8).reshape(-1, 3)
  none = np.zeros([1, 32, 32, 2], np.int32)
  history = [none, none]
  object_of_instance = {}
  for i, frame in enumerate(frames):
    outputs = model(export.SIGNATURE_VIDEO_TENSOR, image_tensor=frame[None],
                    past_label_maps=np.stack(history[-2:], axis=1),
                    num_steps=np.int32(3 if i == 0 else 2), td=np.float32(1.0),
                    seed=np.array([4, i], np.int32))
    history.append(outputs['label_map'])
    category = outputs['panoptic_category_mask'][0]
    instance = np.where(category > 0, outputs['panoptic_instance_mask'][0], 0)
    with Image.open(output / 'masks' / 'clip' / f'{i:05d}.png') as mask:
      assert mask.mode == 'P' and mask.size == (64, 48)
      objects = np.asarray(mask)
    np.testing.assert_array_equal(objects > 0, instance > 0)
    # One object index per instance id, the same in every frame.
    for instance_id, object_id in set(zip(instance[instance > 0].tolist(),
                                          objects[instance > 0].tolist())):
      assert object_of_instance.setdefault(instance_id, object_id) == object_id
    # The overlay colours each object with its DAVIS palette colour.
    overlay = np.asarray(Image.open(output / 'overlays' / 'clip' /
                                    f'{i:05d}_overlay.png'))
    np.testing.assert_array_equal(overlay, np.asarray(predict.overlay(
        frame, category, instance, model.class_names, palette,
        color_ids=objects)))
  assert len(set(object_of_instance.values())) == len(object_of_instance)
  assert object_of_instance  # Some objects were found.
  # The masks are in the layout tools.evaluate_davis reads.
  scores = davis.evaluate_davis_dirs(str(output / 'masks'), str(output / 'masks'),
                                     max_proposals=predict.MAX_DAVIS_OBJECTS)
  assert scores['J&F-Mean'] == pytest.approx(1.0)


def test_object_numbers_follow_first_appearance_up_to_the_limit():
  numbers = predict.ObjectNumbers(max_objects=2)
  np.testing.assert_array_equal(numbers(np.array([[0, 9, 4]])), [[0, 2, 1]])
  np.testing.assert_array_equal(numbers(np.array([[7, 9, 4, 0]])), [[0, 2, 1, 0]])
  with pytest.raises(ValueError, match='255 is void'):
    predict.ObjectNumbers(max_objects=255)


def test_video_needs_a_video_export(exported, tmp_path):
  (tmp_path / 'frames').mkdir()
  with pytest.raises(ValueError, match='not a video model export'):
    predict.predict_video(exported['export_dir'], str(tmp_path / 'frames'),
                          str(tmp_path / 'o'))
