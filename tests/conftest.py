"""Shared test setup: quiet TensorFlow, fixtures' location, gin state cleared per test."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import gin  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_FIXTURES = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'fixtures')


@pytest.fixture(autouse=True)
def _clear_gin():
  """Gin state is global: every test starts and ends with a clean config."""
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture
def fixtures_dir():
  """`../shared/fixtures` (real COCO panoptic and Cityscapes samples)."""
  if not os.path.isdir(SHARED_FIXTURES):
    pytest.fail(f'shared fixtures not found at {SHARED_FIXTURES}')
  return SHARED_FIXTURES
