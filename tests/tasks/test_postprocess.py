"""Tests for tasks/postprocess.py (REFERENCE §6 post-processing)."""

import numpy as np
import pytest
import tensorflow as tf

from data import parsers
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


def _authors_majority_vote(classes, ids, min_pixels):
  """The authors' majority_vote_postprocess, re-derived in numpy: argmax of
  the class counts per id over every class (void included, ties to the lower
  class), void below min_pixels, and a void class voids the id."""
  assignment = np.zeros(ids.max() + 1, np.int64)
  for i in np.unique(ids):
    counts = np.bincount(classes[ids == i], minlength=classes.max() + 1)
    assignment[i] = np.argmax(counts) if counts.sum() >= min_pixels else 0
  new_classes = assignment[ids]
  return new_classes, np.where(new_classes == 0, 0, ids)


def test_void_votes_matches_the_authors_majority_vote():
  rng = np.random.default_rng(4)
  classes = rng.choice([0, 0, 1, 2, 3], size=(24, 24))
  ids = rng.integers(1, 6, size=(24, 24))
  label_map = np.stack([classes, ids], -1)[None]
  out = postprocess.majority_class_and_min_pixels(
      label_map, min_pixels=110, num_ids=8, num_classes=8, void_votes=True
  ).numpy()[0]
  expected_classes, expected_ids = _authors_majority_vote(classes, ids, 110)
  np.testing.assert_array_equal(out[..., 0], expected_classes)
  np.testing.assert_array_equal(out[..., 1], expected_ids)
  # Here void is the majority somewhere: the default (void does not vote) differs.
  assert np.any(expected_classes == 0)
  default = postprocess.majority_class_and_min_pixels(
      label_map, min_pixels=110, num_ids=8, num_classes=8).numpy()[0]
  assert not np.array_equal(default, out)


def test_void_majority_and_ties_drop_the_segment():
  # id 6: void 3, class 5 two pixels. id 4: void 1, class 2 one pixel (a tie).
  label_map = np.array([[[[0, 6], [0, 6], [0, 6], [5, 6], [5, 6]],
                         [[0, 4], [2, 4], [1, 9], [1, 9], [0, 9]]]])
  voted = postprocess.majority_class_and_min_pixels(label_map, void_votes=True)
  np.testing.assert_array_equal(voted.numpy()[0, ..., 1],
                                [[0, 0, 0, 0, 0], [0, 0, 9, 9, 9]])
  default = postprocess.majority_class_and_min_pixels(label_map)
  np.testing.assert_array_equal(default.numpy()[0, ..., 0],
                                [[5, 5, 5, 5, 5], [2, 2, 1, 1, 1]])


def test_min_pixels_at_original_counts_original_pixels():
  # A 3-pixel segment in a 16x16 mask of a 64x64 model input; the original
  # image was 128x128 (scale 0.5): the segment covers 3 * 8 * 8 = 192 pixels.
  label_map = np.zeros([1, 16, 16, 2], np.int32)
  label_map[0, 0, :, :] = [1, 3]
  label_map[0, 5, 5:8] = [2, 7]
  image_info = tf.constant([[128, 128], [64, 64], [0.5, 0.5], [0, 0]], tf.float32)
  kwargs = dict(min_pixels=40, num_ids=8, num_classes=8)
  at_mask = postprocess.postprocess_stage(label_map, 'mask', **kwargs)
  assert not np.any(at_mask.numpy()[..., 1] == 7)  # 3 < 40 mask pixels.
  first = postprocess.postprocess_stage(label_map, 'mask', min_pixels_at='original',
                                        **kwargs)
  assert np.sum(first.numpy()[..., 1] == 7) == 3  # Kept for the second stage.
  original = parsers.label_map_to_original(first[0], image_info, (64, 64))
  assert original.shape == (128, 128, 2)
  final = postprocess.postprocess_stage(original[tf.newaxis], 'original',
                                        min_pixels_at='original', **kwargs)
  assert np.sum(final.numpy()[..., 1] == 7) == 192
  # Above the original-size count it is dropped there too.
  dropped = postprocess.postprocess_stage(
      original[tf.newaxis], 'original', min_pixels_at='original',
      min_pixels=193, num_ids=8, num_classes=8)
  assert not np.any(dropped.numpy()[..., 1] == 7)
  # With the default ('mask'), the second stage changes nothing.
  np.testing.assert_array_equal(
      postprocess.postprocess_stage(original[tf.newaxis], 'original', **kwargs),
      original[tf.newaxis])


def test_serving_preprocessing_takes_the_eval_parsers_pad_and_antialias():
  from tasks import export  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  image = tf.constant(rng.integers(0, 256, size=(40, 80, 3)), tf.uint8)
  served, info = export._preprocess_one(image, (32, 32), 0.3, True)
  expected = tf.image.resize(tf.cast(image, tf.float32) / 255.0, (16, 32),
                             antialias=True)
  np.testing.assert_allclose(served.numpy()[:16], expected, atol=1e-5)
  np.testing.assert_allclose(served.numpy()[16:], 0.3)
  np.testing.assert_allclose(info.numpy()[1], [16, 32])


