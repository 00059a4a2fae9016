"""Decoded records to `(inputs, labels)`: augmentation and label preparation.

The parser half of TF Model Garden's decoder -> parser seam. A parser takes the
dict of `data/decoders.py` and returns

  inputs = {'images': float32 [H, W, 3] in [0, 1]}      (the model normalises)
  labels = {'label_map': int32 [h, w, 2] (class, instance), 'image_info': ...}

`image_info` float32 `[4, 2]` follows TF Model Garden: rows are
`[original_h, original_w]`, `[scaled_h, scaled_w]` (the resized image before the
crop), `[y_scale, x_scale]` (scaled / original) and `[y_offset, x_offset]` (the
crop's top-left corner in the scaled image). The resized, cropped image sits at
the top-left of the output and the rest is padding (black in `images`, void in
`label_map`). `label_map_to_original` uses `image_info` to map a mask back to the
original size.

Training parsers give every segment a fresh random id drawn without repetition
from `[1, K]` each time an example is sampled (REFERENCE §1); evaluation parsers
keep the stored segment indices and add the original-size ground truth.

Randomness is stateless: a parser call takes a `seed` int `[2]` (the pipeline
draws one per example from `tf.data.Dataset.random`), so the same seed gives
the same output eagerly and inside `tf.data.Dataset.map`.

Why not `official.vision.ops.preprocess_ops` directly: its
`resize_and_crop_image` draws the jitter scale and crop offset with stateful
`tf.random.uniform` (not reproducible per example, differs eagerly and in
`tf.data`), and its `resize_and_crop_masks` recomputes the scaled size as
`int(image_scale * size)`, which truncates `round(size * scale) / size * size`
to one pixel less than the image in about 13% of (size, scale) pairs (measured
on COCO-like sizes), misaligning masks and image. `compute_image_info` below
keeps its arithmetic (scaled size `round(original * min(target / original))`,
target `round(scale * output_size)`, offset `floor((scaled - output)^+ * u)`),
and image and masks are sampled through one coordinate mapping. Its row 1 is
the scaled size, as its docstring says (its code stores the desired size).

The geometry samples only the output window (`resize_and_crop_image`,
`masks_to_label_map`) with the arithmetic of `tf.image.resize` (half-pixel
centres; tests compare against it) instead of resizing the whole image and
cropping: at scale jitter 3 the whole scaled image is 9 times the window, and
this was the input pipeline's largest cost.
"""

from typing import Dict, Optional, Sequence, Tuple

import gin
import tensorflow as tf

from data import decoders

Size = Tuple[int, int]


# ----------------------------------------------------------------------------
# Geometry.


def compute_image_info(original_size: tf.Tensor,
                       output_size: Size,
                       scale: tf.Tensor = 1.0,
                       offset_fraction: Optional[tf.Tensor] = None
                       ) -> tf.Tensor:
  """Scale-jitter geometry in TF Model Garden's `image_info` layout.

  The image keeps its aspect ratio and is scaled so that it just fits in
  `scale * output_size`; where the scaled image is larger than `output_size`,
  the crop starts at `offset_fraction` of the slack.

  Args:
    original_size: int `[2]`, (height, width) of the original image.
    output_size: (height, width) of the model input.
    scale: float32 scalar; 1.0 fits the image into `output_size` (evaluation),
      a random value in `scale_range` is scale jittering (REFERENCE §5).
    offset_fraction: float32 `[2]` in `[0, 1)`, where to crop; None = (0, 0).

  Returns:
    float32 `[4, 2]`: original size, scaled size, scale (scaled / original),
    crop offset.
  """
  original = tf.cast(original_size, tf.float32)
  output = tf.constant(output_size, tf.float32)
  target = tf.round(tf.cast(scale, tf.float32) * output)
  factor = tf.minimum(target[0] / original[0], target[1] / original[1])
  scaled = tf.maximum(tf.round(original * factor), 1.0)
  if offset_fraction is None:
    offset = tf.zeros([2], tf.float32)
  else:
    offset = tf.floor(tf.maximum(scaled - output, 0.0) * offset_fraction)
  return tf.stack([original, scaled, scaled / original, offset])


def _window_length(image_info, axis, output_length):
  """Pixels of the output window that the scaled image covers (the rest is padding)."""
  scaled, offset = image_info[1, axis], image_info[3, axis]
  return tf.cast(tf.minimum(scaled - offset, output_length), tf.int32)


