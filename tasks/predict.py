"""Predictions with an exported SavedModel (issue 8): files in, pictures and COCO panoptic out.

Images (`predict_images`): every file of the input (a file or a folder) is read
with PIL (EXIF orientation applied; grayscale, RGBA, palette and 16-bit images
become 8-bit RGB), sent one at a time through the `image_tensor` signature
(`trajectory` with `trajectory=True`), and written as

  O/<name>_overlay.png        instances coloured over the image, class names drawn
  O/panoptic/<name>.png       COCO panoptic PNG, segment id = R + 256 G + 256² B
  O/panoptic.json             `annotations` (segments_info with the dataset's
                              category ids), `categories`, `images`
  O/<name>_trajectory.png     with `trajectory`: the mask predicted at each
                              denoising step, left to right (paper Fig. 11)
  O/summary.json              what was written and what was skipped (and why)

so `tools.evaluate_panoptic` reads O/panoptic.json + O/panoptic/ like the
evaluator's own predictions. A file that is not an image is reported by name
and skipped; the rest go on.

Video (`predict_video`): a folder of frames (or a folder of such folders, one
per sequence, e.g. DAVIS `JPEGImages/480p`) is streamed frame by frame through
the `serving_video_tensor` signature; the client, not the server, keeps the
masks of the past frames (at mask size) and sends them with each frame
(`tasks.export`). Instance ids carry over between frames, so each instance
keeps its colour. Written:

  O/masks/<seq>/<frame>.png     DAVIS layout: indexed palette PNG, 0 background,
                                objects 1..N numbered by first appearance (at
                                most `max_objects`, default 20 as the DAVIS
                                unsupervised evaluation takes; later new
                                instances are left out of the masks)
  O/overlays/<seq>/<frame>_overlay.png
  O/<seq>.gif                   the overlays as an animated GIF
  O/summary.json
"""

import io
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
from PIL import ImageOps
import tensorflow as tf
import tqdm

from data import parsers
from data import synthetic
from tasks import export
from tasks.metrics import files
from tasks.metrics import panoptic_quality

OVERLAY_ALPHA = 0.55
GIF_MAX_SIDE = 480
TRAJECTORY_PANEL_SIDE = 192
MAX_DAVIS_OBJECTS = 254  # 255 is void in DAVIS annotations.
DAVIS_MAX_PROPOSALS = 20  # What the DAVIS unsupervised evaluation accepts.


# ----------------------------------------------------------------------------
# Reading images.


class NotAnImageError(ValueError):
  """A file that PIL cannot read as an image."""


def load_image(path: str) -> np.ndarray:
  """Reads an image file as uint8 RGB `[H, W, 3]`, upright.

  EXIF orientation is applied (`ImageOps.exif_transpose`); grayscale and
  palette images are expanded to RGB, alpha is dropped (as
  `tf.io.decode_image(channels=3)` does), 16-bit images keep their high byte
  (rounded), 32-bit integer / float images are clipped to `[0, 255]`.

  Raises:
    FileNotFoundError: `path` does not exist.
    NotAnImageError: the file is not an image PIL can decode (named).
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found.')
  with tf.io.gfile.GFile(path, 'rb') as f:
    data = f.read()
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      image = ImageOps.exif_transpose(image)
      return _to_rgb(image)
  except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    reason = str(e).split(' <_io.BytesIO')[0]  # PIL names the buffer, not the file.
    raise NotAnImageError(f'{path}: not a readable image ({reason}).') from e


def _to_rgb(image: Image.Image) -> np.ndarray:
  mode = image.mode
  if mode.startswith('I;16') or mode in ('I', 'F'):
    array = np.asarray(image)
    if mode.startswith('I;16') or (mode == 'I' and array.max(initial=0) > 255):
      array = np.round(array.astype(np.float64) / 257.0)
    array = np.clip(array, 0, 255).astype(np.uint8)
    return np.repeat(array[..., np.newaxis], 3, axis=-1)
  if mode in ('P', 'PA'):
    image = image.convert('RGBA')
  rgb = np.asarray(image.convert('RGB'), dtype=np.uint8)
  if rgb.size == 0:
    raise ValueError(f'zero-size image {rgb.shape}')
  return rgb


def list_files(input_path: str) -> List[str]:
  """`input_path` itself, or the files of the folder (sorted, hidden ones left out)."""
  if not tf.io.gfile.exists(input_path):
    raise FileNotFoundError(f'--input {input_path} not found.')
  if not tf.io.gfile.isdir(input_path):
    return [input_path]
  paths = []
  for name in sorted(tf.io.gfile.listdir(input_path)):
    path = os.path.join(input_path, name.rstrip('/'))
    if not name.startswith('.') and not tf.io.gfile.isdir(path):
      paths.append(path)
  return paths


def output_names(paths: Sequence[str]) -> List[str]:
  """File stems, with the extension appended where two files share a stem."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  names = []
  for path, stem in zip(paths, stems):
    if stems.count(stem) > 1:
      stem = f'{stem}_{os.path.splitext(path)[1].lstrip(".")}'
    names.append(stem)
  return names


