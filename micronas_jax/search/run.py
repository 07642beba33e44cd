"""The search as one library call: a frozen request in, a JSON-ready report out.

Every caller (the `micronas-jax search` command, benchmarks/search_quality.py, table1.py) goes
through `run`, so a benchmark measures exactly what a user runs. Methods:

  evolution   (default) aging evolution with the zero-shot log-rank fitness of MeCo, linear
              regions, FLOPs and skip span (`search.evolution`); beyond the paper.
  prune       the TE-NAS / MicroNAS pruning search, faithful to the reference (`search.prune`).
  table       the best cell of a score table from `micronas-jax score` (`search.table`).
  exhaustive  scores every cell meeting the limits into a resumable store, then `table`.

Compiled indicator programs are kept per scoring configuration for the life of the process, and
the evolution's measurements per (configuration, seed): a second search with the same seed
re-measures nothing (the values are the same draw's by construction; `scoring`).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from micronas_jax import compilation_cache, data, graph, scoring, space
from micronas_jax.errors import LIBRARY, Names, Param, ParamError, joined, render
from micronas_jax.hardware import costs as hardware_costs
from micronas_jax.hardware import latency
from micronas_jax.network import NetworkConfig
from micronas_jax.proxies import draws
from micronas_jax.search import evolution, objective

# MeCo's network for the evolution: NB201's C=16 at 32x32 with N=2 cells per stage instead of 5.
# Measured on the 2-core CPU (`benchmarks fitness-ablation --meco-network 400`): it compiles in
# about half the time and measures a cell in about half the time of the N=5 network, and its MeCo
# ranks 400 random cells with Spearman 0.98 against the N=5 network's.
EVOLUTION_ZC_CELLS = 2


class SearchError(ParamError):
  """A request that defines no search (bad limits, weights, files); the message is one line."""


# Each method's own options. The evolution's are `evolution.EvolutionConfig`.
Evolution = evolution.EvolutionConfig


def _needs_scores(method: str, scores_path) -> None:
  if not scores_path:
    raise SearchError(Param("method", method), " needs ", Param("scores_path"),
                      " (a store from `micronas-jax score`)" if method == "table"
                      else ": the store it fills (rerun the same command to resume)")


@dataclasses.dataclass(frozen=True)
class Prune:
  """The TE-NAS / MicroNAS pruning search (`search.prune`).

  Attributes:
    weights: rank weights (`objective.Weights`).
    fast: the NTK with frozen BN statistics.
    repeats, ntk_batch: draws per candidate and the NTK's batch.
  """
  weights: objective.Weights = objective.Weights()
  fast: bool = False
  repeats: int = 3
  ntk_batch: int = 32


@dataclasses.dataclass(frozen=True)
class Table:
  """The best cell of a score table from `micronas-jax score` (`search.table`).

  Attributes:
    scores_path: the score store or CSV.
    weights, fast: as for `Prune` (fast: the table's NTK column is the frozen-BN one).
    plot_path: a Pareto plot PNG to write, or None.
  """
  scores_path: str
  weights: objective.Weights = objective.Weights()
  fast: bool = False
  plot_path: str | None = None

  def __post_init__(self):
    _needs_scores("table", self.scores_path)


@dataclasses.dataclass(frozen=True)
class Exhaustive:
  """Scores every cell that meets the limits into the resumable store `scores_path`, then
  searches it as `Table` does; the other attributes as for `Prune` and `Table`."""
  scores_path: str
  weights: objective.Weights = objective.Weights()
  fast: bool = False
  repeats: int = 3
  ntk_batch: int = 32
  plot_path: str | None = None

  def __post_init__(self):
    _needs_scores("exhaustive", self.scores_path)


# The one dispatch table: method name -> its options type.
METHOD_TYPES = {"evolution": Evolution, "prune": Prune, "table": Table, "exhaustive": Exhaustive}
METHODS = tuple(METHOD_TYPES)
DRAWING_METHODS = ("evolution", "prune", "exhaustive")  # the table search draws nothing
# What a front end sets for each option field (the rank weights are three values).
_FIELD_VALUES = {"weights": ("w_flops", "w_latency", "meco")}


def method_name(options) -> str:
  """The name in METHODS of a method's options object."""
  for name, kind in METHOD_TYPES.items():
    if type(options) is kind:
      return name
  raise SearchError(f"not the options of a search method: {options!r}; one of "
                    f"{', '.join(kind.__name__ for kind in METHOD_TYPES.values())}")


def _method_fields(method: str) -> tuple[str, ...]:
  fields = []
  for field in dataclasses.fields(METHOD_TYPES[method]):
    fields += _FIELD_VALUES.get(field.name, (field.name,))
  return tuple(fields) + (("seed", "data_path") if method in DRAWING_METHODS else ())


# The values each method reads, derived from its options type; one given for another method is
# refused by name (`check_method_options`), never silently ignored.
METHOD_FIELDS = {method: _method_fields(method) for method in METHODS}
OPTIONAL_FIELDS = sorted({field for fields in METHOD_FIELDS.values() for field in fields})


def _unknown_method(method: str) -> SearchError:
  return SearchError(f"Unknown search method {method!r}; known: {', '.join(METHODS)}")


def check_method_options(method: str, given) -> None:
  """Raises SearchError naming the first of the fields `given` (names of OPTIONAL_FIELDS a
  caller set explicitly) that `method` does not read, and the methods that do."""
  if method not in METHODS:
    raise _unknown_method(method)
  for field in sorted(given):
    if field in OPTIONAL_FIELDS and field not in METHOD_FIELDS[method]:
      users = [Param("method", name) for name in METHODS if field in METHOD_FIELDS[name]]
      raise SearchError(Param(field), " does not apply to ", Param("method", method),
                        ": only to ", joined(users, " or "))


def method_options(method: str, **values):
  """The options object of `method` from a front end's flat values (weights, fast, repeats,
  ntk_batch, scores_path, plot_path, population, tournament, budget, screened); values of fields the
  method lacks are left out (`check_method_options` refuses those the user gave)."""
  if method not in METHODS:
    raise _unknown_method(method)
  kind = METHOD_TYPES[method]
  names = {field.name for field in dataclasses.fields(kind)}
  return kind(**{name: value for name, value in values.items() if name in names})


@dataclasses.dataclass(frozen=True)
class SearchRequest:
  """What to search for.

  Attributes:
    lut: the board's latency table (`latency.board` / `latency.load`).
    limits: hard limits (`objective.Limits`).
    method: the method's options: `Evolution()` (the default), `Prune`, `Table` or
      `Exhaustive`.
    seed: the search's seed (same seed, same cell); the table search draws nothing.
    images: normalized `[N, 32, 32, 3]` images for the indicators, or None (standard normal).
    data_path: where the images came from (recorded in the report).
    accuracy: `[15625]` benchmark accuracy (NaN where unknown) to report beside the found cell,
      from `benchmark_path`; None reports none.
    task: the data's task (`data.infer_task`), recorded in the report; the network searched is
      the LUT's (`lut.config`, e.g. `shapes.at_network(board, task.network(skeleton))`).
    skeletons: networks (`NetworkConfig`s, e.g. `search.joint.skeletons`) whose cells the
      evolution searches jointly, each priced by `lut`'s board at its shape; None searches the
      cells of `lut.config` alone.
  """
  lut: latency.LUT
  limits: objective.Limits = objective.Limits()
  method: Evolution | Prune | Table | Exhaustive = Evolution()
  seed: int = 0
  images: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
  data_path: str | None = None
  accuracy: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
  benchmark_path: str | None = None
  task: data.Task | None = None
  skeletons: tuple | None = None

  def __post_init__(self):
    name = method_name(self.method)
    if name == "table" and self.images is not None:
      raise SearchError(Param("data_path"), " belongs to ", Param("method", "evolution"),
                        ", prune or exhaustive (a score table was scored on its own inputs: "
                        "`micronas-jax score --data`)")
    if self.images is not None and self.images.shape[-1] != self.lut.config.in_channels:
      raise SearchError(f"images have {self.images.shape[-1]} channels, the network "
                        f"{self.lut.config.in_channels}")
    if self.skeletons is not None and (name != "evolution" or not self.skeletons):
      raise SearchError(Param("skeletons"), " needs ", Param("method", "evolution"),
                        " and at least one network")
    if self.accuracy is not None and np.shape(self.accuracy) != (space.NUM_CELLS,):
      raise SearchError(f"accuracy must hold one value per cell [{space.NUM_CELLS}], got "
                        f"{np.shape(self.accuracy)}")

  @property
  def method_name(self) -> str:
    return method_name(self.method)


def evolution_config(images=None) -> draws.ScoreConfig:
  """The scoring configuration of the evolution's indicators (one draw per seed)."""
  return draws.ScoreConfig(proxies=tuple(evolution.INDICATORS), repeats=1,
                             zc_cells=EVOLUTION_ZC_CELLS,
                             data=None if images is None else data.fingerprint(images),
                             in_channels=draws.image_channels(images))


# Per scoring-configuration hash (which covers the images' fingerprint): the compiled scorer and
# {seed: {benchmark index: {indicator: (value, valid)}}}, the evolution's measurements so far.
_SESSIONS: dict[str, tuple[scoring.Scorer, dict[int, dict]]] = {}


def cell_evaluator(config: draws.ScoreConfig, images, seed: int) -> evolution.Evaluator:
  """`evolve`'s evaluator of `config`'s indicators on `images` (None: standard normal): benchmark
  indices `[n]` -> {indicator: (values [n], valid [n])}, each cell measured once per
  (configuration, seed) in this process."""
  if config.hash() not in _SESSIONS:
    _SESSIONS[config.hash()] = (scoring.Scorer(config, 1, images=images), {})
  scorer, by_seed = _SESSIONS[config.hash()]
  memo = by_seed.setdefault(seed, {})
  archs = space.all_archs()

  def evaluate(indices: np.ndarray) -> dict:
    for index in map(int, indices):
      if index not in memo:
        results = scorer(archs[index][None], seed)
        memo[index] = {name: (float(v[0]), bool(ok[0])) for name, (v, ok) in results.items()}
    return {name: (np.asarray([memo[int(i)][name][0] for i in indices]),
                   np.asarray([memo[int(i)][name][1] for i in indices]))
            for name in config.proxies}

  return evaluate


def search_report(ops, lut: latency.LUT, method: str, indicators: dict, seconds: float,
                  details: dict) -> dict:
  """The JSON-ready report of a search: the cell, its network, indicators and hardware costs
  (SRAM and flash exact for this cell: `hardware.costs.exact_memory`)."""
  values = {name: float(v) for name, v in objective.cell_costs(ops, lut).items()}
  sram, flash, _ = hardware_costs.exact_memory(ops, lut)
  return {"index": space.index_of(ops), "arch": space.format_arch(ops), "method": method,
          "device": lut.device, "network": network_fields(lut.config), "indicators": indicators,
          "latency_ms": round(values["latency_ms"], 4),
          "sram_kb": round(sram / hardware_costs.KB, 2),
          "flash_kb": round(flash / hardware_costs.KB, 2), "flops_m": round(values["flops_m"], 4),
          "params_m": round(values["params_m"], 6), "search_seconds": round(seconds, 2),
          **details}


NETWORK_FIELDS = ("channels", "cells_per_stage", "num_stages", "resolution", "in_channels",
                  "num_classes")


def network_fields(config) -> dict:
  """The shape of a network (`NetworkConfig`) as a report records it."""
  return {name: getattr(config, name) for name in NETWORK_FIELDS}


def searched_network(board_config, task: data.Task | None = None, channels: int | None = None,
                     cells: int | None = None, resolution: int | None = None,
                     in_channels: int | None = None):
  """The network a search prices: the board table's (`board_config`) with the task's input and
  classes (`data.Task.network`), then any of width C, depth N, resolution and input channels
  given. ParamError for a shape no network has (e.g. a resolution not divisible by 4)."""
  config = task.network(board_config) if task else board_config
  given = {"channels": channels, "cells_per_stage": cells, "resolution": resolution,
           "in_channels": in_channels}
  return dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})


