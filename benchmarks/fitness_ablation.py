"""Which indicators the evolution's fitness needs: an ablation over the whole-space score table.

For each indicator set, the log-rank fitness (`search.evolution.log_rank_fitness`) is computed over
every cell meeting a limit, as if the evolution had measured them all (its ideal), and its pick's
CIFAR-10 accuracy is compared with the best cell meeting the limit: unconstrained, and under the
25 latency limits of the search-evolution sweep (STM32F746 LUT). Indicator values come from the
shipped whole-space CPU table (`benchmarks/data/nb201_scores_cpu_meco_seed0_r1.csv.gz`: MeCo on
the N=5 network, ntk_fast, LR, FLOPs; standard-normal inputs, one draw), skip span from the graph.
With `--meco-network K`, MeCo of the evolution's N=2 network is also measured on K random cells
and ranked against the table's N=5 MeCo (Spearman), and both networks' compile and per-cell times.

    python3 -m benchmarks fitness-ablation                 # seconds; writes its RESULTS.md section
    python3 -m benchmarks fitness-ablation --meco-network 400   # adds about a minute
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

try:
  from benchmarks import _results, search_evolution
except ImportError:  # run as a file: its folder is on the path
  import _results
  import search_evolution
from micronas_jax import ground_truth, space, store, topology
from micronas_jax.hardware import latency
from micronas_jax.search import evolution

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "Evolution fitness: indicator ablation"
TABLE = REPO / "benchmarks/data/nb201_scores_cpu_meco_seed0_r1.csv.gz"
# Indicator sets: (label, {column: higher is better}).
SETS = (
    ("MeCo", {"meco": True}),
    ("MeCo + LR + FLOPs (size only)", {"meco": True, "lr": True, "flops": True}),
    ("MeCo + skip span", {"meco": True, "skip_span": True}),
    ("MeCo + LR + skip span", {"meco": True, "lr": True, "skip_span": True}),
    ("MeCo + LR + FLOPs + skip span (the default)", dict(evolution.INDICATORS)),
    ("+ ntk_fast (MeCo + ntk_fast + LR + FLOPs + skip span)",
     {**evolution.INDICATORS, "ntk_fast": False}),
)


def by_fitness(columns: dict, names: dict, candidates) -> np.ndarray:
  """Benchmark indices `candidates` ordered fittest first by the log-rank fitness of `names`
  among them (ties: lower index first)."""
  candidates = np.asarray(candidates)
  fitness = evolution.log_rank_fitness({k: columns[k][candidates] for k in names},
                                       {k: np.ones(len(candidates), bool) for k in names}, names)
  return candidates[np.lexsort((candidates, -fitness))]


def pick(columns: dict, names: dict, mask: np.ndarray) -> int:
  """Benchmark index of the fittest cell among `mask` by the log-rank fitness of `names`."""
  return int(by_fitness(columns, names, np.flatnonzero(mask))[0])


def table_columns() -> dict[str, np.ndarray]:
  """{indicator: [15625]} in benchmark order: the table's MeCo, ntk_fast, LR and FLOPs, and skip
  span from the graph."""
  raw, _ = store.read_table(TABLE)
  order = np.argsort(raw["index"])
  if not np.array_equal(raw["index"][order], np.arange(space.NUM_CELLS)):
    raise SystemExit(f"{TABLE}: expected one row per cell")
  columns = {name: np.asarray(raw[name], np.float64)[order]
             for name in ("meco", "ntk_fast", "lr", "flops")}
  columns["skip_span"] = topology.skip_span(space.all_archs()).astype(np.float64)
  return columns


def ablation(accuracy: np.ndarray, sweep: int) -> list[dict]:
  columns = table_columns()
  all_latency = latency.estimate(space.all_archs(), latency.board("stm32f746"))
  limits = search_evolution.sweep_limits(all_latency, sweep)
  rows = []
  for label, names in SETS:
    free = pick(columns, names, np.ones(space.NUM_CELLS, bool))
    gaps = np.array([accuracy[all_latency <= limit].max()
                     - accuracy[pick(columns, names, all_latency <= limit)] for limit in limits])
    rows.append({"set": label, "free_index": free, "free_acc": float(accuracy[free]),
                 "gap_mean": float(gaps.mean()), "gap_max": float(gaps.max()),
                 "within_05": int((gaps <= 0.5).sum()), "limits": len(limits)})
  return rows


def meco_network(count: int) -> dict:
  """Spearman of N=2 vs N=5 MeCo on `count` random cells, and compile / per-cell seconds."""
  from micronas_jax import scoring
  raw, _ = store.read_table(TABLE)
  full = dict(zip(raw["index"].astype(int).tolist(), np.asarray(raw["meco"], np.float64),
                  strict=True))
  cells = np.random.default_rng(1).choice(space.NUM_CELLS, count, replace=False)
  out = {"cells": count}
  for n in (2, 5):
    scorer = scoring.Scorer(scoring.ScoreConfig(proxies=("meco",), repeats=1, zc_cells=n))
    start = time.perf_counter()
    scorer(space.all_archs()[:1], 0)
    out[f"compile_{n}"] = time.perf_counter() - start
    if n == 5:
      sample = cells[:50]  # timing only: the table holds N=5 values of every cell
      start = time.perf_counter()
      for index in sample:
        scorer(space.all_archs()[index][None], 0)
      out["per_cell_5"] = (time.perf_counter() - start) / len(sample)
      continue
    start = time.perf_counter()
    values = np.array([scorer(space.all_archs()[i][None], 0)["meco"][0][0] for i in cells])
    out["per_cell_2"] = (time.perf_counter() - start) / count
    table_meco = np.array([full[int(i)] for i in cells])
    out["spearman"] = ground_truth.rank_correlation(values, table_meco).rho
  return out


def render(rows: list[dict], network: dict | None, command: str) -> str:
  lines = [f"Measured with `{command}` (seconds; the ideal evolution: every cell meeting a limit "
           "ranked). Table: `nb201_scores_cpu_meco_seed0_r1.csv.gz` (standard-normal inputs, "
           "one draw); accuracy: NB201 CIFAR-10.", "",
           "| indicators (log-rank fitness) | unconstrained pick | sweep gap mean | max | "
           "limits within 0.5 |", "| --- | --- | ---: | ---: | ---: |"]
  for r in rows:
    lines.append(f"| {r['set']} | {r['free_index']} ({r['free_acc']:.2f} %) | "
                 f"{r['gap_mean']:.2f} | {r['gap_max']:.2f} | {r['within_05']} of {r['limits']} |")
  if network:
    lines += ["", f"MeCo network of the evolution (C=16, N=2 cells per stage) against the table's "
              f"N=5: Spearman {network['spearman']:.3f} over {network['cells']} random cells "
              f"(seed 1); compilation {network['compile_2']:.1f} s (N=5: "
              f"{network['compile_5']:.1f} s), {network['per_cell_2'] * 1e3:.0f} ms per cell (N=5: "
              f"{network['per_cell_5'] * 1e3:.0f} ms), same 2-core CPU."]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--accuracy", default=str(REPO.parent / "shared/data/nb201/cifar10.csv"))
  parser.add_argument("--sweep", type=int, default=25)
  parser.add_argument("--meco-network", type=int, default=0, metavar="K",
                      help="Also compare N=2 with N=5 MeCo on K random cells.")
  parser.add_argument("--no-write", action="store_true")
  args = parser.parse_args()
  if not pathlib.Path(args.accuracy).is_file():
    sys.exit(f"error: {args.accuracy}: no such accuracy CSV (--accuracy)")
  accuracy = ground_truth.read_accuracy(args.accuracy)
  rows = ablation(accuracy, args.sweep)
  network = meco_network(args.meco_network) if args.meco_network else None
  text = render(rows, network, _results.command())
  print(text)
  if not args.no_write:
    _results.write_section(SECTION, text)


if __name__ == "__main__":
  main()