def _source_centres(image_info, axis, positions):
  """Where the centres of scaled-image pixels `positions` fall in the original.

  Half-pixel centres, as `tf.image.resize`: in continuous coordinates where
  pixel `i` spans `[i, i + 1)`, the centre of scaled pixel `p` lies at
  `(p + 0.5) * original / scaled` in the original. Nearest neighbour reads
  original pixel `floor` of that; bilinear interpolates between the pixel
  centres around it (coordinate minus 0.5 in pixel-centre units).
  """
  ratio = image_info[0, axis] / image_info[1, axis]
  return (tf.cast(positions, tf.float32) + 0.5) * ratio


def _bilinear_along(x, coordinates, axis):
  """Samples `x` at float pixel-centre `coordinates` along `axis`, as float32.

  Linear interpolation with edge clamping, as `tf.image.resize`'s bilinear.
  """
  length = tf.shape(x)[axis]
  lower = tf.floor(coordinates)
  fraction = coordinates - lower
  lower = tf.cast(lower, tf.int32)
  below = tf.gather(x, tf.clip_by_value(lower, 0, length - 1), axis=axis)
  above = tf.gather(x, tf.clip_by_value(lower + 1, 0, length - 1), axis=axis)
  below, above = tf.cast(below, tf.float32), tf.cast(above, tf.float32)
  shape = [1] * x.shape.rank
  shape[axis] = -1
  return below + (above - below) * tf.reshape(fraction, shape)


def _mirror(indices_or_coordinates, length, flip):
  """Reflects column positions when `flip` (a horizontal flip of the original)."""
  if flip is None:
    return indices_or_coordinates
  reflected = tf.cast(length - 1, indices_or_coordinates.dtype) - (
      indices_or_coordinates)
  return tf.where(flip, reflected, indices_or_coordinates)


def resize_and_crop_image(image: tf.Tensor, image_info: tf.Tensor,
                          output_size: Size,
                          flip: Optional[tf.Tensor] = None,
                          antialias: bool = False) -> tf.Tensor:
  """The output window of the image scaled as `image_info` says (bilinear).

  Equal to `tf.image.resize(image, scaled_size)` (bilinear, half-pixel
  centres, no antialiasing) cropped at the offset, but computes only the
  window's pixels (at scale jitter 3 the scaled image is 9 windows).

  Args:
    image: uint8 or float32 `[H, W, C]`.
    image_info: float32 `[4, 2]` from `compute_image_info`.
    output_size: (height, width) of the window.
    flip: optional bool scalar: mirror the original left-right first.
    antialias: resize the whole image with `tf.image.resize(..., antialias=
      True)` (the authors' transforms; differs from plain bilinear where the
      image shrinks) and crop the window; costs the whole scaled image.

  Returns:
    float32 `[h', w', C]` (uint8 input is scaled to [0, 1]),
    `h' = min(scaled_h - y_offset, output_h)`, likewise `w'`; `pad_to_size`
    adds the padding.
  """
  rows = tf.range(_window_length(image_info, 0, output_size[0]))
  cols = tf.range(_window_length(image_info, 1, output_size[1]))
  offset = tf.cast(image_info[3], tf.int32)
  if antialias:
    full = tf.cast(image, tf.float32)
    if image.dtype == tf.uint8:
      full = full / 255.0
    if flip is not None:
      full = tf.where(flip, tf.reverse(full, [1]), full)
    full = tf.image.resize(full, tf.cast(image_info[1], tf.int32), 'bilinear',
                           antialias=True)
    return full[offset[0]:offset[0] + tf.size(rows),
                offset[1]:offset[1] + tf.size(cols)]
  row_coordinates = _source_centres(image_info, 0, rows + offset[0]) - 0.5
  col_coordinates = _mirror(
      _source_centres(image_info, 1, cols + offset[1]) - 0.5,
      tf.shape(image)[1], flip)
  window = _bilinear_along(image, row_coordinates, axis=0)
  window = _bilinear_along(window, col_coordinates, axis=1)
  if image.dtype == tf.uint8:
    window = window / 255.0
  return window


def pad_to_size(x: tf.Tensor, output_size: Size, value: float = 0.0) -> tf.Tensor:
  """Pads `[..., h, w, C]` at the bottom and right to `output_size` with `value`."""
  if not value:
    return tf.image.pad_to_bounding_box(x, 0, 0, output_size[0], output_size[1])
  value = tf.cast(value, x.dtype)
  return tf.image.pad_to_bounding_box(
      x - value, 0, 0, output_size[0], output_size[1]) + value


