"""Gin at the seams: parsing `--gin_file` / `--gin_bindings` with the repository's `gin/` tree.

Gin says what to build; flags say where and how to run (STYLE.md). Every program
calls `parse_gin` once; files are looked up as given, then relative to `gin/`
(so `--gin_file=experiments/coco_stage1.gin` works from any directory), and may
live on GCS (`gs://...`), read through `tf.io.gfile`.
"""

import importlib
import os
import pkgutil
from typing import Iterable, Optional

import gin
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_DIR = os.path.join(REPO_ROOT, 'gin')

# Every binding that was parsed (what evaluation and export re-read) and the
# subset that the program actually used (for reading what ran).
CONFIG_NAME = 'config.gin'
OPERATIVE_CONFIG_NAME = 'operative_config.gin'
COMMAND_LINE_NAME = 'command_line.txt'


def _gfile_reader(path):
  return tf.io.gfile.GFile(path, 'r')


_READER_REGISTERED = False
_SEARCH_PATH_ADDED = False


def _add_search_path():
  """Lets gin `include` statements name files relative to `gin/`."""
  global _SEARCH_PATH_ADDED
  if not _SEARCH_PATH_ADDED:
    gin.add_config_file_search_path(GIN_DIR)
    _SEARCH_PATH_ADDED = True


def _drop_package_resource_reader():
  """Stops gin from looking up relative includes as Python package resources.

  gin tries every include against each search-path prefix, the empty one
  first, with each file reader. Its package-resource reader
  (`gin.resource_reader`) takes `model/pix2seq_d_tiny.gin` for a file of a
  Python package `model`, and logs `Path not found` at ERROR level for every
  include it cannot import, though the next prefix, `gin/`, then finds the
  file. The project never names gin files as package resources.
  """
  # pylint: disable=protected-access
  gin.config._FILE_READERS[:] = [
      (reader, exists) for reader, exists in gin.config._FILE_READERS
      if reader is not gin.resource_reader.system_path_reader]
  # pylint: enable=protected-access


def _register_gfile_reader():
  """Lets gin open `gs://` files (and any other `tf.io.gfile` scheme)."""
  global _READER_REGISTERED
  if not _READER_REGISTERED:
    gin.config.register_file_reader(_gfile_reader, tf.io.gfile.exists)
    _READER_REGISTERED = True


def resolve_gin_file(path: str) -> str:
  """Returns `path` if it exists, else the same path under the repository's `gin/`.

  Raises:
    FileNotFoundError: naming both places looked in.
  """
  candidates = [path]
  if not os.path.isabs(path) and '://' not in path:
    candidates.append(os.path.join(GIN_DIR, path))
  for candidate in candidates:
    if tf.io.gfile.exists(candidate):
      return candidate
  raise FileNotFoundError(
      f'gin file {path!r} not found (looked at: {", ".join(candidates)}).')


def parse_gin(gin_files: Optional[Iterable[str]] = (),
              gin_bindings: Optional[Iterable[str]] = (),
              finalize: bool = True) -> None:
  """Parses gin files then bindings (bindings win), with `gin/` on the include path.

  Args:
    gin_files: paths, absolute, relative to the working directory, or relative
      to the repository's `gin/` folder.
    gin_bindings: strings such as `"train.num_steps = 10"`.
    finalize: lock the config after parsing (programs); tests pass False.
  """
  _drop_package_resource_reader()
  _register_gfile_reader()
  _add_search_path()
  files = [resolve_gin_file(f) for f in (gin_files or ())]
  gin.parse_config_files_and_bindings(
      files, list(gin_bindings or ()), finalize_config=finalize)


CONFIGURABLE_PACKAGES = ('models', 'data', 'tasks')


def import_configurables() -> None:
  """Imports every module of the project's packages so all gin names are registered.

  Gin resolves `@name` references and `name.param` bindings only for code that
  has been imported; programs and the parse-every-file test call this first.
  """
  for package_name in CONFIGURABLE_PACKAGES:
    package = importlib.import_module(package_name)
    for info in pkgutil.walk_packages(package.__path__, package_name + '.'):
      importlib.import_module(info.name)


def all_gin_files() -> list:
  """Every `.gin` file of the repository (for the parse-everything test)."""
  found = []
  for root, _, names in os.walk(GIN_DIR):
    found.extend(os.path.join(root, n) for n in names if n.endswith('.gin'))
  return sorted(found)


def save_run_record(model_dir: str, argv: Iterable[str]) -> None:
  """Writes the gin config (all and operative) and the command line into `model_dir`.

  Each file is written to a temporary name and renamed, so a reader never sees
  half a file. Call after the model is built so the operative config is filled.
  """
  tf.io.gfile.makedirs(model_dir)
  _atomic_write(os.path.join(model_dir, CONFIG_NAME), gin.config_str())
  _atomic_write(os.path.join(model_dir, OPERATIVE_CONFIG_NAME),
                gin.operative_config_str())
  _atomic_write(os.path.join(model_dir, COMMAND_LINE_NAME),
                ' '.join(argv) + '\n')


def _atomic_write(path: str, text: str) -> None:
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'w') as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def gin_value(key: str):
  """The value bound to `key` (macros resolved), or None when unbound."""
  try:
    value = gin.query_parameter(key)
  except ValueError:
    return None
  while isinstance(value, gin.config.ConfigurableReference) and str(
      value).startswith('%'):
    value = gin.query_parameter(str(value))
  return value
