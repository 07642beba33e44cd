"""Shared fixtures: the NAS-Bench-201 ground truth in ../shared/data/nb201 (read-only)."""
import csv
import os
import pathlib
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# The CLI keeps compiled programs between runs; tests (and the subprocesses they start, which
# inherit the environment) share one throwaway cache instead of the user's ~/.cache.
os.environ.setdefault("MICRONAS_JAX_CACHE", tempfile.mkdtemp(prefix="micronas-jax-test-xla-"))


def nb201_data_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("MICRONAS_NB201_DATA", REPO.parent / "shared/data/nb201"))


@pytest.fixture(scope="session")
def nb201_csv() -> pathlib.Path:
  """Path of cifar10.csv; skips the test where the ground truth is absent."""
  path = nb201_data_dir() / "cifar10.csv"
  if not path.exists():
    pytest.skip(f"NB201 ground truth not found at {path} (set MICRONAS_NB201_DATA)")
  return path


@pytest.fixture(scope="session")
def nb201_rows():
  """Rows of cifar10.csv (index, arch, test_acc, params_m) as dicts, in index order."""
  path = nb201_data_dir() / "cifar10.csv"
  if not path.exists():
    pytest.skip(f"NB201 ground truth not found at {path} (set MICRONAS_NB201_DATA)")
  with open(path, newline="") as f:
    return list(csv.DictReader(f))