def masks_to_label_map(category_mask: tf.Tensor, instance_mask: tf.Tensor,
                       image_info: tf.Tensor, image_size: Size,
                       mask_size: Size,
                       flip: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Original-size masks to the label map under the image's geometry (nearest).

  Label pixel `m` looks at input pixel `q = floor((m + 0.5) * image / mask)`
  (nearest neighbour from the model input to the mask size), which is pixel
  `q + offset` of the scaled image, which is original pixel
  `floor((q + offset + 0.5) * original / scaled)`; where `q` is padding the
  label is void. This is exactly `tf.image.resize(..., 'nearest')` to the
  scaled size, crop, pad, then `tf.image.resize(..., 'nearest')` to
  `mask_size`, computed at mask size only.

  Args:
    category_mask: int32 `[H, W]` or `[N, H, W]` (frames share the geometry).
    instance_mask: int32, same shape: segment indices.
    image_info: float32 `[4, 2]`.
    image_size: the model input size the geometry refers to.
    mask_size: the label map size.
    flip: optional bool scalar: mirror the originals left-right first.

  Returns:
    int32 `[h, w, 2]` or `[N, h, w, 2]` (class, segment index),
    `(h, w) = mask_size`; padding is void.
  """
  offset = tf.cast(image_info[3], tf.int32)
  sources, inside = [], []
  for axis in (0, 1):
    ratio = image_size[axis] / mask_size[axis]
    label_positions = tf.range(mask_size[axis], dtype=tf.float32)
    window = tf.cast(tf.floor((label_positions + 0.5) * ratio), tf.int32)
    inside.append(window < _window_length(image_info, axis, image_size[axis]))
    source = tf.floor(_source_centres(image_info, axis, window + offset[axis]))
    length = tf.shape(category_mask)[axis - 2]
    source = tf.clip_by_value(tf.cast(source, tf.int32), 0, length - 1)
    sources.append(_mirror(source, length, flip) if axis == 1 else source)
  inside = tf.cast(tf.logical_and(inside[0][:, tf.newaxis],
                                  inside[1][tf.newaxis, :]), tf.int32)

  def sample(mask):
    mask = tf.gather(mask, sources[0], axis=-2)
    return tf.gather(mask, sources[1], axis=-1) * inside

  return tf.stack([sample(category_mask), sample(instance_mask)], axis=-1)


def label_map_to_original(label_map: tf.Tensor, image_info: tf.Tensor,
                          image_size: Size) -> tf.Tensor:
  """Maps a label map back to the original image (nearest neighbour; REFERENCE §6).

  Each original pixel centre `(y + 0.5)` lands at `(y + 0.5) * scale - offset`
  in the model input and at that times `mask / image` in the label map; the
  pixel takes the label there. This inverts the geometry of the parsers.

  Args:
    label_map: `[h, w, C]`, any dtype, at mask size (`h, w` static).
    image_info: float32 `[4, 2]` of the example.
    image_size: the model input size (height, width) the parser used.

  Returns:
    `[original_h, original_w, C]`, same dtype.
  """
  mask_h, mask_w = label_map.shape[0], label_map.shape[1]
  original = tf.cast(image_info[0], tf.int32)
  scaled, scale, offset = image_info[1], image_info[2], image_info[3]

  def source_indices(length, axis, mask_length):
    ratio = mask_length / image_size[axis]
    centres = tf.cast(tf.range(length), tf.float32) + 0.5
    in_image = centres * scale[axis] - offset[axis]
    in_mask = tf.cast(tf.floor(in_image * ratio), tf.int32)
    # Label pixel j was sampled (nearest, half-pixel centres) from input pixel
    # floor((j + 0.5) / ratio); the last j whose sample is image, not padding:
    valid = tf.minimum(scaled[axis] - offset[axis], image_size[axis])
    last = tf.cast(tf.math.ceil(valid * ratio - 0.5), tf.int32) - 1
    last = tf.clip_by_value(last, 0, mask_length - 1)
    return tf.clip_by_value(in_mask, 0, last)

  rows = source_indices(original[0], 0, mask_h)
  cols = source_indices(original[1], 1, mask_w)
  return tf.gather(tf.gather(label_map, rows, axis=0), cols, axis=1)


# ----------------------------------------------------------------------------
# Colour.


def color_jitter(image: tf.Tensor, strength: float, seed: tf.Tensor
                 ) -> tf.Tensor:
  """SimCLR-v2 colour jitter as in the released code's `random_color_jitter`.

  With probability 0.8: brightness (multiplicative, ±0.8 s), contrast and
  saturation (±0.8 s), hue (±0.2 s, at most 0.5) in random order, clipping to
  [0, 1] after each; then grayscale with probability 0.2. `s = strength`;
  REFERENCE §5 uses 1.0 for COCO stage 1.

  Args:
    image: float32 `[h, w, 3]` in [0, 1].
    strength: s > 0.
    seed: int `[2]` stateless seed.

  Returns:
    float32 `[h, w, 3]` in [0, 1].
  """
  seeds = tf.random.experimental.stateless_split(seed, 7)
  amount = 0.8 * strength
  hue = min(0.2 * strength, 0.5)

  def brightness(x):
    factor = tf.random.stateless_uniform(
        [], seed=seeds[0], minval=max(1.0 - amount, 0.0), maxval=1.0 + amount)
    return x * factor

  def contrast(x):
    return tf.image.stateless_random_contrast(
        x, max(1.0 - amount, 0.0), 1.0 + amount, seed=seeds[1])

  def saturation(x):
    return tf.image.stateless_random_saturation(
        x, max(1.0 - amount, 0.0), 1.0 + amount, seed=seeds[2])

  def hue_shift(x):
    return tf.image.stateless_random_hue(x, hue, seed=seeds[3])

  def jitter(x):
    order = tf.random.experimental.stateless_shuffle(tf.range(4), seed=seeds[4])
    for i in range(4):
      x = tf.switch_case(order[i], [
          lambda x=x: brightness(x),
          lambda x=x: contrast(x),
          lambda x=x: saturation(x),
          lambda x=x: hue_shift(x),
      ])
      x = tf.clip_by_value(x, 0.0, 1.0)
    return x

  def grayscale(x):
    return tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3])

  apply_jitter = tf.random.stateless_uniform([], seed=seeds[5]) < 0.8
  image = tf.cond(apply_jitter, lambda: jitter(image), lambda: image)
  apply_gray = tf.random.stateless_uniform([], seed=seeds[6]) < 0.2
  image = tf.cond(apply_gray, lambda: grayscale(image), lambda: image)
  return tf.ensure_shape(image, [None, None, 3])


# ----------------------------------------------------------------------------
# Labels.


def assign_random_ids(label_map: tf.Tensor, max_instances: int,
                      seed: tf.Tensor,
                      segment_is_crowd: Optional[tf.Tensor] = None
                      ) -> tf.Tensor:
  """Gives every segment a fresh random id from `[1, K]` (REFERENCE §1).

  One permutation `perm` of `1..K` is drawn; the segments present in
  `label_map`, in increasing index order, get `perm[0], perm[1], ...` — a
  bijection onto distinct ids, the same for every frame when `label_map`
  holds a clip. Segments past the K-th present one become void (class 0,
  id 0), as do crowd segments when `segment_is_crowd` is given. Void pixels
  (index 0) keep id 0 and their class.

  Args:
    label_map: int32 `[..., 2]` (class, stored segment index).
    max_instances: K.
    seed: int `[2]` stateless seed.
    segment_is_crowd: optional int `[N]`, 1 where segment index i + 1 is a
      crowd region; those become void.

  Returns:
    int32 `[..., 2]` (class, random id).
  """
  classes, index = label_map[..., 0], label_map[..., 1]
  table_size = tf.reduce_max(index) + 1
  if segment_is_crowd is not None:
    table_size = tf.maximum(table_size, tf.size(segment_is_crowd) + 1)
  counts = tf.math.bincount(tf.reshape(index, [-1]), minlength=table_size,
                            maxlength=table_size)
  slots = tf.range(table_size)
  present = tf.logical_and(counts > 0, slots > 0)
  if segment_is_crowd is not None:
    crowd = tf.pad(tf.cast(segment_is_crowd, tf.int32) > 0,
                   [[1, table_size - 1 - tf.size(segment_is_crowd)]])
    present = tf.logical_and(present, tf.logical_not(crowd))
  rank = tf.cumsum(tf.cast(present, tf.int32)) * tf.cast(present, tf.int32)
  keep = tf.logical_and(rank > 0, rank <= max_instances)
  perm = tf.random.experimental.stateless_shuffle(
      tf.range(1, max_instances + 1), seed=seed)
  perm = tf.concat([[0], perm], axis=0)
  id_table = tf.where(keep, tf.gather(perm, tf.minimum(rank, max_instances)), 0)
  keep_class_table = tf.logical_or(keep, slots == 0)
  new_ids = tf.gather(id_table, index)
  new_classes = tf.where(tf.gather(keep_class_table, index), classes, 0)
  return tf.stack([new_classes, new_ids], axis=-1)


def _pad_segment_table(values, max_segments, source_id):
  """`[N]` per-segment values to `[max_segments + 1]` indexed by segment index."""
  check = tf.debugging.assert_less_equal(
      tf.size(values), max_segments,
      message=tf.strings.join(
          ['record ', source_id, ': more segments than max_segments']))
  with tf.control_dependencies([check]):
    values = tf.cast(values, tf.int32)
  table = tf.pad(values, [[1, max_segments - tf.size(values)]])
  return tf.ensure_shape(table, [max_segments + 1])


def _pad_original(masks, max_original_size, source_id):
  """`[H, W, 2]` original-size masks zero-padded to `max_original_size`."""
  shape = tf.shape(masks)
  check = tf.debugging.assert_less_equal(
      shape[:2], tf.constant(max_original_size, tf.int32),
      message=tf.strings.join(
          ['record ', source_id, ': original size exceeds max_original_size']))
  with tf.control_dependencies([check]):
    masks = tf.identity(masks)
  return tf.ensure_shape(pad_to_size(masks, max_original_size),
                         list(max_original_size) + [2])


def _example_seed(seed, default_seed):
  """The per-example stateless seed: the caller's, else one drawn statefully."""
  if seed is not None:
    return seed
  return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32,
                           seed=default_seed)


