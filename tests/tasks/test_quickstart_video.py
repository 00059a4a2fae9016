"""The video quickstart (issue 7, --video) end to end at a tiny size (experiments/quickstart_video_smoke.gin)."""

import importlib
import json
import os
import sys

from absl import flags
import gin
import numpy as np
from PIL import Image
import pytest

import tensorflow as tf

from data import davis
from tasks import config
from tasks import quickstart_pictures
from tasks import quickstart_pretrain
from tasks import quickstart_video


def test_smoke_video_quickstart_writes_summary_pictures_and_gif(tmp_path):
  output_dir = str(tmp_path / 'qs')
  summary = quickstart_video.run_video_quickstart(
      output_dir, gin_files=['experiments/quickstart_video_smoke.gin'],
      train_steps=4, argv=['test'])
  with open(os.path.join(output_dir, quickstart_video.SUMMARY_NAME)) as f:
    written = json.load(f)
  assert written == json.loads(json.dumps(summary))
  for key in ('j_and_f', 'j_mean', 'j_recall', 'f_mean', 'f_recall'):
    assert 0.0 <= written['val'][key] <= 1.0
  assert written['val']['j_and_f'] == pytest.approx(
      (written['val']['j_mean'] + written['val']['f_mean']) / 2)
  assert written['val']['frames'] == 2 * 4  # every frame of both val videos
  assert written['train_steps'] == 4
  for stage in ('data', 'train', 'eval', 'pictures', 'total'):
    assert written['seconds'][stage] >= 0.0
  assert written['parameters']['total_params'] > 100_000
  settings = written['settings']
  assert settings['n_bits'] == [4, 4]
  assert settings['b_scale'] == pytest.approx(0.2)  # quickstart_video.gin
  assert settings['loss_p'] == pytest.approx(0.2)
  assert settings['num_past_frames'] == 2
  assert settings['past_frame_offsets'] == [-2, -1]
  assert settings['image_size'] == [64, 64] and settings['mask_size'] == [32, 32]
  assert settings['eval_first_frame_steps'] == 2
  assert settings['eval_later_frame_steps'] == 1
  assert settings['global_batch_size'] == 4
  assert written['export']['status'] == 'skipped'  # disabled in the smoke config

  # Pictures of the first val video: frame | ground truth | prediction, 4x.
  video_id = davis.read_split(os.path.join(output_dir, 'data'), 'val')[0]
  assert list(written['pictures']['strips']) == [video_id]
  picture_dir = os.path.join(output_dir, 'pictures', video_id)
  assert sorted(os.listdir(picture_dir)) == [f'{i:05d}.png' for i in range(4)]
  strip = np.asarray(Image.open(os.path.join(picture_dir, '00000.png')))
  assert strip.shape == (256, 3 * 256 + 2 * 4, 3)
  # The ground-truth panel shows objects coloured over the frame: it differs
  # from the frame panel.
  assert np.abs(strip[:, 260:516].astype(int) - strip[:, :256]).max() > 50
  with Image.open(written['pictures']['gifs'][video_id]) as gif:
    assert gif.n_frames == 4
    assert gif.size == (3 * 256 + 2 * 4, 256)
  # The evaluator's DAVIS PNGs (what the prediction panels show) and run record.
  eval_dir = os.path.dirname(written['metrics_json'])
  assert len(os.listdir(os.path.join(eval_dir, video_id))) == 4
  assert os.path.exists(os.path.join(written['model_dir'], config.CONFIG_NAME))


def _shipped_values(checkpoint, keep):
  """The values of a shipped checkpoint's variables whose names `keep`, flat."""
  reader = tf.train.load_checkpoint(
      os.path.join(quickstart_pretrain.REPO_ROOT, checkpoint))
  names = sorted(n for n in reader.get_variable_to_shape_map() if keep(n))
  assert names
  return np.concatenate([reader.get_tensor(n).ravel() for n in names])


