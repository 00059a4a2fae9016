r"""SavedModel export with the whole sampler inside (issue 8; REFERENCE §2, §6).

`export_saved_model` rebuilds the model from the gin config that training
wrote into `model_dir` (`config.gin`, then extra files / bindings), restores a
checkpoint, copies the EMA weights into the model (STYLE.md: one model and its
EMA shadow) and saves a `PanopticServingModule`: decoding, the EvalParser's
resize + pad (`data.parsers.compute_image_info` / `resize_and_crop_image` /
`pad_to_size`), the encoder once, the DDIM loop (`models.sampler.sample`), the
majority class per instance and the `min_pixels` filter
(`tasks.postprocess.majority_class_and_min_pixels`) and the nearest-neighbour
resize back to each image's original size (`data.parsers.label_map_to_original`)
all run inside the graph, so a client sends images and receives masks.

Signatures (TF Model Garden's names; every one takes the optional inputs
`num_steps` int32 scalar and `td` float32 scalar (defaults: the config's
inference settings, else REFERENCE §6: 20 / 2.0 as for COCO, 8 / 1.0 as for
DAVIS for video models) and `seed` int32 `[2]` (default (0, 0)):
the defaults are stored in the SignatureDef, so a server that honours
`SignatureDef.defaults` and the restored Python functions (`loaded.image_bytes`)
accept requests without them; `loaded.signatures[...]` in Python needs them all
(`signature_defaults` reads the stored values)):

| signature | image input |
|---|---|
| `serving_default` | `image_bytes`: string `[B]`, encoded JPEG/PNG/GIF/BMP, any sizes |
| `image_tensor` | `image_tensor`: uint8 `[B, H, W, 3]` |
| `tf_example` | `tf_example`: string `[B]`, serialized `tf.train.Example` (`data/records.py` schema; only `image/encoded` is read) |
| `trajectory` | `image_tensor` as above; adds the `trajectory` output |
| `serving_video` | `image_bytes` + `past_label_maps` (video models only) |
| `serving_video_tensor` | `image_tensor` + `past_label_maps` (video models only) |

Outputs of every signature:
- `panoptic_category_mask`, `panoptic_instance_mask`: int32 `[B, H_max, W_max]`
  at the ORIGINAL image size: contiguous class id (0 = void, `class_ids` below)
  and instance id (0 = none; every segment, thing or stuff, has its own id).
  Images of different sizes in one `image_bytes` / `tf_example` batch are
  padded at the bottom/right with void to the largest height and width of the
  batch; image `b` is `[:original_size[b, 0], :original_size[b, 1]]`.
- `original_size`: int32 `[B, 2]` (height, width) of each decoded image.
- `image_info`: float32 `[B, 4, 2]`, the EvalParser geometry (original size,
  scaled size, scale, offset) that maps mask-size outputs back to the image.
- `class_ids` int32 `[C]` (1..C), `class_names` string `[C]`,
  `category_ids` int32 `[C]` (the dataset's category id, e.g. COCO's, as in
  the `categories.json` the config names), `class_isthing` int32 `[C]`: the
  category table, entry `k` describes class `class_ids[k]`. These four are not
  batch-major.
- `trajectory` (signature `trajectory` only): int32 `[B, T, h, w, 2]`, the
  label map predicted at each of the first `T = min(num_steps,
  max_trajectory_steps)` steps at mask size, before post-processing (paper
  Fig. 11); `image_info` maps it to the image.
- Video signatures also return `label_map` int32 `[B, h, w, 2]`: the new
  post-processed mask at mask size, which the client feeds back as a past
  mask; and, when the model's past frames are the contiguous offsets
  `(-P, ..., -1)` (the released configuration: -2, -1), `next_past_label_maps`
  int32 `[B, P, h, w, 2]` = `past_label_maps[:, 1:]` followed by `label_map`:
  the `past_label_maps` of the next frame. The server keeps no state: a client
  streams a video by sending, with each frame, the masks it got back for the
  frames at `past_frame_offsets` (`assets.extra/export_info.json`), all zeros
  (void) where a frame does not exist yet, as in training's frame dropout.
  `past_label_maps` is int32 `[B, P, h, w, 2]` at mask size, frames in the
  order of `past_frame_offsets`. Image signatures of a video model condition
  on all-void past masks (a first frame).

Bad requests fail with `tf.errors.InvalidArgumentError` (undecodable bytes, an
empty batch, zero-size images, JPEG/PNG headers claiming more than
`max_image_pixels` (checked before decoding), a wrong rank / channel count / dtype, past masks
of the wrong shape or out of range, `num_steps` outside `[1, MAX_NUM_STEPS]`,
a negative or non-finite `td`); the serving process is never brought down.
A SignatureDef does not enforce shapes (only dtypes), and a declared static
shape lets graph optimisation fold a shape check away, so the inputs are
declared with unknown rank (`saved_model_cli` shows `unknown_rank`) and the
shapes above are checked at run time before anything reads an input;
`export_info.json` lists them under `inputs`.

The export is written to `<output_dir>.tmp-<random>` and renamed to
`output_dir` when complete (a local rename is atomic; on object stores such as
GCS a folder rename copies object by object). `assets.extra/export_info.json`
records the settings, the checkpoint and the category table.

`export_saved_model.jit_compile = True` XLA-compiles the sampler and
post-processing inside the SavedModel (much faster on accelerators; the
server needs XLA). Its masks agree with the default export's up to float
rounding (checked on CPU: 0.6% of the pixels of a barely trained tiny model
differ), not bit for bit.

  python -m tools.export_saved_model --model_dir=/tmp/p2sd_stage1_tiny \
      --output_dir=/tmp/p2sd_export/1
"""

