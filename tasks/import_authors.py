"""Import a checkpoint of the authors' trainer as our init checkpoint / model_dir (issue 14).

`import_checkpoint(checkpoint, kind, output_dir, ...)`:
1. reads their checkpoint (`tf.train.load_checkpoint`, any `tf.io.gfile` path);
2. builds our model from their `config.json` when the checkpoint's folder (or the
   one above) holds it (tasks/authors_config.py), else from the gin files;
3. maps their variables onto ours by structure (tasks/authors_mapping.py):
   - `kind='pix2seq_d'`: every variable of our model from their online
     `model/{encoder,encoder_fuse,denoiser}` and our EMA shadow from their
     `*_ema` copies (their evaluation uses those);
   - `kind='detection_encoder'`: our encoder's ResNet and transformer from
     their Pix2Seq detection model's `model/encoder` (the fusion and the mask
     decoder are not in such a checkpoint);
4. checks that every variable the kind needs exists with the right shape (an
   error names both sides; nothing is written otherwise), and writes
   - `pix2seq_d`: `output_dir` as a model_dir: `ckpt-<their step>` with model,
     EMA and step (`run_experiment.init_checkpoint_parts = 'model_and_ema'`,
     `tools.export_saved_model`, `tools.train --mode=eval` read it), and the
     run record (`config.gin`, ...);
   - `detection_encoder`: `ckpt-0` holding `model/encoder/{backbone,transformer}`
     (`init_checkpoint_parts = 'encoder'`) and, from `config.json`, `encoder.gin`:
     the encoder bindings the training must use with it;
   and `authors_mapping.txt`: their variable -> ours with shapes, what of theirs
   was not used, what of ours was not filled.
"""

import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from models import ema as ema_lib
from models import encoder as encoder_lib
from models import pix2seq_d
from tasks import authors_config
from tasks import authors_mapping
from tasks import config
from tasks import partial_restore

KINDS = ('detection_encoder', 'pix2seq_d')
MAPPING_NAME = 'authors_mapping.txt'
ENCODER_GIN_NAME = 'encoder.gin'
DEFAULT_MODEL_GIN = 'model/pix2seq_d.gin'


def _our_name(variable) -> str:
  return getattr(variable, 'path', None) or variable.name


def load_values(reader, entries: Sequence[authors_mapping.Entry]) -> List[tuple]:
  """Their arrays combined into ours, checked against our shapes.

  Returns:
    `[(entry, value ndarray)]` in the order of `entries`.

  Raises:
    ValueError: listing every missing variable of theirs and every shape
      mismatch, each naming their key(s) and our variable.
  """
  shapes = reader.get_variable_to_shape_map()
  values, errors = [], []
  for entry in entries:
    keys = [authors_mapping.checkpoint_key(p) for p in entry.theirs]
    missing = [k for k in keys if k not in shapes]
    ours = f'{_our_name(entry.ours)} {tuple(entry.ours.shape)}'
    if missing:
      errors.append(f'missing in their checkpoint: {", ".join(missing)} '
                    f'(needed for ours: {ours})')
      continue
    arrays = [reader.get_tensor(k) for k in keys]
    try:
      value = entry.combine(arrays)
    except ValueError as e:
      value, reason = None, str(e)
    if value is None or tuple(value.shape) != tuple(entry.ours.shape):
      theirs = ', '.join(f'{k} {tuple(a.shape)}' for k, a in zip(keys, arrays))
      errors.append(f'shape mismatch: theirs {theirs} -> ours {ours}'
                    + ('' if value is not None else f' ({reason})'))
      continue
    values.append((entry, value.astype(entry.ours.dtype)))
  if errors:
    raise ValueError(f'{len(errors)} variable(s) cannot be imported:\n  '
                     + '\n  '.join(errors))
  return values


def _unfilled(needed: Sequence, entries: Sequence[authors_mapping.Entry]) -> list:
  filled = {id(e.ours) for e in entries}
  return [v for v in needed if id(v) not in filled]


def _build_gin(checkpoint: str, kind: str, gin_files: Sequence[str],
               gin_bindings: Sequence[str]) -> Optional[dict]:
  """Parses the gin config of our model; returns the authors' config or None."""
  config_path = authors_config.find_config_json(checkpoint)
  derived = []
  authors = None
  if config_path is not None:
    authors = authors_config.read_config(config_path)
    derived = (authors_config.pix2seq_d_bindings(authors, config_path)
               if kind == 'pix2seq_d'
               else authors_config.encoder_bindings(authors, config_path))
  elif not gin_files:
    raise ValueError(f'no {authors_config.CONFIG_JSON} next to {checkpoint}: '
                     'give --gin_file saying what model to build.')
  config.import_configurables()
  config.parse_gin(list(gin_files) or [DEFAULT_MODEL_GIN],
                   derived + list(gin_bindings), finalize=False)
  return {'path': config_path, 'config': authors, 'bindings': derived}


def _mapping_lines(values, unused: Sequence[str], unfilled: Sequence[str],
                   header: str) -> List[str]:
  lines = [header, '', f'# their variable (shape) -> ours (shape): {len(values)}']
  for entry, value in values:
    theirs = ' + '.join(entry.theirs)
    lines.append(f'{theirs} -> {_our_name(entry.ours)} {tuple(value.shape)}')
  lines += ['', f'# theirs, not used: {len(unused)}'] + list(unused)
  lines += ['', f'# ours, not filled: {len(unfilled)}'] + list(unfilled)
  return lines