def default_skeletons(method: str, network, channels: int | None = None,
                      cells: int | None = None, resolutions=None) -> tuple | None:
  """The skeletons the default evolution searches with the cell (`search.joint.skeletons` of
  `network`, with C and N each fixed where given, at `resolutions` or the network's), or None
  for a single network: all fixed, or a method other than the evolution (SearchError when
  that method is given several resolutions)."""
  from micronas_jax.search import joint

  several = resolutions is not None and len(resolutions) > 1
  if method != "evolution":
    if several:
      raise SearchError("several ", Param("resolution"), " values need ",
                        Param("method", "evolution"), ", which searches the input size")
    return None
  if channels is not None and cells is not None and not several:
    return None
  # NetworkConfig refuses a resolution no 3-stage network takes (ValueError, one line).
  return joint.skeletons(network, channels=None if channels is None else (channels,),
                         cells=None if cells is None else (cells,),
                         resolutions=tuple(resolutions) if several else None)


def _feasible(request: SearchRequest) -> tuple[np.ndarray, dict]:
  try:
    return objective.space_feasibility(request.lut, request.limits)
  except objective.ObjectiveError as error:
    raise SearchError(error) from None


def _progress_ticker(progress, total: int):
  done = [0]

  def tick(count):
    done[0] += count
    if progress:
      progress(done[0], total)

  return tick


