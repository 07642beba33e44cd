"""Shared fixtures: the NAS-Bench-201 ground truth in ../shared/data/nb201 (read-only)."""
import csv
import gc
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Tests run tiny networks: XLA's backend optimizations cost more compile time than they save
# (measured: test_ntk + test_zero_cost 5m18s -> 3m52s on the 2-core CPU). Set before JAX starts;
# subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's compiled programs after each test file. Why: every XLA:CPU executable holds
  memory mappings, and the whole suite in one process compiles enough programs (about 5,000
  mappings per file) to pass the kernel's vm.max_map_count (65,530), after which XLA's compiler
  segfaults or aborts (seen at 92% of the suite, in whatever test compiled next)."""
  yield
  import jax
  jax.clear_caches()
  gc.collect()


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