def _check_common(image_size, mask_size, max_instances, instance_bits):
  if len(image_size) != 2 or len(mask_size) != 2:
    raise ValueError(f'image_size {image_size} and mask_size {mask_size} must '
                     'be (height, width) pairs.')
  if max_instances >= 2**instance_bits:
    raise ValueError(
        f'max_instances={max_instances} needs ids up to {max_instances}, which '
        f'do not fit instance_bits={instance_bits} (at most '
        f'{2**instance_bits - 1}; id {2**instance_bits} would alias void).')


# ----------------------------------------------------------------------------
# Image parsers.


@gin.configurable
class TrainParser:
  """Training parser for image records (REFERENCE §1, §5).

  Per example: horizontal flip (p = 0.5), scale jitter in `scale_range` with a
  random crop and bottom/right padding to `image_size`, colour jitter of
  `color_jitter` strength (0 = off) on the image, the same geometry for the
  masks (nearest neighbour) then nearest-neighbour resizing to `mask_size`,
  crowd segments to void, and fresh random instance ids from `[1, K]`
  (`assign_random_ids`; segments past the K-th become void).

  Call with the dict of `decoders.decode_panoptic_example` and an optional
  int `[2]` stateless seed. Returns:
    inputs: {'images': float32 [H, W, 3] in [0, 1]}.
    labels: {'label_map': int32 [h, w, 2] (class, random id),
             'image_info': float32 [4, 2], 'source_id': string []}.
  """

  def __init__(self,
               image_size: Size = (256, 256),
               mask_size: Size = (128, 128),
               scale_range: Tuple[float, float] = (1.0, 3.0),
               color_jitter: float = 1.0,
               hflip: bool = True,
               max_instances: int = 101,
               crowd_to_void: bool = True,
               instance_bits: int = 8,
               seed: Optional[int] = None,
               pad_value: float = 0.0,
               antialias: bool = False):
    """Stores the settings.

    Args:
      image_size: model input (height, width).
      mask_size: label map (height, width).
      scale_range: (min, max) of the jitter scale; (1, 1) = fit and pad.
      color_jitter: strength of `color_jitter`; 0 turns it off.
      hflip: random horizontal flips.
      max_instances: K, ids are drawn from `[1, K]` (101 for COCO).
      crowd_to_void: crowd segments become void (class 0, id 0).
      instance_bits: bits of the instance channel; K must be < 2**bits.
      seed: op seed of the per-example seed drawn when a call passes none
        (the pipeline always passes one).
      pad_value: value of the image padding (the authors': 0.3 on their
        `[0, 1]` pixels; ours 0).
      antialias: antialiased resizing of the image (the authors' transforms).
    """
    _check_common(image_size, mask_size, max_instances, instance_bits)
    if not 0 < scale_range[0] <= scale_range[1]:
      raise ValueError(f'scale_range {scale_range} must be 0 < min <= max.')
    if color_jitter < 0:
      raise ValueError(f'color_jitter strength {color_jitter} must be >= 0.')
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.scale_range = tuple(scale_range)
    self.color_jitter = color_jitter
    self.hflip = hflip
    self.max_instances = max_instances
    self.crowd_to_void = crowd_to_void
    self.seed = seed
    self.pad_value = float(pad_value)
    self.antialias = bool(antialias)

  def __call__(self, decoded: Dict[str, tf.Tensor],
               seed: Optional[tf.Tensor] = None):
    seeds = tf.random.experimental.stateless_split(
        _example_seed(seed, self.seed), 5)
    image = decoded['image']
    # The flip mirrors the original; the samplers apply it (no full-size copy).
    flip = (tf.random.stateless_uniform([], seed=seeds[0]) < 0.5
            if self.hflip else None)
    scale = tf.random.stateless_uniform(
        [], seed=seeds[1], minval=self.scale_range[0],
        maxval=self.scale_range[1])
    offset_fraction = tf.random.stateless_uniform([2], seed=seeds[2])
    image_info = compute_image_info(tf.shape(image)[:2], self.image_size,
                                    scale, offset_fraction)

    image = resize_and_crop_image(image, image_info, self.image_size, flip,
                                  antialias=self.antialias)
    if self.color_jitter > 0:
      image = color_jitter(image, self.color_jitter, seeds[3])
    image = pad_to_size(image, self.image_size, self.pad_value)

    label_map = masks_to_label_map(decoded['category_mask'],
                                   decoded['instance_mask'], image_info,
                                   self.image_size, self.mask_size, flip)
    crowd = decoded['segment_is_crowd'] if self.crowd_to_void else None
    label_map = assign_random_ids(label_map, self.max_instances, seeds[4],
                                  crowd)
    inputs = {'images': tf.ensure_shape(image, self.image_size + (3,))}
    labels = {
        'label_map': tf.ensure_shape(label_map, self.mask_size + (2,)),
        'image_info': image_info,
        'source_id': decoded['source_id'],
    }
    return inputs, labels