def _run_evolution(request: SearchRequest, progress: Callable[[int, int], None] | None,
                   log: Callable[[str], None], names: Names) -> dict:
  import jax

  if request.skeletons is not None:
    return _run_joint_evolution(request, progress, log, names)
  feasible, bounds = _feasible(request)
  config = evolution_config(request.images)
  every = ": every one is measured" if feasible.sum() <= request.method.budget else ""
  log(f"evolution search ({'+'.join(evolution.INDICATORS)}, {int(feasible.sum())} cells meet "
      f"the limits, budget {request.method.budget}{every}) on {jax.default_backend()}; "
      "compiling first (about 30 s on a CPU)")
  evaluate = cell_evaluator(config, request.images, request.seed)
  tick = _progress_ticker(progress, min(request.method.budget, int(feasible.sum())))
  memory, admit = _exact_memory_check(request.lut, bounds)
  try:
    result = evolution.evolve(evaluate, feasible, request.seed, request.method,
                              on_evaluate=tick, admit=admit, free=evolution.free_columns())
  except ValueError:
    raise SearchError("no cell meets the limits once its memory is planned exactly: every one "
                      "drawn is over ", joined([source for _, source in bounds.values()],
                                               " or ")) from None
  rejected = int((~admit(np.fromiter(memory, np.int64))).sum()) if admit else 0
  details = {"seed": request.seed,
             "limits": [render(source, names) for _, source in bounds.values()],
             "fitness": result.fitness, "evaluated_cells": len(result.evaluated),
             "feasible_cells": int(feasible.sum()), "memory_checked": len(memory),
             "memory_rejected": rejected, "exhaustive": result.exhaustive,
             "evolution": dataclasses.asdict(request.method),
             "score_config": config.to_dict()}
  return search_report(result.ops, request.lut, "evolution", result.indicators, result.seconds,
                       details)


