"""Restore the variables of one part of a model that match another run's checkpoint.

The staged schedule (REFERENCE §5) starts a model from parts of models that are
not the same shape: stage 1's decoder from the unconditional pretraining (whose
decoder has no image channels and no cross-attention), the DAVIS video model
from the image model (whose decoder input has no past-frame channels). A plain
`tf.train.Checkpoint` restore stops at the first shape mismatch. Here variables
are paired by their path in the object graph (`model/decoder/conv_in/kernel`):
those present in both with the same shape are restored, the others keep their
initialisation and are listed.

How: write the target part to a scratch checkpoint (its object graph gives each
variable's path and key), build a checkpoint with the same keys whose values
come from the source wherever the path and shape match, and read that back
into the target with the ordinary restore.
"""

import os
import tempfile
from typing import Dict, Sequence, Tuple

from absl import logging
import tensorflow as tf

from models import checkpoint_graph
from models import pix2seq_d

PARTS = ('encoder', 'decoder')


def resolve_checkpoint(path: str) -> str:
  """A checkpoint prefix from a prefix or a folder (the folder's latest checkpoint).

  Raises:
    FileNotFoundError: naming the folder without a checkpoint, or the prefix
      whose `.index` file is missing.
  """
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise FileNotFoundError(f'no checkpoint found in {path}.')
    return latest
  if not tf.io.gfile.exists(path + '.index'):
    raise FileNotFoundError(f'checkpoint {path} not found ({path}.index missing).')
  return path


def variable_keys(reader, prefix: Sequence[str]) -> Dict[str, str]:
  """Maps each variable's path below `prefix` to its key in the checkpoint.

  Args:
    reader: a `tf.train.load_checkpoint` reader.
    prefix: child names from the root to the part, e.g. ('model', 'decoder').

  Returns:
    `{'conv_in/kernel': 'optimizer/_trainable_variables/3/.ATTRIBUTES/...'}`.

  Raises:
    ValueError: the prefix is not in the checkpoint.
  """
  graph = checkpoint_graph.object_graph(reader)
  node_id = 0
  for name in prefix:
    children = {c.local_name: c.node_id for c in graph.nodes[node_id].children}
    if name not in children:
      raise ValueError(f'the checkpoint has no {"/".join(prefix)!r} (at {name!r} '
                       f'found only {sorted(children)}).')
    node_id = children[name]
  keys = {}
  below = lambda path, node: [(c.node_id, f'{path}/{c.local_name}'.lstrip('/'))
                              for c in node.children]
  for node, path in checkpoint_graph.walk(graph, node_id, '', below):
    key = checkpoint_graph.value_key(node)
    if key is not None:
      keys[path] = key
  return keys


def restore_matching(source_path: str, target: tf.Module,
                     prefix: Sequence[str]) -> Tuple[list, list]:
  """Restores `target` (reached by `prefix` in both checkpoints) from `source_path`.

  Args:
    source_path: a checkpoint prefix (not a directory).
    target: the part to fill, e.g. `model.decoder`.
    prefix: the part's path from the checkpoint root, e.g. ('model', 'decoder').

  Returns:
    `(restored, skipped)` lists of variable paths; skipped ones are missing in
    the source or differ in shape, and keep their initial values.
  """
  source = tf.train.load_checkpoint(source_path)
  source_keys = variable_keys(source, prefix)
  source_shapes = source.get_variable_to_shape_map()

  tree = tf.train.Checkpoint()
  node = tree
  for name in prefix[:-1]:
    child = tf.train.Checkpoint()
    setattr(node, name, child)
    node = child
  setattr(node, prefix[-1], target)

  with tempfile.TemporaryDirectory() as scratch:
    written = tree.write(os.path.join(scratch, 'target'))
    current = tf.train.load_checkpoint(written)
    target_keys = variable_keys(current, prefix)
    names, tensors, restored, skipped = [checkpoint_graph.OBJECT_GRAPH_KEY], [
        current.get_tensor(checkpoint_graph.OBJECT_GRAPH_KEY)], [], []
    for path, key in sorted(target_keys.items()):
      source_key = source_keys.get(path)
      if (source_key is not None and
          source_shapes[source_key] == current.get_variable_to_shape_map()[key]):
        tensors.append(source.get_tensor(source_key))
        restored.append(path)
      else:
        tensors.append(current.get_tensor(key))
        skipped.append(path)
      names.append(key)
    merged = os.path.join(scratch, 'merged')
    tf.raw_ops.SaveV2(prefix=merged, tensor_names=names,
                      shape_and_slices=[''] * len(names), tensors=tensors)
    tree.read(merged).assert_existing_objects_matched()
  logging.info('Restored %d variables of %s from %s; kept the initial values '
               'of %d: %s', len(restored), '/'.join(prefix), source_path,
               len(skipped), ', '.join(skipped[:20]))
  return restored, skipped


def extract_part(source_path: str, part: str, output_dir: str) -> dict:
  """Writes one part of a checkpoint as an init checkpoint of its own.

  E.g. the encoder of an encoder-pretraining run (experiments/
  encoder_pretrain.gin), without its head, optimizer state or step: a small
  checkpoint that starts other runs (`run_experiment.init_checkpoint =
  output_dir`, `init_checkpoint_parts = part`). The part is built from the
  gin config (configured as for the run that wrote the checkpoint: the part
  of `pix2seq_d.build_model()`) and every one of its variables must be found
  in the source with its shape.

  Args:
    source_path: a checkpoint prefix or a folder (its latest checkpoint).
    part: 'encoder' or 'decoder'.
    output_dir: the folder written (`ckpt-0`); must hold no checkpoint yet.

  Returns:
    `{'checkpoint': the written prefix, 'num_variables', 'num_params'}`.

  Raises:
    ValueError: an unknown part, a variable of the gin-built part missing or
      of another shape in the source (listed), or `output_dir` already holds
      a checkpoint.
  """
  if part not in PARTS:
    raise ValueError(f'part={part!r} is not one of {list(PARTS)}.')
  if tf.train.latest_checkpoint(output_dir) is not None:
    raise ValueError(f'{output_dir} already holds a checkpoint; choose a new '
                     'folder.')
  source = resolve_checkpoint(source_path)
  built = getattr(pix2seq_d.build_model(), part)
  _, skipped = restore_matching(source, built, ('model', part))
  if skipped:
    raise ValueError(f'{source} does not hold the {part} the gin config builds: '
                     f'{len(skipped)} variable(s) missing or of another shape: '
                     f'{", ".join(skipped[:10])}')
  tree = tf.train.Checkpoint(model=tf.train.Checkpoint(**{part: built}))
  written = tf.train.CheckpointManager(tree, output_dir, max_to_keep=1).save(
      checkpoint_number=0)
  return {'checkpoint': written, 'num_variables': len(built.variables),
          'num_params': int(sum(v.numpy().size for v in built.variables))}