@gin.configurable
class EvalParser:
  """Evaluation parser for image records: no randomness, stored indices.

  The image keeps its aspect ratio, is scaled so its larger side (relative to
  `image_size`) fits, and is padded at the bottom/right. The label map holds
  the stored segment indices (no random ids, crowd kept), and the original-size
  ground truth travels along for PQ (REFERENCE §8).

  Call with the dict of `decoders.decode_panoptic_example`. Returns:
    inputs: {'images': float32 [H, W, 3] in [0, 1]}.
    labels: {'label_map': int32 [h, w, 2] (class, segment index),
             'image_info': float32 [4, 2], 'source_id': string [],
             'original_label_map': int32 [max_h, max_w, 2] (class, segment
               index) at the original size, zero (void) padded,
             'segment_is_crowd': int32 [max_segments + 1], by segment index
               (index 0 = void = 0),
             'segment_class_ids': int32 [max_segments + 1], by segment index}.
  """

  def __init__(self,
               image_size: Size = (256, 256),
               mask_size: Size = (128, 128),
               max_original_size: Size = (640, 640),
               max_segments: int = 256,
               pad_value: float = 0.0,
               antialias: bool = False):
    """Stores the settings.

    Args:
      image_size: model input (height, width).
      mask_size: label map (height, width).
      max_original_size: bound on original (height, width); the original
        ground truth is padded to it (COCO: 640 x 640). Larger images fail
        with an error naming the record.
      max_segments: bound on segments per image (tables are this + 1 long).
      pad_value: value of the image padding (the authors': 0.3).
      antialias: antialiased resizing of the image (the authors' transforms).
    """
    if len(image_size) != 2 or len(mask_size) != 2:
      raise ValueError(f'image_size {image_size} and mask_size {mask_size} '
                       'must be (height, width) pairs.')
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.max_original_size = tuple(max_original_size)
    self.max_segments = max_segments
    self.pad_value = float(pad_value)
    self.antialias = bool(antialias)

  def __call__(self, decoded: Dict[str, tf.Tensor],
               seed: Optional[tf.Tensor] = None):
    del seed  # Deterministic.
    source_id = decoded['source_id']
    category_mask = decoded['category_mask']
    instance_mask = decoded['instance_mask']
    image_info = compute_image_info(tf.shape(category_mask), self.image_size)
    image = pad_to_size(
        resize_and_crop_image(decoded['image'], image_info, self.image_size,
                              antialias=self.antialias),
        self.image_size, self.pad_value)
    label_map = masks_to_label_map(category_mask, instance_mask, image_info,
                                   self.image_size, self.mask_size)
    masks = tf.stack([category_mask, instance_mask], axis=-1)
    inputs = {'images': tf.ensure_shape(image, self.image_size + (3,))}
    labels = {
        'label_map': tf.ensure_shape(label_map, self.mask_size + (2,)),
        'image_info': image_info,
        'source_id': source_id,
        'original_label_map': _pad_original(masks, self.max_original_size,
                                            source_id),
        'segment_is_crowd': _pad_segment_table(
            decoded['segment_is_crowd'], self.max_segments, source_id),
        'segment_class_ids': _pad_segment_table(
            decoded['segment_class_ids'], self.max_segments, source_id),
    }
    return inputs, labels


