"""Search over a score table (`micronas-jax score`): the best cell under limits, a Pareto front.

The candidates are the scored cells that meet every limit. Each candidate gets dense ranks of
its NTK condition number (lower is better), LR count (higher), MeCo where the search weighs it
(higher), FLOPs and latency (lower) among the candidates, and the combined objective
S = sum_k w_k rank_k (`objective`). The best cell is the candidate of lowest S (ties: lower NTK
rank, then lower benchmark index). The Pareto front holds the candidates that no other candidate
beats on both S and latency.

Ranks are taken among the candidates, as the pruning search ranks the candidates of a round:
cells that a limit excludes would otherwise set the rank gaps between the cells that compete
(a cell 100 places better in NTK among all 15,625 may be 2 places better among the feasible
ones). Measured on the whole-space `ntk_fast` + LR table under 8 latency limits (a third of
pruning picks' latency): mean gap to the best feasible cell 1.23 points with whole-table ranks,
0.54 with ranks among the candidates (benchmarks/RESULTS.md, search section).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from micronas_jax import proxies, space, store
from micronas_jax.errors import Param, ParamError
from micronas_jax.hardware import latency
from micronas_jax.search import objective


class TableError(ParamError):
  """A score table that cannot drive the search (missing proxies, another configuration)."""


@dataclasses.dataclass(frozen=True)
class Scores:
  """Indicators of the scored cells, one entry per benchmark index (seeds averaged).

  Attributes:
    indices: `[n]` benchmark indices, ascending.
    ntk, lr: `[n]` NTK condition number and LR count.
    ntk_proxy: which NTK proxy the table holds ("ntk" or "ntk_fast").
    config: the table's scoring configuration (a dict).
    seeds: the seeds averaged.
    meco: `[n]` MeCo, or None when not asked for.
  """
  indices: np.ndarray
  ntk: np.ndarray
  lr: np.ndarray
  ntk_proxy: str
  config: dict
  seeds: tuple[int, ...]
  meco: np.ndarray | None = None


def load_scores(path: str | os.PathLike, ntk_proxy: str = "ntk", meco: bool = False) -> Scores:
  """Reads a score store holding `ntk_proxy`, "lr" and, if asked, "meco"; values of several
  seeds are averaged."""
  try:
    columns, config = store.read_table(path)
  except store.StoreError as error:
    raise TableError(error) from None
  scored = config.get("proxies", [])
  missing = [name for name in (ntk_proxy, "lr", *(("meco",) if meco else ()))
             if name not in scored]
  if missing:
    other = [name for name in ("ntk", "ntk_fast") if name != ntk_proxy and name in scored]
    hint = ([f" (it holds {other[0]}: search "
             f"{'with' if other[0] == 'ntk_fast' else 'without'} ", Param("fast", True), ")"]
            if other else "")
    raise TableError(f"{path}: scored with proxies {','.join(scored)}, the search needs "
                     f"{' and '.join(missing)}", hint)
  if len(columns["index"]) == 0:
    raise TableError(f"{path}: the score table is empty")
  indices, inverse = np.unique(columns["index"].astype(np.int64), return_inverse=True)
  counts = np.bincount(inverse)
  mean = lambda name: np.bincount(inverse, columns[name].astype(np.float64)) / counts
  return Scores(indices, mean(ntk_proxy), mean("lr"), ntk_proxy, config,
                tuple(int(s) for s in np.unique(columns["seed"])),
                mean("meco") if meco else None)


def rank_table(scores: Scores, costs: dict[str, np.ndarray],
               candidates: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Dense ranks `[n]` of each indicator (1 = best) among the `candidates: [n]` bool (default:
  every scored cell); the other cells rank after every candidate."""
  columns = {"ntk": (scores.ntk, proxies.get(scores.ntk_proxy).higher_is_better),
             "lr": (scores.lr, proxies.get("lr").higher_is_better),
             "flops": (costs["flops_m"], objective.HIGHER_IS_BETTER["flops"]),
             "latency": (costs["latency_ms"], objective.HIGHER_IS_BETTER["latency"])}
  if scores.meco is not None:
    columns["meco"] = (scores.meco, proxies.get("meco").higher_is_better)
  return {name: np.asarray(objective.dense_rank(values, higher, candidates))
          for name, (values, higher) in columns.items()}


