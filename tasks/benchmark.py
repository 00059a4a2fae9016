r"""Speed and memory of Pix2Seq-D on the machine it runs on (issue 7).

  python -m tools.benchmark --gin_file=model/pix2seq_d.gin --batch_size=2 \
      --repeats=3 --output_json=/tmp/benchmark.json

`run_benchmark(Settings(...))` measures, for the gin-configured model:

- `training`: the real training step (`tasks.trainer.Pix2SeqDTrainer`: per-example
  noise, forward/backward, global-norm clip, AdamW, EMA) on a constant in-memory
  batch, in four variants: with/without XLA on the forward/backward
  (`jit_compile`) x with/without the EMA update. Per variant: the first call
  (trace + graph optimisation / XLA compilation + one step), then the median of
  `repeats` steps after `warmup` steps, examples/s, and the achieved FLOP/s as
  a fraction of the machine's matmul peak.
- `flops`: FLOPs of one training step, counted on the graph of the
  forward/backward function (`model.compute_loss` + `tape.gradient`, what the
  trainer's compiled function computes) by the TF profiler's float-op count
  (`tf.compat.v1.profiler`, `cmd='op'`), plus the `Einsum` ops (attention), for
  which TF registers no count: `2 * output elements * contracted size`. The
  forward-only count (x3 is the usual estimate of a step) is given for
  comparison. The optimizer and EMA updates (~10 FLOPs per parameter) are not
  counted.
- `machine.matmul_peak`: the best of `repeats` timings of a float32
  `tf.linalg.matmul` of two `[n, n]` matrices (`2 n^3` FLOPs), with and without
  XLA, measured in the same run: at its start and end and in each model
  phase's process right after its timings (`local_matmul_peak`). The machine
  is shared: when another job holds one of the 2 cores, everything (this
  peak included) runs ~2x slower, so `fraction_of_local_matmul_peak` compares
  a phase with the peak under the same load, and `load_average` is recorded
  per phase.
- `inference` (batch 1, like the authors' numbers): `encode` of one image, one
  decoder pass (`denoise`) and `models.sampler.sample` (encoder once + the DDIM
  loop in one `tf.while_loop`) for each number of steps. Each sampling call is
  timed right after one encoder and one decoder call (a round); the overhead
  fraction is the median over rounds of `(sampling - (encoder + steps *
  decoder)) / (encoder + steps * decoder)` (the authors' "~15%" is 24.5 s
  against 0.77 + 20 x 1.03 = 21.3 s), so a change in the machine's load
  between separate measurements does not show up as overhead. Every step
  count is called once before the rounds (`first_call_seconds`): under XLA a
  new `num_steps` value compiles the sampler again.
- `input_pipeline`: `data.pipeline.benchmark_training_input` on synthetic
  records (`data.synthetic` + `data.coco_panoptic.convert`) at the config's
  image size, against the training step's consumption.
- memory: with `isolate_phases` (the default) every phase (each training
  variant, the FLOP count, inference, input) runs in a fresh spawned process
  and reports that process's peak RSS (`resource.getrusage(RUSAGE_SELF)
  .ru_maxrss`: it includes importing TF and building the model) and the RSS
  peaks sampled with psutil every 20 ms during its parts (build, first step,
  timed steps). Without isolation, phases share this process, ru_maxrss is
  cumulative, and `peak_rss_bytes` is the psutil-sampled peak of the phase
  (which still holds what earlier phases allocated).

The result is one JSON-serialisable dict with `machine`, `settings`, the
sections above, `reference_authors` (the issue's numbers for the authors'
implementation on a 2-core CPU machine) and `comparison` (our / their ratios
and the targets).
"""

import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Callable, Optional, Sequence

from absl import logging
import gin
import keras
import numpy as np
import psutil
import tensorflow as tf

from data import coco_panoptic
from data import pipeline
from data import synthetic
from models import pix2seq_d
from models import precision
from models import sampler
from tasks import config
from tasks import optim
from tasks import trainer as trainer_lib

# variant name -> (XLA on the forward/backward, EMA update).
TRAINING_VARIANTS = {
    'xla_ema': (True, True),
    'xla_no_ema': (True, False),
    'no_xla_ema': (False, True),
    'no_xla_no_ema': (False, False),
}
# The trainer's defaults (tasks/train_lib.run_experiment): what a real run does.
MAIN_VARIANT = 'xla_ema'
SAMPLING_STEPS = (1, 5, 10, 20)
GB = 1e9