def test_stuff_as_one_segment_merges_each_stuff_class_per_image():
  # Classes 1 (thing), 2 and 3 (stuff). Stuff 2 was split into ids 5 (3 px)
  # and 6 (2 px); stuff 3 into ids 7 and 8 (ties: the smaller id wins);
  # thing 1 keeps its two instances 1 and 2.
  classes = np.array([[2, 2, 2, 1, 1],
                      [2, 2, 3, 3, 1],
                      [1, 1, 3, 3, 0]])
  ids = np.array([[5, 5, 5, 1, 1],
                  [6, 6, 7, 8, 1],
                  [2, 2, 7, 8, 0]])
  label_map = np.stack([classes, ids], -1)[None]
  out = postprocess.majority_class_and_min_pixels(
      label_map, num_ids=16, num_classes=8, stuff_class_ids=(2, 3)).numpy()[0]
  np.testing.assert_array_equal(out[..., 0], classes)
  np.testing.assert_array_equal(out[..., 1], [[5, 5, 5, 1, 1],
                                              [5, 5, 7, 7, 1],
                                              [2, 2, 7, 7, 0]])
  # The default keeps the decoder's ids.
  default = postprocess.majority_class_and_min_pixels(
      label_map, num_ids=16, num_classes=8).numpy()[0]
  np.testing.assert_array_equal(default[..., 1], ids)


def test_stuff_merge_follows_the_majority_class_and_precedes_min_pixels():
  # id 4 is mostly stuff 2 (one pixel says thing 1): majority -> stuff 2, then
  # merged with id 3 (stuff 2). Each part alone (3 px) is under min_pixels 4,
  # merged (6 px) it is kept. Thing id 9 (2 px) is dropped.
  classes = np.array([[2, 2, 2, 1],
                      [2, 2, 1, 1]])
  ids = np.array([[3, 3, 3, 9],
                  [4, 4, 4, 9]])
  label_map = np.stack([classes, ids], -1)[None]
  out = postprocess.majority_class_and_min_pixels(
      label_map, min_pixels=4, num_ids=16, num_classes=8,
      stuff_class_ids=(2,)).numpy()[0]
  np.testing.assert_array_equal(out[..., 0], [[2, 2, 2, 0], [2, 2, 2, 0]])
  np.testing.assert_array_equal(out[..., 1], [[3, 3, 3, 0], [3, 3, 3, 0]])
  without = postprocess.majority_class_and_min_pixels(
      label_map, min_pixels=4, num_ids=16, num_classes=8).numpy()[0]
  assert not np.any(without[..., 1])


def test_stuff_merge_is_per_image_and_same_under_xla():
  rng = np.random.default_rng(2)
  label_map = tf.constant(rng.integers(0, 8, size=(3, 16, 16, 2)), tf.int32)
  kwargs = dict(min_pixels=3, num_ids=8, num_classes=8, stuff_class_ids=(4, 5))
  eager = postprocess.majority_class_and_min_pixels(label_map, **kwargs)
  compiled = tf.function(
      lambda x: postprocess.majority_class_and_min_pixels(x, **kwargs),
      jit_compile=True)(label_map)
  np.testing.assert_array_equal(eager, compiled)
  for image in eager.numpy():
    for stuff in (4, 5):
      assert len(np.unique(image[..., 1][image[..., 0] == stuff])) <= 1
    # Every id still has one class.
    for i in np.unique(image[..., 1]):
      assert len(np.unique(image[..., 0][image[..., 1] == i])) == 1


def test_stuff_class_ids_from_categories_and_bad_option():
  categories = [dict(class_id=1, isthing=1), dict(class_id=2, isthing=0),
                dict(class_id=3, isthing=0)]
  assert postprocess.stuff_class_ids(categories) == (2, 3)
  assert postprocess.check_stuff_as_one_segment(True) is True
  try:
    postprocess.check_stuff_as_one_segment('yes')
  except ValueError as e:
    assert 'stuff_as_one_segment' in str(e)
  else:
    raise AssertionError('a string was accepted')


def test_postprocessor_for_model_holds_the_settings_of_postprocess_stage():
  categories = [dict(id=1, class_id=1, isthing=1), dict(id=101, class_id=2, isthing=0),
                dict(id=102, class_id=3, isthing=0)]
  post = postprocess.Postprocessor.for_model(
      (3, 4), categories, min_pixels=2, stuff_as_one_segment=True)
  assert (post.num_classes, post.num_ids, post.num_valid_classes,
          post.stuff_class_ids) == (8, 16, 3, (2, 3))
  classes = np.array([[2, 2, 2, 1, 1], [2, 2, 3, 3, 1], [1, 1, 3, 3, 0]])
  ids = np.array([[5, 5, 5, 1, 1], [6, 6, 7, 8, 1], [2, 2, 7, 8, 9]])
  label_map = np.stack([classes, ids], -1)[None]
  expected = postprocess.postprocess_stage(
      label_map, 'mask', min_pixels=2, num_ids=16, num_classes=8,
      num_valid_classes=3, stuff_class_ids=(2, 3))
  np.testing.assert_array_equal(post(label_map, 'mask'), expected)
  # 'original' is a no-op unless min_pixels counts there.
  np.testing.assert_array_equal(post(label_map, 'original'), label_map)
  no_merge = postprocess.Postprocessor.for_model((3, 4), categories, min_pixels=0)
  assert no_merge.stuff_class_ids == ()
  with pytest.raises(ValueError, match='min_pixels_at'):
    postprocess.Postprocessor.for_model((3, 4), categories, min_pixels=0,
                                        min_pixels_at='image')
  with pytest.raises(ValueError, match='stuff_as_one_segment'):
    postprocess.Postprocessor.for_model((3, 4), categories, min_pixels=0,
                                        stuff_as_one_segment='yes')
