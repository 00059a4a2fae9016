"""The numeric precision of the model: float32 or mixed bfloat16 (issue 15).

One gin setting, read by every program that builds the model (training and
evaluation through `tasks.train_lib.run_experiment`, export, the quickstart's
pictures, `tools.benchmark`), before it builds:

    set_dtype_policy.policy = 'mixed_bfloat16'

`'mixed_bfloat16'` is Keras' mixed policy: variables, and so the AdamW moments
(created like the variables) and the EMA shadow (models/ema.py copies the
variables' dtype), stay float32, and layers compute in bfloat16 (TPUs train so;
on CPUs with AVX-512 BF16 or AMX oneDNN runs bfloat16 matmuls and convs).
What must stay float32 does, under either policy:
- the decoder's output conv and its logits, the loss (models/losses.py), the
  softmax over each bit group and the analog bits read from it;
- the bit / diffusion maths: `label_map_to_bits`, `add_noise` (q_sample), the
  DDIM updates and the time tables (models/bits.py, diffusion.py, sampler.py);
- the statistics and affine parameters of GroupNorm (models/layers.py),
  LayerNorm and BatchNorm (Keras computes them in float32), the attention
  softmax and the time embedding's sinusoid;
- the gradients: they are taken with respect to the float32 variables.
bfloat16 keeps float32's exponent range, so no loss scaling is needed (unlike
'mixed_float16', which is therefore not offered).

`'bfloat16'` (inference only: `--mode=eval` and the benchmark's inference
phase, both tested, or any program reading its weights with
`pix2seq_d.restore_for_inference`) stores the variables themselves in
bfloat16: half the weight memory and no float32 copy cast at every call
(issue 15: paper model, peak inference RSS 1.77 -> 1.38 GB beside
mixed_bfloat16's). What must stay
float32 above still computes in float32 (from bfloat16-rounded parameters).
Float32 training checkpoints are read into it with `read_checkpoint`, which
casts each tensor; the training loop refuses the policy (`check_trainable`):
bfloat16 master weights would lose the small updates.

Keras' dtype policy is process-global and read when a layer is created, so
this is set before the model is built, and set again (to float32 when unbound)
by every builder, so one program's setting never leaks into the next model.
"""

import gin
import keras
import tensorflow as tf

from models import checkpoint_graph

POLICIES = ('float32', 'mixed_bfloat16', 'bfloat16')
TRAINABLE_POLICIES = ('float32', 'mixed_bfloat16')


@gin.configurable
def set_dtype_policy(policy: str = 'float32') -> str:
  """Sets Keras' global dtype policy for the model built next (module docstring).

  Args:
    policy: one of POLICIES.

  Returns:
    The policy set.

  Raises:
    ValueError: `policy` is not one of POLICIES (naming the binding).
  """
  if policy not in POLICIES:
    raise ValueError(f'set_dtype_policy.policy={policy!r} is not one of '
                     f'{list(POLICIES)}.')
  keras.config.set_dtype_policy(policy)
  return policy



def check_trainable(policy: str) -> None:
  """Raises ValueError when `policy` may not train (module docstring)."""
  if policy not in TRAINABLE_POLICIES:
    raise ValueError(f'set_dtype_policy.policy={policy!r} is for inference only '
                     f'(variables stored in {policy}); train with one of '
                     f'{list(TRAINABLE_POLICIES)}.')


def read_checkpoint(tree, checkpoint_path: str) -> int:
  """Reads a checkpoint into `tree`, casting each tensor to its variable's dtype.

  What `tf.train.Checkpoint(...).read` does for the variables, except that a
  float32 tensor may fill a bfloat16 variable (the plain restore refuses any
  dtype change). Variables are paired by their path in the checkpoint's object
  graph, as the plain restore pairs them, and read one at a time, so no
  second copy of the weights is held.

  Args:
    tree: a `tf.train.Checkpoint` whose children name the checkpoint's
      (`model=...`, or `ema=ema.averages_view(model)`).
    checkpoint_path: a checkpoint prefix.

  Returns:
    The number of variables read.

  Raises:
    AssertionError: a variable of `tree` has no value in the checkpoint (as
      `assert_existing_objects_matched` does), naming it.
  """
  reader = tf.train.load_checkpoint(checkpoint_path)
  view = tf.train.TrackableView(tree)

  def children(obj, node):
    named = view.children(obj)
    return [(c.node_id, named[c.local_name]) for c in node.children
            if c.local_name in named]

  read = set()
  graph = checkpoint_graph.object_graph(reader)
  for node, obj in checkpoint_graph.walk(graph, 0, tree, children):
    key = checkpoint_graph.value_key(node)
    if key is not None:
      obj.assign(tf.cast(reader.get_tensor(key), obj.dtype))
      read.add(id(obj))
  missing = [getattr(v, 'path', v.name) for v in _variables(tree, view)
             if id(v) not in read]
  if missing:
    raise AssertionError(f'{checkpoint_path} has no value for {len(missing)} '
                         f'variable(s): {", ".join(missing[:10])}')
  return len(read)


def _variables(tree, view) -> list:
  """Every variable below `tree` (objects with a checkpointed value)."""
  return [obj for obj in view.descendants()
          if isinstance(obj, (tf.Variable, keras.Variable))]