# Issue 7: the authors' implementation at the paper configuration (256² images,
# 128² masks, 94.5M parameters) on a 2-core CPU machine.
REFERENCE_AUTHORS = {
    'source': ("issue 7: the authors' implementation, paper configuration "
               '(256x256 images, 128x128 masks), 2-core CPU machine'),
    'image_size': [256, 256],
    'mask_size': [128, 128],
    'train_batch_size': 2,
    'train_step_seconds_no_ema': 13.7,
    'train_step_seconds_ema': 14.3,
    'encode_seconds': [0.73, 0.81],
    'decoder_step_seconds': [0.96, 1.09],
    'sampling_seconds_20_steps': [24.0, 25.0],
    'sampling_overhead_fraction': 0.15,
    'peak_memory_training_gb': 7.4,
    'peak_memory_inference_gb': 2.1,
    'first_step_trace_seconds': 120.0,
}
# Issue 7's goals for ours, relative to the authors' numbers.
TARGETS = {
    'train_step_seconds_ema': {'max_ratio': 0.7, 'max_value': 10.0},
    'decoder_step_seconds': {'max_ratio': 0.9, 'max_value': 0.9},
    'sampling_overhead_fraction': {'max_value': 0.05},
    'peak_memory_training_gb': {'max_ratio': 0.7, 'max_value': 5.2},
    'first_step_trace_seconds': {'max_value': 60.0},
}
# A run is comparable with REFERENCE_AUTHORS at this size (REFERENCE §4: a
# faithful model is within 2% of 94.5M parameters).
PAPER_PARAMS = 94.5e6


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to measure and how (picklable: it travels to the phase processes).

  Attributes:
    gin_files: model gin files (relative to gin/ or paths).
    gin_bindings: extra bindings.
    batch_size: training batch (inference always runs batch 1).
    repeats: timed repetitions of each measurement (median reported).
    warmup: untimed repetitions after the first call.
    training_variants: names from TRAINING_VARIANTS.
    sampling_steps: numbers of DDIM steps timed.
    td: the sampler's time difference.
    inference_jit: XLA-compile encode / denoise / sample (the evaluator does).
    matmul_size: n of the `[n, n] x [n, n]` peak matmul.
    input_records: synthetic records written for the input benchmark.
    input_batches: batches timed by the input benchmark.
    dtype_policy: the model's dtype policy, one of `models.precision.POLICIES`
      (a `set_dtype_policy.policy` binding); '' = the gin config's (float32
      when unbound).
    inference_dtype_policy: the inference phase's policy ('' = dtype_policy),
      e.g. the inference-only 'bfloat16' beside training's 'mixed_bfloat16'.
    seed: model initialisation and noise seed.
  """
  gin_files: Sequence[str] = ('model/pix2seq_d.gin',)
  gin_bindings: Sequence[str] = ()
  batch_size: int = 2
  repeats: int = 7
  warmup: int = 1
  training_variants: Sequence[str] = tuple(TRAINING_VARIANTS)
  sampling_steps: Sequence[int] = SAMPLING_STEPS
  td: float = 2.0
  inference_jit: bool = True
  matmul_size: int = 2048
  input_records: int = 64
  input_batches: int = 20
  dtype_policy: str = ''
  inference_dtype_policy: str = ''
  seed: int = 0

  def __post_init__(self):
    unknown = [v for v in self.training_variants if v not in TRAINING_VARIANTS]
    if unknown:
      raise ValueError(f'training variants {unknown} are not among '
                       f'{list(TRAINING_VARIANTS)}.')
    if self.batch_size < 1 or self.repeats < 1 or self.warmup < 0:
      raise ValueError(f'batch_size={self.batch_size} and repeats={self.repeats} '
                       f'must be >= 1, warmup={self.warmup} >= 0.')
    for flag in ('dtype_policy', 'inference_dtype_policy'):
      value = getattr(self, flag)
      if value and value not in precision.POLICIES:
        raise ValueError(f'--{flag}={value!r} is not one of '
                         f"{['', *precision.POLICIES]} ('' = the gin config's).")
    if not self.sampling_steps or min(self.sampling_steps) < 1:
      raise ValueError(f'sampling_steps={tuple(self.sampling_steps)} must be '
                       'positive step counts.')


# ------------------------------------------------------------------ timing ---


def summarize(times: Sequence[float]) -> dict:
  """`{'median', 'min', 'max', 'times'}` of a list of seconds."""
  return {'median': statistics.median(times), 'min': min(times),
          'max': max(times), 'times': [float(t) for t in times]}


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 0) -> dict:
  """Calls `fn` `warmup` times untimed, then times `repeats` calls (`summarize`).

  `fn` must block until its work is done (e.g. end with `.numpy()`).
  """
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return summarize(times)


def _timed(fn: Callable[[], object]):
  start = time.perf_counter()
  value = fn()
  return value, time.perf_counter() - start


def _wait(structure):
  """Reads every tensor of a nested structure to the host; returns the structure."""
  for x in tf.nest.flatten(structure):
    if hasattr(x, 'numpy'):
      x.numpy()
  return structure


class PeakRss:
  """Samples this process's RSS with psutil in a thread while active.

  Attributes:
    peak_bytes: the largest RSS seen (also sampled on entry and exit).
  """

  def __init__(self, interval: float = 0.02):
    self.interval = interval
    self.peak_bytes = 0
    self._process = psutil.Process()
    self._stop = threading.Event()
    self._thread = None

  def _sample(self):
    self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

  def _run(self):
    while not self._stop.wait(self.interval):
      self._sample()

  def __enter__(self) -> 'PeakRss':
    self._sample()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc_info):
    self._stop.set()
    self._thread.join()
    self._sample()
    return False


def process_peak_rss_bytes() -> int:
  """`ru_maxrss` of this process in bytes (Linux reports KiB, macOS bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == 'darwin' else peak * 1024)


# ------------------------------------------------------------------- FLOPs ---


