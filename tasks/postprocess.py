"""Post-processing of generated masks (paper §4.1 "Inference", REFERENCE §6).

1. Each instance id takes the majority class of its pixels (every segment, thing
   or stuff, has its own id: REFERENCE §1), so a mask's class channel is made
   consistent per segment.
2. Segments with fewer than `min_pixels` pixels are dropped (become void).
3. The mask is cropped to the image's unpadded area (from `image_info`) and
   resized to the original image size with nearest neighbour.
Steps 1–2 are static-shape TF (they run inside the compiled sampler graph and
in the SavedModel); step 3 changes the shape per image and runs on the host for
evaluation (`to_original_size`) or per image in the SavedModel
(`to_original_size_tf`).
"""

import numpy as np
import tensorflow as tf

VOID = 0


def majority_class_and_min_pixels(label_map: tf.Tensor, min_pixels: int = 0,
                                  num_ids: int = 256,
                                  num_classes: int = 256) -> tf.Tensor:
  """Gives each instance id its majority class and drops small segments.

  Args:
    label_map: int `[B, h, w, 2]` (class, instance id) as sampled.
    min_pixels: segments with fewer pixels become void (REFERENCE §6: 80 for
      COCO/Cityscapes, 10 for DAVIS). Void pixels (class 0) are not counted
      for the majority unless the segment is entirely void.
    num_ids: exclusive bound of instance ids (2**instance bits).
    num_classes: exclusive bound of class ids (2**class bits).

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
  non_void = tf.concat([tf.fill([batch, num_ids, 1], -1.0), histogram[..., 1:]],
                       axis=-1)
  majority = tf.argmax(non_void, axis=-1, output_type=tf.int32)
  majority = tf.where(tf.reduce_sum(histogram[..., 1:], -1) > 0, majority, VOID)
  keep = (sizes >= float(min_pixels)) & (tf.range(num_ids) > 0)[tf.newaxis]
  majority = tf.where(keep, majority, VOID)
  new_classes = tf.gather(majority, flat_ids, batch_dims=1)
  new_ids = tf.where(new_classes > VOID, flat_ids, VOID)
  out = tf.stack([new_classes, new_ids], axis=-1)
  return tf.reshape(out, tf.shape(label_map))


def valid_mask_region(image_info: np.ndarray, image_size, mask_size):
  """The `(h, w)` of the mask that covers the unpadded image (rounded up)."""
  scaled_h, scaled_w = image_info[1]
  return (int(np.ceil(scaled_h * mask_size[0] / image_size[0] - 1e-6)),
          int(np.ceil(scaled_w * mask_size[1] / image_size[1] - 1e-6)))


def to_original_size(label_map: np.ndarray, image_info: np.ndarray,
                     image_size, mask_size) -> np.ndarray:
  """Undoes resize + pad for one image with nearest neighbour (numpy, host side).

  Args:
    label_map: int `[h, w, C]` at mask size.
    image_info: float `[4, 2]` (original size, scaled size, scale, offset) as
      produced by the eval parser (offset is 0 for eval: resize + pad only).
    image_size: `(H, W)` the model's input size.
    mask_size: `(h, w)`.

  Returns:
    int32 `[orig_h, orig_w, C]`.
  """
  orig_h, orig_w = (int(round(v)) for v in image_info[0])
  scaled_h, scaled_w = image_info[1]
  # Centre of each original pixel, mapped into mask coordinates.
  ys = (np.arange(orig_h) + 0.5) * (scaled_h / orig_h) * (mask_size[0] / image_size[0])
  xs = (np.arange(orig_w) + 0.5) * (scaled_w / orig_w) * (mask_size[1] / image_size[1])
  ys = np.clip(np.floor(ys).astype(np.int64), 0, label_map.shape[0] - 1)
  xs = np.clip(np.floor(xs).astype(np.int64), 0, label_map.shape[1] - 1)
  return np.asarray(label_map)[ys[:, None], xs[None, :]].astype(np.int32)


def to_original_size_tf(label_map: tf.Tensor, image_info: tf.Tensor,
                        image_size, mask_size) -> tf.Tensor:
  """The same as `to_original_size` in TF for one image (used by the SavedModel)."""
  image_info = tf.cast(image_info, tf.float32)
  orig = tf.cast(tf.round(image_info[0]), tf.int32)
  scaled = image_info[1]
  ratio_h = scaled[0] / tf.cast(orig[0], tf.float32) * (mask_size[0] / image_size[0])
  ratio_w = scaled[1] / tf.cast(orig[1], tf.float32) * (mask_size[1] / image_size[1])
  ys = (tf.range(orig[0], dtype=tf.float32) + 0.5) * ratio_h
  xs = (tf.range(orig[1], dtype=tf.float32) + 0.5) * ratio_w
  ys = tf.clip_by_value(tf.cast(tf.floor(ys), tf.int32), 0, tf.shape(label_map)[0] - 1)
  xs = tf.clip_by_value(tf.cast(tf.floor(xs), tf.int32), 0, tf.shape(label_map)[1] - 1)
  return tf.gather(tf.gather(label_map, ys, axis=0), xs, axis=1)