# ----------------------------------------------------------------------------
# The exported model.


class ExportedModel:
  """A loaded export: signatures called with numpy in, numpy out, defaults filled."""

  def __init__(self, export_dir: str):
    self.export_dir = export_dir
    self.info = export.read_export_info(export_dir)
    self.loaded = tf.saved_model.load(export_dir)
    self.defaults = export.signature_defaults(export_dir)
    self.categories = self.info['categories']
    self.class_names = {c['class_id']: c['name'] for c in self.categories}

  def has_signature(self, name: str) -> bool:
    return name in self.loaded.signatures

  def __call__(self, signature: str, **inputs) -> Dict[str, np.ndarray]:
    """Runs `signature`; inputs left out (or None) take the stored defaults."""
    if not self.has_signature(signature):
      raise ValueError(f'{self.export_dir} has no signature {signature!r} '
                       f'(it has {sorted(self.loaded.signatures)}).')
    function = self.loaded.signatures[signature]
    feed = dict(self.defaults.get(signature, {}))
    feed.update({k: v for k, v in inputs.items() if v is not None})
    dtypes = {k: spec.dtype for k, spec in
              function.structured_input_signature[1].items()}
    feed = {k: tf.convert_to_tensor(v, dtypes[k]) for k, v in feed.items()}
    return {k: v.numpy() for k, v in function(**feed).items()}


def _reason(error: Exception, path: str) -> str:
  """The telling line of an error's message, without a leading file name."""
  noise = ('Graph execution error', 'Detected at node', '<stack traces', '[[')
  lines = [line.strip() for line in str(error).splitlines()]
  lines = [line for line in lines if line and not line.startswith(noise)]
  reason = lines[0] if lines else type(error).__name__
  return reason[len(path) + 2:] if reason.startswith(path + ': ') else reason


def _load(saved_model) -> ExportedModel:
  if isinstance(saved_model, ExportedModel):
    return saved_model
  return ExportedModel(saved_model)


def _options(num_steps, td, seed):
  return dict(num_steps=None if num_steps is None else np.int32(num_steps),
              td=None if td is None else np.float32(td),
              seed=np.array(seed, np.int32))


# ----------------------------------------------------------------------------
# Pictures.


def instance_palette() -> np.ndarray:
  """uint8 `[256, 3]` colours per instance id (fixed, so ids keep colours across frames)."""
  rng = np.random.default_rng(1234)
  palette = rng.integers(40, 256, size=(256, 3)).astype(np.uint8)
  palette[0] = 0
  return palette


def _font(image_height: int, image_width: int):
  size = int(np.clip(min(image_height, image_width) / 30, 9, 64))
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError):  # Pillow without FreeType: the bitmap font.
    return ImageFont.load_default()