def einsum_flops(op) -> int:
  """FLOPs of a two-operand `Einsum` op: `2 * output elements * contracted size`.

  Single-operand einsums (transposes, reductions) count 0. Raises ValueError
  when a shape is not static.
  """
  equation = op.get_attr('equation')
  equation = equation.decode() if isinstance(equation, bytes) else equation
  inputs_spec, output_spec = equation.replace(' ', '').split('->')
  specs = inputs_spec.split(',')
  if len(specs) != 2:
    return 0
  sizes = {}
  for spec, tensor in zip(specs, op.inputs):
    shape = tensor.shape
    if not shape.is_fully_defined():
      raise ValueError(f'einsum {op.name} ({equation}): input shape {shape} '
                       'is not static.')
    dims = shape.as_list()
    left, _, right = spec.partition('...')
    for label, size in zip(left, dims[:len(left)]):
      sizes[label] = max(sizes.get(label, 1), size)
    for label, size in zip(right, dims[len(dims) - len(right):]):
      sizes[label] = max(sizes.get(label, 1), size)
  output_shape = op.outputs[0].shape
  if not output_shape.is_fully_defined():
    raise ValueError(f'einsum {op.name}: output shape {output_shape} is not static.')
  contracted = set(''.join(specs)) - set(output_spec) - {'.'}
  contracted_size = int(np.prod([sizes[label] for label in contracted]))
  return 2 * int(np.prod(output_shape.as_list())) * contracted_size


MATMUL_CONV_OPS = ('MatMul', 'BatchMatMul', 'BatchMatMulV2', 'BatchMatMulV3',
                   'Einsum', 'Conv2D', 'Conv2DBackpropInput',
                   'Conv2DBackpropFilter', 'DepthwiseConv2dNative', 'Conv3D')


def graph_flops(graph: tf.Graph) -> dict:
  """Float ops of one run of a graph (e.g. a concrete function's `.graph`).

  The TF profiler's float-op count (statistics registered per op type, from
  static shapes) plus `einsum_flops` for `Einsum`. Ops in nested function
  bodies (while loops, function calls) are not in `graph` and not counted.

  Returns:
    `{'total', 'matmul_conv' (the ops in MATMUL_CONV_OPS), 'by_op_type'
    {type: flops, largest first}, 'method'}`.
  """
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['output'] = 'none'
  verbosity = tf.get_logger().level
  tf.get_logger().setLevel('ERROR')  # Deprecation notices of the v1 profiler.
  try:
    profile = tf.compat.v1.profiler.profile(graph, cmd='op', options=options)
  finally:
    tf.get_logger().setLevel(verbosity)
  by_type = collections.Counter()
  # The 'op' view nests one node per op type (a chain); `float_ops` is the type's own.
  pending = list(profile.children)
  while pending:
    node = pending.pop()
    if node.float_ops:
      by_type[node.name] += int(node.float_ops)
    pending.extend(node.children)
  for op in graph.get_operations():
    if op.type == 'Einsum':
      by_type['Einsum'] += einsum_flops(op)
  return {
      'total': int(sum(by_type.values())),
      'matmul_conv': int(sum(v for k, v in by_type.items()
                             if k in MATMUL_CONV_OPS)),
      'by_op_type': dict(by_type.most_common()),
      'method': ('tf.compat.v1.profiler float_operation (cmd=op) on the '
                 'tf.function graph + 2*out*contracted for Einsum'),
  }


def measure_matmul_peak(size: int = 2048, repeats: int = 5) -> dict:
  """Best float32 FLOP/s of `tf.linalg.matmul([n, n], [n, n])`, TF and XLA.

  Returns:
    `{'size', 'flops', 'tf_flops_per_second', 'xla_flops_per_second',
    'flops_per_second' (the larger), 'seconds' {'tf': summary, 'xla': ...}}`.
  """
  a = tf.random.stateless_uniform([size, size], seed=[1, 2])
  b = tf.random.stateless_uniform([size, size], seed=[3, 4])
  flops = 2.0 * size**3
  result = {'size': size, 'flops': flops, 'seconds': {}}
  for name, jit in (('tf', False), ('xla', True)):
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)),
                         jit_compile=jit)
    matmul(a, b).numpy()
    timing = time_calls(lambda: matmul(a, b).numpy(), max(repeats, 3), warmup=1)
    result['seconds'][name] = timing
    result[f'{name}_flops_per_second'] = flops / timing['min']
  result['flops_per_second'] = max(result['tf_flops_per_second'],
                                   result['xla_flops_per_second'])
  return result


# ---------------------------------------------------------------- machine ---


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _cpu_flags() -> list:
  """The SIMD extensions that matter for float32 / bfloat16 matmuls."""
  wanted = ('avx2', 'fma', 'avx512f', 'avx512_bf16', 'avx512_vnni',
            'amx_bf16', 'amx_tile')
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          present = set(line.split(':', 1)[1].split())
          return [flag for flag in wanted if flag in present]
  except OSError:
    pass
  return []


def machine_info() -> dict:
  """The machine the benchmark runs on (load average at the time of the call)."""
  gpus = tf.config.list_physical_devices('GPU')
  return {
      'device': 'GPU' if gpus else 'CPU',
      'cpu_count': os.cpu_count(),
      'cpus_usable': len(os.sched_getaffinity(0)) if hasattr(
          os, 'sched_getaffinity') else os.cpu_count(),
      'cpu_model': _cpu_model(),
      'cpu_flags': _cpu_flags(),
      'memory_total_gb': psutil.virtual_memory().total / GB,
      'gpus': [gpu.name for gpu in gpus],
      'tensorflow_version': tf.__version__,
      'keras_version': keras.__version__,
      'python_version': platform.python_version(),
      'onednn_opts': os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default (on)'),
      'load_average_start': list(os.getloadavg()),
  }