@dataclasses.dataclass(frozen=True)
class TableResult:
  """The best cell and the Pareto front of a score table.

  Attributes:
    best: position in `scores.indices` of the chosen cell.
    objective: `[n]` S of every scored cell (lower is better; inf where a limit excludes it).
    ranks: {indicator: `[n]`} dense ranks among the candidates (excluded cells rank last).
    costs: `cell_costs` columns `[n]` of every scored cell.
    feasible: `[n]` cells meeting every limit (the candidates).
    front: positions of the Pareto-optimal candidates (S vs latency), by ascending latency.
  """
  best: int
  objective: np.ndarray
  ranks: dict
  costs: dict
  feasible: np.ndarray
  front: np.ndarray


def pareto_front(score: np.ndarray, cost: np.ndarray) -> np.ndarray:
  """Positions of the points no other point beats on both (lower is better for both), sorted by
  ascending cost; of equal points the first is kept."""
  order = np.lexsort((np.arange(len(score)), score, cost))
  front, best = [], np.inf
  for i in order:
    if score[i] < best:
      front.append(i)
      best = score[i]
  return np.asarray(front, np.int64)


def search(scores: Scores, lut: latency.LUT, weights: objective.Weights,
           limits: objective.Limits) -> TableResult:
  """The best scored cell under `limits` by S, and the Pareto front of S vs latency."""
  if weights.meco > 0 and scores.meco is None:
    raise TableError("weights on meco, but the scores were loaded without it")
  archs = space.all_archs()[scores.indices]
  costs = objective.cell_costs(archs, lut)
  bounds = limits.bounds(lut)
  try:
    ok = objective.check_meetable(costs, bounds)
  except objective.ObjectiveError as error:
    raise objective.ObjectiveError(f"among the {len(archs)} scored cells: ", error) from None
  ranks = rank_table(scores, costs, ok)
  score = np.where(ok, np.asarray(objective.combined_score(ranks, weights), np.float64), np.inf)
  order = np.lexsort((scores.indices, ranks["ntk"], score))
  candidates = np.flatnonzero(ok)
  front = candidates[pareto_front(score[candidates], costs["latency_ms"][candidates])]
  return TableResult(int(order[0]), score, ranks, costs, ok, front)


def plot_pareto(result: TableResult, scores: Scores, path: str | os.PathLike,
                max_latency_ms: float | None = None) -> None:
  """Writes a PNG: every candidate cell (objective vs latency), the front, the chosen cell."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    raise TableError("the Pareto plot needs matplotlib: pip install 'micronas-jax[bench]' "
                     "(or pip install matplotlib)") from None
  lat = result.costs["latency_ms"]
  ok = result.feasible
  fig, ax = plt.subplots(figsize=(7, 4.5))
  excluded = f", {(~ok).sum()} more excluded by limits" if (~ok).any() else ""
  ax.scatter(lat[ok], result.objective[ok], s=3, c="0.75",
             label=f"{ok.sum()} candidate cells{excluded}")
  front = result.front
  ax.plot(lat[front], result.objective[front], "o-", ms=3, c="tab:blue", label="Pareto front")
  ax.scatter(lat[result.best], result.objective[result.best], s=80, marker="*", c="tab:red",
             zorder=3, label=f"chosen: index {scores.indices[result.best]}")
  if max_latency_ms is not None:
    ax.axvline(max_latency_ms, ls="--", c="tab:red", lw=1, label="latency limit")
  ax.set_xlabel("latency (ms)")
  ax.set_ylabel("objective S (lower is better)")
  ax.set_title("S = sum of w_k rank_k, ranks among the candidate cells", fontsize=10)
  ax.legend(loc="upper right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
