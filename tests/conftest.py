"""Shared fixtures: the NAS-Bench-201 ground truth in ../shared/data/nb201 (read-only), a checker
of one-line CLI errors, synthetic pruning indicators and a score-store writer."""
import csv
import gc
import os
import pathlib
import tempfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# Tests run tiny networks: XLA's backend optimizations cost more compile time than they save
# (measured: test_ntk + test_zero_cost 5m18s -> 3m52s on the 2-core CPU). Set before JAX starts;
# subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

# The suite runs with JAX's persistent compilation cache on, as the command line has it by
# default, in a folder of its own that the xdist workers share (so concurrent processes reading
# and writing one cache are exercised too). MICRONAS_JAX_CACHE=off runs it without.
os.environ.setdefault("MICRONAS_JAX_CACHE", os.path.join(
    tempfile.gettempdir(), f"micronas-jax-tests-{os.getuid()}", "xla"))


def pytest_configure(config):
  from micronas_jax import compilation_cache
  compilation_cache.enable()


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


def _assert_one_line_error(result, message, exit_code=2):
  """A Click result that failed with `exit_code` and one `Error: ...` line containing `message`,
  and no traceback."""
  assert result.exit_code == exit_code, result.output
  assert result.output.startswith("Error:") and result.output.strip().count("\n") == 0, \
      result.output
  assert message in result.output, result.output
  assert "Traceback" not in result.output


@pytest.fixture
def one_line_error():
  """`one_line_error(result, message, exit_code=2)`: asserts a one-line CLI error."""
  return _assert_one_line_error


class Additive:
  """Synthetic additive pruning indicators over edge-op weights `w: [6, 5]`: NTK(w) = sum w * A,
  LR(w) = sum w * B, MeCo(w) = sum w * M, so every search answer is known in closed form."""
  _rng = np.random.default_rng(0)
  A = _rng.uniform(1, 10, (6, 5)).astype(np.float32)
  B = _rng.uniform(1, 10, (6, 5)).astype(np.float32)
  M = _rng.uniform(1, 10, (6, 5)).astype(np.float32)

  def indicators(self, noise: float = 0.0):
    """NTK and LR, each plus `noise` times a normal draw per measurement."""
    import jax
    import jax.numpy as jnp

    from micronas_jax.search import prune

    def draw(key):
      return noise * jax.random.normal(key, (2, 6, 5))

    def measure(state, weights):
      return jnp.stack([jnp.sum(weights * (self.A + state[0])),
                        jnp.sum(weights * (self.B + state[1]))])

    return prune.Indicators(draw, measure, "additive")

  def with_meco(self):
    """NTK and LR as `indicators()`, and MeCo (higher is better, like LR)."""
    import jax.numpy as jnp

    from micronas_jax.search import prune

    def measure(state, weights):
      return jnp.stack([jnp.sum(weights * self.A), jnp.sum(weights * self.B),
                        jnp.sum(weights * self.M)])

    return prune.Indicators(lambda key: None, measure, "additive+meco", ("ntk", "lr", "meco"))


@pytest.fixture
def additive() -> Additive:
  """Synthetic pruning indicators with known answers (`Additive`)."""
  return Additive()


def _write_store(path, indices, ntk, lr, proxies=("ntk", "lr"), seed=0, meco=None):
  from micronas_jax import scoring, space, store

  config = scoring.ScoreConfig(proxies=proxies + (("meco",) if meco is not None else ()))
  with store.ScoreStore(path, config.to_dict(), config.hash(), config.proxies) as scores:
    rows = [{"index": int(i), "arch": space.format_arch(space.arch_at(int(i))),
             proxies[0]: float(n), proxies[0] + "_valid": True, "lr": float(r), "lr_valid": True}
            for i, n, r in zip(indices, ntk, lr, strict=True)]
    for row, value in zip(rows, meco if meco is not None else [], strict=False):
      row.update(meco=float(value), meco_valid=True)
    scores.write(rows, seed)
  return path


@pytest.fixture
def write_store():
  """`write_store(path, indices, ntk, lr, proxies=("ntk", "lr"), seed=0, meco=None)`: a score
  store holding the given values for benchmark `indices`; returns `path`."""
  return _write_store


class SeparableToy:
  """A separable toy indicator for the evolution: value = sum over edges of `table[edge, op]`;
  its maximum is the cell with each edge's best op, ops (3, 1, 2, 4, 0, 3) = benchmark `best`."""
  table = np.array([[0, 1, 2, 5, 3], [1, 6, 0, 2, 3], [0, 1, 7, 2, 3],
                    [1, 0, 2, 3, 8], [9, 1, 2, 3, 0], [0, 1, 2, 4, 3]], np.float64)

  @property
  def best(self) -> int:
    from micronas_jax import space
    return space.index_of(np.array([3, 1, 2, 4, 0, 3]))

  def value_of(self, archs) -> np.ndarray:
    """Values `[n]` of cells `archs: [n, 6]`."""
    return self.table[np.arange(6), np.asarray(archs)].sum(-1)

  def value(self, indices) -> np.ndarray:
    """Values `[n]` of benchmark `indices: [n]`."""
    from micronas_jax import space
    return self.value_of(space.all_archs()[np.asarray(indices)])

  def evaluator(self, calls=None):
    """An evolution evaluator measuring the indicator "toy"; appends measured indices to
    `calls`."""
    def evaluate(indices):
      if calls is not None:
        calls.extend(int(i) for i in indices)
      return {"toy": (self.value(indices), np.ones(len(indices), bool))}
    return evaluate


@pytest.fixture
def toy() -> SeparableToy:
  """A separable toy indicator with a known best cell (`SeparableToy`)."""
  return SeparableToy()


@pytest.fixture
def read_only_folder(tmp_path):
  """An empty folder this process cannot write into; skips where it can anyway (root)."""
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    (folder / "probe").touch()
  except PermissionError:
    yield folder
  else:
    (folder / "probe").unlink()
    pytest.skip("this process writes into read-only folders (root)")
  finally:
    folder.chmod(0o755)