# ----------------------------------------------------------------------------
# Video parsers.


@gin.configurable
class VideoTrainParser:
  """Training parser for video records: one clip per call (REFERENCE §4 video, §5).

  Picks a current frame `t` uniformly in the record, takes the past frames
  `t + o` for `o` in `past_frame_offsets` (clamped to `[0, T - 1]`, so early
  frames repeat frame 0), decodes only those frames, and applies ONE geometry
  (flip, scale jitter, crop) to all of them and colour jitter to the current
  image. All frames share one id permutation (`assign_random_ids` over the
  clip), so an object keeps its id across the clip. Each past mask is replaced
  by zeros (void) with probability `past_drop_rate` (frame dropout).

  Call with the dict of `decoders.parse_video_example` (frames still encoded)
  and an optional int `[2]` stateless seed. Returns:
    inputs: {'images': float32 [H, W, 3] in [0, 1] (current frame),
             'past_label_maps': int32 [P, h, w, 2] in the order of
               `past_frame_offsets`}.
    labels: {'label_map': int32 [h, w, 2], 'image_info': float32 [4, 2],
             'source_id': string [] ('<video_id>/<frame_name>')}.
  """

  def __init__(self,
               image_size: Size = (512, 1024),
               mask_size: Size = (256, 512),
               past_frame_offsets: Sequence[int] = (-2, -1),
               past_drop_rate: float = 0.1,
               scale_range: Tuple[float, float] = (0.7, 2.0),
               color_jitter: float = 0.0,
               hflip: bool = True,
               max_instances: int = 255,
               instance_bits: int = 8,
               seed: Optional[int] = None):
    """Stores the settings.

    Args:
      image_size: model input (height, width) (DAVIS: 512 x 1024).
      mask_size: label map (height, width) (DAVIS: 256 x 512).
      past_frame_offsets: offsets of the conditioning frames (released
        configuration: -2, -1).
      past_drop_rate: probability that a past mask is replaced by void
        (paper: 0.1-0.2).
      scale_range: (min, max) jitter scale (DAVIS: 0.7, 2.0).
      color_jitter: colour jitter strength for the current image; 0 = off.
      hflip: random horizontal flips (same for all frames).
      max_instances: K. REFERENCE §1 gives 256 for video, but id 256 does not
        fit 8 instance bits (it would alias void), so the default is 255;
        raise `instance_bits` to use 256.
      instance_bits: bits of the instance channel; K must be < 2**bits.
      seed: op seed of the per-example seed drawn when a call passes none.
    """
    _check_common(image_size, mask_size, max_instances, instance_bits)
    if not 0 <= past_drop_rate <= 1:
      raise ValueError(f'past_drop_rate {past_drop_rate} not in [0, 1].')
    if not 0 < scale_range[0] <= scale_range[1]:
      raise ValueError(f'scale_range {scale_range} must be 0 < min <= max.')
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.past_frame_offsets = tuple(int(o) for o in past_frame_offsets)
    self.past_drop_rate = past_drop_rate
    self.scale_range = tuple(scale_range)
    self.color_jitter = color_jitter
    self.hflip = hflip
    self.max_instances = max_instances
    self.seed = seed

  def __call__(self, video: Dict[str, tf.Tensor],
               seed: Optional[tf.Tensor] = None):
    seeds = tf.random.experimental.stateless_split(
        _example_seed(seed, self.seed), 7)
    num_frames = video['num_frames']
    current = tf.random.stateless_uniform(
        [], seed=seeds[0], minval=0, maxval=num_frames, dtype=tf.int32)
    offsets = tf.constant(self.past_frame_offsets, tf.int32, [len(
        self.past_frame_offsets)])
    past = tf.clip_by_value(current + offsets, 0, num_frames - 1)
    indices = tf.concat([past, [current]], axis=0)  # Current frame last.
    frames, category_masks, instance_masks = decoders.decode_video_frames(
        video, indices)
    image = frames[-1]
    flip = (tf.random.stateless_uniform([], seed=seeds[1]) < 0.5
            if self.hflip else None)
    scale = tf.random.stateless_uniform(
        [], seed=seeds[2], minval=self.scale_range[0],
        maxval=self.scale_range[1])
    offset_fraction = tf.random.stateless_uniform([2], seed=seeds[3])
    image_info = compute_image_info(tf.shape(image)[:2], self.image_size,
                                    scale, offset_fraction)
    image = resize_and_crop_image(image, image_info, self.image_size, flip)
    if self.color_jitter > 0:
      image = color_jitter(image, self.color_jitter, seeds[4])
    image = pad_to_size(image, self.image_size)

    # One geometry and one flip for every frame of the clip.
    label_maps = masks_to_label_map(category_masks, instance_masks, image_info,
                                    self.image_size, self.mask_size, flip)
    label_maps = assign_random_ids(label_maps, self.max_instances, seeds[5])
    num_past = len(self.past_frame_offsets)
    keep = tf.random.stateless_uniform([num_past], seed=seeds[6]) >= (
        self.past_drop_rate)
    keep &= current + offsets >= 0
    past_label_maps = label_maps[:num_past] * tf.cast(
        keep, tf.int32)[:, tf.newaxis, tf.newaxis, tf.newaxis]

    source_id = tf.strings.join(
        [video['video_id'], '/', tf.gather(video['frame_names'], current)])
    inputs = {
        'images': tf.ensure_shape(image, self.image_size + (3,)),
        'past_label_maps': tf.ensure_shape(
            past_label_maps, (num_past,) + self.mask_size + (2,)),
    }
    labels = {
        'label_map': tf.ensure_shape(label_maps[-1], self.mask_size + (2,)),
        'image_info': image_info,
        'source_id': source_id,
    }
    return inputs, labels


