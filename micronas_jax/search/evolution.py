"""Aging evolution over cells with a zero-shot fitness: the default search (beyond the paper).

Fitness (AZ-NAS's non-linear rank aggregation, Lee & Ham, CVPR 2024, arXiv 2403.19232): among the
n cells evaluated so far, each indicator k gives cell c an ordinal rank r_k(c) in 1..n (n = best,
ties share their mean rank; an invalid value ranks below every valid one), and

    F(c) = sum_k log(r_k(c) / n),

so a cell that is poor in any one indicator is pulled down hard, while being best in one cannot
make up for being poor in another. Higher F is better. No weight, no constant fitted to accuracy.

Indicators (`INDICATORS`), each with its rationale in its own module:
  meco       MeCo, minimum eigenvalue of feature-map correlations (Jiang et al., NeurIPS 2023):
             how well the features separate, at initialization; the strongest single indicator
             measured here (Spearman 0.919 over the whole space, benchmarks/RESULTS.md).
  ntk_fast   condition number of the NTK (TE-NAS, its fast mode with frozen BN statistics),
             lower is better: trainability, which the other indicators do not measure. Added for
             budgeted search: ranking every feasible cell under the 25 latency limits of the
             default table, it lowers the mean gap to the best cell from 0.44 to 0.32 points and
             the max from 3.04 to 1.38 ("Evolution fitness: indicator ablation"); it changes
             nothing unconstrained.
  lr         linear regions (TE-NAS): the expressivity of the cell's ReLU partition.
  flops      FLOPs of the network, higher is better: capacity (AZ-NAS's "complexity"). Hard
             limits, never this rank, keep a cell within a budget.
  skip_span  nodes bypassed per identity edge (FreeREA; `micronas_jax.topology`): the topology,
             which the others do not see (MeCo, LR and FLOPs reward size: the top-1 of each is
             the biggest cell).
FLOPs and skip span are functions of the architecture alone (`FREE_INDICATORS`): known for every
cell without measuring, which the screen below uses.

Search, in three phases over the feasible cells, until `budget` cells are evaluated:
  1. `population` random feasible cells: an unbiased sample, so the measured indicators' ranks
     are taken against more than the screen's picks.
  2. The screen (when the caller gives the free indicators, `evolve(free=)`): the next `screened`
     cells are the unevaluated feasible ones that the free indicators rank highest (their
     log-rank sum over every feasible cell). FLOPs and skip span cost nothing to compute for the
     whole space, and a cell that ranks low on them cannot win a log-rank sum, which is pulled down
     hard by any one poor rank: under the 25 latency limits of benchmarks/RESULTS.md ("Budgeted
     search"), the fittest feasible cell was always among the top 64 of the free ranking, while the
     aging evolution alone, drawing its children at random, often never met it.
  3. Regularized / aging evolution (Real et al., AAAI 2019, as FreeREA uses it) for any budget
     left: the population is then the `population` fittest cells evaluated so far; a tournament
     of `tournament` random members picks the fittest as parent, a child differs from it on one
     edge (a random op among the unevaluated feasible one-edge neighbours; a random unevaluated
     feasible cell when there is none), joins the population, and the oldest member leaves.
Fitness is computed over all evaluated cells, so ranks stay comparable. The answer is the fittest
evaluated cell (ties: lower benchmark index). When no more than `budget` cells meet the limits,
all are evaluated: the search is then exhaustive. Only feasible cells are ever evaluated, so the
answer meets every limit. Same seed, same evaluator: same cell.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable

import numpy as np
from scipy import stats

from micronas_jax import proxies, space
from micronas_jax.errors import Param, ParamError
from micronas_jax.proxies import draws

# Indicator -> higher is better, from the proxies' registry and the analytic columns' directions
# as accuracy indicators (`draws.ANALYTIC_HIGHER_IS_BETTER`: FLOPs count as capacity here).
INDICATORS = {"meco": proxies.get("meco").higher_is_better,
              "ntk_fast": proxies.get("ntk_fast").higher_is_better,
              "lr": proxies.get("lr").higher_is_better,
              "flops": draws.ANALYTIC_HIGHER_IS_BETTER["flops"],
              "skip_span": draws.ANALYTIC_HIGHER_IS_BETTER["skip_span"]}

# The indicators computed from the architecture alone (`proxies.draws.ANALYTIC`).
FREE_INDICATORS = tuple(name for name in INDICATORS if name in draws.ANALYTIC)


def free_columns(names=INDICATORS, archs=None) -> dict[str, np.ndarray]:
  """{name: [M]} of the free indicators among `names` for `archs: [M, 6]` (default: every cell
  of the space), as the scorer computes them."""
  archs = space.all_archs() if archs is None else np.asarray(archs)
  return {name: np.asarray(draws.ANALYTIC[name](archs), np.float64)
          for name in names if name in draws.ANALYTIC}


# `evaluate(indices: [n] int) -> {name: (values [n] float64, valid [n] bool)}` for every indicator.
Evaluator = Callable[[np.ndarray], dict]


@dataclasses.dataclass(frozen=True)
class EvolutionConfig:
  """Sizes of the aging evolution.

  Attributes:
    population: cells kept alive (the first ones are random feasible cells).
    tournament: members drawn per step; the fittest is the parent.
    budget: cells evaluated in all (each indicator is measured once per cell).
    screened: cells taken from the free indicators' ranking after the first population (at most
      what the budget leaves); 0 turns the screen off.
  """
  population: int = 50
  tournament: int = 10
  budget: int = 300
  screened: int = 250

  def __post_init__(self):
    for name in ("population", "tournament", "budget"):
      if getattr(self, name) < 1:
        raise ParamError(Param(name), f" must be at least 1, got {getattr(self, name)}")
    if self.screened < 0:
      raise ParamError(Param("screened"), f" must be at least 0, got {self.screened}")
    if self.tournament > self.population:
      raise ParamError(Param("tournament"), f" ({self.tournament}) is larger than ",
                       Param("population"), f" ({self.population})")
    if self.budget < self.population:
      raise ParamError(Param("budget"), f" ({self.budget}) is smaller than ", Param("population"),
                       f" ({self.population})")
    if self.budget > space.NUM_CELLS:
      raise ParamError(Param("budget"), f" ({self.budget}) exceeds the {space.NUM_CELLS} cells of "
                       "the space; ", Param("method", "exhaustive"),
                       " scores every cell that meets the limits, resumably")


def log_rank_fitness(values: dict[str, np.ndarray], valid: dict[str, np.ndarray],
                     higher_is_better: dict[str, bool]) -> np.ndarray:
  """F = sum_k log(r_k / n) `[n]` of indicator columns `values: {name: [n]}`; r_k is the ordinal
  rank among the n cells (n = best, ties share their mean rank, invalid values rank below every
  valid one, tied among themselves).

  Example: one indicator [3., 1., 2.], higher better -> log([3, 1, 2] / 3).
  """
  names = list(values)
  n = len(values[names[0]])
  fitness = np.zeros(n)
  for name in names:
    key = np.asarray(values[name], np.float64) * (1.0 if higher_is_better[name] else -1.0)
    key = np.where(np.asarray(valid[name], bool) & np.isfinite(key), key, -np.inf)
    fitness += np.log(stats.rankdata(key, method="average") / n)
  return fitness


@dataclasses.dataclass(frozen=True)
class EvolutionResult:
  """The fittest evaluated cell and the search's record.

  Attributes:
    index: benchmark index of the chosen cell; ops: its `[6]` op indices.
    indicators: {name: value} of the chosen cell.
    fitness: its F among all evaluated cells.
    evaluated: `[budget]` benchmark indices in evaluation order.
    exhaustive: True when every feasible cell was evaluated.
    seconds: wall time of the search.
  """
  index: int
  ops: np.ndarray
  indicators: dict
  fitness: float
  evaluated: np.ndarray
  exhaustive: bool
  seconds: float


# Cells evaluated between progress reports while the first population (or, when the budget
# covers every feasible cell, all of them) is measured.
PROGRESS_CHUNK = 10


class _History:
  """Evaluated cells and their indicator columns, in evaluation order."""

  def __init__(self, evaluate: Evaluator, names: tuple[str, ...]):
    self.evaluate, self.names = evaluate, names
    self.indices: list[int] = []
    self.values = {name: [] for name in names}
    self.valid = {name: [] for name in names}

  def add(self, indices: np.ndarray) -> None:
    results = self.evaluate(np.asarray(indices, np.int64))
    for name in self.names:
      if name not in results:
        raise ValueError(f"the evaluator returned no {name!r}")
      values, valid = results[name]
      self.values[name].extend(np.asarray(values, np.float64).tolist())
      self.valid[name].extend(np.asarray(valid, bool).tolist())
    self.indices.extend(int(i) for i in indices)

  def fitness(self, higher_is_better: dict) -> np.ndarray:
    return log_rank_fitness({k: np.asarray(v) for k, v in self.values.items()},
                            {k: np.asarray(v) for k, v in self.valid.items()}, higher_is_better)


def cell_neighbours(index: int) -> np.ndarray:
  """The `[24]` benchmark indices one edge away from cell `index` (each other op on each edge)."""
  ops = space.arch_at(index)
  neighbours = np.repeat(ops[None], space.NUM_EDGES * (space.NUM_OPS - 1), axis=0)
  row = 0
  for edge in range(space.NUM_EDGES):
    for op in range(space.NUM_OPS):
      if op != ops[edge]:
        neighbours[row, edge] = op
        row += 1
  return np.asarray(space.index_of(neighbours))


def _child(parent: int, rng: np.random.Generator, feasible: np.ndarray, seen: np.ndarray,
           neighbours: Callable[[int], np.ndarray] = cell_neighbours) -> int:
  """A random unevaluated feasible candidate among `neighbours(parent)`, or any unevaluated
  feasible one when none is."""
  indices = neighbours(parent)
  open_ = indices[feasible[indices] & ~seen[indices]]
  if len(open_) == 0:
    open_ = np.flatnonzero(feasible & ~seen)
  return int(rng.choice(open_))


def _admitted_first(order: np.ndarray, count: int,
                    admit: Callable[[np.ndarray], np.ndarray] | None,
                    feasible: np.ndarray) -> np.ndarray:
  """The first `count` candidates of `order` that `admit` accepts (all of them without it),
  checked `count` at a time; rejected ones are cleared from `feasible`."""
  if admit is None:
    return np.asarray(order[:count], np.int64)
  first = []
  for start_at in range(0, len(order), count):
    chunk = np.asarray(order[start_at:start_at + count], np.int64)
    accepted = np.asarray(admit(chunk), bool)
    feasible[chunk[~accepted]] = False
    first.extend(chunk[accepted][:count - len(first)].tolist())
    if len(first) == count:
      break
  return np.asarray(first, np.int64)


def screen_order(free: dict[str, np.ndarray], candidates: np.ndarray,
                 higher_is_better: dict[str, bool]) -> np.ndarray:
  """`candidates` `[n]` ordered by the log-rank sum of the free indicators `free: {name: [M]}`
  among them, best first (ties: lower index first)."""
  candidates = np.asarray(candidates, np.int64)
  columns = {name: np.asarray(values)[candidates] for name, values in free.items()}
  fitness = log_rank_fitness(columns, {name: np.ones(len(candidates), bool) for name in free},
                             {name: higher_is_better[name] for name in free})
  return candidates[np.lexsort((candidates, -fitness))]


def evolve(evaluate: Evaluator, feasible: np.ndarray, seed: int,
           config: EvolutionConfig = EvolutionConfig(),
           higher_is_better: dict[str, bool] = INDICATORS,
           on_evaluate: Callable[[int], None] | None = None,
           neighbours: Callable[[int], np.ndarray] = cell_neighbours,
           admit: Callable[[np.ndarray], np.ndarray] | None = None,
           free: dict[str, np.ndarray] | None = None) -> EvolutionResult:
  """The search of the module docstring over the candidates with `feasible: [M]` True (M = 15625
  cells by default); returns the fittest evaluated one. `evaluate` measures the indicators of
  `higher_is_better`; `on_evaluate(count)` is called after each batch of evaluations (progress).
  `neighbours(i)` gives a candidate's mutations (default: one edge changed). `admit(indices) ->
  [n] bool` is an exact check run before a candidate is evaluated (e.g. memory too costly to
  screen the whole space with): a rejected candidate is never evaluated and counts as infeasible.
  `free: {name: [M]}` are indicators known for every candidate without measuring (e.g. FLOPs,
  skip span; names of `higher_is_better`): the screen ranks by them; None skips the screen."""
  start = time.perf_counter()
  feasible = np.array(feasible, bool)
  if (admit is None and feasible.shape != (space.NUM_CELLS,)) or not feasible.any():
    raise ValueError(f"feasible must be [{space.NUM_CELLS}] bool with at least one True")
  unknown = set(free or ()) - set(higher_is_better)
  if unknown:
    raise ValueError(f"free indicators {sorted(unknown)} are not among {list(higher_is_better)}")
  rng = np.random.default_rng(seed)
  history = _History(evaluate, tuple(higher_is_better))
  candidates = np.flatnonzero(feasible)
  exhaustive = len(candidates) <= config.budget
  if admit is not None and exhaustive:
    accepted = np.asarray(admit(candidates), bool)
    feasible[candidates[~accepted]] = False
    candidates = candidates[accepted]
  seen = np.zeros(len(feasible), bool)
  if exhaustive:
    first = np.sort(candidates)
  elif admit is None:
    first = rng.choice(candidates, config.population, replace=False)
  else:
    first = _admitted_first(rng.permutation(candidates), config.population, admit, feasible)
  if len(first) == 0:
    raise ValueError("no candidate passes the exact check")
  seen[first] = True
  screened = np.zeros(0, np.int64)
  count = min(config.screened, config.budget - len(first))
  if free and not exhaustive and count > 0:
    order = screen_order(free, candidates, higher_is_better)
    screened = _admitted_first(order[~seen[order]], count, admit, feasible)
    seen[screened] = True
  batch = np.concatenate([first, screened]).astype(np.int64)
  for start_at in range(0, len(batch), PROGRESS_CHUNK):  # progress from the first cells on
    history.add(batch[start_at:start_at + PROGRESS_CHUNK])
    if on_evaluate:
      on_evaluate(len(batch[start_at:start_at + PROGRESS_CHUNK]))
  # Aging phase: the fittest `population` so far, oldest first.
  fitness = history.fitness(higher_is_better)
  fittest = np.sort(np.lexsort((np.arange(len(fitness)), -fitness))[:config.population])
  population = collections.deque(int(i) for i in fittest)  # positions in the history
  while (len(history.indices) < config.budget and not exhaustive
         and (feasible & ~seen).any()):
    fitness = history.fitness(higher_is_better)
    members = np.asarray(population)
    drawn = members[rng.choice(len(members), min(config.tournament, len(members)),
                               replace=False)]
    parent = history.indices[int(drawn[np.argmax(fitness[drawn])])]
    child = _child(parent, rng, feasible, seen, neighbours)
    if admit is not None and not bool(np.asarray(admit(np.asarray([child])))[0]):
      feasible[child] = False
      continue
    history.add(np.asarray([child]))
    seen[child] = True
    population.append(len(history.indices) - 1)
    if len(population) > config.population:
      population.popleft()
    if on_evaluate:
      on_evaluate(1)
  fitness = history.fitness(higher_is_better)
  indices = np.asarray(history.indices)
  best = int(np.lexsort((indices, -fitness))[0])
  chosen = int(indices[best])
  return EvolutionResult(
      chosen, space.arch_at(chosen % space.NUM_CELLS),
      {name: float(history.values[name][best]) for name in history.names},
      float(fitness[best]), indices, exhaustive, time.perf_counter() - start)
