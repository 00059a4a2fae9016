"""Post-processing of generated masks (paper §4.1 "Inference", REFERENCE §6).

1. Each instance id takes the majority class of its pixels (every segment, thing
   or stuff, has its own id: REFERENCE §1), so a mask's class channel is made
   consistent per segment. By default void pixels do not vote; with
   `void_votes=True` they do (the authors' `majority_vote_postprocess`,
   tasks/panoptic_segmentation.py ~275-286 at eabd4e9: argmax over all classes)
   and a segment whose majority is void is dropped.
   With `stuff_class_ids` (`stuff_as_one_segment=True` in the evaluator, the
   quickstart pictures and serving), every stuff class then becomes one
   segment per image (`merge_stuff_segments`): the panoptic format has one
   segment per stuff class, and ids the decoder split it into would each be
   a false positive (the usual panoptic post-processing, e.g. Panoptic-DeepLab's
   stuff merging; issue 12).
2. Segments with fewer than `min_pixels` pixels are dropped (become void), by
   default counted at mask size (after the stuff merge). The authors count them at the original image
   size after the nearest-neighbour resize (their released eval value: 40):
   `MIN_PIXELS_AT = 'original'` runs steps 1-2 again after step 3
   (`majority_class_and_min_pixels` on the original-size map).
3. The mask is mapped back to the original image size with nearest neighbour,
   padding removed: `data.parsers.label_map_to_original`, the exact inverse of
   the parsers' geometry (one implementation for evaluation and serving).
Steps 1–2 are static-shape TF: they run inside the compiled sampler graph and
in the SavedModel. Step 3 changes the shape per image.
"""

import dataclasses
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

VOID = 0
# Where `min_pixels` counts a segment's pixels: in the generated mask, or in the
# mask mapped back to the original image (the authors' released code).
MIN_PIXELS_AT = ('mask', 'original')


def check_min_pixels_at(min_pixels_at: str) -> str:
  if min_pixels_at not in MIN_PIXELS_AT:
    raise ValueError(f'min_pixels_at={min_pixels_at!r} is not one of '
                     f'{list(MIN_PIXELS_AT)}.')
  return min_pixels_at


def check_stuff_as_one_segment(stuff_as_one_segment) -> bool:
  if not isinstance(stuff_as_one_segment, (bool, np.bool_)):
    raise ValueError(f'stuff_as_one_segment={stuff_as_one_segment!r} must be '
                     'True or False.')
  return bool(stuff_as_one_segment)


def stuff_class_ids(categories: Sequence[dict]) -> Tuple[int, ...]:
  """The contiguous class ids of the stuff classes (`isthing == 0`).

  Args:
    categories: the `categories.json` table (`class_id`, `isthing`, ...).

  Returns:
    Sorted tuple of `class_id`s.
  """
  return tuple(sorted(int(c['class_id']) for c in categories
                      if not int(c['isthing'])))


def _joint_histogram(rows: tf.Tensor, cols: tf.Tensor, num_rows: int,
                     num_cols: int) -> tf.Tensor:
  """Pixels per (image, row value, column value): one segment sum over combined keys.

  Args:
    rows, cols: int32 `[B, N]` values in `[0, num_rows)` / `[0, num_cols)`.

  Returns:
    float32 `[B, num_rows, num_cols]`.
  """
  batch = tf.shape(rows)[0]
  offsets = tf.range(batch)[:, tf.newaxis]
  keys = (offsets * num_rows + rows) * num_cols + cols
  histogram = tf.math.unsorted_segment_sum(
      tf.ones_like(keys, tf.float32), keys,
      num_segments=batch * num_rows * num_cols)
  return tf.reshape(histogram, [batch, num_rows, num_cols])