import json
import os
import uuid
from typing import Optional, Sequence

from absl import logging
import gin
import tensorflow as tf

from data import decoders
from data import parsers
from data import records
from models import pix2seq_d
from models import sampler
from tasks import config
from tasks import partial_restore
from tasks import postprocess

SIGNATURE_IMAGE_BYTES = 'serving_default'
SIGNATURE_IMAGE_TENSOR = 'image_tensor'
SIGNATURE_TF_EXAMPLE = 'tf_example'
SIGNATURE_TRAJECTORY = 'trajectory'
SIGNATURE_VIDEO = 'serving_video'
SIGNATURE_VIDEO_TENSOR = 'serving_video_tensor'
IMAGE_SIGNATURES = (SIGNATURE_IMAGE_BYTES, SIGNATURE_IMAGE_TENSOR,
                    SIGNATURE_TF_EXAMPLE, SIGNATURE_TRAJECTORY)
VIDEO_SIGNATURES = (SIGNATURE_VIDEO, SIGNATURE_VIDEO_TENSOR)

EXPORT_INFO_PATH = os.path.join('assets.extra', 'export_info.json')
# A request may not ask for more decoder calls than this (a bound on the work
# one request can cause; the paper uses at most 80, Cityscapes in REFERENCE §6).
MAX_NUM_STEPS = 1000
# Inference defaults when the config binds none (REFERENCE §6): COCO for image
# models, DAVIS (later frames) for video models.
DEFAULT_NUM_STEPS = 20
DEFAULT_TD = 2.0
DEFAULT_MIN_PIXELS = 80
DEFAULT_VIDEO_NUM_STEPS = 8
DEFAULT_VIDEO_TD = 1.0
DEFAULT_VIDEO_MIN_PIXELS = 10
# Encoded JPEG/PNG images larger than this (read from the header, before
# decoding) are refused: a small file can claim a huge size.
DEFAULT_MAX_IMAGE_PIXELS = 10000 * 10000
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _check(condition, message):
  """A runtime check that raises `InvalidArgumentError` with `message`."""
  return tf.debugging.Assert(condition, [message])


def _with_checks(checks, tensor):
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


def _check_shape(tensor, expected, name):
  """Checks `tensor`'s shape at run time and gives it that static shape.

  The signatures declare their inputs with unknown rank: a SignatureDef does
  not enforce shapes, and a declared static shape would let graph
  optimisation fold a check away or let an op assume the declared rank.
  `EnsureShape` checks at run time and fails with InvalidArgumentError
  naming the input ("Shape of tensor <name> [...] is not compatible with
  expected shape [...]"). Every input goes through here before anything
  else reads it.

  Args:
    tensor: the signature input.
    expected: list of ints or None (any size).
    name: the input's name, for the message.

  Returns:
    `tensor`, checked, with static shape `expected`.
  """
  return tf.ensure_shape(tf.identity(tensor, name=name), expected)


def _check_options(num_steps, td, seed):
  num_steps = _check_shape(num_steps, [], 'num_steps')
  td = _check_shape(td, [], 'td')
  seed = _check_shape(seed, [2], 'seed')
  checks = [
      _check((num_steps >= 1) & (num_steps <= MAX_NUM_STEPS),
             f'num_steps must be in [1, {MAX_NUM_STEPS}]'),
      _check(tf.math.is_finite(td) & (td >= 0.0), 'td must be finite and >= 0'),
  ]
  return (_with_checks(checks, num_steps), _with_checks(checks, td),
          _with_checks(checks, seed))


