"""Proxy throughput (cells/s, compile time) and the rank agreement of fast with exact NTK.

    python3 -m benchmarks throughput                       # CPU: 12 cells per proxy
    python3 -m benchmarks throughput --cells 2048 --agreement 2048   # on a GPU

For each proxy (exact NTK, fast NTK, linear regions) at the default scoring configuration
(NTK: C=3, N=1, 32x32, batch 32; LR: 3 x 1000 samples of 3x3), one draw per cell: the time of the
first step (compile + run) and the steady rate over random cells. With --agreement N it scores N
random cells with both NTK modes and prints Kendall tau between them. Targets: exact
>= 4 cells/s on a 2-core CPU and >= 500 cells/s on one H100-class GPU; fast >= 10x exact;
LR >= exact. The table replaces the section of benchmarks/RESULTS.md for this device kind.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file (python3 benchmarks/throughput.py): its folder is on the path
  import _results
from micronas_jax import scoring


def measure(proxy: str, indices: np.ndarray, cells_per_step: int) -> dict:
  """Compile time (first step) and steady cells/s of one proxy over `indices` (one draw each)."""
  config = scoring.ScoreConfig(proxies=(proxy,), repeats=1)
  scorer = scoring.Scorer(config, cells_per_step=cells_per_step)
  rows = []
  start = time.perf_counter()
  scoring.score_indices(indices[:cells_per_step], scorer, 0, rows.extend)
  first = time.perf_counter() - start
  timed = indices[cells_per_step:]
  start = time.perf_counter()
  scoring.score_indices(timed, scorer, 0, rows.extend)
  elapsed = time.perf_counter() - start
  return {"proxy": proxy, "cells": len(timed), "step": cells_per_step, "compile_s": first,
          "cells_per_s": len(timed) / elapsed, "values": {r["index"]: r[proxy] for r in rows},
          "traces": scorer.trace_count}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cells", type=int, default=12, help="timed cells per proxy")
  parser.add_argument("--cells-per-step", type=int, default=None,
                      help="default: 1 on CPU, 32 per device on an accelerator")
  parser.add_argument("--agreement", type=int, default=0,
                      help="cells for the fast-vs-exact Kendall tau (0: skip)")
  parser.add_argument("--seed", type=int, default=0, help="which random cells")
  parser.add_argument("--no-write", action="store_true", help="only print the table")
  args = parser.parse_args()
  step = args.cells_per_step or scoring.default_cells_per_step()
  rng = np.random.default_rng(args.seed)
  def whole_steps(n):  # whole steps, plus the first (compiling) step
    return step + -(-n // step) * step

  indices = rng.permutation(15625).astype(np.int32)
  results = []
  for proxy in ("ntk", "ntk_fast", "lr"):
    count = max(args.cells, args.agreement) if proxy.startswith("ntk") else args.cells
    results.append(measure(proxy, indices[:whole_steps(count)], step))
    r = results[-1]
    print(f"{proxy}: {r['cells_per_s']:.2f} cells/s, first step {r['compile_s']:.1f} s",
          flush=True)

  device = jax.devices()[0]
  kind = "CPU" if device.platform == "cpu" else device.device_kind
  exact_rate = results[0]["cells_per_s"]
  lines = ["| device | proxy | cells per step | timed cells | first step (compile) s | cells/s "
           "| vs exact NTK | compilations |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in results:
    lines.append(f"| {kind} | {r['proxy']} | {r['step']} | {r['cells']} | {r['compile_s']:.1f} | "
                 f"{r['cells_per_s']:.2f} | {r['cells_per_s'] / exact_rate:.1f}x | {r['traces']} |")
  agreement = ""
  if args.agreement:
    from scipy import stats

    exact, fast = results[0]["values"], results[1]["values"]
    common = sorted(set(exact) & set(fast))[:args.agreement]
    tau = stats.kendalltau([exact[i] for i in common], [fast[i] for i in common]).statistic
    rho = stats.spearmanr([exact[i] for i in common], [fast[i] for i in common]).statistic
    agreement = (f"Rank agreement of fast with exact NTK condition number over {len(common)} "
                 f"random cells (one draw, seed 0): Kendall tau {tau:.3f}, Spearman rho {rho:.3f}.")
  table = "\n".join(lines)
  print(table)
  if agreement:
    print(agreement)
  if args.no_write:
    return
  body = "\n".join([f"Command: `{_results.command()}` ({_results.machine()}).", "",
                    "One draw per cell (repeats=1) at the default scoring configuration; "
                    "`first step` includes XLA compilation.", "", table, "", agreement])
  _results.write_section(f"Proxy throughput on {kind}", body)


if __name__ == "__main__":
  main()
