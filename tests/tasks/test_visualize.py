"""Tests for tasks/visualize.py."""

import numpy as np

from tasks import visualize


def test_segment_colors_separate_instances_and_void():
  categories = [{'class_id': 1, 'id': 1, 'name': 'disc', 'isthing': 1,
                 'color': [220, 20, 60]}]
  label_map = np.zeros((4, 8, 2), np.int32)
  label_map[:, :4] = (1, 1)
  label_map[:, 4:7] = (1, 2)
  colors = visualize.segment_colors(label_map, categories)
  assert (colors[:, 7] == 0).all()  # void
  assert not np.array_equal(colors[0, 1], colors[0, 5])  # two instances differ
  assert (colors[0, 3].astype(int).sum() < colors[0, 1].astype(int).sum())  # edge darker


def test_upscale_nearest_and_side_by_side():
  small = np.arange(4, dtype=np.uint8).reshape(2, 2, 1).repeat(3, axis=-1)
  big = visualize.upscale_nearest(small, (4, 6))
  assert big.shape == (4, 6, 3)
  np.testing.assert_array_equal(big[:2, :3, 0], 0)
  np.testing.assert_array_equal(big[2:, 3:, 0], 3)
  joined = visualize.side_by_side([big, small], gap=2)
  assert joined.shape == (4, 6 + 2 + 2, 3)
  assert (joined[:, 6:8] == 255).all() and (joined[2:, 8:] == 255).all()