# ----------------------------------------------------------------- phases ---


def configure(settings: Settings, extra_bindings: Sequence[str] = (),
              phase: str = '') -> None:
  """Parses the settings' gin (cleared first), with the dtype policy as a binding.

  The model builders apply the policy (models/precision.py): the inference
  phase's `inference_dtype_policy` when set, else `dtype_policy`.
  """
  config.import_configurables()
  gin.clear_config()
  name = settings.dtype_policy
  if phase == 'inference' and settings.inference_dtype_policy:
    name = settings.inference_dtype_policy
  policy = [f"set_dtype_policy.policy = '{name}'"] if name else []
  config.parse_gin(settings.gin_files,
                   list(settings.gin_bindings) + policy + list(extra_bindings),
                   finalize=False)


def model_sizes() -> tuple:
  """`(image_size, mask_size)` of the gin-configured image encoder."""
  sizes = []
  for name in ('image_size', 'mask_size'):
    try:
      value = gin.query_parameter(f'build_image_encoder.{name}')
    except ValueError as e:
      raise ValueError(f'the benchmark needs build_image_encoder.{name} in the '
                       'gin config (an image-conditioned model).') from e
    if isinstance(value, gin.config.ConfigurableReference):
      value = value.scoped_configurable_fn()  # A macro such as %IMAGE_SIZE.
    sizes.append(tuple(int(v) for v in value))
  return tuple(sizes)


def _build_model(settings: Settings):
  keras.utils.set_random_seed(settings.seed)
  return pix2seq_d.build_model()


def _model_description(model, image_size, mask_size) -> dict:
  return {'image_size': list(image_size), 'mask_size': list(mask_size),
          'total_params': pix2seq_d.parameter_counts(model)['total_params']}


def _training_batch(batch_size, image_size, mask_size, seed):
  """A constant batch like the parser's: images in [0, 1], (class, id) labels."""
  images = tf.random.stateless_uniform([batch_size, *image_size, 3],
                                       seed=[seed, 1])
  classes = tf.random.stateless_uniform([batch_size, *mask_size, 1],
                                        seed=[seed, 2], maxval=134,
                                        dtype=tf.int32)
  ids = tf.random.stateless_uniform([batch_size, *mask_size, 1], seed=[seed, 3],
                                    maxval=102, dtype=tf.int32)
  return {'images': images}, {'label_map': tf.concat([classes, ids], axis=-1)}


def training_phase(settings: Settings, variant: str) -> dict:
  """Times the real trainer step (`Pix2SeqDTrainer`) of one variant."""
  jit_compile, use_ema = TRAINING_VARIANTS[variant]
  precision.check_trainable(precision.set_dtype_policy())
  image_size, mask_size = model_sizes()
  strategy = tf.distribute.get_strategy()
  memory = {}
  with PeakRss() as rss:
    start = time.perf_counter()
    model = _build_model(settings)
    ema = pix2seq_d.build_ema(model) if use_ema else None
    optimizer = optim.build_optimizer(total_steps=1_000_000)
    optimizer.build(model.trainable_variables)
    inputs, labels = _training_batch(settings.batch_size, image_size, mask_size,
                                     settings.seed)
    dataset = tf.data.Dataset.from_tensors((inputs, labels)).repeat()
    trainer = trainer_lib.Pix2SeqDTrainer(
        model=model, optimizer=optimizer, ema=ema, strategy=strategy,
        train_dataset=strategy.experimental_distribute_dataset(dataset),
        global_batch_size=settings.batch_size, total_steps=1_000_000,
        clip_norm=1.0, seed=settings.seed, jit_compile=jit_compile)
    build_seconds = time.perf_counter() - start
  memory['build_peak_rss_bytes'] = rss.peak_bytes
  one_step = tf.constant(1, tf.int32)
  with PeakRss() as rss:
    outputs, first_step = _timed(lambda: trainer.train(one_step))
  memory['first_step_peak_rss_bytes'] = rss.peak_bytes
  with PeakRss() as rss:
    steps = time_calls(lambda: trainer.train(one_step), settings.repeats,
                       settings.warmup)
  memory['steps_peak_rss_bytes'] = rss.peak_bytes
  return {
      'jit_compile': jit_compile,
      'ema': use_ema,
      'batch_size': settings.batch_size,
      'build_seconds': build_seconds,
      'first_step_seconds': first_step,
      # The first call traces, optimises/compiles and runs one step.
      'first_step_trace_seconds': max(first_step - steps['median'], 0.0),
      'step_seconds': steps,
      'examples_per_second': settings.batch_size / steps['median'],
      'loss_first_step': float(outputs['loss']),
      'model': _model_description(model, image_size, mask_size),
      'memory': memory,
  }


