"""Built-in synthetic datasets, written in the real formats (REFERENCE §7).

Images are written in the COCO panoptic layout, so they go through
`tools.create_coco_panoptic_tfrecord` like COCO itself:

  D/images/{train,val}/000000000001.png         the image (PNG: lossless)
  D/panoptic/{train,val}/000000000001.png       RGB ids, id = R + 256G + 256²B
  D/annotations/panoptic_{train,val}.json       images, annotations, categories

Videos (`--video`) are written in the DAVIS 2017 layout, so they go through
`tools.create_davis_tfrecord` (the folder is called `480p` as DAVIS's is; the
frames are `image_size` square):

  D/JPEGImages/480p/<seq>/00000.jpg
  D/Annotations_unsupervised/480p/<seq>/00000.png   palette PNG: 0 background,
                                                    k object k, 255 void
  D/ImageSets/2017/{train,val}.txt

Content of an image: two stuff classes, `sky` (a smooth vertical colour
gradient) above `ground` (a noisy texture) with a random wavy boundary; 1-6
things of four classes that differ only by SHAPE (disc, square, triangle,
ring), each with a random size (radius 12-30 % of the side), position,
rotation, colours and texture (flat, stripes, checker, noise), drawn in order
so later ones occlude earlier ones; and some void pixels (a thin band and/or a
small blob of unlabelled clutter). A video keeps one such scene and moves the
things (velocity, spin); things enter and leave the frame and pass each other.

Everything is deterministic: image `i` of a split uses the generator
`np.random.default_rng([seed, split_code, i])`, so the output does not depend
on the order or the number of workers.
"""

import dataclasses
import io
import os
from typing import Optional

import numpy as np
from PIL import Image
import tensorflow as tf

from data import source_files
from data import writer

THING_CATEGORIES = (
    {'id': 1, 'name': 'disc', 'isthing': 1, 'color': [220, 20, 60],
     'supercategory': 'shape'},
    {'id': 2, 'name': 'square', 'isthing': 1, 'color': [0, 0, 142],
     'supercategory': 'shape'},
    {'id': 3, 'name': 'triangle', 'isthing': 1, 'color': [250, 170, 30],
     'supercategory': 'shape'},
    {'id': 4, 'name': 'ring', 'isthing': 1, 'color': [0, 160, 80],
     'supercategory': 'shape'},
)
STUFF_CATEGORIES = (
    {'id': 101, 'name': 'sky', 'isthing': 0, 'color': [70, 130, 180],
     'supercategory': 'background'},
    {'id': 102, 'name': 'ground', 'isthing': 0, 'color': [152, 251, 152],
     'supercategory': 'background'},
)
CATEGORIES = THING_CATEGORIES + STUFF_CATEGORIES
SKY_ID = 101
GROUND_ID = 102
SHAPES = tuple(c['name'] for c in THING_CATEGORIES)
TEXTURES = ('flat', 'stripes', 'checker', 'noise')

MIN_INSTANCES, MAX_INSTANCES = 1, 6
MIN_RADIUS, MAX_RADIUS = 0.12, 0.30  # fractions of the image side
RING_INNER = 0.55  # inner radius of a ring, as a fraction of its radius
VOID_BAND_PROBABILITY = 0.5
VOID_BLOB_PROBABILITY = 0.3
DAVIS_VOID = 255

_SPLIT_CODES = {'train': 0, 'val': 1}
_VIDEO_SPLIT_CODES = {'train': 2, 'val': 3}


@dataclasses.dataclass
class Thing:
  """One thing instance: its shape, pose, motion and look."""
  category_id: int
  radius: float
  center: np.ndarray  # (y, x) pixels
  angle: float
  velocity: np.ndarray  # (dy, dx) pixels per frame
  spin: float  # radians per frame
  start_frame: int
  texture: dict


@dataclasses.dataclass
class Scene:
  """A rendered image and its ground truth.

  Attributes:
    image: uint8 `[H, W, 3]`.
    segment_map: int32 `[H, W]`: 0 void, i + 1 = `segments[i]`.
    segments: dicts with `category_id`, `area` (visible pixels) and
      `full_area` (pixels of the whole shape, before occlusion); sky, ground,
      then the things in drawing order.
  """
  image: np.ndarray
  segment_map: np.ndarray
  segments: list


# ---------------------------------------------------------------- drawing ---


def _grid(size: int):
  """Pixel-centre coordinates (y, x), float32 `[S, S]` each."""
  coords = np.arange(size, dtype=np.float32) + 0.5
  return np.meshgrid(coords, coords, indexing='ij')


