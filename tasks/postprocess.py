"""Post-processing of generated masks (paper §4.1 "Inference", REFERENCE §6).

1. Each instance id takes the majority class of its pixels (every segment, thing
   or stuff, has its own id: REFERENCE §1), so a mask's class channel is made
   consistent per segment.
2. Segments with fewer than `min_pixels` pixels are dropped (become void).
3. The mask is mapped back to the original image size with nearest neighbour,
   padding removed: `data.parsers.label_map_to_original`, the exact inverse of
   the parsers' geometry (one implementation for evaluation and serving).
Steps 1–2 are static-shape TF: they run inside the compiled sampler graph and
in the SavedModel. Step 3 changes the shape per image.
"""

import tensorflow as tf

VOID = 0


def majority_class_and_min_pixels(label_map: tf.Tensor, min_pixels: int = 0,
                                  num_ids: int = 256,
                                  num_classes: int = 256,
                                  num_valid_classes: int = 0) -> tf.Tensor:
  """Gives each instance id its majority class and drops small segments.

  Args:
    label_map: int `[B, h, w, 2]` (class, instance id) as sampled.
    min_pixels: segments with fewer pixels become void (REFERENCE §6: 80 for
      COCO/Cityscapes, 10 for DAVIS). Void pixels (class 0) do not vote for
      the majority; a segment with no voting pixel is void.
    num_ids: exclusive bound of instance ids (2**instance bits).
    num_classes: exclusive bound of class ids (2**class bits).
    num_valid_classes: the dataset's class count C; predicted classes above C
      (possible with 8 class bits) do not vote, like void. 0 = all valid.

  Returns:
    int32 `[B, h, w, 2]`; pixels with instance id 0, with a void majority, or
    in a dropped segment are (0, 0).
  """
  label_map = tf.cast(label_map, tf.int32)
  classes, ids = label_map[..., 0], label_map[..., 1]
  batch = tf.shape(ids)[0]
  flat_ids = tf.reshape(ids, [batch, -1])
  flat_classes = tf.reshape(classes, [batch, -1])
  offsets = tf.range(batch)[:, tf.newaxis]
  # Histogram of classes per (image, id): one segment sum over combined keys.
  keys = (offsets * num_ids + flat_ids) * num_classes + flat_classes
  histogram = tf.math.unsorted_segment_sum(
      tf.ones_like(keys, tf.float32), keys,
      num_segments=batch * num_ids * num_classes)
  histogram = tf.reshape(histogram, [batch, num_ids, num_classes])
  sizes = tf.reduce_sum(histogram, axis=-1)  # [B, num_ids]
  # Prefer any real class over void; an all-void segment stays void.
  votes = tf.range(num_classes) > 0
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