@gin.configurable
class VideoEvalParser:
  """Per-frame evaluation parser for streaming video inference.

  Works on the elements of `decoders.video_frames_dataset` (one frame of one
  video, still encoded), in order, so the evaluator sees a stream of frames
  and keeps its own predictions as the past masks; the video never sits on the
  device as a whole. A new video starts where `video_id` changes (records that
  are chunks of one video share the id and continue `frame_index`).

  Returns:
    inputs: {'images': float32 [H, W, 3] in [0, 1]}.
    labels: {'label_map': int32 [h, w, 2] (class, stored instance index),
             'image_info': float32 [4, 2],
             'original_label_map': int32 [max_h, max_w, 2], zero padded,
             'video_id': string [], 'frame_name': string [],
             'frame_index': int32 [] (index in the whole video)}.
  """

  def __init__(self,
               image_size: Size = (512, 1024),
               mask_size: Size = (256, 512),
               max_original_size: Size = (512, 1280)):
    """Stores the settings.

    Args:
      image_size: model input (height, width).
      mask_size: label map (height, width).
      max_original_size: bound on the frames' original size (DAVIS 480p and
        KITTI-STEP 375 x 1242 fit the default).
    """
    self.image_size = tuple(image_size)
    self.mask_size = tuple(mask_size)
    self.max_original_size = tuple(max_original_size)

  def __call__(self, frame: Dict[str, tf.Tensor],
               seed: Optional[tf.Tensor] = None):
    del seed  # Deterministic.
    decoded = decoders.decode_video_frame(frame)
    where = tf.strings.join([frame['video_id'], '/', frame['frame_name']])
    category_mask = decoded['category_mask']
    instance_mask = decoded['instance_mask']
    image_info = compute_image_info(tf.shape(category_mask), self.image_size)
    image = pad_to_size(
        resize_and_crop_image(decoded['image'], image_info, self.image_size),
        self.image_size)
    label_map = masks_to_label_map(category_mask, instance_mask, image_info,
                                   self.image_size, self.mask_size)
    masks = tf.stack([category_mask, instance_mask], axis=-1)
    inputs = {'images': tf.ensure_shape(image, self.image_size + (3,))}
    labels = {
        'label_map': tf.ensure_shape(label_map, self.mask_size + (2,)),
        'image_info': image_info,
        'original_label_map': _pad_original(masks, self.max_original_size,
                                            where),
        'video_id': frame['video_id'],
        'frame_name': frame['frame_name'],
        'frame_index': frame['frame_index'],
    }
    return inputs, labels