def _exact_memory_check(lut: latency.LUT, bounds: dict):
  """({cell: (SRAM, flash) bytes} filled as checked, `evolve`'s admit: cells whose exact memory
  (`costs.exact_memory`, TFLM's arena) meets the SRAM and flash bounds; None without them).
  The vectorized screen's SRAM estimate can be up to 18 % low, so the evolution checks each
  cell it draws exactly, as the joint search does."""
  from micronas_jax.search import joint

  memory: dict[int, tuple[int, int]] = {}
  if not any(column in bounds for column in ("sram_kb", "flash_kb")):
    return memory, None

  def exact(cell: int) -> tuple[int, int]:
    if cell not in memory:
      memory[cell] = hardware_costs.exact_memory(space.arch_at(cell), lut)[:2]
    return memory[cell]

  return memory, lambda cells: joint.meets_memory(cells, exact, bounds)


def _run_joint_evolution(request: SearchRequest, progress, log, names: Names) -> dict:
  """The evolution over cells, each on its largest network within the limits
  (`search.joint.JointSpace.largest`): the cell indicators measured once per cell on the proxy
  networks, FLOPs those of the cell's largest network."""
  import jax

  from micronas_jax.search import joint

  try:
    pairs = joint.JointSpace.build(request.lut, request.skeletons, request.limits)
  except (objective.ObjectiveError, latency.LUTError) as error:
    raise SearchError(error) from None
  config = evolution_config(request.images)
  screened = int(pairs.screened.sum())
  log(f"joint evolution search ({'+'.join(evolution.INDICATORS)}) over cells, each on its "
      f"largest network of {len(pairs.networks)} skeletons: {screened:,} networks pass the "
      f"screened limits, memory checked exactly as drawn, budget {request.method.budget}; on "
      f"{jax.default_backend()}, compiling first (about 30 s on a CPU)")
  cell_evaluate = cell_evaluator(config, request.images, request.seed)

  def evaluate(cells: np.ndarray) -> dict:
    results = cell_evaluate(np.asarray(cells))
    largest = [pairs.largest(int(cell)) for cell in cells]
    results["flops"] = (pairs.flops_m[largest], np.ones(len(cells), bool))
    return results

  cells = pairs.cells()
  tick = _progress_ticker(progress, min(request.method.budget, int(cells.sum())))
  # No screen here: ranked by its largest network's FLOPs, the screen filled the budget with cheap
  # cells on the widest skeletons (on the default board it picked C=32, N=3 with cell 1248, a
  # 92.5 % cell at NB201's skeleton, where the evolution alone picks C=16, N=4 with 2581), and
  # no trained measurement yet says which is better; the screen is measured on cell searches.
  try:
    result = evolution.evolve(evaluate, cells, request.seed, request.method, on_evaluate=tick,
                              admit=pairs.admit_cells)
  except ValueError:
    raise SearchError("no network meets the limits: every skeleton and cell drawn is over ",
                      joined([source for _, source in pairs.bounds.values()], " or "),
                      " once its memory is planned exactly") from None
  skeleton, _ = pairs.split(pairs.largest(result.index))
  rejected = sum(1 for index in pairs.checked if not pairs.admit(np.asarray([index]))[0])
  grid = {field: sorted({getattr(n, field) for n in pairs.networks})
          for field in ("channels", "cells_per_stage", "resolution")}
  details = {"seed": request.seed,
             "limits": [render(source, names) for _, source in pairs.bounds.values()],
             "fitness": result.fitness, "evaluated_networks": len(result.evaluated),
             "evaluated_cells": len(result.evaluated),
             "skeletons": grid, "screened_networks": screened,
             "memory_checked": len(pairs.checked), "memory_rejected": rejected,
             # The indicators run on fixed proxy networks: one program per distinct shape,
             # whatever skeletons the pairs have (0 when this process had compiled them).
             "compilations": _SESSIONS[config.hash()][0].trace_count,
             "exhaustive": result.exhaustive, "evolution": dataclasses.asdict(request.method),
             "score_config": config.to_dict()}
  return search_report(result.ops, pairs.luts[skeleton], "evolution", result.indicators,
                       result.seconds, details)


