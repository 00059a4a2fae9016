"""Checks shared by the recomputation tests of the encoder and the decoder."""

import numpy as np


def assert_same_loss_and_gradients(plain, recomputed, rtol: float) -> None:
  """`(loss, gradients)` of a plain and a recomputed model agree.

  The losses to 1e-6 relative; every recomputed gradient exists and each
  equals the plain one to `rtol`, or to 1e-5 of its largest entry.
  """
  loss_a, grads_a = plain
  loss_b, grads_b = recomputed
  np.testing.assert_allclose(float(loss_a), float(loss_b), rtol=1e-6)
  assert len(grads_a) == len(grads_b) and all(g is not None for g in grads_b)
  for a, b in zip(grads_a, grads_b):
    scale = float(np.abs(a.numpy()).max())
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol,
                               atol=1e-5 * scale)


def op_count(graph, op_type: str) -> int:
  """Ops of `op_type` in a graph and in the functions it calls (the recomputation)."""
  count = sum(op.type == op_type for op in graph.get_operations())
  for function in graph._functions.values():  # pylint: disable=protected-access
    count += sum(op.type == op_type for op in function.graph.get_operations())
  return count
