"""Streaming video segmentation (paper §3.4, §4.1 "Inference"; REFERENCE §6).

Frames are segmented one at a time, each conditioned on the model's OWN
post-processed predictions for the past frames at `past_frame_offsets` (the
released configuration: -2, -1), so instance ids carry over and the model tracks
without any matching step. The first frame takes more DDIM steps than the rest
(paper: 32 then 8, td = 1.0, segments under 10 pixels dropped). Before a past
frame exists its mask is all void, as with frame dropout in training.

Memory stays flat in video length: the state is a fixed-size ring of the last
`max(-offsets)` predicted masks at mask size; nothing accumulates per frame, and
the per-frame function is traced once (steps, td and the seed are tensors).
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from models import sampler
from tasks import postprocess


class StreamingSegmenter:
  """Segments a video frame by frame with a video `Pix2SeqD` model."""

  def __init__(self, model, mask_size, past_frame_offsets: Sequence[int] = (-2, -1),
               first_frame_steps: int = 32, later_frame_steps: int = 8,
               td: float = 1.0, min_pixels: int = 10, seed: int = 0,
               num_valid_classes: int = 0, jit_compile: bool = True,
               readout: str = 'threshold'):
    """Args:
      model: a `Pix2SeqD` with `num_past_frames == len(past_frame_offsets)`.
      mask_size: `(h, w)` of the generated masks.
      past_frame_offsets: negative offsets of the conditioning frames, in the
        order the model was trained with (the parser's `past_frame_offsets`).
      first_frame_steps: DDIM steps for frame 0 (cold start).
      later_frame_steps: DDIM steps for every later frame.
      td: the time difference of the asymmetric intervals.
      min_pixels: post-processing threshold (REFERENCE §6: 10 for DAVIS).
      seed: seed of the initial noise (frame i uses (seed, i)).
      num_valid_classes: the dataset's class count; other predicted classes
        do not vote in post-processing (0 = all valid).
      jit_compile: XLA-compile the per-frame function.
      readout: 'threshold' or 'argmax': how the last step's decoder output
        becomes the mask (models/sampler.py).
    """
    offsets = tuple(int(o) for o in past_frame_offsets)
    if any(o >= 0 for o in offsets):
      raise ValueError(f'past_frame_offsets must be negative, got {offsets}.')
    if model.num_past_frames != len(offsets):
      raise ValueError(f'the model takes {model.num_past_frames} past frames but '
                       f'past_frame_offsets={offsets}.')
    self.model = model
    self.mask_size = tuple(mask_size)
    self.offsets = offsets
    self.history_length = max(-o for o in offsets)
    self.first_frame_steps = first_frame_steps
    self.later_frame_steps = later_frame_steps
    self.td = td
    self.seed = seed
    self.readout = sampler.check_readout(readout)
    self._postprocess = postprocess.Postprocessor(
        min_pixels=int(min_pixels), num_ids=2**model.n_bits[1],
        num_classes=2**model.n_bits[0], num_valid_classes=num_valid_classes)
    self._frame_fn = tf.function(self._segment_frame, jit_compile=jit_compile)
    self.reset()

  def reset(self) -> None:
    """Starts a new video: no past predictions."""
    # history[k] is the prediction k + 1 frames back; void until it exists.
    self._history = np.zeros((self.history_length, 1) + self.mask_size + (2,),
                             np.int32)
    self._frame_index = 0

  def _segment_frame(self, image, past_label_maps, num_steps, td, seed):
    outputs = sampler.sample(self.model, image, mask_size=self.mask_size,
                             num_steps=num_steps, td=td, seed=seed,
                             past_label_maps=past_label_maps,
                             readout=self.readout)
    return self._postprocess(outputs['label_map'], 'mask')

  def __call__(self, image) -> np.ndarray:
    """Segments the next frame.

    Args:
      image: float32 `[H, W, 3]` in [0, 1] (or `[1, H, W, 3]`), at the model's
        input size (the eval parser's output).

    Returns:
      int32 `[h, w, 2]` (class, instance) at mask size.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank == 3:
      image = image[tf.newaxis]
    # Offsets in training order, e.g. (-2, -1) -> history[1], history[0].
    past = np.stack([self._history[-o - 1] for o in self.offsets], axis=1)
    steps = (self.first_frame_steps if self._frame_index == 0
             else self.later_frame_steps)
    label_map = self._frame_fn(
        image, tf.constant(past), tf.constant(steps, tf.int32),
        tf.constant(self.td, tf.float32),
        tf.constant([self.seed, self._frame_index], tf.int32)).numpy()
    self._history = np.roll(self._history, 1, axis=0)
    self._history[0] = label_map
    self._frame_index += 1
    return label_map[0]