def _run_prune(request: SearchRequest, progress: Callable[[int, int], None] | None,
               log: Callable[[str], None], names: Names) -> dict:
  import jax

  from micronas_jax.search import prune

  options = request.method
  feasible, bounds = _feasible(request)
  try:
    config = prune.search_config(options.fast, options.weights.meco > 0, options.repeats,
                                 options.ntk_batch, request.images)
  except ValueError as error:
    raise SearchError(error) from None
  searcher = prune.prune_search(config, images=request.images)
  log(f"pruning search ({searcher.indicators.name}, {options.repeats} repeats) on "
      f"{jax.default_backend()}; compiling first (about a minute on a CPU)")
  with_none = not feasible[(space.all_archs() != space.NONE).all(1)].any()
  total, done = searcher.evaluations(with_none), [0]

  def tick():
    done[0] += 1
    if progress:
      progress(done[0], total)

  searcher.on_measure = tick
  try:
    result = searcher.search(request.seed, options.weights, request.lut, feasible)
  finally:
    searcher.on_measure = None
  details = {"seed": request.seed, "weights": dataclasses.asdict(options.weights),
             "limits": [render(source, names) for _, source in bounds.values()],
             "start_with_none": result.start_with_none, "score_config": config.to_dict(),
             "rounds": result.rounds, "compilations": searcher.trace_count}
  indicators = {"ntk": result.ntk, "lr": result.lr, "ntk_proxy": config.proxies[0]}
  if result.meco is not None:
    indicators["meco"] = result.meco
  return search_report(result.ops, request.lut, "prune", indicators, result.seconds, details)


