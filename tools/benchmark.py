r"""Measures Pix2Seq-D's training and inference speed and memory on this machine (issue 7).

  python -m tools.benchmark [--gin_file=model/pix2seq_d_tiny.gin ...] \
      [--gin_bindings='...'] [--output_json=benchmark.json] [--batch_size=2] \
      [--repeats=7] [--warmup=1] [--skip_training] [--skip_inference] \
      [--skip_input] [--training_variants=xla_ema,no_xla_ema] \
      [--sampling_steps=1,5,10,20] [--noinference_jit] \
      [--dtype_policy=mixed_bfloat16] [--noisolate_phases]

Default: the paper configuration (model/pix2seq_d.gin, 256² images, 128² masks)
at batch 2, to compare with the authors' numbers (`reference_authors` and
`comparison` in the output). Each phase runs in a fresh process so that its
peak memory and first-step trace are its own (`tasks/benchmark.py` documents
every measurement). Prints one JSON object and writes it to --output_json.
A paper-size run with --repeats=3 takes ~15-20 min on 2 CPU cores.
"""

import json
import sys

from absl import app
from absl import flags

from tasks import benchmark
from tasks import config

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', ['model/pix2seq_d.gin'],
                          'Model gin files (relative to gin/ or paths).')
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings.')
flags.DEFINE_string('output_json', None, 'Also write the result here.')
flags.DEFINE_integer('batch_size', 2, 'Training (and input pipeline) batch.')
flags.DEFINE_integer('repeats', 7, 'Timed repetitions (the median is reported).')
flags.DEFINE_integer('warmup', 1, 'Untimed repetitions after the first call.')
flags.DEFINE_bool('skip_training', False, 'Skip the training variants and FLOPs.')
flags.DEFINE_bool('skip_inference', False, 'Skip encoder/decoder/sampling.')
flags.DEFINE_bool('skip_input', False, 'Skip the input-pipeline benchmark.')
flags.DEFINE_list('training_variants', list(benchmark.TRAINING_VARIANTS),
                  'Training variants among '
                  f'{list(benchmark.TRAINING_VARIANTS)}.')
flags.DEFINE_list('sampling_steps', [str(s) for s in benchmark.SAMPLING_STEPS],
                  'DDIM step counts timed.')
flags.DEFINE_float('td', 2.0, 'Sampler time difference.')
flags.DEFINE_bool('inference_jit', True, 'XLA-compile encode/denoise/sample.')
flags.DEFINE_integer('matmul_size', 2048, 'n of the [n, n] peak matmul.')
flags.DEFINE_integer('input_records', 64, 'Synthetic records for the input benchmark.')
flags.DEFINE_integer('input_batches', 20, 'Batches timed by the input benchmark.')
flags.DEFINE_string('dtype_policy', '', "The model's dtype policy: float32, "
                    "mixed_bfloat16 or (inference only) bfloat16 (= "
                    "--gin_bindings=\"set_dtype_policy.policy = "
                    "'mixed_bfloat16'\"); '' = the gin config's.")
flags.DEFINE_string('inference_dtype_policy', '', "The inference phase's "
                    "policy ('' = --dtype_policy's), e.g. bfloat16 (weights "
                    "stored in bfloat16, inference only) beside training's "
                    "mixed_bfloat16.")
flags.DEFINE_bool('isolate_phases', True, 'Run each phase in a fresh process.')
flags.DEFINE_integer('seed', 0, 'Initialisation and noise seed.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config.import_configurables()
  config.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, finalize=False)
  settings = benchmark.Settings(
      gin_files=tuple(FLAGS.gin_file), gin_bindings=tuple(FLAGS.gin_bindings),
      batch_size=FLAGS.batch_size, repeats=FLAGS.repeats, warmup=FLAGS.warmup,
      training_variants=tuple(FLAGS.training_variants),
      sampling_steps=tuple(int(s) for s in FLAGS.sampling_steps),
      td=FLAGS.td, inference_jit=FLAGS.inference_jit,
      matmul_size=FLAGS.matmul_size, input_records=FLAGS.input_records,
      input_batches=FLAGS.input_batches, dtype_policy=FLAGS.dtype_policy,
      inference_dtype_policy=FLAGS.inference_dtype_policy,
      seed=FLAGS.seed)
  result = benchmark.run_benchmark(
      settings, isolate_phases=FLAGS.isolate_phases,
      skip_training=FLAGS.skip_training, skip_inference=FLAGS.skip_inference,
      skip_input=FLAGS.skip_input, argv=sys.argv)
  if FLAGS.output_json:
    benchmark.write_json(FLAGS.output_json, result)
  print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == '__main__':
  app.run(main)