def test_video_quickstart_reads_the_pretrained_part_settings(tmp_path):
  output_dir = str(tmp_path / 'qs')
  with pytest.raises(FileNotFoundError,
                     match='quickstart_settings.pretrained_encoder: .*nowhere'):
    quickstart_video.run_video_quickstart(
        output_dir, gin_files=['experiments/quickstart_video_smoke.gin'],
        gin_bindings=["quickstart_settings.pretrained_encoder = 'nowhere'"],
        train_steps=1)
  gin.clear_config()
  with pytest.raises(ValueError, match='encoder_pretrain_fraction'):
    quickstart_video.run_video_quickstart(
        output_dir, gin_files=['experiments/quickstart_video_smoke.gin'],
        gin_bindings=["quickstart_settings.encoder_pretrain_fraction = 0.2"],
        train_steps=1)
  gin.clear_config()
  shipped = 'models/pretrained/quickstart_encoder'
  summary = quickstart_video.run_video_quickstart(
      output_dir, gin_files=['experiments/quickstart_video_smoke.gin'],
      gin_bindings=[f"quickstart_settings.pretrained_encoder = '{shipped}'",
                    'build_optimizer.learning_rate = 0.0'],
      train_steps=2)
  assert summary['settings']['pretrained_encoder'] == shipped
  # Trained at learning rate 0, the model's encoder weights are the shipped
  # ones (batch-norm statistics still move in training: not compared).
  model = quickstart_pictures.restore_for_inference(summary['model_dir'])
  stored = _shipped_values(
      shipped, lambda n: n.startswith('model/encoder/') and 'moving_' not in n)
  restored = np.concatenate([np.asarray(v).ravel()
                             for v in model.encoder.trainable_weights])
  assert np.sort(stored) == pytest.approx(np.sort(restored))
  # The decoder started from quickstart_video.gin's default, the shipped prior:
  # everything but the input conv (it also reads the past masks here) and the
  # cross-attention (none in the prior).
  prior = 'models/pretrained/quickstart_decoder_prior'
  assert summary['settings']['pretrained_decoder'] == prior
  stored = _shipped_values(
      prior, lambda n: n.startswith('model/decoder/') and
      not n.startswith('model/decoder/conv_in/'))
  from_prior = [v for v in model.decoder.trainable_weights
                if '/mask_decoder/conv_in/' not in v.path and
                'cross_attention' not in v.path]
  assert len(from_prior) < len(model.decoder.trainable_weights)
  restored = np.concatenate([np.asarray(v).ravel() for v in from_prior])
  assert np.sort(stored) == pytest.approx(np.sort(restored))


def test_video_data_is_reused_when_settings_match(tmp_path):
  settings = quickstart_video.quickstart_video_data(
      num_train_videos=1, num_val_videos=1, num_frames=3, num_shards=1)
  data_dir = str(tmp_path / 'data')
  assert quickstart_video.make_video_records(data_dir, settings)
  assert not quickstart_video.make_video_records(data_dir, settings)
  # Fewer frames: the videos are rewritten, with no stale frames left over.
  assert quickstart_video.make_video_records(data_dir, dict(settings,
                                                            num_frames=2))
  video_id = davis.read_split(data_dir, 'val')[0]
  frames = os.listdir(os.path.join(data_dir, quickstart_video.FRAMES_DIR,
                                   video_id))
  assert sorted(frames) == ['00000.jpg', '00001.jpg']
  assert os.path.exists(os.path.join(data_dir, 'tfrecords',
                                     'train.categories.json'))


def test_object_overlay_colours_objects_and_greys_void():
  frame = np.full((4, 4, 3), 100, np.uint8)
  objects = np.zeros((4, 4), np.uint8)
  objects[:2, :2] = 1
  objects[3, 3] = davis.VOID_LABEL
  picture = quickstart_video.object_overlay(frame, objects, alpha=0.5)
  # Object 1 is DAVIS red (128, 0, 0): half frame, half colour (top-left is
  # not on a boundary).
  np.testing.assert_array_equal(picture[0, 0], [114, 50, 50])
  np.testing.assert_array_equal(picture[3, 3] > 0, [True, True, True])
  assert tuple(picture[3, 3]) != (100, 100, 100)
  # Background away from every boundary is the frame itself.
  np.testing.assert_array_equal(picture[0, 3], [100, 100, 100])


def test_davis_summary_renames_the_evaluator_keys():
  metrics = {'J&F-Mean': 0.5, 'J-Mean': 0.4, 'J-Recall': 0.3, 'J-Decay': -0.1,
             'F-Mean': 0.6, 'F-Recall': 0.7, 'F-Decay': 0.2, 'frames': 9}
  assert quickstart_video.davis_summary(metrics) == {
      'j_and_f': 0.5, 'j_mean': 0.4, 'j_recall': 0.3, 'j_decay': -0.1,
      'f_mean': 0.6, 'f_recall': 0.7, 'f_decay': 0.2, 'frames': 9}


def test_video_flag_calls_the_video_quickstart(monkeypatch):
  # absl flags are global and other programs define flags of the same names
  # (tests/tools/test_dataset_tools.py): the module's flags are removed and
  # the module forgotten afterwards.
  quickstart_tool = importlib.import_module('tools.quickstart')
  calls = []
  monkeypatch.setattr(quickstart_tool.quickstart_video, 'run_video_quickstart',
                      lambda output_dir, **kwargs: calls.append(
                          (output_dir, kwargs)) or {'val': {}, 'train_steps': 3,
                                                    'seconds': {}})
  monkeypatch.setattr(quickstart_tool.quickstart, 'run_quickstart',
                      lambda *args, **kwargs: pytest.fail('image quickstart ran'))
  try:
    flags.FLAGS(['quickstart', '--video', '--train_steps=3'])
    quickstart_tool.main(['quickstart'])
  finally:
    flags.FLAGS.unparse_flags()
    for flag in flags.FLAGS.get_key_flags_for_module(quickstart_tool):
      delattr(flags.FLAGS, flag.name)
    sys.modules.pop('tools.quickstart')
  (output_dir, kwargs), = calls
  assert output_dir == quickstart_tool.DEFAULT_VIDEO_OUTPUT_DIR
  assert kwargs['train_steps'] == 3
  assert kwargs['gin_files'] == ['experiments/quickstart_video.gin']