def _run_table(request: SearchRequest, names: Names) -> dict:
  from micronas_jax.search import table

  start = time.perf_counter()
  options = request.method
  weights, limits, lut = options.weights, request.limits, request.lut
  try:
    scores = table.load_scores(options.scores_path, "ntk_fast" if options.fast else "ntk",
                               weights.meco > 0)
    result = table.search(scores, lut, weights, limits)
    if options.plot_path:
      table.plot_pareto(result, scores, options.plot_path, limits.max_latency_ms)
  except (table.TableError, objective.ObjectiveError) as error:
    raise SearchError(error) from None
  best = result.best
  ops = space.arch_at(int(scores.indices[best]))
  front = [{"index": int(scores.indices[i]), "objective": float(result.objective[i]),
            "latency_ms": round(float(result.costs["latency_ms"][i]), 4)} for i in result.front]
  details = {"weights": dataclasses.asdict(weights), "scores": str(options.scores_path),
             "scored_cells": len(scores.indices), "seeds": list(scores.seeds),
             "limits": [render(source, names) for _, source in limits.bounds(lut).values()],
             "objective": float(result.objective[best]),
             "feasible_cells": int(result.feasible.sum()), "pareto_front": front,
             "score_config": scores.config}
  if options.plot_path:
    details["plot"] = str(options.plot_path)
  indicators = {"ntk": float(scores.ntk[best]), "lr": float(scores.lr[best]),
                "ntk_proxy": scores.ntk_proxy}
  if scores.meco is not None:
    indicators["meco"] = float(scores.meco[best])
  return search_report(ops, lut, "table", indicators, time.perf_counter() - start, details)


def _run_exhaustive(request: SearchRequest, progress, log, names: Names) -> dict:
  from micronas_jax import store
  from micronas_jax.search import prune

  start = time.perf_counter()
  options = request.method
  feasible, _ = _feasible(request)
  try:
    config = prune.search_config(options.fast, options.weights.meco > 0, options.repeats,
                                 options.ntk_batch, request.images)
    scorer = scoring.Scorer(config, scoring.default_cells_per_step(), images=request.images)
    results = store.ScoreStore(options.scores_path, config.to_dict(), config.hash(),
                               config.proxies)
  except (ValueError, store.StoreError) as error:
    raise SearchError(error) from None
  try:
    scoring.fill_store(results, scorer, np.flatnonzero(feasible).astype(np.int32),
                       request.seed, options.scores_path, progress, log)
  except store.StoreError as error:  # a write failure: full disk, read-only, locked
    raise SearchError(error) from None
  scoring_seconds = time.perf_counter() - start
  as_table = Table(options.scores_path, options.weights, options.fast, options.plot_path)
  report = _run_table(dataclasses.replace(request, method=as_table, images=None), names)
  report["method"] = "exhaustive"
  report["scoring_seconds"] = round(scoring_seconds, 2)
  report["search_seconds"] = round(report["search_seconds"] + scoring_seconds, 2)
  return report


def run(request: SearchRequest, progress: Callable[[int, int], None] | None = None,
        log: Callable[[str], None] = lambda message: None, names: Names = LIBRARY) -> dict:
  """Runs the search `request` asks for -> its JSON-ready report (`search_report`).

  `progress(done, total)` is called as candidates are measured; `log(line)` gets status lines;
  `names` spells the parameters the report's limits mention. Raises SearchError for a request
  no cell can answer (a limit no cell meets, a bad table).

      >>> from micronas_jax.hardware import latency
      >>> report = run(SearchRequest(latency.board("stm32f746")))  # doctest: +SKIP
      >>> report["index"], report["latency_ms"]  # doctest: +SKIP
  """
  runners = {"evolution": lambda: _run_evolution(request, progress, log, names),
             "prune": lambda: _run_prune(request, progress, log, names),
             "exhaustive": lambda: _run_exhaustive(request, progress, log, names),
             "table": lambda: _run_table(request, names)}
  report = runners[request.method_name]()
  for column, (bound, source) in request.limits.bounds(request.lut).items():
    if column in ("sram_kb", "flash_kb") and report[column] > bound:
      # prune, table and exhaustive screen memory with the vectorized estimate (up to 18 %
      # below TFLM's plan); the report's figure is the exact one. The evolution checks it
      # exactly.
      report["warnings"] = report.get("warnings", []) + [
          f"planned exactly, the cell's {column[:-3].upper()} is {report[column]:.1f} KB, over "
          f"{render(source, names)}: the search screened it with an estimate; add a margin "
          "or use the evolution (the default), which plans memory exactly"]
  if not graph.reachability(space.arch_at(report["index"])).output:
    report["warnings"] = report.get("warnings", []) + [
        "the cell's output does not depend on its input (no path of non-none ops from the input "
        "to the output): the network predicts the same class for every image; loosen the "
        "limits or pick another cell"]
  if request.data_path:
    report["data"] = str(request.data_path)
  cache = compilation_cache.usage()
  if cache is not None:  # this process's use of the persistent cache so far
    report["xla_cache"] = cache
  if request.task is not None:
    report["task"] = request.task.to_dict()
  if request.accuracy is not None:
    value = float(request.accuracy[report["index"]])
    report["test_acc"] = value if np.isfinite(value) else None  # a table without this cell
    report["benchmark"] = str(request.benchmark_path)
  return report


