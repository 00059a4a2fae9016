"""Streaming video inference and evaluation (issue 6): DAVIS J&F and KITTI-STEP STQ."""

import json
import os

import gin
import numpy as np
import psutil
import tensorflow as tf

from data import davis
from data import kitti_step
from data import records
from data import synthetic
from models import pix2seq_d
from tasks import config
from tasks import distribute
from tasks import train_lib
from tasks import video
from tasks import video_evaluator
from tasks.metrics import davis as davis_metric
from tests.data import test_kitti_step


def _tiny_video_model():
  config.import_configurables()
  config.parse_gin(['model/pix2seq_d_tiny.gin'],
                   ['build_model.num_past_frames = 2'], finalize=False)
  return pix2seq_d.build_model()


def test_streaming_is_traced_once_and_memory_flat_over_60_frames():
  model = _tiny_video_model()
  segmenter = video.StreamingSegmenter(model, (32, 32), first_frame_steps=3,
                                       later_frame_steps=1, jit_compile=False)
  rng = np.random.default_rng(0)
  frames = rng.uniform(size=(4, 64, 64, 3)).astype(np.float32)
  process = psutil.Process()
  rss = []
  for i in range(60):
    label_map = segmenter(frames[i % 4])
    assert label_map.shape == (32, 32, 2)
    if i in (10, 59):
      rss.append(process.memory_info().rss)
  assert segmenter._history.shape == (2, 1, 32, 32, 2)  # pylint: disable=protected-access
  # One trace for every frame (steps, td and seed are tensors).
  assert segmenter._frame_fn.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  assert rss[1] - rss[0] < 30 * 2**20, f'RSS grew {(rss[1] - rss[0]) / 2**20:.1f} MiB'


def test_past_predictions_feed_the_next_frame_in_offset_order():
  model = _tiny_video_model()
  segmenter = video.StreamingSegmenter(model, (32, 32), first_frame_steps=1,
                                       later_frame_steps=1, jit_compile=False)
  seen = []
  original = segmenter._frame_fn  # pylint: disable=protected-access

  def spy(image, past, steps, td, seed):
    seen.append((past.numpy().copy(), int(steps)))
    return original(image, past, steps, td, seed)

  segmenter._frame_fn = spy  # pylint: disable=protected-access
  outputs = [segmenter(np.zeros((64, 64, 3), np.float32)) for _ in range(3)]
  assert seen[0][1] == 1 and not seen[0][0].any()  # frame 0: no past
  # Frame 2 sees (frame 0, frame 1) for offsets (-2, -1).
  np.testing.assert_array_equal(seen[2][0][0, 0], outputs[0])
  np.testing.assert_array_equal(seen[2][0][0, 1], outputs[1])
  segmenter.reset()
  segmenter(np.zeros((64, 64, 3), np.float32))
  assert not seen[-1][0].any()


def _train_and_eval(model_dir, gin_file, bindings):
  config.import_configurables()
  config.parse_gin([gin_file], bindings + ['run_experiment.jit_compile = False',
                                           'build_video_evaluator.jit_compile = False'],
                   finalize=False)
  return train_lib.run_experiment(str(model_dir), 'train_and_eval',
                                  distribute.build_strategy('default'), argv=['t'])


def test_davis_tiny_train_and_streaming_eval(tmp_path):
  root = str(tmp_path / 'synthetic')
  synthetic.make_synthetic(root, num_train=0, num_val=0, video=True, num_videos=2,
                           num_val_videos=1, num_frames=6, seed=1)
  for split in ('train', 'val'):
    davis.convert(root, split, os.path.join(root, 'davis', split), num_shards=1)
  results = _train_and_eval(tmp_path / 'run', 'experiments/davis_tiny.gin', [
      f"TRAIN_FILE_PATTERN = '{root}/davis/train-*'",
      f"EVAL_FILE_PATTERN = '{root}/davis/val-*'",
      f"CATEGORIES_JSON = '{root}/davis/train.categories.json'"])
  metrics = results['eval']
  assert metrics['frames'] == 6
  for key in ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall',
              'F-Decay'):
    assert 0.0 <= metrics[key] <= 1.0 or key.endswith('Decay')
  step_dir = tmp_path / 'run' / 'eval' / 'step_4'
  videos = [d for d in os.listdir(step_dir) if (step_dir / d).is_dir()]
  assert len(videos) == 1
  assert len(os.listdir(step_dir / videos[0])) == 6
  assert json.loads((step_dir / 'metrics.json').read_text())['metric'] == 'davis'


