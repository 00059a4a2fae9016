"""Sharded, resumable TFRecord writing shared by every dataset converter (REFERENCE §7).

`write_sharded` writes `P-00000-of-0000N.tfrecord` ... shards. Items are dealt
to shards round-robin (item `i` goes to shard `i % N`), so a shard's contents
depend only on the item list, not on the number of workers. Each shard is
written to `<shard>.tmp-XXXXXXXX` and renamed when complete, so a finished
shard is never half-written; a re-run keeps the shards that already exist and
writes only the missing ones (resume). Leftover temporaries of a crashed run
are removed once their shard is complete. Resuming assumes the same inputs
and flags as the first run (the kept shards are not re-read); two runs writing
the same prefix at once are not supported.

Examples are built in parallel (`num_workers` > 1: a `spawn` multiprocessing
pool over items; TensorFlow is not fork-safe) and written in order by this
process. A builder raises `source_files.BadExampleError` for a bad input: the
error propagates (naming the file), or with `skip_bad` the example is left out
and counted under its reason in the summary's `skipped` Counter.
"""

import collections
import dataclasses
import functools
import multiprocessing
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence
import uuid

from absl import logging
import tensorflow as tf
import tqdm

from data import source_files

BadExampleError = source_files.BadExampleError

_SHARD_RE = re.compile(r'-(\d{5})-of-(\d{5})\.tfrecord$')


@dataclasses.dataclass
class Built:
  """One built record and numbers about it for the summary.

  Attributes:
    record: the serialized `tf.train.Example` / `tf.train.SequenceExample`.
    stats: counts summed over the run, e.g. {'segments': 12}.
  """
  record: bytes
  stats: dict


def shard_path(output_prefix: str, index: int, num_shards: int) -> str:
  """`P-0000i-of-0000N.tfrecord`."""
  return f'{output_prefix}-{index:05d}-of-{num_shards:05d}.tfrecord'


def shard_pattern(output_prefix: str) -> str:
  """The glob that matches every shard of `output_prefix`."""
  return f'{output_prefix}-?????-of-?????.tfrecord'


def make_output_dir(output_prefix: str) -> None:
  """Creates the folder that will hold `P`'s shards and tables."""
  directory = os.path.dirname(output_prefix)
  if directory:
    tf.io.gfile.makedirs(directory)


def _check_existing_shards(output_prefix: str, num_shards: int) -> set:
  """Indices of finished shards; shards of another count are an error."""
  kept = set()
  for path in sorted(tf.io.gfile.glob(shard_pattern(output_prefix))):
    match = _SHARD_RE.search(path)
    if not match:
      continue
    index, count = int(match.group(1)), int(match.group(2))
    if count != num_shards:
      raise ValueError(
          f'{path}: an existing shard of a {count}-shard output; this run '
          f'writes {num_shards} shards. Remove the old shards or pass '
          f'--num_shards={count} to resume.')
    kept.add(index)
  return kept


def _remove_stale_temporaries(path: str) -> None:
  for stale in tf.io.gfile.glob(path + '.tmp-*'):
    logging.info('Removing leftover temporary %s', stale)
    tf.io.gfile.remove(stale)


def _build_one(build_fn: Callable[[Any], Built], item: Any):
  """Runs in a worker: a `Built`, or the `BadExampleError` as a value."""
  try:
    return build_fn(item)
  except BadExampleError as e:
    return e


def parallel_map(fn: Callable, items: Sequence, num_workers: int = 1) -> list:
  """`[fn(x) for x in items]`, in order, on a spawn pool when `num_workers` > 1.

  `fn` must be picklable (a module-level function or a `functools.partial`).
  """
  if num_workers <= 1 or len(items) <= 1:
    return [fn(x) for x in items]
  context = multiprocessing.get_context('spawn')
  with context.Pool(min(num_workers, len(items))) as pool:
    return pool.map(fn, items, chunksize=1)