def merge_stuff_segments(label_map: tf.Tensor, stuff_class_ids: Sequence[int],
                         num_ids: int = 256,
                         num_classes: int = 256) -> tf.Tensor:
  """Makes all pixels of each stuff class one segment per image.

  Run after the majority class (every id then has one class, so the id chosen
  for a stuff class belongs to no other class): the pixels of stuff class `c`
  with a non-zero id all take the id of `c`'s largest segment in the image
  (ties to the smaller id). Thing classes and void are unchanged.

  Args:
    label_map: int `[B, h, w, 2]` (class, instance id), majority-voted.
    stuff_class_ids: class ids whose segments are merged.
    num_ids: exclusive bound of instance ids.
    num_classes: exclusive bound of class ids.

  Returns:
    int32 `[B, h, w, 2]`.
  """
  label_map = tf.cast(label_map, tf.int32)
  stuff = np.zeros([num_classes], bool)
  for class_id in stuff_class_ids:
    if not 0 < int(class_id) < num_classes:
      raise ValueError(f'stuff class id {class_id} is not in [1, {num_classes}).')
    stuff[int(class_id)] = True
  classes, ids = label_map[..., 0], label_map[..., 1]
  batch = tf.shape(ids)[0]
  flat_ids = tf.reshape(ids, [batch, -1])
  flat_classes = tf.reshape(classes, [batch, -1])
  # Pixels per (image, class, id), id 0 left out of the choice.
  histogram = _joint_histogram(flat_classes, flat_ids, num_classes, num_ids)
  histogram = tf.where((tf.range(num_ids) > 0)[tf.newaxis, tf.newaxis],
                       histogram, -1.0)
  largest = tf.argmax(histogram, axis=-1, output_type=tf.int32)  # [B, classes]
  merged = tf.gather(largest, flat_classes, batch_dims=1)
  is_stuff = tf.gather(tf.constant(stuff), flat_classes) & (flat_ids > 0)
  new_ids = tf.where(is_stuff, merged, flat_ids)
  out = tf.stack([flat_classes, new_ids], axis=-1)
  return tf.reshape(out, tf.shape(label_map))


def drop_small_segments(label_map: tf.Tensor, min_pixels: int,
                        num_ids: int = 256) -> tf.Tensor:
  """Segments (ids) with fewer than `min_pixels` pixels become (0, 0).

  Args:
    label_map: int `[B, h, w, 2]` whose ids each have one class.
    min_pixels: the threshold.
    num_ids: exclusive bound of instance ids.

  Returns:
    int32 `[B, h, w, 2]`; id 0 is void too.
  """
  label_map = tf.cast(label_map, tf.int32)
  ids = label_map[..., 1]
  batch = tf.shape(ids)[0]
  flat_ids = tf.reshape(ids, [batch, -1])
  keys = tf.range(batch)[:, tf.newaxis] * num_ids + flat_ids
  sizes = tf.math.unsorted_segment_sum(tf.ones_like(keys, tf.float32), keys,
                                       num_segments=batch * num_ids)
  keep = (tf.gather(sizes, keys) >= float(min_pixels)) & (flat_ids > 0)
  keep = tf.reshape(keep, tf.shape(ids))[..., tf.newaxis]
  return tf.where(keep, label_map, 0)


def majority_class_and_min_pixels(label_map: tf.Tensor, min_pixels: int = 0,
                                  num_ids: int = 256,
                                  num_classes: int = 256,
                                  num_valid_classes: int = 0,
                                  void_votes: bool = False,
                                  stuff_class_ids: Sequence[int] = ()
                                  ) -> tf.Tensor:
  """Gives each instance id its majority class and drops small segments.

  Args:
    label_map: int `[B, h, w, 2]` (class, instance id) as sampled.
    min_pixels: segments with fewer pixels become void (REFERENCE §6: 80 for
      COCO/Cityscapes, 10 for DAVIS). Void pixels (class 0) do not vote for
      the majority; a segment with no voting pixel is void.
    num_ids: exclusive bound of instance ids (2**instance bits).
    num_classes: exclusive bound of class ids (2**class bits).
    num_valid_classes: the dataset's class count C; predicted classes above C
      (possible with 8 class bits) do not vote. 0 = all valid.
    void_votes: void pixels vote too (argmax over void and the classes, ties
      to void), and a segment whose majority is void is dropped (the
      authors' released code). False: void pixels do not vote.
    stuff_class_ids: if not empty, after the majority class each of these
      classes becomes one segment per image (`merge_stuff_segments`), and
      `min_pixels` then counts the merged segments.

  Returns:
    int32 `[B, h, w, 2]`; pixels with instance id 0, with a void majority, or
    in a dropped segment are (0, 0).
  """
  if stuff_class_ids:
    voted = majority_class_and_min_pixels(
        label_map, 0, num_ids=num_ids, num_classes=num_classes,
        num_valid_classes=num_valid_classes, void_votes=void_votes)
    merged = merge_stuff_segments(voted, stuff_class_ids, num_ids=num_ids,
                                  num_classes=num_classes)
    return drop_small_segments(merged, min_pixels, num_ids=num_ids)
  label_map = tf.cast(label_map, tf.int32)
  classes, ids = label_map[..., 0], label_map[..., 1]
  batch = tf.shape(ids)[0]
  flat_ids = tf.reshape(ids, [batch, -1])
  flat_classes = tf.reshape(classes, [batch, -1])
  # Pixels of each class per (image, id).
  histogram = _joint_histogram(flat_ids, flat_classes, num_ids, num_classes)
  sizes = tf.reduce_sum(histogram, axis=-1)  # [B, num_ids]
  # Prefer any real class over void (an all-void segment stays void), unless
  # void votes like a class.
  votes = tf.range(num_classes) >= (0 if void_votes else 1)
  if num_valid_classes:
    votes &= tf.range(num_classes) <= num_valid_classes
  counted = tf.where(votes, histogram, 0.0)
  majority = tf.argmax(tf.where(votes, histogram, -1.0), axis=-1,
                       output_type=tf.int32)
  majority = tf.where(tf.reduce_sum(counted, -1) > 0, majority, VOID)
  keep = (sizes >= float(min_pixels)) & (tf.range(num_ids) > 0)[tf.newaxis]
  majority = tf.where(keep, majority, VOID)
  new_classes = tf.gather(majority, flat_ids, batch_dims=1)
  new_ids = tf.where(new_classes > VOID, flat_ids, VOID)
  out = tf.stack([new_classes, new_ids], axis=-1)
  return tf.reshape(out, tf.shape(label_map))


