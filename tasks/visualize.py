"""Colour pictures of panoptic label maps (TensorBoard summaries, quickstart overlays)."""

from typing import Sequence

import numpy as np

VOID_COLOR = (0, 0, 0)


def segment_colors(label_map: np.ndarray, categories: Sequence[dict]) -> np.ndarray:
  """Colours a panoptic label map: class colour, shaded per instance, dark edges.

  Args:
    label_map: int `[H, W, 2]` (class id as in `categories.json`'s `class_id`,
      instance id); class 0 is void.
    categories: rows of `categories.json` (`class_id`, optional `color`).

  Returns:
    uint8 `[H, W, 3]`: void black; every segment its class colour mixed with a
    colour drawn from its instance id, so two instances of one class differ;
    segment boundaries darkened.
  """
  classes = label_map[..., 0].astype(np.int64)
  ids = label_map[..., 1].astype(np.int64)
  palette = np.full((max(int(classes.max()), 0) + 1 + 256, 3), 128, np.float32)
  for row in categories:
    if row['class_id'] < len(palette):
      color = row.get('color') or np.random.default_rng(
          row['class_id']).integers(0, 255, 3).tolist()
      palette[row['class_id']] = color
  base = palette[np.clip(classes, 0, len(palette) - 1)]
  id_colors = np.random.default_rng(7).integers(0, 255, (ids.max() + 1, 3))
  mixed = 0.6 * base + 0.4 * id_colors[ids]
  segment = classes * 65536 + ids
  edge = np.zeros(segment.shape, bool)
  edge[:-1] |= segment[:-1] != segment[1:]
  edge[1:] |= segment[:-1] != segment[1:]
  edge[:, :-1] |= segment[:, :-1] != segment[:, 1:]
  edge[:, 1:] |= segment[:, :-1] != segment[:, 1:]
  mixed = np.where(edge[..., None], mixed * 0.4, mixed)
  mixed[classes == 0] = VOID_COLOR
  return np.clip(mixed, 0, 255).astype(np.uint8)


def upscale_nearest(array: np.ndarray, size) -> np.ndarray:
  """Repeats pixels of `[h, w, C]` to `size = (H, W)` (nearest neighbour)."""
  rows = (np.arange(size[0]) * array.shape[0] // size[0])
  cols = (np.arange(size[1]) * array.shape[1] // size[1])
  return array[rows[:, None], cols[None, :]]


def side_by_side(panels: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
  """Joins uint8 `[H_i, W_i, 3]` panels left to right on a white background."""
  height = max(p.shape[0] for p in panels)
  pieces = []
  for i, panel in enumerate(panels):
    if i:
      pieces.append(np.full((height, gap, 3), 255, np.uint8))
    padded = np.full((height, panel.shape[1], 3), 255, np.uint8)
    padded[:panel.shape[0]] = panel
    pieces.append(padded)
  return np.concatenate(pieces, axis=1)