def write_sharded(output_prefix: str, items: Sequence,
                  build_fn: Callable[[Any], Built], *, num_shards: int,
                  num_workers: int = 1, skip_bad: bool = False,
                  kind: str = 'examples',
                  progress: Optional[bool] = None) -> dict:
  """Builds one record per item and writes them into `num_shards` shards.

  Args:
    output_prefix: `P`; shards are `P-0000i-of-0000N.tfrecord` (directories
      are created).
    items: picklable descriptions of the examples, in a deterministic order.
    build_fn: picklable `item -> Built`; raises `BadExampleError` for bad input.
    num_shards: N >= 1. Shards beyond the number of items are written empty.
    num_workers: processes that build examples (1: in this process).
    skip_bad: leave bad examples out (counted by reason) instead of raising.
    kind: what an example is, for the log ('images', 'videos').
    progress: show a tqdm bar on stderr (None: only when stderr is a TTY).

  Returns:
    The summary dict: `output_prefix`, `num_shards`, `shards_written`,
    `shards_kept` (already present, not rebuilt), `examples_written` (in the
    shards written by this run), `kind`, `skipped` (a Counter of reasons), and
    the sums of the builders' `stats`.

  Raises:
    BadExampleError: a bad example without `skip_bad`; the shard being written
      is abandoned (its temporary removed), finished shards stay.
    ValueError: `num_shards` < 1, or existing shards of another shard count.
  """
  if num_shards < 1:
    raise ValueError(f'num_shards must be >= 1, got {num_shards}.')
  make_output_dir(output_prefix)
  kept = _check_existing_shards(output_prefix, num_shards)
  todo = [s for s in range(num_shards) if s not in kept]
  shard_items = {s: list(items[s::num_shards]) for s in todo}
  flat = [item for s in todo for item in shard_items[s]]
  if kept:
    logging.info('Resuming %s: keeping %d finished shard(s), writing %d.',
                 output_prefix, len(kept), len(todo))

  stats = collections.Counter()
  skipped = collections.Counter()
  written = 0
  bar = tqdm.tqdm(total=len(flat), unit='record', file=sys.stderr,
                  desc=os.path.basename(output_prefix),
                  disable=None if progress is None else not progress)
  pool = None
  if num_workers > 1 and len(flat) > 1:
    pool = multiprocessing.get_context('spawn').Pool(num_workers)
  try:
    if pool is None:
      results = (_build_one(build_fn, item) for item in flat)
    else:
      results = pool.imap(functools.partial(_build_one, build_fn), flat,
                          chunksize=1)
    for shard in todo:
      path = shard_path(output_prefix, shard, num_shards)
      tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
      done = False
      try:
        with tf.io.TFRecordWriter(tmp) as record_writer:
          for _ in shard_items[shard]:
            result = next(results)
            bar.update(1)
            if isinstance(result, BadExampleError):
              if not skip_bad:
                raise result
              logging.warning('Skipping bad example: %s', result)
              skipped[result.reason] += 1
              continue
            record_writer.write(result.record)
            stats.update(result.stats)
            written += 1
        tf.io.gfile.rename(tmp, path, overwrite=True)
        done = True
      finally:
        if not done and tf.io.gfile.exists(tmp):
          tf.io.gfile.remove(tmp)
      _remove_stale_temporaries(path)
      logging.vlog(1, 'Wrote %s', path)
  finally:
    bar.close()
    if pool is not None:
      pool.terminate()
      pool.join()

  summary = {
      'output_prefix': output_prefix,
      'num_shards': num_shards,
      'shards_written': len(todo),
      'shards_kept': len(kept),
      'kind': kind,
      'examples_written': written,
      'skipped': skipped,
  }
  summary.update(sorted(stats.items()))
  logging.vlog(1, '%s', format_summary(summary))  # the programs print it
  return summary


def format_summary(summary: dict) -> str:
  """A few readable lines: what was written, kept and skipped (and why)."""
  lines = [
      f'{summary["output_prefix"]}: wrote {summary["examples_written"]} '
      f'{summary["kind"]} into {summary["shards_written"]} of '
      f'{summary["num_shards"]} shard(s) ({summary["shards_kept"]} already '
      'present, kept).'
  ]
  fixed = {'output_prefix', 'num_shards', 'shards_written', 'shards_kept',
           'kind', 'examples_written', 'skipped', 'categories_json'}
  for key in sorted(k for k in summary if k not in fixed):
    lines.append(f'  {key}: {summary[key]}')
  skipped = summary['skipped']
  lines.append(f'  skipped: {sum(skipped.values())}' + (
      ' (' + ', '.join(f'{k}: {v}' for k, v in sorted(skipped.items())) + ')'
      if skipped else ''))
  return '\n'.join(lines)

