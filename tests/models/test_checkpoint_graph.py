"""Tests of models/checkpoint_graph.py: walking a checkpoint's object graph."""

import tensorflow as tf

from models import checkpoint_graph


def test_walk_reaches_every_node_once_and_names_the_variables(tmp_path):
  shared = tf.Variable(1.0)
  inner = tf.train.Checkpoint(w=tf.Variable([2.0, 3.0]), shared=shared)
  root = tf.train.Checkpoint(a=inner, b=tf.train.Checkpoint(shared=shared))
  path = root.write(str(tmp_path / 'ckpt'))
  reader = tf.train.load_checkpoint(path)
  graph = checkpoint_graph.object_graph(reader)

  below = lambda p, node: [(c.node_id, f'{p}/{c.local_name}'.lstrip('/'))
                           for c in node.children]
  visited = list(checkpoint_graph.walk(graph, 0, '', below))
  assert len(visited) == len(graph.nodes)  # The shared variable only once.
  keys = {p: checkpoint_graph.value_key(n) for n, p in visited
          if checkpoint_graph.value_key(n) is not None}
  assert set(keys) - {'save_counter'} in ({'a/w', 'a/shared'}, {'a/w', 'b/shared'})
  assert reader.get_tensor(keys['a/w']).tolist() == [2.0, 3.0]
  assert checkpoint_graph.value_key(graph.nodes[0]) is None