def flops_phase(settings: Settings) -> dict:
  """FLOPs of one training step (forward/backward graph) and of its forward."""
  image_size, mask_size = model_sizes()
  model = _build_model(settings)
  inputs, labels = _training_batch(settings.batch_size, image_size, mask_size,
                                   settings.seed)
  bits = sum(model.n_bits)
  t = tf.fill([settings.batch_size], 0.5)
  noise = tf.zeros([settings.batch_size, *mask_size, bits])

  @tf.function
  def forward_backward(images, label_map, t, noise):
    # What `Pix2SeqDTrainer._forward_backward_fn` computes.
    with tf.GradientTape() as tape:
      loss, _ = model.compute_loss(images, label_map, t=t, noise=noise,
                                   training=True)
    return loss, tape.gradient(loss, model.trainable_variables)

  @tf.function
  def forward(images, label_map, t, noise):
    return model.compute_loss(images, label_map, t=t, noise=noise,
                              training=True)[0]

  args = (inputs['images'], labels['label_map'], t, noise)
  graph_fb, trace_fb = _timed(
      lambda: forward_backward.get_concrete_function(*args).graph)
  graph_f, trace_f = _timed(lambda: forward.get_concrete_function(*args).graph)
  step = graph_flops(graph_fb)
  fwd = graph_flops(graph_f)
  return {
      'batch_size': settings.batch_size,
      'forward_backward': step,
      'forward': fwd,
      'flops_per_step': step['total'],
      'forward_x3': 3 * fwd['total'],
      'forward_x3_over_counted': 3 * fwd['total'] / max(step['total'], 1),
      'trace_seconds_forward_backward': trace_fb,
      'trace_seconds_forward': trace_f,
      'model': _model_description(model, image_size, mask_size),
  }


def inference_phase(settings: Settings) -> dict:
  """Batch-1 encoder, one decoder pass and full sampling, in paired rounds."""
  image_size, mask_size = model_sizes()
  jit = settings.inference_jit
  memory = {}
  with PeakRss() as rss:
    model, build_seconds = _timed(lambda: _build_model(settings))
  memory['build_peak_rss_bytes'] = rss.peak_bytes
  images = tf.random.stateless_uniform([1, *image_size, 3], seed=[settings.seed, 5])
  bits = sum(model.n_bits)
  x_t = tf.random.stateless_normal([1, *mask_size, bits], seed=[settings.seed, 6])
  gamma = tf.constant([0.5])
  seed = tf.constant([settings.seed, 7], tf.int32)

  encode = tf.function(lambda images: model.encode(images, training=False),
                       jit_compile=jit)
  denoise = tf.function(
      lambda x_t, gamma, encoded: model.denoise(x_t, gamma, encoded)[1],
      jit_compile=jit)
  sample = tf.function(
      lambda images, num_steps: sampler.sample(
          model, images, mask_size=mask_size, num_steps=num_steps,
          td=settings.td, seed=seed)['label_map'],
      jit_compile=jit)

  result = {'batch_size': 1, 'jit_compile': jit, 'build_seconds': build_seconds,
            'dtype_policy': keras.config.dtype_policy().name}
  run_encode = lambda: _wait(encode(images))
  run_decoder = lambda: denoise(x_t, gamma, encoded).numpy()
  run_sample = lambda s: sample(images, tf.constant(s, tf.int32)).numpy()
  step_counts = sorted(set(settings.sampling_steps))
  with PeakRss() as rss:
    encoded, result['encode_first_call_seconds'] = _timed(run_encode)
    _, result['decoder_first_call_seconds'] = _timed(run_decoder)
    # The first call of each step count: under XLA, every new `num_steps`
    # value compiles again (the loop's time tables have `num_steps` entries).
    first_calls = {s: _timed(lambda: run_sample(s))[1] for s in step_counts}
    result['sampling_first_call_seconds'] = first_calls[step_counts[0]]
    for _ in range(settings.warmup):
      run_encode(), run_decoder(), run_sample(step_counts[0])
    # Each sampling call is timed next to an encoder and a decoder call, so
    # that its overhead is computed under the same load (a shared machine's
    # free cores change from one second to the next).
    rounds = {s: [] for s in step_counts}
    for _ in range(settings.repeats):
      for num_steps in step_counts:
        times = {'encode': _timed(run_encode)[1],
                 'decoder': _timed(run_decoder)[1],
                 'sampling': _timed(lambda: run_sample(num_steps))[1]}
        parts = times['encode'] + num_steps * times['decoder']
        times['overhead_fraction'] = (times['sampling'] - parts) / parts
        rounds[num_steps].append(times)
  memory['timed_calls_peak_rss_bytes'] = rss.peak_bytes
  every = lambda key: [r[key] for s in step_counts for r in rounds[s]]
  result['encode_seconds'] = summarize(every('encode'))
  result['decoder_step_seconds'] = summarize(every('decoder'))
  encode_s = result['encode_seconds']['median']
  decoder_s = result['decoder_step_seconds']['median']
  sampling = {}
  for num_steps in step_counts:
    paired = rounds[num_steps]
    timing = summarize([r['sampling'] for r in paired])
    parts = statistics.median(r['encode'] + num_steps * r['decoder']
                              for r in paired)
    best_parts = (min(r['encode'] for r in paired) +
                  num_steps * min(r['decoder'] for r in paired))
    sampling[str(num_steps)] = {
        'seconds': timing,
        'parts_seconds': parts,
        'overhead_seconds': timing['median'] - parts,
        # The median over rounds of (sampling - parts) / parts, each round's
        # sampling call paired with its own encoder and decoder calls.
        'overhead_fraction': statistics.median(
            r['overhead_fraction'] for r in paired),
        'overhead_fraction_from_minima': (timing['min'] - best_parts) / best_parts,
        'first_call_seconds': first_calls[num_steps],
        'rounds': paired,
    }
  result['sampling'] = sampling
  result['memory'] = memory
  flops = {
      'encode': graph_flops(encode.get_concrete_function(images).graph)['total'],
      'decoder_step': graph_flops(
          denoise.get_concrete_function(x_t, gamma, encoded).graph)['total'],
  }
  result['flops'] = flops
  result['encode_flops_per_second'] = flops['encode'] / encode_s
  result['decoder_flops_per_second'] = flops['decoder_step'] / decoder_s
  result['model'] = _model_description(model, image_size, mask_size)
  return result


