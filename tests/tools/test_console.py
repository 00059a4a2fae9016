"""The programs' console (tools/console.py): readable by default, all with --verbosity."""

import logging as std_logging
import os
import re
import subprocess
import sys

import pytest

from tests.tasks.conftest import make_synthetic_records
from tools import console

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize('argv, expected', [
    (['prog'], 0),
    (['prog', '--verbosity=1'], 1),
    (['prog', '--verbosity', '2'], 2),
    (['prog', '-v', '1', '--x=3'], 1),
    (['prog', '-v=-1'], -1),
    (['prog', '--verbosity=abc'], 0),
])
def test_argv_verbosity(argv, expected):
  assert console.argv_verbosity(argv) == expected


def _record(pathname, level):
  return std_logging.LogRecord('absl', level, pathname, 1, 'msg', (), None)


def test_filter_keeps_project_lines_and_library_warnings():
  keep = console.ProjectFilter().filter
  project = os.path.join(REPO_ROOT, 'tasks', 'trainer.py')
  library = '/venv/lib/python3.11/site-packages/orbit/controller.py'
  assert keep(_record(project, std_logging.INFO))
  assert not keep(_record(library, std_logging.INFO))
  assert keep(_record(library, std_logging.WARNING))
  assert keep(_record(library, std_logging.ERROR))


def _run(*args):
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  run = subprocess.run([sys.executable, '-m', *args], cwd=REPO_ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  return (run.stdout + run.stderr).splitlines()


def test_train_and_eval_console_is_clean(tmp_path):
  """tools.train then --mode=eval, with the environment's defaults.

  No error-level line (absl's `E....` prefix, `ERROR`), no gin `Path not
  found`, no CUDA `cuInit` line, no partially-restored checkpoint warning,
  each progress line once.
  """
  records = make_synthetic_records(str(tmp_path / 'data'), num_train=8,
                                   num_val=2)
  model_dir = str(tmp_path / 'run')
  bindings = [f"--gin_bindings=TRAIN_FILE_PATTERN = '{records['train']}'",
              f"--gin_bindings=EVAL_FILE_PATTERN = '{records['val']}'",
              f"--gin_bindings=CATEGORIES_JSON = '{records['categories']}'",
              '--gin_bindings=run_experiment.train_steps = 2',
              '--gin_bindings=run_experiment.steps_per_loop = 1',
              '--gin_bindings=run_experiment.jit_compile = False',
              '--gin_bindings=build_evaluator.jit_compile = False']
  lines = _run('tools.train', f'--model_dir={model_dir}',
               '--gin_file=experiments/coco_stage1_tiny.gin', *bindings)
  lines += _run('tools.train', f'--model_dir={model_dir}', '--mode=eval',
                '--gin_bindings=run_experiment.eval_steps = 1')
  text = '\n'.join(lines)
  assert not [l for l in lines if re.match(r'E\d{4} ', l) or 'ERROR' in l], text
  for noise in ('Path not found', 'cuInit', 'unrestored values',
                'train | step', 'renamed to'):
    assert noise not in text, (noise, text)
  progress = [l for l in lines if re.search(r'step \d+/2 ', l)]
  assert len(progress) == 2, text
  assert len({l.split(' ', 1)[1] for l in progress}) == 2
  assert any('eval at step 2' in l for l in lines), text
