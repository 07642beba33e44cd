"""Scoring many cells with the training-free proxies, in chunks, sharded over local devices.

One draw (repeat r) uses key = fold_in(PRNGKey(seed), r): it initializes each proxy network once
and draws its inputs once, and every cell of the run is scored with those same weights and inputs
(common random numbers: differences between cells are not drowned by draw-to-draw noise). The
value of a proxy is the mean over `repeats` draws; a row is valid when every draw was.

A chunk of cells is scored by one jitted function with the architecture as data, so a whole
configuration compiles once. With one cell per step the cell's ops run through `lax.switch`
(one op per edge: fastest on a CPU); with more, cells are vmapped (every op runs, masked: what
fills a GPU) and the chunk is sharded over all local devices along the cell axis.
"""
from __future__ import annotations

import pathlib
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from micronas_jax import proxies, space
from micronas_jax.errors import Param, ParamError
from micronas_jax.proxies.draws import ANALYTIC, ScoreConfig, family_draw


class ScoringError(ParamError):
  """A scoring run that cannot start: a bad configuration, image set or store; one line."""


class Scorer:
  """Scores chunks of `cells_per_step` cells for one configuration; compiles once.

  `scorer(archs: [n, 6] int, seed) -> {name: (values [n] float64, valid [n] bool)}` for every
  proxy of the configuration (analytic ones included), averaged over the repeats.
  """

  def __init__(self, config: ScoreConfig, cells_per_step: int = 1, images=None):
    self.config = config
    if cells_per_step < 1:
      raise ParamError(Param("cells_per_step"), f" must be positive, got {cells_per_step}")
    self.cells_per_step = int(cells_per_step)
    self.images = None if images is None else jnp.asarray(images, jnp.float32)
    self.trace_count = 0
    devices = jax.local_devices()
    if self.cells_per_step > 1 and self.cells_per_step % len(devices):
      raise ParamError(Param("cells_per_step"), f" ({cells_per_step}) must be a multiple of the "
                       f"{len(devices)} local devices")
    self._cells_sharding = None
    if self.cells_per_step > 1 and len(devices) > 1:
      # shard_map: each device scores its slice of the chunk with the whole draw replicated.
      # (Letting the SPMD partitioner split the traced function gave wrong NTK values on CPU.)
      mesh = Mesh(np.asarray(devices), ("cells",))
      self._cells_sharding = NamedSharding(mesh, PartitionSpec("cells"))
      self._draw = jax.jit(jax.shard_map(
          self._score_draw, mesh=mesh,
          in_specs=(PartitionSpec("cells"), PartitionSpec(), PartitionSpec()),
          out_specs=PartitionSpec("cells"), check_vma=False))
    else:
      self._draw = jax.jit(self._score_draw)

  def _score_draw(self, archs, key, images):
    """Proxy values and validity `[n]` of cells `archs: [n, 6]` for the draw `key`."""
    self.trace_count += 1  # runs at trace time only: counts compilations
    networks = self.config.networks()
    used = {proxies.get(name).family for name in self.config.network_proxies}
    results = {}
    with jax.default_matmul_precision("highest"):
      for family in proxies.FAMILIES:
        if family not in used:
          continue
        network = networks[family]
        variables, inputs = family_draw(key, family, self.config, images)
        for name in self.config.network_proxies:
          proxy = proxies.get(name)
          if proxy.family != family:
            continue
          def one_cell(ops, fn=proxy.fn):
            return fn(variables, ops, inputs, network)
          if archs.shape[0] == 1:
            value, valid = one_cell(archs[0])
            results[name] = (value[None], valid[None])
          else:
            results[name] = jax.vmap(one_cell)(archs)
    return results

  def __call__(self, archs, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    archs = np.asarray(archs, np.int32)
    if archs.shape != (self.cells_per_step, space.NUM_EDGES):
      raise ValueError(f"expected archs [{self.cells_per_step}, 6], got {archs.shape}")
    base_key = jax.random.key(seed)
    device_archs = (jnp.asarray(archs) if self._cells_sharding is None
                    else jax.device_put(archs, self._cells_sharding))
    totals: dict[str, list] = {}
    for repeat in range(self.config.repeats):
      draw = self._draw(device_archs, jax.random.fold_in(base_key, repeat), self.images)
      for name, (value, valid) in draw.items():
        value, valid = np.array(value, np.float64), np.array(valid, bool)
        if name in totals:
          totals[name][0] += value
          totals[name][1] &= valid
        else:
          totals[name] = [value, valid]
    results = {name: (total / self.config.repeats, valid)
               for name, (total, valid) in totals.items()}
    for name in self.config.proxies:
      if name in ANALYTIC:
        results[name] = (np.asarray(ANALYTIC[name](archs), np.float64),
                         np.ones(len(archs), bool))
    return results


def default_cells_per_step() -> int:
  """1 on a CPU (one op per edge via lax.switch); 128 per device on an accelerator (measured
  best of 32 and 128 on an H100, benchmarks/RESULTS.md)."""
  devices = jax.local_devices()
  return 1 if devices[0].platform == "cpu" else 128 * len(devices)


def chunks(indices: np.ndarray, size: int) -> Iterable[tuple[np.ndarray, int]]:
  """Splits indices into `[size]` chunks, the last padded by repeating its final index.

  Yields (chunk, number of real entries): padding keeps every chunk one shape, one compilation.
  """
  for start in range(0, len(indices), size):
    chunk = indices[start:start + size]
    real = len(chunk)
    if real < size:
      chunk = np.concatenate([chunk, np.full(size - real, chunk[-1], chunk.dtype)])
    yield chunk, real


def score_indices(indices: np.ndarray, scorer: Scorer, seed: int,
                  on_chunk: Callable[[list[dict]], None]) -> None:
  """Scores benchmark `indices` chunk by chunk, handing each chunk's rows to `on_chunk`.

  A row is {"index", "arch", name: value, name + "_valid": bool, ...} for every proxy.
  """
  archs = space.all_archs()
  for chunk, real in chunks(np.asarray(indices, np.int32), scorer.cells_per_step):
    results = scorer(archs[chunk], seed)
    rows = []
    for position in range(real):
      index = int(chunk[position])
      row = {"index": index, "arch": space.format_arch(archs[index])}
      for name, (values, valid) in results.items():
        row[name] = float(values[position])
        row[f"{name}_valid"] = bool(valid[position])
      rows.append(row)
    on_chunk(rows)


def fill_store(results, scorer: Scorer, selected: np.ndarray, seed: int, name: str,
               progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] = lambda message: None) -> int:
  """Scores the cells of `selected: [n]` (benchmark indices) that the store `results`
  (`store.ScoreStore`, called `name` in messages) lacks for `seed`, committing each chunk (a
  killed run loses at most one chunk); returns how many. `progress(done, total)` after each chunk.
  """
  with results:
    done = results.done(seed)
    unique = list(dict.fromkeys(np.asarray(selected).tolist()))  # a cell listed twice is one
    todo = np.asarray([i for i in unique if i not in done], np.int32)
    log(f"{len(unique)} cells selected, {len(unique) - len(todo)} already in {name}, "
        f"{len(todo)} to score on {jax.local_device_count()} {jax.default_backend()} "
        f"device(s), {scorer.cells_per_step} per step")
    count = [0]

    def write(rows):
      results.write(rows, seed)
      count[0] += len(rows)
      if progress:
        progress(count[0], len(todo))

    try:
      score_indices(todo, scorer, seed, write)
    except BaseException:
      results.close()
      results.remove_if_new()
      raise
  return len(todo)