def import_checkpoint(checkpoint: str, kind: str, output_dir: str,
                      gin_files: Sequence[str] = (),
                      gin_bindings: Sequence[str] = (),
                      argv: Sequence[str] = ()) -> Dict[str, object]:
  """Imports their checkpoint into `output_dir` (module docstring).

  Args:
    checkpoint: their checkpoint prefix or folder (local or gs://).
    kind: one of KINDS.
    output_dir: where to write (must not hold a checkpoint yet).
    gin_files: our gin files; with their `config.json` optional (its bindings
      come after the files, `gin_bindings` last).
    gin_bindings: extra bindings.
    argv: the command line, recorded in `output_dir` (pix2seq_d).

  Returns:
    `{'checkpoint': written prefix, 'lines': the mapping report, 'num_mapped',
    'unused', 'unfilled', 'config_json'}`.

  Raises:
    ValueError: unknown kind, their checkpoint lacks a variable or has another
      shape (naming both sides), ours has a variable the mapping does not fill.
    FileNotFoundError: no checkpoint at `checkpoint`.
  """
  if kind not in KINDS:
    raise ValueError(f'--kind={kind!r} is not one of {list(KINDS)}.')
  prefix = partial_restore.resolve_checkpoint(checkpoint)
  if tf.io.gfile.exists(output_dir) and tf.train.latest_checkpoint(output_dir):
    raise ValueError(f'{output_dir} already holds a checkpoint; choose an empty '
                     'output folder.')
  reader = tf.train.load_checkpoint(prefix)
  authors = _build_gin(checkpoint, kind, gin_files, gin_bindings)

  model = ema = encoder = None
  if kind == 'pix2seq_d':
    model = pix2seq_d.build_model()
    ema = pix2seq_d.build_ema(model)
    needed = ema_lib.averaged_variables(model)
    entries = pix2seq_d_entries_for(model, ema)
    not_ours = []
  else:
    encoder = encoder_lib.build_image_encoder()
    encoder(tf.zeros([1, 64, 64, 3]), training=False)
    needed = [v for v in encoder.backbone.variables + encoder.transformer.variables
              if 'float' in str(v.dtype)]
    entries = authors_mapping.encoder_entries(encoder, 'model/encoder')
    fusion = encoder.fusion.variables if encoder.fusion is not None else []
    not_ours = [f'{_our_name(v)} (the fusion: not in a detection checkpoint)'
                for v in fusion]
  unfilled = _unfilled(needed, entries)
  if unfilled:
    raise ValueError('the mapping leaves these variables of ours unfilled: '
                     + ', '.join(_our_name(v) for v in unfilled))
  values = load_values(reader, entries)

  used = {authors_mapping.checkpoint_key(p) for e in entries for p in e.theirs}
  unused = sorted(k for k in reader.get_variable_to_shape_map() if k not in used)
  step_key = authors_mapping.checkpoint_key('global_step')
  step = int(reader.get_tensor(step_key)) if reader.has_tensor(step_key) else 0
  header = (f'# {kind} from {prefix} (step {step}); model built from '
            + (authors['path'] if authors['path'] else ', '.join(gin_files)))
  lines = _mapping_lines(values, unused, not_ours, header)

  for entry, value in values:
    entry.ours.assign(value)
  tf.io.gfile.makedirs(output_dir)
  if kind == 'pix2seq_d':
    global_step = tf.Variable(step, dtype=tf.int64, name='global_step')
    items = dict(model=model, global_step=global_step)
    if ema is not None:
      items['ema'] = ema
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(**items), output_dir,
                                         max_to_keep=1)
    written = manager.save(checkpoint_number=step)
    config.save_run_record(output_dir, argv or ['import_authors_checkpoint'])
  else:
    parts = tf.train.Checkpoint(backbone=encoder.backbone,
                                transformer=encoder.transformer)
    tree = tf.train.Checkpoint(model=tf.train.Checkpoint(encoder=parts))
    written = tf.train.CheckpointManager(tree, output_dir, max_to_keep=1).save(
        checkpoint_number=0)
    if authors['bindings']:
      _write(os.path.join(output_dir, ENCODER_GIN_NAME),
             f'# The encoder of {prefix} (from {authors["path"]}).\n'
             '# Include it in the experiment that starts from this checkpoint.\n'
             + '\n'.join(authors['bindings']) + '\n')
  _write(os.path.join(output_dir, MAPPING_NAME), '\n'.join(lines) + '\n')
  return {'checkpoint': written, 'lines': lines, 'num_mapped': len(values),
          'unused': unused, 'unfilled': not_ours, 'config_json': authors['path']}


def pix2seq_d_entries_for(model, ema) -> list:
  """Online weights from theirs; our EMA shadow from their `*_ema` copies.

  Without an EMA of ours, the model itself takes their EMA copies (what their
  evaluation uses).
  """
  if ema is None:
    return authors_mapping.pix2seq_d_entries(model, '_ema')
  entries = authors_mapping.pix2seq_d_entries(model, '')
  shadow = {id(v): s for v, s in zip(ema_lib.averaged_variables(model),
                                     ema.shadow_variables)}
  for entry in authors_mapping.pix2seq_d_entries(model, '_ema'):
    if id(entry.ours) not in shadow:
      raise ValueError(f'{_our_name(entry.ours)} has no EMA shadow.')
    entries.append(authors_mapping.Entry(shadow[id(entry.ours)], entry.theirs,
                                         entry.combine))
  return entries


def _write(path: str, text: str) -> None:
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(text)