def input_phase(settings: Settings) -> dict:
  """The training input pipeline's examples/s on synthetic records at the model's size."""
  image_size, mask_size = model_sizes()
  root = tempfile.mkdtemp(prefix='pix2seq_d_benchmark_')
  try:
    start = time.perf_counter()
    synthetic.make_synthetic(root, num_train=settings.input_records, num_val=0,
                             image_size=max(image_size), seed=settings.seed)
    prefix = os.path.join(root, 'tfrecords', 'train')
    coco_panoptic.convert(
        os.path.join(root, 'annotations', 'panoptic_train.json'),
        os.path.join(root, 'panoptic', 'train'),
        os.path.join(root, 'images', 'train'), prefix,
        num_shards=min(4, settings.input_records), progress=False)
    generate_seconds = time.perf_counter() - start
    # The model's sizes unless the gin config scopes its own (train/TrainParser).
    configure(settings, [f'TrainParser.image_size = {tuple(image_size)}',
                         f'TrainParser.mask_size = {tuple(mask_size)}'])
    with gin.config_scope('train'):
      result = pipeline.benchmark_training_input(
          prefix + '-*', global_batch_size=settings.batch_size,
          num_batches=settings.input_batches,
          warmup_batches=max(settings.warmup, 2))
  finally:
    shutil.rmtree(root, ignore_errors=True)
  result['records'] = settings.input_records
  result['record_image_size'] = [max(image_size)] * 2
  result['generate_seconds'] = generate_seconds
  return result


PHASES = {
    'training': training_phase,
    'flops': flops_phase,
    'inference': inference_phase,
    'input_pipeline': input_phase,
}


def run_phase(phase: str, settings: Settings, args: Sequence = (),
              isolated: bool = False) -> dict:
  """Configures gin and runs one phase in this process, adding its memory use.

  Args:
    phase: a PHASES name.
    settings: what to measure.
    args: the phase's extra arguments (the training variant).
    isolated: this process runs only this phase (`_run_phase_isolated`).

  Returns:
    The phase's dict plus `phase_seconds`, `load_average` {'start', 'end'},
    for the model phases `local_matmul_peak` (`measure_matmul_peak` right
    after the phase, in its process: the same load as its timings) and in
    `memory`: `process_peak_rss_bytes` (ru_maxrss of this process so far),
    `phase_peak_rss_bytes` (sampled with psutil during the phase) and
    `peak_rss_bytes`, the phase's peak: the former when `isolated`, else the
    latter (ru_maxrss is cumulative over the process).
  """
  configure(settings, phase=phase)
  load_start = list(os.getloadavg())
  with PeakRss() as rss:
    result, seconds = _timed(lambda: PHASES[phase](settings, *args))
  result['load_average'] = {'start': load_start, 'end': list(os.getloadavg())}
  if phase in ('training', 'inference'):
    result['local_matmul_peak'] = measure_matmul_peak(settings.matmul_size, 3)
  memory = result.setdefault('memory', {})
  memory['phase_peak_rss_bytes'] = rss.peak_bytes
  memory['process_peak_rss_bytes'] = process_peak_rss_bytes()
  memory['peak_rss_bytes'] = memory[
      'process_peak_rss_bytes' if isolated else 'phase_peak_rss_bytes']
  result['phase_seconds'] = seconds
  return result


def _run_phase_child(phase: str, settings: Settings, args: Sequence = ()
                     ) -> dict:
  """`run_phase` as the spawned process runs it: an error comes back as a
  RuntimeError naming the phase and the original error (gin re-raises errors
  as classes made on the fly, which cannot be pickled back to the parent)."""
  try:
    return run_phase(phase, settings, args, True)
  except Exception as error:  # pylint: disable=broad-except
    raise RuntimeError(f'benchmark phase {phase!r} failed: '
                       f'{type(error).__name__}: {error}') from None


def _run_phase_isolated(phase: str, settings: Settings, args: Sequence = ()
                        ) -> dict:
  """`run_phase` in a fresh spawned process (own TF runtime, own ru_maxrss)."""
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
    return pool.submit(_run_phase_child, phase, settings, tuple(args)).result()


# ----------------------------------------------------------- the benchmark ---


def _gb(num_bytes) -> Optional[float]:
  return None if num_bytes is None else num_bytes / GB


def _compare(name: str, ours: Optional[float], theirs) -> dict:
  """Ours vs theirs (a number or a [low, high] range: its midpoint) and the target."""
  low_high = list(theirs) if isinstance(theirs, (list, tuple)) else None
  reference = sum(low_high) / 2 if low_high else theirs
  entry = {'ours': ours, 'authors': reference}
  if low_high:
    entry['authors_range'] = low_high
  entry['ratio'] = None if ours is None else ours / reference
  target = TARGETS.get(name)
  if target:
    entry['target'] = target
    entry['meets_target'] = None if ours is None else bool(
        ours <= target['max_value'] and
        ('max_ratio' not in target or entry['ratio'] <= target['max_ratio']))
  return entry