def test_kitti_step_tiny_train_and_stq_eval(tmp_path):
  root = str(tmp_path / 'kitti')
  test_kitti_step._write_dataset(root, {'0000': 5, '0001': 4})  # pylint: disable=protected-access
  kitti_step.convert(root, 'val', os.path.join(root, 'records', 'val'), num_shards=1)
  gin.clear_config()
  results = _train_and_eval(tmp_path / 'run', 'experiments/kitti_step_tiny.gin', [
      f"TRAIN_FILE_PATTERN = '{root}/records/val-*'",
      f"EVAL_FILE_PATTERN = '{root}/records/val-*'",
      f"CATEGORIES_JSON = '{root}/records/val.categories.json'",
      'eval/VideoEvalParser.max_original_size = (16, 16)'])
  metrics = results['eval']
  assert metrics['frames'] == 9 and metrics['metric'] == 'stq'
  assert 0.0 <= metrics['STQ'] <= 1.0
  np.testing.assert_allclose(metrics['STQ'], np.sqrt(metrics['AQ'] * metrics['SQ']),
                             atol=1e-6)
  assert len(os.listdir(tmp_path / 'run' / 'eval' / 'step_4' / '0000')) == 5


def test_streaming_segmenter_uses_the_readout():
  from tests.tasks.test_evaluator import _SplitDecoder  # pylint: disable=g-import-not-at-top

  class VideoSplitDecoder(_SplitDecoder):
    num_past_frames = 2

    def past_bits_from_label_maps(self, past_label_maps):
      return tf.zeros(tf.concat([tf.shape(past_label_maps)[:1],
                                 tf.shape(past_label_maps)[2:4], [8]], 0))

  ids = {}
  for readout in ('threshold', 'argmax'):
    segmenter = video.StreamingSegmenter(
        VideoSplitDecoder(), (4, 4), first_frame_steps=2, later_frame_steps=1,
        min_pixels=0, jit_compile=False, readout=readout)
    frame = np.zeros((4, 4, 3), np.float32)
    ids[readout] = [set(np.unique(segmenter(frame)[..., 1])) for _ in range(2)]
  assert ids == {'threshold': [{3}, {3}], 'argmax': [{1}, {1}]}


def test_davis_streaming_score_leaves_void_out():
  """The video evaluator's ground truth keeps void as 255, which J&F leaves out."""
  # pylint: disable=protected-access
  evaluator = video_evaluator.VideoEvaluator.__new__(video_evaluator.VideoEvaluator)
  evaluator.metric = 'davis'
  evaluator.thing_classes = {1}
  evaluator.write_predictions = False
  gt = np.zeros((8, 8, 2), np.int64)
  gt[..., 0] = 2  # stuff
  gt[1:4, 1:4] = (1, 2)  # thing 1 (stored instance index + 1)
  gt[5:8, 5:8, 0] = records.VOID_CLASS_ID
  pred = np.zeros((8, 8, 2), np.int64)
  pred[1:4, 1:4] = (1, 7)
  pred[5:8, 5:8] = (1, 7)  # the same instance spills over the void region
  accumulator = davis_metric.DavisJF()
  evaluator._score_frame(accumulator, 'v', '00000', gt, pred, {}, None)
  np.testing.assert_array_equal(evaluator._davis_ground_truth(gt)[5:8, 5:8], 255)
  result = accumulator.result()
  assert result['num_objects'] == 1
  assert result['J-Mean'] == 1.0 and result['F-Mean'] == 1.0