def process_share(out: str, selected: np.ndarray) -> tuple[str, np.ndarray]:
  """This process's store path and cells when JAX runs several processes (`jax.distributed`):
  every process scores every `process_count()`-th cell into OUT with a .processKofN suffix."""
  if jax.process_count() == 1:
    return out, selected
  path = pathlib.Path(out)
  name = f"{path.stem}.process{jax.process_index()}of{jax.process_count()}{path.suffix}"
  return str(path.with_name(name)), selected[jax.process_index()::jax.process_count()]


def score_into_store(config: ScoreConfig, selected: np.ndarray, seed: int, out: str,
                     images=None, cells_per_step: int | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     log: Callable[[str], None] = lambda message: None) -> tuple[str, int]:
  """Scores the cells `selected: [n]` (benchmark indices) into the resumable SQLite store `out`
  (`store.ScoreStore`), skipping cells it already holds -> (the store's path, cells scored).

  `images: [N, 32, 32, 3]` normalized, or None for standard-normal inputs; `cells_per_step`
  defaults to `default_cells_per_step()`. Raises ScoringError, before any scoring, for a bad
  step size or image set or a file that is not a store of this configuration.
  """
  from micronas_jax import store

  out, selected = process_share(out, selected)
  try:
    scorer = Scorer(config, images=images, cells_per_step=(
        default_cells_per_step() if cells_per_step is None else cells_per_step))
    results = store.ScoreStore(out, config.to_dict(), config.hash(), config.proxies)
  except (ValueError, store.StoreError) as error:
    raise ScoringError(error) from None
  try:
    return out, fill_store(results, scorer, selected, seed, out, progress, log)
  except store.StoreError as error:  # a write failure: full disk, read-only, locked
    raise ScoringError(error) from None