def _encoded_size(encoded):
  """int64 `[2]` (height, width) from a JPEG or PNG header, (0, 0) for other formats."""

  def png_size():
    # IHDR: width then height, big-endian uint32, at bytes 16..23.
    header = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8)
    header = tf.cast(tf.ensure_shape(header, [8]), tf.int64)
    weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
    width = tf.reduce_sum(header[:4] * weights)
    height = tf.reduce_sum(header[4:] * weights)
    return tf.stack([height, width])

  is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE)
  return tf.case(
      [(tf.io.is_jpeg(encoded),
        lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
       (is_png, png_size)],
      default=lambda: tf.zeros([2], tf.int64))


def _decode_checked(encoded, max_image_pixels):
  """Decodes JPEG/PNG/GIF/BMP bytes to uint8 `[H, W, 3]`, refusing huge images first."""
  size = _encoded_size(encoded)
  check = _check(size[0] * size[1] <= max_image_pixels,
                 f'image larger than {max_image_pixels} pixels')
  with tf.control_dependencies([check]):
    return decoders.decode_image(tf.identity(encoded))


def _preprocess_one(image, image_size, pad_value=0.0, antialias=False):
  """One decoded uint8 `[H, W, 3]` image to the EvalParser's model input.

  `pad_value` and `antialias` as the EvalParser's (the authors': 0.3, True).

  Returns:
    `(float32 [*image_size, 3] in [0, 1], image_info float32 [4, 2])`.
  """
  size = tf.shape(image)[:2]
  image = _with_checks(
      [_check(tf.reduce_all(size > 0), 'image height and width must be > 0')],
      image)
  image_info = parsers.compute_image_info(size, image_size)
  image = parsers.pad_to_size(
      parsers.resize_and_crop_image(image, image_info, image_size,
                                    antialias=antialias),
      image_size, pad_value)
  return tf.ensure_shape(image, tuple(image_size) + (3,)), image_info


class PanopticServingModule(tf.Module):
  """The exported object: the model (EMA weights) and one `tf.function` per signature.

  See the module docstring for the signatures. `signatures()` gives the map
  that `tf.saved_model.save` takes.
  """

  def __init__(self, model, *, categories: Sequence[dict], image_size,
               mask_size, num_steps: int = DEFAULT_NUM_STEPS,
               td: float = DEFAULT_TD, min_pixels: int = DEFAULT_MIN_PIXELS,
               past_frame_offsets: Optional[Sequence[int]] = None,
               max_trajectory_steps: int = 50,
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               jit_compile: bool = False, min_pixels_at: str = 'mask',
               void_votes: bool = False, pad_value: float = 0.0,
               antialias: bool = False, stuff_as_one_segment: bool = False,
               readout: str = 'threshold'):
    """Builds the serving functions around a built model.

    Args:
      model: a built `Pix2SeqD` holding the weights to serve (the EMA ones).
      categories: the `categories.json` table (`class_id` 1..C, `id`, `name`,
        `isthing`).
      image_size: the model input `(H, W)` (the EvalParser's).
      mask_size: the generated mask `(h, w)`.
      num_steps: default DDIM steps.
      td: default time difference.
      min_pixels: segments under this many mask pixels become void.
      past_frame_offsets: for video models, the offsets of the past frames in
        the model's order (default `(-P, ..., -1)`).
      max_trajectory_steps: steps the `trajectory` signature can return.
      max_image_pixels: larger encoded JPEG/PNG images are refused before
        they are decoded.
      jit_compile: XLA-compile the sampler + post-processing part.
      min_pixels_at: 'mask' or 'original': where `min_pixels` counts pixels
        (tasks/postprocess.py; 'original' after the resize back).
      void_votes: void votes in the majority class (the authors' code).
      pad_value: image padding value (the EvalParser's).
      antialias: antialiased image resize (the EvalParser's).
      stuff_as_one_segment: each stuff class becomes one segment per image
        (tasks/postprocess.py).
      readout: 'threshold' or 'argmax' (models/sampler.py).
    """
    super().__init__(name='pix2seq_d_serving')
    if model.encoder is None:
      raise ValueError('the model has no image encoder (unconditional mask '
                       'prior): there is nothing to serve for an image.')
    class_ids = [int(c['class_id']) for c in categories]
    if class_ids != list(range(1, len(categories) + 1)):
      raise ValueError('categories must have contiguous class_id 1..C in order.')
    if len(categories) >= 2**model.n_bits[0]:
      raise ValueError(f'{len(categories)} classes do not fit '
                       f'{model.n_bits[0]} class bits.')
    self.model = model
    self.image_size = tuple(int(s) for s in image_size)
    self.mask_size = tuple(int(s) for s in mask_size)
    expected_mask = tuple(s // model.mask_stride for s in self.image_size)
    if expected_mask != self.mask_size or any(
        s % model.mask_stride for s in self.image_size):
      raise ValueError(f'image_size {self.image_size} / mask_size '
                       f'{self.mask_size} do not match the model\'s mask stride '
                       f'{model.mask_stride}.')
    # Kept as JSON text: tf.Module would wrap a list attribute in trackable types.
    self._categories_json = json.dumps(
        [dict(class_id=int(c['class_id']), id=int(c['id']),
              name=str(c['name']), isthing=int(c['isthing']))
         for c in categories])
    self.num_steps = int(num_steps)
    self.td = float(td)
    self.min_pixels = int(min_pixels)
    self.min_pixels_at = postprocess.check_min_pixels_at(min_pixels_at)
    self.void_votes = bool(void_votes)
    self.stuff_as_one_segment = postprocess.check_stuff_as_one_segment(
        stuff_as_one_segment)
    self._postprocess = postprocess.Postprocessor.for_model(
        model.n_bits, categories, min_pixels=self.min_pixels,
        min_pixels_at=self.min_pixels_at, void_votes=self.void_votes,
        stuff_as_one_segment=self.stuff_as_one_segment)
    self.readout = sampler.check_readout(readout)
    self.pad_value = float(pad_value)
    self.antialias = bool(antialias)
    self.max_trajectory_steps = int(max_trajectory_steps)
    self.max_image_pixels = int(max_image_pixels)
    self.num_past_frames = model.num_past_frames
    if self.num_past_frames:
      offsets = tuple(int(o) for o in (
          past_frame_offsets or range(-self.num_past_frames, 0)))
      if len(offsets) != self.num_past_frames or any(o >= 0 for o in offsets):
        raise ValueError(f'past_frame_offsets {offsets} must be '
                         f'{self.num_past_frames} negative offsets.')
      self.past_frame_offsets = offsets
    else:
      self.past_frame_offsets = ()
    if not 1 <= self.num_steps <= MAX_NUM_STEPS:
      raise ValueError(f'num_steps={self.num_steps} not in [1, {MAX_NUM_STEPS}].')
    self._sample_fn = tf.function(self._sample_and_postprocess,
                                  jit_compile=jit_compile)
    self._build_signature_functions()

  @property
  def categories(self) -> list:
    """The category table: `[{class_id, id, name, isthing}, ...]`."""
    return json.loads(self._categories_json)

  # -- Building blocks (traced inside the signatures). ----------------------

  def _decode_bytes(self, image_bytes):
    """string `[B]` -> (images float32 `[B, H, W, 3]`, image_info `[B, 4, 2]`)."""
    image_bytes = _check_shape(image_bytes, [None], 'image_bytes')
    image_bytes = _with_checks(
        [_check(tf.size(image_bytes) > 0, 'image_bytes: empty batch')],
        image_bytes)

    def one(encoded):
      return _preprocess_one(_decode_checked(encoded, self.max_image_pixels),
                             self.image_size, self.pad_value, self.antialias)

    return tf.map_fn(one, image_bytes, fn_output_signature=(
        tf.TensorSpec(self.image_size + (3,), tf.float32),
        tf.TensorSpec([4, 2], tf.float32)))

  def _decode_tensor(self, image_tensor):
    """uint8 `[B, H, W, 3]` -> (images, image_info) as `_decode_bytes`."""
    image_tensor = _check_shape(image_tensor, [None, None, None, 3],
                                'image_tensor')
    image_tensor = _with_checks(
        [_check(tf.shape(image_tensor)[0] > 0, 'image_tensor: empty batch')],
        image_tensor)
    return tf.map_fn(
        lambda image: _preprocess_one(image, self.image_size, self.pad_value,
                                      self.antialias), image_tensor,
        fn_output_signature=(tf.TensorSpec(self.image_size + (3,), tf.float32),
                             tf.TensorSpec([4, 2], tf.float32)))

  def _decode_examples(self, tf_example):
    """Serialized `tf.train.Example`s `[B]` -> (images, image_info)."""
    tf_example = _check_shape(tf_example, [None], 'tf_example')
    parsed = tf.io.parse_example(tf_example, {
        records.IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string)})
    return self._decode_bytes(parsed[records.IMAGE_ENCODED])

  def _check_past(self, past_label_maps, batch):
    """Validates `past_label_maps` int32 `[B, P, h, w, 2]` against the model."""
    expected = [None, self.num_past_frames, *self.mask_size, 2]
    past_label_maps = _check_shape(past_label_maps, expected, 'past_label_maps')
    limits = tf.constant([2**self.model.n_bits[0], 2**self.model.n_bits[1]],
                         tf.int32)
    checks = [
        _check(tf.equal(tf.shape(past_label_maps)[0], batch),
               'past_label_maps must have one entry per image'),
        _check(tf.reduce_all((past_label_maps >= 0) & (past_label_maps < limits)),
               f'past_label_maps values must be class in [0, '
               f'{2**self.model.n_bits[0]}) and instance id in [0, '
               f'{2**self.model.n_bits[1]})'),
    ]
    return tf.ensure_shape(_with_checks(checks, past_label_maps), expected)

  def _sample_and_postprocess(self, images, num_steps, td, seed,
                              past_label_maps, trajectory_size):
    """Algorithm 2 + post-processing at mask size (the compiled part)."""
    outputs = sampler.sample(self.model, images, mask_size=self.mask_size,
                             num_steps=num_steps, td=td, seed=seed,
                             past_label_maps=past_label_maps,
                             trajectory_size=trajectory_size,
                             readout=self.readout)
    label_map = self._postprocess(outputs['label_map'], 'mask')
    if trajectory_size:
      return label_map, outputs['trajectory']
    return label_map, tf.zeros([0], tf.int32)

  def _to_original(self, label_map, image_info):
    """`[B, h, w, 2]` -> `[B, H_max, W_max, 2]` at the original sizes (void padded)."""
    original_size = tf.cast(image_info[:, 0], tf.int32)
    max_size = tf.reduce_max(original_size, axis=0)

    def one(args):
      mask, info = args
      mask = parsers.label_map_to_original(mask, info, self.image_size)
      if self.min_pixels_at == 'original':
        mask = self._postprocess(mask[tf.newaxis], 'original')[0]
      size = tf.shape(mask)[:2]
      return tf.pad(mask, [[0, max_size[0] - size[0]],
                           [0, max_size[1] - size[1]], [0, 0]])

    masks = tf.map_fn(one, (label_map, image_info),
                      fn_output_signature=tf.TensorSpec([None, None, 2],
                                                        tf.int32))
    return masks, original_size

  def _serve(self, images, image_info, num_steps, td, seed,
             past_label_maps=None, with_trajectory=False, video=False):
    """Everything after decoding; returns the signature's output dict."""
    num_steps, td, seed = _check_options(num_steps, td, seed)
    batch = tf.shape(images)[0]
    if self.num_past_frames:
      if past_label_maps is None:
        past_label_maps = tf.zeros(
            [batch, self.num_past_frames, *self.mask_size, 2], tf.int32)
      else:
        past_label_maps = self._check_past(past_label_maps, batch)
    trajectory_size = self.max_trajectory_steps if with_trajectory else 0
    label_map, trajectory = self._sample_fn(
        images, tf.cast(num_steps, tf.int32), tf.cast(td, tf.float32),
        tf.cast(seed, tf.int32), past_label_maps, trajectory_size)
    masks, original_size = self._to_original(label_map, image_info)
    categories = self.categories
    outputs = {
        'panoptic_category_mask': masks[..., 0],
        'panoptic_instance_mask': masks[..., 1],
        'original_size': original_size,
        'image_info': image_info,
        'class_ids': tf.constant([c['class_id'] for c in categories], tf.int32),
        'class_names': tf.constant([c['name'] for c in categories], tf.string),
        'category_ids': tf.constant([c['id'] for c in categories], tf.int32),
        'class_isthing': tf.constant([c['isthing'] for c in categories],
                                     tf.int32),
    }
    if with_trajectory:
      steps = tf.minimum(num_steps, self.max_trajectory_steps)
      outputs['trajectory'] = tf.transpose(trajectory[:steps], [1, 0, 2, 3, 4])
    if video:
      outputs['label_map'] = label_map
      if self.past_frame_offsets == tuple(range(-self.num_past_frames, 0)):
        outputs['next_past_label_maps'] = tf.concat(
            [past_label_maps[:, 1:], label_map[:, tf.newaxis]], axis=1)
    return outputs

  # -- Signatures. -----------------------------------------------------------

  def _build_signature_functions(self):
    """Creates the `tf.function` attributes with their input signatures and defaults."""
    # Tensor defaults become `SignatureDef.defaults` (optional inputs).
    num_steps = tf.constant(self.num_steps, tf.int32)
    td = tf.constant(self.td, tf.float32)
    seed = tf.constant([0, 0], tf.int32)
    # Unknown rank on purpose: shapes are checked at run time (`_check_shape`).
    options = [tf.TensorSpec(None, tf.int32, name='num_steps'),
               tf.TensorSpec(None, tf.float32, name='td'),
               tf.TensorSpec(None, tf.int32, name='seed')]
    bytes_spec = tf.TensorSpec(None, tf.string, name='image_bytes')
    tensor_spec = tf.TensorSpec(None, tf.uint8, name='image_tensor')
    example_spec = tf.TensorSpec(None, tf.string, name='tf_example')

    def image_bytes(image_bytes, num_steps=num_steps, td=td, seed=seed):
      return self._serve(*self._decode_bytes(image_bytes), num_steps, td, seed)

    def image_tensor(image_tensor, num_steps=num_steps, td=td, seed=seed):
      return self._serve(*self._decode_tensor(image_tensor), num_steps, td,
                         seed)

    def tf_example(tf_example, num_steps=num_steps, td=td, seed=seed):
      return self._serve(*self._decode_examples(tf_example), num_steps, td,
                         seed)

    def trajectory(image_tensor, num_steps=num_steps, td=td, seed=seed):
      return self._serve(*self._decode_tensor(image_tensor), num_steps, td,
                         seed, with_trajectory=True)

    self.image_bytes = tf.function(image_bytes,
                                   input_signature=[bytes_spec] + options)
    self.image_tensor = tf.function(image_tensor,
                                    input_signature=[tensor_spec] + options)
    self.tf_example = tf.function(tf_example,
                                  input_signature=[example_spec] + options)
    self.trajectory = tf.function(trajectory,
                                  input_signature=[tensor_spec] + options)
    self._signature_functions = {
        SIGNATURE_IMAGE_BYTES: self.image_bytes,
        SIGNATURE_IMAGE_TENSOR: self.image_tensor,
        SIGNATURE_TF_EXAMPLE: self.tf_example,
        SIGNATURE_TRAJECTORY: self.trajectory,
    }
    if not self.num_past_frames:
      return
    past_spec = tf.TensorSpec(None, tf.int32, name='past_label_maps')

    def video_bytes(image_bytes, past_label_maps, num_steps=num_steps, td=td,
                    seed=seed):
      return self._serve(*self._decode_bytes(image_bytes), num_steps, td, seed,
                         past_label_maps=past_label_maps, video=True)

    def video_tensor(image_tensor, past_label_maps, num_steps=num_steps, td=td,
                     seed=seed):
      return self._serve(*self._decode_tensor(image_tensor), num_steps, td,
                         seed, past_label_maps=past_label_maps, video=True)

    self.video_image_bytes = tf.function(
        video_bytes, input_signature=[bytes_spec, past_spec] + options)
    self.video_image_tensor = tf.function(
        video_tensor, input_signature=[tensor_spec, past_spec] + options)
    self._signature_functions[SIGNATURE_VIDEO] = self.video_image_bytes
    self._signature_functions[SIGNATURE_VIDEO_TENSOR] = self.video_image_tensor

  def signatures(self) -> dict:
    """`{signature name: tf.function}` for `tf.saved_model.save`."""
    return dict(self._signature_functions)

  def export_info(self) -> dict:
    """The settings a client needs (written to `assets.extra/export_info.json`)."""
    return {
        'image_size': list(self.image_size),
        'mask_size': list(self.mask_size),
        'num_steps': self.num_steps,
        'td': self.td,
        'min_pixels': self.min_pixels,
        'min_pixels_at': self.min_pixels_at,
        'void_votes': self.void_votes,
        'stuff_as_one_segment': self.stuff_as_one_segment,
        'readout': self.readout,
        'pad_value': self.pad_value,
        'antialias': self.antialias,
        'max_num_steps': MAX_NUM_STEPS,
        'max_trajectory_steps': self.max_trajectory_steps,
        'max_image_pixels': self.max_image_pixels,
        'n_bits': list(self.model.n_bits),
        'num_past_frames': self.num_past_frames,
        'past_frame_offsets': list(self.past_frame_offsets),
        'signatures': sorted(self._signature_functions),
        'inputs': {
            'image_bytes': 'string [B]', 'image_tensor': 'uint8 [B, H, W, 3]',
            'tf_example': 'string [B]', 'num_steps': 'int32 []',
            'td': 'float32 []', 'seed': 'int32 [2]',
            'past_label_maps': (f'int32 [B, {self.num_past_frames}, '
                                f'{self.mask_size[0]}, {self.mask_size[1]}, 2]'
                                if self.num_past_frames else None),
        },
        'categories': self.categories,
    }


# ----------------------------------------------------------------------------
# Configuration, restoring, saving.


def parse_export_gin(model_dir: str, gin_files: Sequence[str] = (),
                     gin_bindings: Sequence[str] = (),
                     finalize: bool = True) -> None:
  """Parses `model_dir/config.gin`, then `gin_files`, then `gin_bindings`.

  Raises:
    FileNotFoundError: `model_dir` holds no `config.gin` and no gin file is given.
  """
  saved = os.path.join(model_dir, config.CONFIG_NAME)
  files = list(gin_files)
  if tf.io.gfile.exists(saved):
    files = [saved] + files
  elif not files:
    raise FileNotFoundError(f'{saved} not found: pass --gin_file with the '
                            'experiment the model was trained with.')
  config.import_configurables()
  config.parse_gin(files, gin_bindings, finalize=finalize)


def _setting(value, keys: Sequence[str], default=None, name: str = ''):
  """`value` if given, else the first bound gin `keys`, else `default`."""
  if value is not None:
    return value
  for key in keys:
    found = config.gin_value(key)
    if found is not None:
      return found
  if default is None:
    raise ValueError(f'export setting {name!r} is not bound: bind '
                     f'export_saved_model.{name} (looked at: {", ".join(keys)}).')
  return default


def resolve_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
  """The checkpoint prefix to export: `checkpoint` (a prefix or folder) or model_dir's latest.

  Raises:
    FileNotFoundError: naming where no checkpoint was found.
  """
  return partial_restore.resolve_checkpoint(checkpoint or model_dir)


def restore_model(checkpoint_path: str):
  """Builds the gin-configured model and loads `checkpoint_path`'s EMA weights into it.

  The averages are read straight into the model's variables
  (`pix2seq_d.restore_for_inference`): no shadow copy, no optimizer state.

  Args:
    checkpoint_path: a checkpoint prefix written by training (`model`, `ema`,
      `optimizer`, `global_step`).

  Returns:
    `(model, used_ema)`: the built `Pix2SeqD` holding the EMA averages (or
    the raw weights when the config has no EMA), and whether EMA was used.

  Raises:
    AssertionError / ValueError: the checkpoint does not match the model.
  """
  model = pix2seq_d.build_model()
  used_ema = pix2seq_d.restore_for_inference(model, checkpoint_path)
  return model, used_ema


def signature_defaults(export_dir: str) -> dict:
  """`{signature: {input: numpy default}}` stored in the SavedModel's SignatureDefs.

  `loaded.signatures[name](...)` in Python needs every input; fill the missing
  ones from here (TF Serving does this itself).
  """
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(export_dir, 'saved_model.pb'), 'rb') as f:
    proto.ParseFromString(f.read())
  result = {}
  for name, signature in proto.meta_graphs[0].signature_def.items():
    result[name] = {key: tf.make_ndarray(value)
                    for key, value in signature.defaults.items()}
  return result


