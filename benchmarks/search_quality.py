"""Pruning search quality and speed against NAS-Bench-201 CIFAR-10 ground truth.

For each seed: the unconstrained TE-NAS search (NTK + LR ranks, no limits), then the same search
with a latency limit of one third of the unconstrained pick's latency on the STM32F746 LUT; the
latency-limited pick is compared with the most accurate cell in the whole space meeting that
limit. Targets (issue 6): mean unconstrained accuracy >= 93.9%; limited pick within 0.5 points of
the best feasible cell; exact search <= 5 min on a 2-core CPU (<= 15 s on an H100-class GPU),
fast mode <= 60 s.

    python3 -m benchmarks search-quality --mode fast --seeds 10  # rewrites its RESULTS.md part
    python3 -m benchmarks search-quality --mode exact --seeds 2 --save-json out.json --no-write
    python3 -m benchmarks search-quality --load-json out.json    # render a saved run
    python3 -m benchmarks search-quality --mode fast --seeds 10 --meco   # MeCo beside NTK and LR

Ground truth: --data, by default ../shared/data/nb201/cifar10.csv (index, arch, test_acc,
params_m), read by `micronas_jax.benchmark.read_accuracy` (an official NB201 .pth or NATS-Bench
file works too, with the `bench` extra).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

from micronas_jax import benchmark

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Search (issue 6)"


def run(mode: str, seeds: int, accuracy: np.ndarray, repeats: int, checkpoint=None,
        meco: bool = False) -> dict:
  """Searches `seeds` seeds unconstrained and latency-limited; returns rows and timings.
  `checkpoint(result)` gets the partial result after every seed. With `meco`, MeCo joins NTK and
  LR (a third of the weight each)."""
  import jax

  from micronas_jax import scoring, space
  from micronas_jax.hardware import latency
  from micronas_jax.search import objective, prune

  lut = latency.board("stm32f746")
  all_latency = latency.estimate(space.all_archs(), lut)
  config = scoring.ScoreConfig(
      proxies=("ntk_fast" if mode == "fast" else "ntk", "lr", *(("meco",) if meco else ())),
      repeats=repeats)
  searcher = prune.prune_search(config)
  weights = objective.Weights.micronas(meco=meco)
  rows, times = [], []
  for seed in range(seeds):
    free = searcher.search(seed, weights, lut)
    times.append(free.seconds)
    index = space.index_of(free.ops)
    limit = float(all_latency[index]) / 3
    feasible, _ = objective.space_feasibility(
        lut, objective.Limits(max_latency_ms=limit, board_memory=False))
    limited = searcher.search(seed, weights, lut, feasible)
    times.append(limited.seconds)
    limited_index = space.index_of(limited.ops)
    best_feasible = float(np.nanmax(np.where(feasible, accuracy, np.nan)))
    row = {"seed": seed, "index": index, "acc": float(accuracy[index]),
           "latency_ms": float(all_latency[index]), "seconds": free.seconds, "limit_ms": limit,
           "limited_index": limited_index, "limited_acc": float(accuracy[limited_index]),
           "limited_latency_ms": float(all_latency[limited_index]),
           "limited_seconds": limited.seconds, "best_feasible_acc": best_feasible}
    row["gap"] = best_feasible - row["limited_acc"]
    rows.append(row)
    print(f"[{mode}] seed {seed}: index {index} acc {row['acc']:.2f} ({free.seconds:.1f} s); "
          f"limit {limit:.1f} ms -> index {limited_index} acc {row['limited_acc']:.2f}, "
          f"gap {row['gap']:.2f} ({limited.seconds:.1f} s)", file=sys.stderr, flush=True)
    if checkpoint:
      checkpoint(summary(mode, repeats, rows, times, searcher.trace_count,
                         searcher.indicators.name))
  return summary(mode, repeats, rows, times, searcher.trace_count, searcher.indicators.name)


def summary(mode, repeats, rows, times, compilations, indicators="") -> dict:
  import jax

  device = jax.devices()[0]
  return {"mode": mode, "indicators": indicators, "repeats": repeats, "rows": rows,
          "first_seconds": times[0],
          "steady_seconds": float(np.mean(times[1:])) if len(times) > 1 else None,
          "compilations": compilations,
          "device": f"{device.platform} ({getattr(device, 'device_kind', '')}, "
                    f"{jax.local_device_count()} device(s); host {platform.machine()}, "
                    f"{os.cpu_count()} cores)",
          "jax": jax.__version__, "python": platform.python_version(),
          "date": datetime.date.today().isoformat(), "seeds": len(rows)}


def render(result: dict, command: str) -> str:
  """A Markdown subsection: per-seed table and summary against the targets."""
  rows = result["rows"]
  acc = np.array([r["acc"] for r in rows])
  gaps = np.array([r["gap"] for r in rows])
  with_meco = "meco" in result.get("indicators", "")
  lines = [f"### {result['mode']} mode{' + MeCo' if with_meco else ''}, {result['device']}", "",
           f"Command: `{command}` ({result['date']}; Python {result['python']}, "
           f"jax {result['jax']}). NTK proxy: {'ntk_fast' if result['mode'] == 'fast' else 'ntk'}"
           f" (exact = TE-NAS semantics), {result['repeats']} repeats, batch 32, LR 3 x 1000 "
           "of 3x3, standard-normal inputs; seeds 0.." + str(len(rows) - 1) + "."
           + (" MeCo (one image through the full C=16, N=5 supernet) joins NTK and LR, a third of "
              "the weight each." if with_meco else ""), "",
           "| seed | pick | acc % | latency ms | limit ms | limited pick | acc % | best under "
           "limit % | gap | s (free / limited) |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    lines.append(f"| {r['seed']} | {r['index']} | {r['acc']:.2f} | {r['latency_ms']:.1f} | "
                 f"{r['limit_ms']:.1f} | {r['limited_index']} | {r['limited_acc']:.2f} | "
                 f"{r['best_feasible_acc']:.2f} | {r['gap']:.2f} | {r['seconds']:.1f} / "
                 f"{r['limited_seconds']:.1f} |")
  steady = result["steady_seconds"]
  lines += ["", f"- Unconstrained accuracy: mean **{acc.mean():.2f}%** ± {acc.std():.2f} "
            f"(target >= 93.9; TE-NAS 93.9 ± 0.47; optimum 94.37).",
            f"- Latency-limited: mean gap to the best cell under the limit **{gaps.mean():.2f}** "
            f"points, max {gaps.max():.2f}; within 0.5 points in {(gaps <= 0.5).sum()} of "
            f"{len(gaps)} seeds (target: within 0.5).",
            f"- Time per search: first {result['first_seconds']:.1f} s (compilation included), "
            + (f"then {steady:.1f} s on average" if steady is not None else "no second search")
            + f"; {result['compilations']} compilation(s) for all searches of the run."]
  return "\n".join(lines) + "\n"


def write_subsection(path: pathlib.Path, text: str) -> None:
  """Puts `text` (a '### ' subsection) into SECTION of `path`, replacing the one of its title."""
  content = path.read_text() if path.exists() else "# Benchmark results\n"
  start = content.find(SECTION)
  if start < 0:
    content = content.rstrip("\n") + f"\n\n{SECTION}\n\nGenerated by "
    content += "`benchmarks/search_quality.py` (see its docstring).\n"
    start = content.find(SECTION)
  end = content.find("\n## ", start + len(SECTION))
  end = len(content) if end < 0 else end + 1
  section = content[start:end].rstrip("\n") + "\n"
  title = text.split("\n", 1)[0]
  parts = section.split("\n### ")
  head, subsections = parts[0], ["### " + p for p in parts[1:]]
  subsections = [s for s in subsections if s.split("\n", 1)[0] != title] + [text]
  section = "\n\n".join([head.rstrip("\n")] + [s.rstrip("\n") for s in subsections]) + "\n"
  path.write_text((content[:start] + section + "\n" + content[end:]).rstrip("\n") + "\n")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mode", choices=("fast", "exact"), default="fast")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--meco", action="store_true",
                      help="MeCo as a third indicator beside NTK and LR (beyond the paper)")
  parser.add_argument("--data", type=pathlib.Path,
                      default=REPO.parent / "shared/data/nb201/cifar10.csv")
  parser.add_argument("--save-json", type=pathlib.Path, default=None)
  parser.add_argument("--load-json", type=pathlib.Path, default=None,
                      help="render a saved run instead of running")
  parser.add_argument("--no-write", action="store_true", help="only print the table")
  parser.add_argument("--note", default=None, help="a line to add (e.g. how loaded the machine was)")
  args = parser.parse_args()
  if args.load_json:
    saved = json.loads(args.load_json.read_text())
    result, command = saved["result"], saved["command"]
  else:
    command = "python3 benchmarks/search_quality.py " + " ".join(
        a for a in sys.argv[1:] if a not in ("--save-json", "--no-write") and not a.endswith(".json"))
    start = time.perf_counter()
    def save(result):
      if args.save_json:
        args.save_json.write_text(json.dumps({"result": result, "command": command}, indent=1))
    result = run(args.mode, args.seeds, benchmark.read_accuracy(args.data), args.repeats, save,
                 args.meco)
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
  text = render(result, command)
  if args.note:
    text += f"- Note: {args.note}\n"
  print(text)
  if not args.no_write:
    write_subsection(REPO / "benchmarks/RESULTS.md", text)
    print(f"wrote the subsection to {REPO / 'benchmarks/RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
  main()
