"""`tf.distribute` strategies chosen by flag (DEVELOPERS.md "Cloud habits").

Flags say where and how to run: `--strategy` picks the strategy, `--all_reduce`
picks how MirroredStrategy sums gradients across GPUs. NCCL hangs that had to be
patched in source were the top complaint about the authors' code: here the
cross-device op is a flag (`nccl`, `hierarchical_copy`, `reduce_to_one`), never
hard-wired.
"""

from typing import Optional

import tensorflow as tf

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')

ALL_REDUCE = {
    'auto': None,
    'nccl': tf.distribute.NcclAllReduce,
    'hierarchical_copy': tf.distribute.HierarchicalCopyAllReduce,
    'reduce_to_one': tf.distribute.ReductionToOneDevice,
}

MULTI_WORKER_COMMUNICATION = {
    'auto': tf.distribute.experimental.CommunicationImplementation.AUTO,
    'ring': tf.distribute.experimental.CommunicationImplementation.RING,
    'nccl': tf.distribute.experimental.CommunicationImplementation.NCCL,
}


def _lookup(table: dict, key: str, flag: str):
  if key not in table:
    raise ValueError(f'--{flag}={key!r} is not one of {sorted(table)}.')
  return table[key]


def build_strategy(name: str = 'default', tpu: str = '',
                   all_reduce: str = 'auto',
                   num_gpus: Optional[int] = None) -> tf.distribute.Strategy:
  """Builds the strategy named by `--strategy`.

  Args:
    name: 'default' (one device), 'mirrored' (all local GPUs, or the local
      logical CPUs when there are no GPUs), 'multi_worker' (reads TF_CONFIG),
      'tpu' (Cloud TPU; `tpu` is the TPU name or grpc address, '' = local).
    tpu: the TPU name/address for 'tpu'.
    all_reduce: 'auto', 'nccl', 'hierarchical_copy' or 'reduce_to_one' for
      'mirrored'; 'auto', 'ring' or 'nccl' for 'multi_worker'.
    num_gpus: use only the first N GPUs with 'mirrored' (default: all).

  Returns:
    A `tf.distribute.Strategy`.
  """
  if name not in STRATEGIES:
    raise ValueError(f'--strategy={name!r} is not one of {list(STRATEGIES)}.')
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    ops_class = _lookup(ALL_REDUCE, all_reduce, 'all_reduce')
    devices = None
    gpus = tf.config.list_logical_devices('GPU')
    if gpus:
      devices = [d.name for d in gpus[:num_gpus or len(gpus)]]
    else:
      devices = [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(
        devices=devices,
        cross_device_ops=ops_class() if ops_class else None)
  if name == 'multi_worker':
    implementation = _lookup(MULTI_WORKER_COMMUNICATION, all_reduce, 'all_reduce')
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
  if tpu not in ('', 'local'):
    tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)