def _local(yy, xx, center, angle):
  """Coordinates in a thing's frame (origin at its centre, rotated)."""
  dy, dx = yy - center[0], xx - center[1]
  cos, sin = np.cos(angle), np.sin(angle)
  return dx * cos + dy * sin, -dx * sin + dy * cos


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray,
               radius: float) -> np.ndarray:
  """A shape in its own frame; all four have comparable areas for one radius.

  Args:
    shape: one of `SHAPES`.
    u: float `[H, W]` local x coordinates.
    v: float `[H, W]` local y coordinates.
    radius: the shape's radius in pixels.

  Returns:
    bool `[H, W]`.
  """
  if shape == 'disc':
    return u * u + v * v <= radius * radius
  if shape == 'ring':
    d2 = u * u + v * v
    return (d2 <= radius * radius) & (d2 >= (RING_INNER * radius)**2)
  if shape == 'square':
    half = 0.85 * radius
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  if shape == 'triangle':
    # Equilateral; the inradius is half the circumradius (1.2 * radius).
    inradius = 0.6 * radius
    inside = np.ones(u.shape, bool)
    for k in range(3):
      theta = np.pi / 2 + k * 2 * np.pi / 3
      inside &= u * np.cos(theta) + v * np.sin(theta) <= inradius
    return inside
  raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}.')


def sample_texture(rng: np.random.Generator, image_size: int) -> dict:
  """A random look: kind, two colours and the kind's parameters."""
  scale = image_size / 64.0
  texture = {
      'kind': TEXTURES[rng.integers(len(TEXTURES))],
      'colors': rng.uniform(0, 255, size=(2, 3)).astype(np.float32),
      'period': float(rng.uniform(3.0, 8.0) * scale),
      'cell': float(rng.uniform(2.0, 6.0) * scale),
  }
  if texture['kind'] == 'noise':
    # A fixed noise pattern in the thing's frame (it moves with the thing),
    # covering local coordinates -S..S.
    texture['noise_sigma'] = float(rng.uniform(20.0, 50.0))
    texture['noise'] = rng.standard_normal(
        (2 * image_size + 1, 2 * image_size + 1, 3)).astype(np.float32)
  return texture