INDICATOR_NAMES = {"ntk": "NTK", "ntk_fast": "NTK (fast)", "lr": "LR", "meco": "MeCo", "flops": "FLOPs",
                   "skip_span": "skip span"}


def format_report(report: dict) -> str:
  """A search report (`run`) as the lines a person reads."""
  indicators = report["indicators"]
  shown = "   ".join(
      f"{INDICATOR_NAMES[name]} {value:.4g}"
      + (f" ({indicators['ntk_proxy']})" if name == "ntk" else "")
      for name, value in indicators.items() if name in INDICATOR_NAMES)
  net = report["network"]
  lines = [f"device   {report['device']}   method {report['method']}   limits: "
           f"{', '.join(report['limits']) or 'none'}",
           f"network  C={net['channels']}, N={net['cells_per_stage']}, input "
           f"{net['resolution']}x{net['resolution']}x{net['in_channels']}, "
           f"{net['num_classes']} classes",
           *([f"task     {data.Task.from_dict(report['task']).describe()}"]
             if "task" in report else []),
           f"index    {report['index']}", f"arch     {report['arch']}", f"indicators {shown}",
           f"latency  {report['latency_ms']:.3f} ms", f"SRAM     {report['sram_kb']:.1f} KB peak",
           f"flash    {report['flash_kb']:.1f} KB", f"FLOPs    {report['flops_m']:.2f} M",
           f"params   {report['params_m']:.6f} M", f"time     {report['search_seconds']:.1f} s"]
  if "benchmark" in report:
    lines.append(f"accuracy {report['test_acc']:.2f} % (from {report['benchmark']})"
                 if report["test_acc"] is not None
                 else f"accuracy  none: {report['benchmark']} has no value for this cell")
  if "skeletons" in report:
    lines.append(f"searched {report['evaluated_cells']} cells, each on its largest network, of "
                 f"{report['screened_networks']:,} networks screened, over C "
                 f"{report['skeletons']['channels']} x N {report['skeletons']['cells_per_stage']}"
                 f"; memory planned exactly for {report['memory_checked']}; "
                 f"{report['compilations']} compilations")
  if "xla_cache" in report:
    cache = report["xla_cache"]
    lines.append(f"XLA      {cache['read']} programs read from the cache, {cache['compiled']} "
                 f"compiled ({cache['folder']}; --no-xla-cache to compile all)")
  lines += [f"WARNING  {warning}" for warning in report.get("warnings", [])]
  return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ReportedNetwork:
  """The network a search report (`run`, `--out`) holds: its cell, shape and the data's task."""
  ops: np.ndarray
  network: NetworkConfig
  task: data.Task | None


def read_report(path) -> ReportedNetwork:
  """The network of a search report JSON file; SearchError (one line) for a file that is not
  one."""
  import json
  import pathlib

  try:
    report = json.loads(pathlib.Path(path).read_text())
  except OSError as error:
    raise SearchError(f"{path}: cannot be read ({error.strerror or error})") from None
  except ValueError as error:
    raise SearchError(f"{path}: not a JSON search report ({error})") from None
  try:
    ops = space.resolve(report["arch"])
    network = NetworkConfig(**{name: int(report["network"][name]) for name in NETWORK_FIELDS})
    task = data.Task.from_dict(report["task"]) if "task" in report else None
  except (KeyError, TypeError, ValueError, space.ArchError) as error:
    raise SearchError(f"{path}: not a search report with a network (micronas-jax search "
                      f"--out; {type(error).__name__}: {error})") from None
  return ReportedNetwork(ops, network, task)
