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

Keras' dtype policy is process-global and read when a layer is created, so
this is set before the model is built, and set again (to float32 when unbound)
by every builder, so one program's setting never leaks into the next model.
"""

import gin
import keras

POLICIES = ('float32', 'mixed_bfloat16')


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