def compare_with_authors(result: dict) -> dict:
  """Our paper-configuration numbers against REFERENCE_AUTHORS and TARGETS."""
  model = next((section['model'] for section in (
      result.get('inference'), result.get('flops'),
      *(result.get('training') or {}).get('variants', {}).values())
                if section and 'model' in section), None)
  comparable, why = True, []
  if model is None:
    comparable, why = False, ['no model phase ran']
  else:
    if model['image_size'] != REFERENCE_AUTHORS['image_size'] or (
        model['mask_size'] != REFERENCE_AUTHORS['mask_size']):
      comparable = False
      why.append(f"sizes {model['image_size']}/{model['mask_size']} are not "
                 'the paper\'s 256x256/128x128')
    if abs(model['total_params'] / PAPER_PARAMS - 1.0) > 0.02:
      comparable = False
      why.append(f"{model['total_params']:,} parameters, not ~94.5M")
  if result['settings']['batch_size'] != REFERENCE_AUTHORS['train_batch_size']:
    comparable = False
    why.append(f"training batch {result['settings']['batch_size']}, not 2")
  variants = (result.get('training') or {}).get('variants', {})

  def train(variant, key):
    section = variants.get(variant)
    if section is None:
      return None
    if key == 'memory':
      return _gb(section['memory']['peak_rss_bytes'])
    if key == 'trace':
      return section['first_step_trace_seconds']
    return section['step_seconds']['median']

  ema_variants = {name: train(name, 'step') for name in variants
                   if TRAINING_VARIANTS[name][1]}
  fastest_ema_name = (min(ema_variants, key=ema_variants.get)
                      if ema_variants else None)
  fastest_ema = (ema_variants.get(fastest_ema_name),
                 REFERENCE_AUTHORS['train_step_seconds_ema'])
  inference = result.get('inference')
  sampling_20 = (inference or {}).get('sampling', {}).get('20')
  comparison = {
      'comparable': comparable,
      'why_not': why,
      'our_training_variant': MAIN_VARIANT,
      'train_step_seconds_ema': _compare(
          'train_step_seconds_ema', train('xla_ema', 'step'),
          REFERENCE_AUTHORS['train_step_seconds_ema']),
      # On a CPU the trainer's default (XLA) need not be the fastest variant.
      'train_step_seconds_ema_fastest_variant': dict(
          _compare('train_step_seconds_ema', *fastest_ema),
          variant=fastest_ema_name),
      'train_step_seconds_no_ema': _compare(
          'train_step_seconds_no_ema', train('xla_no_ema', 'step'),
          REFERENCE_AUTHORS['train_step_seconds_no_ema']),
      'encode_seconds': _compare(
          'encode_seconds',
          inference['encode_seconds']['median'] if inference else None,
          REFERENCE_AUTHORS['encode_seconds']),
      'decoder_step_seconds': _compare(
          'decoder_step_seconds',
          inference['decoder_step_seconds']['median'] if inference else None,
          REFERENCE_AUTHORS['decoder_step_seconds']),
      'sampling_seconds_20_steps': _compare(
          'sampling_seconds_20_steps',
          sampling_20['seconds']['median'] if sampling_20 else None,
          REFERENCE_AUTHORS['sampling_seconds_20_steps']),
      'sampling_overhead_fraction': _compare(
          'sampling_overhead_fraction',
          sampling_20['overhead_fraction'] if sampling_20 else None,
          REFERENCE_AUTHORS['sampling_overhead_fraction']),
      'peak_memory_training_gb': _compare(
          'peak_memory_training_gb', train(MAIN_VARIANT, 'memory'),
          REFERENCE_AUTHORS['peak_memory_training_gb']),
      'peak_memory_inference_gb': _compare(
          'peak_memory_inference_gb',
          _gb(inference['memory']['peak_rss_bytes']) if inference else None,
          REFERENCE_AUTHORS['peak_memory_inference_gb']),
      'first_step_trace_seconds': _compare(
          'first_step_trace_seconds', train(MAIN_VARIANT, 'trace'),
          REFERENCE_AUTHORS['first_step_trace_seconds']),
  }
  return comparison


def _training_summary(variants: dict, flops: Optional[dict],
                      peak_flops_per_second: float) -> dict:
  """Adds achieved FLOP/s per variant and the EMA / XLA effects."""
  summary = {'variants': variants}
  for section in variants.values():
    if flops:
      achieved = flops['flops_per_step'] / section['step_seconds']['median']
      section['achieved_flops_per_second'] = achieved
      section['fraction_of_matmul_peak'] = achieved / peak_flops_per_second
      if 'local_matmul_peak' in section:
        section['fraction_of_local_matmul_peak'] = (
            achieved / section['local_matmul_peak']['flops_per_second'])
  median = lambda name: (variants[name]['step_seconds']['median']
                         if name in variants else None)
  for jit in ('xla', 'no_xla'):
    with_ema, without = median(f'{jit}_ema'), median(f'{jit}_no_ema')
    if with_ema is not None and without is not None:
      summary[f'ema_update_seconds_{jit}'] = with_ema - without
  for ema in ('ema', 'no_ema'):
    xla, no_xla = median(f'xla_{ema}'), median(f'no_xla_{ema}')
    if xla is not None and no_xla is not None:
      summary[f'xla_speedup_{ema}'] = no_xla / xla
  return summary


