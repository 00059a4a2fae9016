"""The object graph stored in a TF2 checkpoint, walked beside the objects it names.

A checkpoint pairs each saved tensor with a node of its object graph
(`root -> model -> decoder -> conv_in -> kernel`). Two readers walk it:
`precision.read_checkpoint` (values cast into a model of another dtype) and
`tasks.partial_restore` (the variables of one part, paired by path).
"""

from typing import Callable, Iterable, Iterator, Tuple

from tensorflow.core.protobuf import trackable_object_graph_pb2

OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
VALUE_ATTRIBUTE = 'VARIABLE_VALUE'


def object_graph(reader) -> trackable_object_graph_pb2.TrackableObjectGraph:
  """The object graph of a `tf.train.load_checkpoint` reader's checkpoint."""
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(OBJECT_GRAPH_KEY))
  return graph


def walk(graph, node_id: int, value,
         children: Callable[[object, object], Iterable[Tuple[int, object]]]
         ) -> Iterator[Tuple[object, object]]:
  """Yields `(node, value)` for every node reachable from `node_id`, once each.

  Args:
    graph: an `object_graph`.
    node_id: where to start.
    value: what the start node stands for (an object, a path, ...).
    children: `(value, node) -> [(child_node_id, child_value), ...]`.
  """
  stack, visited = [(node_id, value)], set()
  while stack:
    node_id, value = stack.pop()
    if node_id in visited:
      continue
    visited.add(node_id)
    node = graph.nodes[node_id]
    yield node, value
    stack.extend(children(value, node))


def value_key(node):
  """The checkpoint key of a node's saved value, or None (not a variable)."""
  for attribute in node.attributes:
    if attribute.name == VALUE_ATTRIBUTE:
      return attribute.checkpoint_key
  return None
