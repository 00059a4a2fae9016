"""Tests for data/writer.py: sharding, atomic shards, resume, bad examples, workers."""

import os

import pytest
import tensorflow as tf

from data import source_files
from data import writer


def _build_number(item):
  """A tiny builder: the record is the item's text; negative items are bad."""
  if item < 0:
    raise source_files.BadExampleError(
        f'/data/item{item}.png',
        source_files.MISSING_FILE if item == -1 else source_files.SIZE_MISMATCH,
        'made bad on purpose')
  return writer.Built(str(item).encode(), {'segments': item, 'frames': 1})


def _shard_contents(prefix):
  out = []
  for path in sorted(tf.io.gfile.glob(writer.shard_pattern(prefix))):
    out.append([int(r.numpy()) for r in tf.data.TFRecordDataset(path)])
  return out


def _temporaries(directory):
  return [n for n in os.listdir(directory) if '.tmp-' in n]


def test_shard_names_and_round_robin_contents(tmp_path):
  prefix = str(tmp_path / 'out' / 'P')
  summary = writer.write_sharded(prefix, list(range(7)), _build_number,
                                 num_shards=3)
  assert sorted(os.listdir(tmp_path / 'out')) == [
      'P-00000-of-00003.tfrecord', 'P-00001-of-00003.tfrecord',
      'P-00002-of-00003.tfrecord']
  assert _shard_contents(prefix) == [[0, 3, 6], [1, 4], [2, 5]]
  assert summary['examples_written'] == 7
  assert summary['segments'] == sum(range(7))
  assert summary['frames'] == 7
  assert summary['shards_written'] == 3 and summary['shards_kept'] == 0
  assert not summary['skipped']


def test_more_shards_than_items_writes_empty_shards(tmp_path):
  prefix = str(tmp_path / 'P')
  writer.write_sharded(prefix, [5, 6], _build_number, num_shards=4)
  assert _shard_contents(prefix) == [[5], [6], [], []]


def test_resume_keeps_finished_shards_and_replaces_leftover_temporary(tmp_path):
  prefix = str(tmp_path / 'P')
  writer.write_sharded(prefix, list(range(6)), _build_number, num_shards=3)
  # Shard 0 stands for a shard finished by an earlier run: it must be kept
  # byte for byte (a marker record proves it was not rebuilt).
  shard0 = writer.shard_path(prefix, 0, 3)
  with tf.io.TFRecordWriter(shard0) as w:
    w.write(b'999')
  os.utime(shard0, (1_000_000, 1_000_000))
  # Shard 1 was being written when the earlier run died.
  shard1 = writer.shard_path(prefix, 1, 3)
  os.remove(shard1)
  with open(shard1 + '.tmp-deadbeef', 'wb') as f:
    f.write(b'half a shard')

  summary = writer.write_sharded(prefix, list(range(6)), _build_number,
                                 num_shards=3)

  assert _shard_contents(prefix) == [[999], [1, 4], [2, 5]]
  assert os.path.getmtime(shard0) == 1_000_000
  assert summary['shards_kept'] == 2 and summary['shards_written'] == 1
  assert summary['examples_written'] == 2
  assert not _temporaries(tmp_path)


def test_existing_shards_of_another_count_are_an_error(tmp_path):
  prefix = str(tmp_path / 'P')
  writer.write_sharded(prefix, [1, 2], _build_number, num_shards=2)
  with pytest.raises(ValueError, match=r'P-00000-of-00002.*--num_shards=2'):
    writer.write_sharded(prefix, [1, 2], _build_number, num_shards=3)


def test_bad_example_raises_naming_the_file_and_leaves_no_temporary(tmp_path):
  prefix = str(tmp_path / 'P')
  with pytest.raises(source_files.BadExampleError,
                     match=r'/data/item-1\.png.*missing_file') as info:
    writer.write_sharded(prefix, [0, 1, 2, -1], _build_number, num_shards=2)
  assert info.value.path == '/data/item-1.png'
  # Shard 0 (items 0, 2) finished before shard 1 met the bad item.
  assert _shard_contents(prefix) == [[0, 2]]
  assert not _temporaries(tmp_path)


def test_skip_bad_counts_reasons(tmp_path):
  prefix = str(tmp_path / 'P')
  summary = writer.write_sharded(prefix, [0, -1, 1, -2, -1], _build_number,
                                 num_shards=2, skip_bad=True)
  assert summary['examples_written'] == 2
  assert summary['skipped'] == {'missing_file': 2, 'size_mismatch': 1}
  assert _shard_contents(prefix) == [[0, 1], []]
  text = writer.format_summary(summary)
  assert 'wrote 2 examples' in text
  assert 'skipped: 3 (missing_file: 2, size_mismatch: 1)' in text


def test_bad_example_error_survives_pickling():
  import pickle  # pylint: disable=g-import-not-at-top
  error = source_files.BadExampleError('/a.png', 'size_mismatch', 'detail')
  copy = pickle.loads(pickle.dumps(error))
  assert (copy.path, copy.reason, copy.detail) == ('/a.png', 'size_mismatch',
                                                   'detail')
  assert str(copy) == '/a.png: detail [size_mismatch]'


def test_parallel_map_in_this_process_keeps_order():
  assert writer.parallel_map(abs, [-3, 4, -5], num_workers=1) == [3, 4, 5]


def test_workers_write_the_same_shards(tmp_path):
  # One spawn pool (each worker imports TensorFlow: seconds, not more).
  items = [0, 1, -1, 2, 3, 4, 5]
  one = writer.write_sharded(str(tmp_path / 'a' / 'P'), items, _build_number,
                             num_shards=2, skip_bad=True)
  two = writer.write_sharded(str(tmp_path / 'b' / 'P'), items, _build_number,
                             num_shards=2, num_workers=2, skip_bad=True)
  for name in ('P-00000-of-00002.tfrecord', 'P-00001-of-00002.tfrecord'):
    assert ((tmp_path / 'a' / name).read_bytes() ==
            (tmp_path / 'b' / name).read_bytes())
  for key in ('examples_written', 'segments', 'skipped'):
    assert one[key] == two[key]