def read_export_info(export_dir: str) -> dict:
  """Reads `assets.extra/export_info.json` of an export."""
  path = os.path.join(export_dir, EXPORT_INFO_PATH)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: not an export of '
                            'tools.export_saved_model?')
  with tf.io.gfile.GFile(path, 'r') as f:
    return json.load(f)


def _replace_directory(tmp_dir: str, output_dir: str, overwrite: bool) -> None:
  """Renames the finished `tmp_dir` to `output_dir` (moving an old export aside)."""
  old = None
  if tf.io.gfile.exists(output_dir):
    if not overwrite:
      raise FileExistsError(f'{output_dir} exists; pass --overwrite to replace it.')
    old = f'{output_dir}.old-{uuid.uuid4().hex[:8]}'
    tf.io.gfile.rename(output_dir, old)
  tf.io.gfile.rename(tmp_dir, output_dir)
  if old is not None:
    tf.io.gfile.rmtree(old)


@gin.configurable(denylist=['model_dir', 'output_dir', 'checkpoint',
                            'overwrite'])
def export_saved_model(model_dir: str, output_dir: str,
                       checkpoint: Optional[str] = None, *,
                       overwrite: bool = False,
                       image_size: Optional[Sequence[int]] = None,
                       mask_size: Optional[Sequence[int]] = None,
                       num_steps: Optional[int] = None,
                       td: Optional[float] = None,
                       min_pixels: Optional[int] = None,
                       categories_json: Optional[str] = None,
                       past_frame_offsets: Optional[Sequence[int]] = None,
                       max_trajectory_steps: int = 50,
                       max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                       jit_compile: bool = False,
                       min_pixels_at: Optional[str] = None,
                       void_votes: Optional[bool] = None,
                       stuff_as_one_segment: Optional[bool] = None,
                       readout: Optional[str] = None) -> dict:
  """Exports the gin-configured model's EMA weights with the sampler as a SavedModel.

  Parse the gin config first (`parse_export_gin`). Settings left None come
  from the training config: `build_evaluator.<name>` (what evaluation used),
  then for sizes `build_image_encoder.image_size` / `.mask_size`, for the
  table `CATEGORIES_JSON`, then REFERENCE §6's values: COCO's (20 steps, td
  2.0, 80 pixels) for image models, DAVIS's later frames' (8 steps, td 1.0,
  10 pixels) for video models; `past_frame_offsets` from `VideoTrainParser`
  (default `(-P, ..., -1)`).

  Args:
    model_dir: the training directory (config.gin, checkpoints).
    output_dir: the export directory (e.g. `.../<version>` for TF Serving).
    checkpoint: a checkpoint prefix or folder; default model_dir's latest.
    overwrite: replace an existing `output_dir`.
    image_size: model input `(H, W)`.
    mask_size: mask `(h, w)`.
    num_steps: default DDIM steps of the signatures.
    td: default time difference.
    min_pixels: post-processing threshold (mask pixels).
    categories_json: the `categories.json` table (class names, dataset ids).
    past_frame_offsets: video models: offsets of the past frames.
    max_trajectory_steps: longest trajectory the `trajectory` signature returns.
    max_image_pixels: encoded JPEG/PNG images claiming more pixels are refused
      before decoding (a decompression bomb cannot exhaust the server).
    jit_compile: XLA-compile the sampler inside the SavedModel (faster on
      accelerators; the server must have XLA).
    min_pixels_at: 'mask' or 'original' (tasks/postprocess.py).
    void_votes: void votes in the majority class (the authors' code).
    stuff_as_one_segment: each stuff class becomes one segment per image.
    readout: 'threshold' or 'argmax' (models/sampler.py).

  Returns:
    The export info (also in `assets.extra/export_info.json`), with
    `checkpoint`, `global_step`, `used_ema` and `output_dir`.
  """
  output_dir = output_dir.rstrip('/')
  if tf.io.gfile.exists(output_dir) and not overwrite:
    raise FileExistsError(f'{output_dir} exists; pass --overwrite to replace it.')
  checkpoint_path = resolve_checkpoint(model_dir, checkpoint)
  image_size = _setting(image_size, ['build_evaluator.image_size',
                                     'build_image_encoder.image_size'],
                        name='image_size')
  mask_size = _setting(mask_size, ['build_evaluator.mask_size',
                                   'build_image_encoder.mask_size'],
                       name='mask_size')
  video = bool(config.gin_value('build_model.num_past_frames'))
  num_steps = _setting(num_steps, ['build_evaluator.num_steps'],
                       DEFAULT_VIDEO_NUM_STEPS if video else DEFAULT_NUM_STEPS)
  td = _setting(td, ['build_evaluator.td'],
                DEFAULT_VIDEO_TD if video else DEFAULT_TD)
  min_pixels = _setting(min_pixels, ['build_evaluator.min_pixels'],
                        DEFAULT_VIDEO_MIN_PIXELS if video else DEFAULT_MIN_PIXELS)
  min_pixels_at = _setting(min_pixels_at, ['build_evaluator.min_pixels_at'],
                           'mask')
  void_votes = _setting(void_votes, ['build_evaluator.void_votes'], False)
  stuff_as_one_segment = _setting(stuff_as_one_segment,
                                  ['build_evaluator.stuff_as_one_segment'],
                                  False)
  readout = _setting(readout, ['build_evaluator.readout'], 'threshold')
  pad_value = _setting(None, ['eval/EvalParser.pad_value',
                              'EvalParser.pad_value'], 0.0)
  antialias = _setting(None, ['eval/EvalParser.antialias',
                              'EvalParser.antialias'], False)
  categories_json = _setting(categories_json,
                             ['build_evaluator.categories_json',
                              '%CATEGORIES_JSON'], name='categories_json')
  if past_frame_offsets is None:
    past_frame_offsets = (config.gin_value('train/VideoTrainParser.past_frame_offsets')
                          or config.gin_value('VideoTrainParser.past_frame_offsets'))
  categories = records.read_categories(categories_json)

  model, used_ema = restore_model(checkpoint_path)
  module = PanopticServingModule(
      model, categories=categories, image_size=image_size, mask_size=mask_size,
      num_steps=num_steps, td=td, min_pixels=min_pixels,
      past_frame_offsets=past_frame_offsets,
      max_trajectory_steps=max_trajectory_steps,
      max_image_pixels=max_image_pixels, jit_compile=jit_compile,
      min_pixels_at=min_pixels_at, void_votes=void_votes, pad_value=pad_value,
      antialias=antialias, stuff_as_one_segment=stuff_as_one_segment,
      readout=readout)
  info = module.export_info()
  reader = tf.train.load_checkpoint(checkpoint_path)
  step_key = 'global_step/.ATTRIBUTES/VARIABLE_VALUE'
  info.update(
      checkpoint=checkpoint_path, used_ema=used_ema,
      global_step=(int(reader.get_tensor(step_key))
                   if reader.has_tensor(step_key) else None),
      categories_json=categories_json, jit_compile=bool(jit_compile))

  tmp_dir = f'{output_dir}.tmp-{uuid.uuid4().hex[:8]}'
  try:
    tf.saved_model.save(module, tmp_dir, signatures=module.signatures())
    info_path = os.path.join(tmp_dir, EXPORT_INFO_PATH)
    tf.io.gfile.makedirs(os.path.dirname(info_path))
    with tf.io.gfile.GFile(info_path, 'w') as f:
      json.dump(info, f, indent=2)
    _replace_directory(tmp_dir, output_dir, overwrite)
  finally:
    if tf.io.gfile.exists(tmp_dir):
      tf.io.gfile.rmtree(tmp_dir)
  info['output_dir'] = output_dir
  logging.info('Exported %s (step %s, EMA %s) to %s with signatures %s.',
               checkpoint_path, info['global_step'], used_ema, output_dir,
               ', '.join(info['signatures']))
  return info
