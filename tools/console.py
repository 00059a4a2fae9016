"""The programs' console: readable by default, everything with `--verbosity=1`.

By default a program prints the project's own lines (one per stage, one per
training loop, progress bars where work is long, a summary at the end) and
every library's warnings and errors; the libraries' INFO chatter (TensorFlow's
SavedModel and checkpoint internals, orbit's copy of each progress line) and
TensorFlow's C++ log stay hidden. `--verbosity=1` (absl's flag, `-v 1`) brings
all of it back with absl's full line prefix.

`tools/__init__.py` calls `prepare()` when any `tools.*` program is imported,
before that program imports TensorFlow, and registers `configure()` to run once
absl has parsed the flags.
"""

import logging as std_logging
import os
import sys
import time
from typing import Optional, Sequence

from absl import app
from absl import flags
from absl import logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lines logged from these folders are the project's own.
PROJECT_DIRS = tuple(os.path.join(REPO_ROOT, name) + os.sep
                     for name in ('tasks', 'data', 'models', 'tools'))
TF_CPP_QUIET = '3'
TF_CPP_VERBOSE = '0'


def argv_verbosity(argv: Sequence[str]) -> int:
  """The value of `--verbosity` / `-v` on a raw command line (0 if absent).

  Needed before absl parses the flags: TensorFlow reads its C++ log level once,
  when it loads.
  """
  names = ('--verbosity', '-verbosity', '--v', '-v')
  value = None
  for i, arg in enumerate(argv):
    for name in names:
      if arg.startswith(name + '='):
        value = arg[len(name) + 1:]
      elif arg == name and i + 1 < len(argv):
        value = argv[i + 1]
  try:
    return int(value) if value is not None else 0
  except ValueError:
    return 0  # absl reports the bad value when it parses the flags


def prepare(argv: Optional[Sequence[str]] = None) -> None:
  """Settings that must precede the import of TensorFlow.

  - `TF_CPP_MIN_LOG_LEVEL` (read once, when TensorFlow's library loads): '3'
    by default, which hides TensorFlow's C++ INFO, WARNING and ERROR lines;
    among them `failed call to cuInit`, an ERROR-level line on every machine
    without a GPU although TensorFlow then runs on the CPU as it should.
    Errors that stop a program still reach it as Python exceptions. '0' with
    `--verbosity >= 1`; a value set in the environment is kept.
  - absl's handler goes on the root logger now: TensorFlow's Python logger
    adds a second stderr handler of its own when the root logger has none at
    import, which printed each of its warnings twice.

  Args:
    argv: the command line (default `sys.argv`).
  """
  argv = sys.argv if argv is None else argv
  if 'TF_CPP_MIN_LOG_LEVEL' not in os.environ:
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = (
        TF_CPP_VERBOSE if argv_verbosity(argv) >= 1 else TF_CPP_QUIET)
  logging.use_absl_handler()


class ProjectFilter(std_logging.Filter):
  """Keeps the project's own lines and every library's warnings and errors."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING or
            record.pathname.startswith(PROJECT_DIRS))


class ShortFormatter(std_logging.Formatter):
  """`HH:MM:SS message`, with the level named when it is not INFO."""

  def format(self, record: std_logging.LogRecord) -> str:
    stamp = time.strftime('%H:%M:%S', time.localtime(record.created))
    level = '' if record.levelno == std_logging.INFO else f'{record.levelname} '
    text = f'{stamp} {level}{record.getMessage()}'
    if record.exc_info:
      text += '\n' + self.formatException(record.exc_info)
    return text


def configure() -> None:
  """Sets the console up by `--verbosity` (absl has parsed the flags).

  Unset or 0: INFO lines of the project, warnings and errors of everyone, short
  prefix. 1 or more: everything at that verbosity, absl's prefix. Negative:
  warnings and errors only.
  """
  verbosity = flags.FLAGS['verbosity']
  handler = logging.get_absl_handler().python_handler
  for old in [f for f in handler.filters if isinstance(f, ProjectFilter)]:
    handler.removeFilter(old)
  if verbosity.present and verbosity.value >= 1:
    handler.setFormatter(logging.PythonFormatter())
    return
  if verbosity.present and verbosity.value < 0:
    logging.set_verbosity(logging.WARNING)
  else:
    logging.set_verbosity(logging.INFO)
  handler.addFilter(ProjectFilter())
  handler.setFormatter(ShortFormatter())


def install() -> None:
  """`prepare()` now and `configure()` once absl has parsed the flags."""
  prepare()
  app.call_after_init(configure)