def overlay(image: np.ndarray, category: np.ndarray, instance: np.ndarray,
            class_names: Dict[int, str], colors: np.ndarray,
            color_ids: Optional[np.ndarray] = None,
            draw_labels: bool = True) -> Image.Image:
  """Colours each segment over the image and writes its class name at its centre.

  Args:
    image: uint8 `[H, W, 3]`.
    category: int `[H, W]` class ids (0 = void).
    instance: int `[H, W]` instance ids (0 = none).
    class_names: class id -> name (unknown ids are drawn as `class <k>`).
    colors: uint8 `[N, 3]` colour per colour id.
    color_ids: int `[H, W]` colour ids; default `instance`.
    draw_labels: draw the class names.

  Returns:
    An RGB PIL image of the same size.
  """
  color_ids = instance if color_ids is None else color_ids
  segmented = (category > 0) & (instance > 0)
  color = colors[np.clip(color_ids, 0, len(colors) - 1)].astype(np.float32)
  blended = image.astype(np.float32)
  blended[segmented] = ((1.0 - OVERLAY_ALPHA) * blended[segmented] +
                        OVERLAY_ALPHA * color[segmented])
  picture = Image.fromarray(np.round(blended).astype(np.uint8))
  if not draw_labels or not segmented.any():
    return picture
  # One pass over the pixels: centroid of each (class, instance) segment.
  keys = np.where(segmented, category.astype(np.int64) * 65536 + instance, 0)
  flat = keys.ravel()
  ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
  rows, cols = np.indices(keys.shape)
  row_means = np.bincount(inverse, weights=rows.ravel()) / counts
  col_means = np.bincount(inverse, weights=cols.ravel()) / counts
  draw = ImageDraw.Draw(picture)
  font = _font(*keys.shape)
  for key, row, col in zip(ids, row_means, col_means):
    if key == 0:
      continue
    class_id = int(key // 65536)
    text = class_names.get(class_id, f'class {class_id}')
    box = draw.textbbox((0, 0), text, font=font)
    x = int(np.clip(col - (box[2] - box[0]) / 2, 0, max(keys.shape[1] - 1, 0)))
    y = int(np.clip(row - (box[3] - box[1]) / 2, 0, max(keys.shape[0] - 1, 0)))
    draw.text((x, y), text, fill=(255, 255, 255), font=font,
              stroke_width=max(1, int(getattr(font, 'size', 10)) // 10),
              stroke_fill=(0, 0, 0))
  return picture


def _display_info(image_info: np.ndarray, max_side: int) -> Tuple[np.ndarray,
                                                                   Tuple[int, int]]:
  """`image_info` re-expressed for a smaller picture of the original image."""
  original = image_info[0]
  factor = min(1.0, max_side / float(max(original)))
  display = np.maximum(np.round(original * factor), 1.0)
  info = np.array(image_info, np.float32)
  info[0] = display
  info[2] = info[1] / display
  return info, (int(display[0]), int(display[1]))


def trajectory_picture(image: np.ndarray, trajectory: np.ndarray,
                       image_info: np.ndarray, image_size,
                       class_names: Dict[int, str],
                       colors: np.ndarray) -> Image.Image:
  """The mask of every denoising step over the (shrunk) image, left to right.

  Args:
    image: uint8 `[H, W, 3]` original.
    trajectory: int `[T, h, w, 2]` label maps at mask size.
    image_info: float `[4, 2]` of the image.
    image_size: the model input size of the export.
    class_names: class id -> name.
    colors: instance colours.
  """
  info, (height, width) = _display_info(image_info, TRAJECTORY_PANEL_SIDE)
  small = np.asarray(Image.fromarray(image).resize((width, height),
                                                   Image.BILINEAR))
  panels = []
  for step, label_map in enumerate(trajectory):
    mask = parsers.label_map_to_original(
        tf.constant(label_map, tf.int32), tf.constant(info),
        tuple(image_size)).numpy()
    panel = overlay(small, mask[..., 0], mask[..., 1], class_names, colors,
                    draw_labels=False)
    ImageDraw.Draw(panel).text((2, 2), f'step {step + 1}', fill=(255, 255, 255),
                               stroke_width=1, stroke_fill=(0, 0, 0))
    panels.append(panel)
  strip = Image.new('RGB', (width * len(panels), height))
  for i, panel in enumerate(panels):
    strip.paste(panel, (i * width, 0))
  return strip


def _write_image(path: str, picture: Image.Image, **save_args) -> None:
  folder = os.path.dirname(path)
  if folder:
    tf.io.gfile.makedirs(folder)
  buffer = io.BytesIO()
  picture.save(buffer, format=save_args.pop('format', 'PNG'), **save_args)
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(buffer.getvalue())
  tf.io.gfile.rename(tmp, path, overwrite=True)


# ----------------------------------------------------------------------------
# Images.


def _image_id(name: str):
  return int(name) if name.isdigit() else name


def panoptic_annotation(name: str, category: np.ndarray, instance: np.ndarray,
                        dataset_ids: Dict[int, int]):
  """COCO panoptic segment map + annotation of one prediction.

  Returns:
    `(segment_map int64 [H, W], annotation dict)`; segment ids
    `class * 65536 + instance` (`panoptic_quality.segments_from_label_maps`),
    `category_id` the dataset's id, with `area` and `bbox` `[x, y, w, h]`.
  """
  segment_map, segments = panoptic_quality.segments_from_label_maps(
      category, instance)
  for segment in segments:
    rows, cols = np.nonzero(segment_map == segment['id'])
    segment['category_id'] = dataset_ids[segment['category_id']]
    segment['area'] = int(rows.size)
    segment['bbox'] = [int(cols.min()), int(rows.min()),
                       int(cols.max() - cols.min() + 1),
                       int(rows.max() - rows.min() + 1)]
  annotation = dict(image_id=_image_id(name), file_name=f'{name}.png',
                    segments_info=segments)
  return segment_map, annotation


def predict_images(saved_model: Union[str, 'ExportedModel'], input_path: str,
                   output_dir: str, *,
                   num_steps: Optional[int] = None, td: Optional[float] = None,
                   seed: int = 0, trajectory: bool = False,
                   progress: bool = True) -> dict:
  """Predicts every image of `input_path` and writes the module docstring's files.

  Args:
    saved_model: a `tools.export_saved_model` folder, or it loaded.
    input_path: an image file or a folder of them.
    output_dir: where to write.
    num_steps: DDIM steps (default: the export's).
    td: time difference (default: the export's).
    seed: noise seed; every image uses `(seed, 0)`, so a result does not
      depend on the other files.
    trajectory: also draw the mask of every step (`trajectory` signature).
    progress: show a progress bar on stderr.

  Returns:
    The summary (also `O/summary.json`): `predicted` names, `skipped`
    `{file: reason}`, and the output paths.
  """
  model = _load(saved_model)
  paths = list_files(input_path)
  names = output_names(paths)
  dataset_ids = {c['class_id']: c['id'] for c in model.categories}
  colors = instance_palette()
  annotations, images, predicted, skipped = [], [], [], {}
  signature = (export.SIGNATURE_TRAJECTORY if trajectory
               else export.SIGNATURE_IMAGE_TENSOR)
  for path, name in zip(tqdm.tqdm(paths, desc='predict', unit='image',
                                  file=sys.stderr, disable=not progress),
                        names):
    try:
      image = load_image(path)
      outputs = model(signature, image_tensor=image[np.newaxis],
                      **_options(num_steps, td, (seed, 0)))
    except (NotAnImageError, tf.errors.InvalidArgumentError) as e:
      reason = _reason(e, path)
      logging.warning('skipping %s: %s', path, reason)
      skipped[path] = reason
      continue
    height, width = outputs['original_size'][0]
    category = outputs['panoptic_category_mask'][0, :height, :width]
    instance = outputs['panoptic_instance_mask'][0, :height, :width]
    _write_image(os.path.join(output_dir, f'{name}_overlay.png'),
                 overlay(image, category, instance, model.class_names, colors))
    segment_map, annotation = panoptic_annotation(name, category, instance,
                                                  dataset_ids)
    files.write_png(os.path.join(output_dir, 'panoptic', f'{name}.png'),
                    files.id_to_rgb(segment_map))
    annotations.append(annotation)
    images.append(dict(id=annotation['image_id'], file_name=os.path.basename(path),
                       height=int(height), width=int(width)))
    if trajectory:
      _write_image(os.path.join(output_dir, f'{name}_trajectory.png'),
                   trajectory_picture(image, outputs['trajectory'][0],
                                      outputs['image_info'][0],
                                      model.info['image_size'],
                                      model.class_names, colors))
    predicted.append(name)
  categories = [dict(id=c['id'], name=c['name'], isthing=c['isthing'])
                for c in model.categories]
  files.write_json(os.path.join(output_dir, 'panoptic.json'),
                   dict(annotations=annotations, categories=categories,
                        images=images))
  summary = dict(predicted=predicted, skipped=skipped,
                 panoptic_json=os.path.join(output_dir, 'panoptic.json'),
                 panoptic_dir=os.path.join(output_dir, 'panoptic'))
  files.write_json(os.path.join(output_dir, 'summary.json'), summary)
  return summary


# ----------------------------------------------------------------------------
# Video.


def list_sequences(input_path: str) -> Dict[str, List[str]]:
  """`{sequence: [frame paths]}`: a folder of frames, or a folder of such folders."""
  if not tf.io.gfile.isdir(input_path):
    raise FileNotFoundError(f'--input {input_path} is not a folder of frames.')
  frames = list_files(input_path)
  if frames:
    return {os.path.basename(input_path.rstrip('/')): frames}
  sequences = {}
  for name in sorted(tf.io.gfile.listdir(input_path)):
    folder = os.path.join(input_path, name.rstrip('/'))
    if tf.io.gfile.isdir(folder) and not name.startswith('.'):
      sequences[name.rstrip('/')] = list_files(folder)
  if not sequences:
    raise FileNotFoundError(f'--input {input_path} holds no frames.')
  return sequences


class ObjectNumbers:
  """Instance id -> DAVIS object index (1, 2, ... by first appearance in a video).

  Instances after the first `max_objects` map to 0 (background).
  """

  def __init__(self, max_objects: int = DAVIS_MAX_PROPOSALS):
    if not 1 <= max_objects <= MAX_DAVIS_OBJECTS:
      raise ValueError(f'max_objects={max_objects} not in [1, '
                       f'{MAX_DAVIS_OBJECTS}] (255 is void in DAVIS masks).')
    self.table = np.zeros(256, np.uint8)
    self.count = 0
    self.max_objects = max_objects

  def __call__(self, instance: np.ndarray) -> np.ndarray:
    """int `[H, W]` instance ids (0 = none) -> uint8 object indices."""
    for instance_id in np.unique(instance):
      if instance_id and not self.table[instance_id]:
        if self.count < self.max_objects:
          self.count += 1
          self.table[instance_id] = self.count
    return self.table[np.clip(instance, 0, 255)]


def predict_video(saved_model: Union[str, 'ExportedModel'], input_path: str,
                  output_dir: str, *,
                  num_steps: Optional[int] = None,
                  first_frame_num_steps: Optional[int] = None,
                  td: Optional[float] = None, seed: int = 0,
                  max_objects: int = DAVIS_MAX_PROPOSALS,
                  progress: bool = True) -> dict:
  """Streams the frames of each sequence through the video signature.

  Args:
    saved_model: an export of a video model (`serving_video_tensor`), or it
      loaded.
    input_path: a folder of frames, or a folder of sequence folders.
    output_dir: where to write (module docstring).
    num_steps: DDIM steps per frame (default: the export's).
    first_frame_num_steps: steps for frame 0 (REFERENCE §6, DAVIS: 32 then 8);
      default `num_steps`.
    td: time difference (default: the export's).
    seed: frame `i` uses the noise seed `(seed, i)`.
    max_objects: objects per sequence in the DAVIS masks (module docstring).
    progress: show a progress bar on stderr.

  Returns:
    The summary (also `O/summary.json`): frames written per sequence,
    `skipped` `{file: reason}`, output folders.
  """
  export_dir = getattr(saved_model, 'export_dir', saved_model)
  signatures = (saved_model.info if isinstance(saved_model, ExportedModel)
                else export.read_export_info(export_dir))['signatures']
  if export.SIGNATURE_VIDEO_TENSOR not in signatures:
    raise ValueError(f'{export_dir} is not a video model export (no '
                     f'{export.SIGNATURE_VIDEO_TENSOR!r} signature).')
  model = _load(saved_model)
  offsets = [int(o) for o in model.info['past_frame_offsets']]
  mask_size = tuple(model.info['mask_size'])
  history_length = max(-o for o in offsets)
  sequences = list_sequences(input_path)
  palette = np.array(synthetic.davis_palette(), np.uint8).reshape(256, 3)
  total = sum(len(v) for v in sequences.values())
  bar = tqdm.tqdm(total=total, desc='predict video', unit='frame',
                  file=sys.stderr, disable=not progress)
  written, skipped = {}, {}
  for sequence, paths in sequences.items():
    # history[k]: the predicted label map k + 1 frames back (void until it exists).
    history = np.zeros((history_length, 1) + mask_size + (2,), np.int32)
    numbers = ObjectNumbers(max_objects)
    gif_frames, names = [], []
    frame_index = 0
    for path, name in zip(paths, output_names(paths)):
      bar.update(1)
      try:
        image = load_image(path)
        past = np.stack([history[-o - 1] for o in offsets], axis=1)
        steps = num_steps
        if frame_index == 0 and first_frame_num_steps is not None:
          steps = first_frame_num_steps
        outputs = model(export.SIGNATURE_VIDEO_TENSOR,
                        image_tensor=image[np.newaxis], past_label_maps=past,
                        **_options(steps, td, (seed, frame_index)))
      except (NotAnImageError, tf.errors.InvalidArgumentError) as e:
        reason = _reason(e, path)
        logging.warning('skipping %s: %s', path, reason)
        skipped[path] = reason
        continue
      history = np.roll(history, 1, axis=0)
      history[0] = outputs['label_map']
      frame_index += 1
      height, width = outputs['original_size'][0]
      category = outputs['panoptic_category_mask'][0, :height, :width]
      instance = outputs['panoptic_instance_mask'][0, :height, :width]
      objects = numbers(np.where(category > 0, instance, 0))
      mask = Image.fromarray(objects)  # 'L'; putpalette makes it 'P'.
      mask.putpalette(palette.ravel().tolist())
      _write_image(os.path.join(output_dir, 'masks', sequence, f'{name}.png'),
                   mask)
      picture = overlay(image, category, instance, model.class_names, palette,
                        color_ids=objects)
      _write_image(os.path.join(output_dir, 'overlays', sequence,
                                f'{name}_overlay.png'), picture)
      factor = min(1.0, GIF_MAX_SIDE / max(picture.size))
      gif_frames.append(picture.resize(
          (max(1, round(picture.size[0] * factor)),
           max(1, round(picture.size[1] * factor))), Image.BILINEAR))
      names.append(name)
    if gif_frames:
      _write_image(os.path.join(output_dir, f'{sequence}.gif'), gif_frames[0],
                   format='GIF', save_all=True, append_images=gif_frames[1:],
                   duration=100, loop=0)
    written[sequence] = names
  bar.close()
  summary = dict(frames=written, skipped=skipped,
                 masks_dir=os.path.join(output_dir, 'masks'),
                 overlays_dir=os.path.join(output_dir, 'overlays'))
  files.write_json(os.path.join(output_dir, 'summary.json'), summary)
  return summary