def run_benchmark(settings: Settings, *, isolate_phases: bool = True,
                  skip_training: bool = False, skip_inference: bool = False,
                  skip_input: bool = False, argv: Sequence[str] = ()) -> dict:
  """Runs every phase (module docstring) and returns the result dict.

  Args:
    settings: what to measure.
    isolate_phases: run each phase in a fresh process (true peak memory per
      phase and a cold first-step trace); False runs them here (tests).
    skip_training: no training variants and no FLOP count.
    skip_inference: no inference phase.
    skip_input: no input-pipeline phase.
    argv: the command line, recorded.

  Returns:
    `{'machine', 'settings', 'training', 'flops', 'inference',
    'input_pipeline', 'memory', 'reference_authors', 'comparison'}` (skipped
    sections are None), JSON-serialisable.
  """
  configure(settings)  # Fails fast on a bad gin config.
  model_sizes()
  run = _run_phase_isolated if isolate_phases else run_phase
  start = time.perf_counter()
  machine = machine_info()
  logging.info('Benchmark on %s (%d CPUs), load %s.', machine['cpu_model'],
               machine['cpu_count'], machine['load_average_start'])
  peak_start = measure_matmul_peak(settings.matmul_size, settings.repeats)
  result = {
      'machine': machine,
      'settings': dict(dataclasses.asdict(settings), isolate_phases=isolate_phases,
                       command=' '.join(argv)),
      'training': None, 'flops': None, 'inference': None, 'input_pipeline': None,
  }
  variants = {}
  if not skip_training:
    result['flops'] = run('flops', settings)
    logging.info('FLOPs per training step: %.3g.', result['flops']['flops_per_step'])
    for variant in settings.training_variants:
      variants[variant] = run('training', settings, (variant,))
      logging.info('Training %s: %.3f s/step (first step %.1f s).', variant,
                   variants[variant]['step_seconds']['median'],
                   variants[variant]['first_step_seconds'])
  if not skip_inference:
    result['inference'] = run('inference', settings)
    logging.info('Inference: encode %.3f s, decoder step %.3f s.',
                 result['inference']['encode_seconds']['median'],
                 result['inference']['decoder_step_seconds']['median'])
  if not skip_input:
    result['input_pipeline'] = run('input_pipeline', settings)
    logging.info('Input pipeline: %.1f examples/s.',
                 result['input_pipeline']['examples_per_sec'])
  peak_end = measure_matmul_peak(settings.matmul_size, settings.repeats)
  in_phases = {name: section['local_matmul_peak']['flops_per_second']
               for name, section in [*(('training_' + k, v)
                                       for k, v in variants.items()),
                                     ('inference', result['inference'])]
               if section and 'local_matmul_peak' in section}
  # The machine's peak: the best seen in the run (the load varies).
  peak = max([peak_start['flops_per_second'], peak_end['flops_per_second'],
              *in_phases.values()])
  machine['matmul_peak'] = {'start': peak_start, 'end': peak_end,
                            'in_phases_flops_per_second': in_phases,
                            'flops_per_second': peak, 'dtype': 'float32'}
  if variants:
    result['training'] = _training_summary(variants, result['flops'], peak)
  if result['inference']:
    inference = result['inference']
    for key in ('encode', 'decoder'):
      inference[f'{key}_fraction_of_matmul_peak'] = (
          inference[f'{key}_flops_per_second'] / peak)
      inference[f'{key}_fraction_of_local_matmul_peak'] = (
          inference[f'{key}_flops_per_second'] /
          inference['local_matmul_peak']['flops_per_second'])
  if result['input_pipeline']:
    consumer = variants.get(MAIN_VARIANT) or next(iter(variants.values()), None)
    if consumer:
      training_eps = consumer['examples_per_second']
      result['input_pipeline']['training_examples_per_second'] = training_eps
      result['input_pipeline']['headroom'] = (
          result['input_pipeline']['examples_per_sec'] / training_eps)
  result['memory'] = {
      'method': ('a fresh process per phase: ru_maxrss of that process '
                 '(includes importing TF and building the model)'
                 if isolate_phases else
                 'one process for all phases: psutil-sampled RSS peak during '
                 'the phase (includes what earlier phases still hold)'),
      'training_peak_gb': {name: _gb(v['memory']['peak_rss_bytes'])
                           for name, v in variants.items()},
      'flops_phase_peak_gb': (_gb(result['flops']['memory']['peak_rss_bytes'])
                              if result['flops'] else None),
      'inference_peak_gb': (_gb(result['inference']['memory']['peak_rss_bytes'])
                            if result['inference'] else None),
      'input_pipeline_peak_gb': (
          _gb(result['input_pipeline']['memory']['peak_rss_bytes'])
          if result['input_pipeline'] else None),
  }
  machine['load_average_end'] = list(os.getloadavg())
  result['total_seconds'] = time.perf_counter() - start
  result['reference_authors'] = dict(REFERENCE_AUTHORS, targets=TARGETS)
  result['comparison'] = compare_with_authors(result)
  return result


def write_json(path: str, result: dict) -> None:
  """Writes `result` to `path` (temporary name, then renamed; gfile paths work)."""
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    json.dump(result, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)