def postprocess_stage(label_map: tf.Tensor, stage: str, *, min_pixels: int,
                      min_pixels_at: str = 'mask', void_votes: bool = False,
                      num_ids: int = 256, num_classes: int = 256,
                      num_valid_classes: int = 0,
                      stuff_class_ids: Sequence[int] = ()) -> tf.Tensor:
  """Majority class, stuff merge, and the size filter where `min_pixels_at == stage`.

  Evaluation and serving call it twice: with `stage='mask'` on the generated
  `[B, h, w, 2]` masks (in the compiled sampler graph) and, when
  `min_pixels_at='original'`, with `stage='original'` on each mask mapped back
  to its original image size (`[1, H, W, 2]`), where the filter then counts
  original pixels as the authors' evaluation does. `stuff_class_ids` (empty:
  no merge) as in `majority_class_and_min_pixels`.
  """
  check_min_pixels_at(min_pixels_at)
  if stage == 'original' and min_pixels_at != 'original':
    return label_map
  return majority_class_and_min_pixels(
      label_map, min_pixels if stage == min_pixels_at else 0, num_ids=num_ids,
      num_classes=num_classes, num_valid_classes=num_valid_classes,
      void_votes=void_votes, stuff_class_ids=stuff_class_ids)


@dataclasses.dataclass(frozen=True)
class Postprocessor:
  """One model's post-processing settings, applied per stage (`postprocess_stage`).

  The evaluator, the serving module, the video segmenter and the quickstart's
  pictures each hold one (`for_model`) instead of repeating the arguments.
  Call it as `postprocessor(label_map, stage)` with `stage` 'mask' (the
  generated masks) or 'original' (a mask mapped back to its image size).
  """
  min_pixels: int
  min_pixels_at: str = 'mask'
  void_votes: bool = False
  num_ids: int = 256
  num_classes: int = 256
  num_valid_classes: int = 0
  stuff_class_ids: Tuple[int, ...] = ()

  def __post_init__(self):
    check_min_pixels_at(self.min_pixels_at)

  @classmethod
  def for_model(cls, n_bits: Sequence[int], categories: Sequence[dict], *,
                min_pixels: int, min_pixels_at: str = 'mask',
                void_votes: bool = False,
                stuff_as_one_segment: bool = False) -> 'Postprocessor':
    """Settings for a model with `n_bits` (class, instance) and a category table.

    Args:
      n_bits: the model's bits per group.
      categories: the `categories.json` table (sets the valid classes and,
        with `stuff_as_one_segment`, the stuff classes to merge).
      min_pixels, min_pixels_at, void_votes: as in `postprocess_stage`.
      stuff_as_one_segment: each stuff class one segment per image.
    """
    merge = check_stuff_as_one_segment(stuff_as_one_segment)
    return cls(min_pixels=int(min_pixels), min_pixels_at=min_pixels_at,
               void_votes=bool(void_votes), num_ids=2**n_bits[1],
               num_classes=2**n_bits[0], num_valid_classes=len(categories),
               stuff_class_ids=stuff_class_ids(categories) if merge else ())

  def __call__(self, label_map: tf.Tensor, stage: str = 'mask') -> tf.Tensor:
    return postprocess_stage(
        label_map, stage, min_pixels=self.min_pixels,
        min_pixels_at=self.min_pixels_at, void_votes=self.void_votes,
        num_ids=self.num_ids, num_classes=self.num_classes,
        num_valid_classes=self.num_valid_classes,
        stuff_class_ids=self.stuff_class_ids)