def paint_texture(texture: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Texture colours at local coordinates (it moves and turns with its thing).

  Returns:
    float32 `[H, W, 3]`, not clipped.
  """
  first, second = texture['colors']
  kind = texture['kind']
  if kind == 'flat':
    return np.broadcast_to(first, u.shape + (3,)).astype(np.float32)
  if kind == 'stripes':
    on = (u / texture['period']) % 1.0 < 0.5
    return np.where(on[..., None], first, second)
  if kind == 'checker':
    cell = texture['cell']
    on = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    return np.where(on[..., None], first, second)
  if kind == 'noise':
    noise = texture['noise']
    half = noise.shape[0] // 2
    iu = np.clip(np.floor(u).astype(np.int64) + half, 0, noise.shape[1] - 1)
    iv = np.clip(np.floor(v).astype(np.int64) + half, 0, noise.shape[0] - 1)
    return first + texture['noise_sigma'] * noise[iv, iu]
  raise ValueError(f'unknown texture {kind!r}; expected one of {TEXTURES}.')


def render_background(rng: np.random.Generator, image_size: int):
  """Sky (smooth gradient) above ground (noisy texture), a wavy boundary.

  Returns:
    `(image float32 [S, S, 3], is_sky bool [S, S])`.
  """
  yy, xx = _grid(image_size)
  side = float(image_size)
  boundary = side * rng.uniform(0.3, 0.7) + np.zeros_like(xx)
  for _ in range(2):
    amplitude = side * rng.uniform(0.0, 0.08)
    frequency = rng.uniform(0.5, 3.0)
    phase = rng.uniform(0, 2 * np.pi)
    boundary += amplitude * np.sin(2 * np.pi * frequency * xx / side + phase)
  is_sky = yy < boundary
  top, bottom = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
  t = (yy / side)[..., None]
  sky = top * (1 - t) + bottom * t
  ground_color = rng.uniform(0, 255, size=3).astype(np.float32)
  ground_sigma = rng.uniform(15.0, 40.0)
  ground = ground_color + ground_sigma * rng.standard_normal(
      (image_size, image_size, 3)).astype(np.float32)
  return np.where(is_sky[..., None], sky, ground), is_sky


def sample_void(rng: np.random.Generator, image_size: int) -> tuple:
  """Void regions: maybe a thin band, maybe a small blob.

  Returns:
    `(void bool [S, S], clutter float32 [S, S, 3])`: the void pixels and what
    the image shows there (grey noise: unlabelled clutter).
  """
  yy, xx = _grid(image_size)
  void = np.zeros((image_size, image_size), bool)
  if rng.uniform() < VOID_BAND_PROBABILITY:
    angle = rng.uniform(0, np.pi)
    point = rng.uniform(0, image_size, size=2)
    width = rng.uniform(1.0, 2.0) * image_size / 64.0
    distance = (xx - point[1]) * np.sin(angle) - (yy - point[0]) * np.cos(angle)
    void |= np.abs(distance) <= width / 2
  if rng.uniform() < VOID_BLOB_PROBABILITY:
    center = rng.uniform(0, image_size, size=2)
    radii = rng.uniform(0.04, 0.08, size=2) * image_size
    void |= (((yy - center[0]) / radii[0])**2 +
             ((xx - center[1]) / radii[1])**2) <= 1
  grey = rng.uniform(60, 200)
  clutter = grey + 40 * rng.standard_normal(
      (image_size, image_size, 1)).astype(np.float32)
  return void, np.repeat(clutter, 3, axis=2)


def sample_things(rng: np.random.Generator, image_size: int,
                  num_frames: int = 1) -> list:
  """1-6 things; with `num_frames` > 1 some enter later from outside."""
  side = float(image_size)
  things = []
  for _ in range(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1)):
    category = THING_CATEGORIES[rng.integers(len(THING_CATEGORIES))]
    radius = rng.uniform(MIN_RADIUS, MAX_RADIUS) * side
    speed = rng.uniform(0.5, 2.5) * side / 64.0
    direction = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.sin(direction), np.cos(direction)])
    start_frame = 0
    center = rng.uniform(0.1 * side, 0.9 * side, size=2)
    if num_frames > 1 and rng.uniform() < 0.3:
      # Enters later: starts just outside an edge, moving inwards.
      start_frame = int(rng.integers(1, max(2, num_frames // 2)))
      axis = int(rng.integers(2))
      low_edge = rng.uniform() < 0.5
      center[axis] = -radius if low_edge else side + radius
      velocity[axis] = abs(velocity[axis]) + side / 64.0
      if not low_edge:
        velocity[axis] = -velocity[axis]
    things.append(Thing(
        category_id=category['id'], radius=float(radius), center=center,
        angle=float(rng.uniform(0, 2 * np.pi)), velocity=velocity,
        spin=float(rng.uniform(-0.1, 0.1)), start_frame=start_frame,
        texture=sample_texture(rng, image_size)))
  return things


def compose(background, is_sky, things, void, clutter, frame: int = 0):
  """Draws the things over the background (later ones on top), then the void.

  Args:
    background: float32 `[S, S, 3]`.
    is_sky: bool `[S, S]`.
    things: `Thing`s in drawing order.
    void: bool `[S, S]`.
    clutter: float32 `[S, S, 3]`, the image inside the void.
    frame: the frame index (things move by `velocity * (frame - start)`).

  Returns:
    A `Scene` (segments: sky, ground, then things in drawing order).
  """
  image_size = background.shape[0]
  yy, xx = _grid(image_size)
  image = background.copy()
  segment_map = np.where(is_sky, 1, 2).astype(np.int32)
  segments = [{'category_id': SKY_ID, 'full_area': int(is_sky.sum())},
              {'category_id': GROUND_ID, 'full_area': int((~is_sky).sum())}]
  shape_of = {c['id']: c['name'] for c in THING_CATEGORIES}
  for thing in things:
    mask = np.zeros((image_size, image_size), bool)
    if frame >= thing.start_frame:
      elapsed = frame - thing.start_frame
      center = thing.center + thing.velocity * elapsed
      u, v = _local(yy, xx, center, thing.angle + thing.spin * elapsed)
      mask = shape_mask(shape_of[thing.category_id], u, v, thing.radius)
      image[mask] = paint_texture(thing.texture, u, v)[mask]
    segment_map[mask] = len(segments) + 1
    segments.append({'category_id': thing.category_id,
                     'full_area': int(mask.sum())})
  image[void] = clutter[void]
  segment_map[void] = 0
  areas = np.bincount(segment_map.ravel(), minlength=len(segments) + 1)
  for i, segment in enumerate(segments):
    segment['area'] = int(areas[i + 1])
  return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), segment_map,
               segments)


def render_image(rng: np.random.Generator, image_size: int) -> Scene:
  """One random still scene (module docstring)."""
  background, is_sky = render_background(rng, image_size)
  things = sample_things(rng, image_size)
  void, clutter = sample_void(rng, image_size)
  return compose(background, is_sky, things, void, clutter)


def render_video(rng: np.random.Generator, image_size: int,
                 num_frames: int) -> list:
  """A random scene whose things move, enter, leave and occlude each other.

  Returns:
    `num_frames` `Scene`s sharing one segment list layout (sky, ground, then
    thing k at position k + 1, whether or not it is visible in that frame).
  """
  background, is_sky = render_background(rng, image_size)
  things = sample_things(rng, image_size, num_frames)
  void, clutter = sample_void(rng, image_size)
  scenes = []
  for frame in range(num_frames):
    noisy = background + 2.0 * rng.standard_normal(background.shape).astype(
        np.float32)
    scenes.append(compose(noisy, is_sky, things, void, clutter, frame))
  return scenes


# ---------------------------------------------------------------- writing ---


def _png_bytes(array: np.ndarray, palette: Optional[list] = None) -> bytes:
  image = Image.fromarray(array)
  if palette is not None:
    image.putpalette(palette)
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def _jpeg_bytes(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def davis_palette() -> list:
  """The DAVIS/PASCAL VOC colour palette (768 ints) of the annotation PNGs."""
  palette = []
  for index in range(256):
    r = g = b = 0
    value = index
    for bit in range(8):
      r |= ((value >> 0) & 1) << (7 - bit)
      g |= ((value >> 1) & 1) << (7 - bit)
      b |= ((value >> 2) & 1) << (7 - bit)
      value >>= 3
    palette.extend((r, g, b))
  return palette


def panoptic_annotation(scene: Scene, rng: np.random.Generator):
  """COCO panoptic ground truth of a scene.

  Segments without visible pixels are left out; the others get distinct
  random ids in [1, 2^24) (as COCO's do).

  Returns:
    `(rgb uint8 [H, W, 3] id PNG content, segments_info list)`.
  """
  visible = [i for i, s in enumerate(scene.segments) if s['area'] > 0]
  ids = rng.choice(2**24 - 1, size=len(visible), replace=False) + 1
  id_lut = np.zeros(len(scene.segments) + 1, np.int64)
  segments_info = []
  for i, segment_id in zip(visible, ids.tolist()):
    id_lut[i + 1] = segment_id
    ys, xs = np.nonzero(scene.segment_map == i + 1)
    x0, y0 = int(xs.min()), int(ys.min())
    segments_info.append({
        'id': int(segment_id),
        'category_id': scene.segments[i]['category_id'],
        'iscrowd': 0,
        'area': scene.segments[i]['area'],
        'bbox': [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
    })
  id_map = id_lut[scene.segment_map]
  rgb = np.stack([id_map % 256, (id_map // 256) % 256, id_map // 65536],
                 axis=-1).astype(np.uint8)
  return rgb, segments_info


def write_image_example(index: int, *, output_dir: str, split: str,
                        image_size: int, seed: int) -> tuple:
  """Renders and writes image `index` of `split`; returns its JSON entries.

  Returns:
    `(images entry, annotations entry)` of the COCO panoptic JSON.
  """
  rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
  scene = render_image(rng, image_size)
  rgb, segments_info = panoptic_annotation(scene, rng)
  image_id = index + 1
  name = f'{image_id:012d}.png'
  source_files.write_bytes_atomic(
      os.path.join(output_dir, 'images', split, name), _png_bytes(scene.image))
  source_files.write_bytes_atomic(
      os.path.join(output_dir, 'panoptic', split, name), _png_bytes(rgb))
  image_entry = {'id': image_id, 'file_name': name, 'height': image_size,
                 'width': image_size}
  annotation_entry = {'image_id': image_id, 'file_name': name,
                      'segments_info': segments_info}
  return image_entry, annotation_entry


class _WriteImage:
  """Picklable `index -> write_image_example(index, ...)` for worker pools."""

  def __init__(self, **kwargs):
    self.kwargs = kwargs

  def __call__(self, index):
    return write_image_example(index, **self.kwargs)


def write_image_split(output_dir: str, split: str, num_images: int, *,
                      image_size: int = 64, seed: int = 0,
                      num_workers: int = 1) -> str:
  """Writes one split in the COCO panoptic layout (module docstring).

  Returns:
    The annotations JSON path.
  """
  for folder in ('images', 'panoptic'):
    tf.io.gfile.makedirs(os.path.join(output_dir, folder, split))
  tf.io.gfile.makedirs(os.path.join(output_dir, 'annotations'))
  entries = writer.parallel_map(
      _WriteImage(output_dir=output_dir, split=split, image_size=image_size,
                  seed=seed), list(range(num_images)), num_workers)
  payload = {
      'info': {'description': f'Pix2Seq-D synthetic shapes, {split}, seed '
                              f'{seed}, {image_size}x{image_size}'},
      'images': [e[0] for e in entries],
      'annotations': [e[1] for e in entries],
      'categories': [dict(c) for c in CATEGORIES],
  }
  path = os.path.join(output_dir, 'annotations', f'panoptic_{split}.json')
  source_files.write_json_atomic(path, payload)
  return path


def davis_labels(scene: Scene) -> np.ndarray:
  """DAVIS labels of a scene: 0 sky and ground, k thing k, 255 void."""
  lut = np.zeros(len(scene.segments) + 1, np.uint8)
  lut[0] = DAVIS_VOID
  lut[3:] = np.arange(1, len(scene.segments) - 1)  # segment 3 = thing 1
  return lut[scene.segment_map]


def write_video(index: int, *, output_dir: str, split: str, image_size: int,
                num_frames: int, seed: int) -> str:
  """Renders and writes video `index` of `split` in the DAVIS layout.

  Returns:
    The sequence name.
  """
  rng = np.random.default_rng([seed, _VIDEO_SPLIT_CODES[split], index])
  name = f'synth-{split}-{index:04d}'
  frame_dir = os.path.join(output_dir, 'JPEGImages', '480p', name)
  label_dir = os.path.join(output_dir, 'Annotations_unsupervised', '480p', name)
  tf.io.gfile.makedirs(frame_dir)
  tf.io.gfile.makedirs(label_dir)
  palette = davis_palette()
  for frame, scene in enumerate(render_video(rng, image_size, num_frames)):
    source_files.write_bytes_atomic(
        os.path.join(frame_dir, f'{frame:05d}.jpg'), _jpeg_bytes(scene.image))
    source_files.write_bytes_atomic(
        os.path.join(label_dir, f'{frame:05d}.png'),
        _png_bytes(davis_labels(scene), palette))
  return name


class _WriteVideo:
  """Picklable `index -> write_video(index, ...)` for worker pools."""

  def __init__(self, **kwargs):
    self.kwargs = kwargs

  def __call__(self, index):
    return write_video(index, **self.kwargs)


def write_video_split(output_dir: str, split: str, num_videos: int, *,
                      image_size: int = 64, num_frames: int = 20,
                      seed: int = 0, num_workers: int = 1) -> str:
  """Writes one split in the DAVIS 2017 layout (module docstring).

  Returns:
    The `ImageSets/2017/<split>.txt` path.
  """
  names = writer.parallel_map(
      _WriteVideo(output_dir=output_dir, split=split, image_size=image_size,
                  num_frames=num_frames, seed=seed), list(range(num_videos)),
      num_workers)
  list_dir = os.path.join(output_dir, 'ImageSets', '2017')
  tf.io.gfile.makedirs(list_dir)
  path = os.path.join(list_dir, f'{split}.txt')
  source_files.write_bytes_atomic(
      path, ''.join(n + '\n' for n in names).encode())
  return path


def make_synthetic(output_dir: str, *, num_train: int = 1000,
                   num_val: int = 200, image_size: int = 64, seed: int = 0,
                   video: bool = False, num_videos: int = 40,
                   num_val_videos: int = 10, num_frames: int = 20,
                   num_workers: int = 1) -> dict:
  """Writes the synthetic image splits and, with `video`, the video splits.

  Returns:
    Paths written: {'panoptic_train_json', 'panoptic_val_json'} and, with
    `video`, {'davis_train_list', 'davis_val_list'}.
  """
  if image_size < 16:
    raise ValueError(f'image_size must be >= 16, got {image_size}.')
  written = {}
  for split, count in (('train', num_train), ('val', num_val)):
    written[f'panoptic_{split}_json'] = write_image_split(
        output_dir, split, count, image_size=image_size, seed=seed,
        num_workers=num_workers)
  if video:
    for split, count in (('train', num_videos), ('val', num_val_videos)):
      written[f'davis_{split}_list'] = write_video_split(
          output_dir, split, count, image_size=image_size,
          num_frames=num_frames, seed=seed, num_workers=num_workers)
  return written
