"""Tests for tasks/postprocess.py (REFERENCE §6 post-processing)."""

import numpy as np
import tensorflow as tf

from tasks import postprocess


def test_majority_class_per_instance_and_min_pixels():
  classes = np.array([[1, 1, 2, 3],
                      [1, 5, 5, 3],
                      [0, 0, 5, 7]])
  ids = np.array([[4, 4, 4, 9],
                  [4, 6, 6, 9],
                  [6, 6, 6, 2]])
  label_map = np.stack([classes, ids], -1)[None]
  out = postprocess.majority_class_and_min_pixels(label_map, min_pixels=2).numpy()[0]
  # id 4: classes 1,1,2,1 -> 1. id 6: 5,5,0,0,5 -> 5 (void never wins over a class).
  # id 9: 3,3 -> 3. id 2: one pixel < min_pixels -> void.
  np.testing.assert_array_equal(out[..., 0], [[1, 1, 1, 3], [1, 5, 5, 3], [5, 5, 5, 0]])
  np.testing.assert_array_equal(out[..., 1], [[4, 4, 4, 9], [4, 6, 6, 9], [6, 6, 6, 0]])


def test_instance_zero_and_all_void_segments_become_void():
  label_map = np.array([[[[3, 0], [0, 5]], [[0, 5], [2, 7]]]])
  out = postprocess.majority_class_and_min_pixels(label_map).numpy()[0]
  np.testing.assert_array_equal(out, [[[0, 0], [0, 0]], [[0, 0], [2, 7]]])


def test_same_under_xla():
  rng = np.random.default_rng(0)
  label_map = tf.constant(rng.integers(0, 8, size=(2, 16, 16, 2)), tf.int32)
  eager = postprocess.majority_class_and_min_pixels(label_map, 3)
  compiled = tf.function(postprocess.majority_class_and_min_pixels,
                         jit_compile=True)(label_map, 3)
  np.testing.assert_array_equal(eager, compiled)


def test_classes_outside_the_dataset_do_not_vote():
  label_map = np.array([[[[9, 3], [9, 3]], [[2, 3], [9, 4]]]])
  out = postprocess.majority_class_and_min_pixels(
      label_map, num_valid_classes=5).numpy()[0]
  # id 3: votes 9, 9 (invalid) and 2 -> 2. id 4: only an invalid class -> void.
  np.testing.assert_array_equal(out, [[[2, 3], [2, 3]], [[2, 3], [0, 0]]])
