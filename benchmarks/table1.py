"""The paper's Table I on NAS-Bench-201 CIFAR-10: TE-NAS against MicroNAS FLOPs- and latency-guided.

For every seed, the pruning search runs once as TE-NAS (NTK and LR ranks only) and once per weight
w of MicroNAS's FLOPs-guided (w_flops = w) and latency-guided (w_latency = w) objectives, with
w_ntk = w_lr = (1 - w) / 2 (arXiv 2401.08996). For each method: the picks' CIFAR-10 test accuracy
(mean ± std over seeds), FLOPs, params, latency on the board's LUT, the speedup over the TE-NAS pick
of the same seed (its latency over the pick's, averaged over seeds) and the search time. A PNG puts
the picks on the latency/accuracy plane of the whole space with its Pareto front.

Every finished search is saved to a JSON file at once, so an interrupted run resumes where it
stopped (`--json`, default benchmarks/data/table1_<mode>.json).

    python3 -m benchmarks table1 --mode fast --seeds 5                     # writes RESULTS.md
    python3 -m benchmarks table1 --seeds 5 --weights 0.1,0.5,0.9 --no-write

Ground truth: ../shared/data/nb201/cifar10.csv (or any table `micronas_jax.ground_truth.read_accuracy`
reads); the package itself never reads it.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results

REPO = _results.REPO
TITLE = "Table I: TE-NAS vs MicroNAS on NAS-Bench-201 CIFAR-10"
DEFAULT_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def methods(weights) -> list[tuple[str, float, float]]:
  """(label, w_flops, w_latency) of TE-NAS and each MicroNAS weighting, in table order."""
  rows = [("TE-NAS", 0.0, 0.0)]
  rows += [(f"MicroNAS FLOPs w={w:g}", w, 0.0) for w in weights]
  rows += [(f"MicroNAS latency w={w:g}", 0.0, w) for w in weights]
  return rows


def run(mode: str, seeds: int, weights, repeats: int, saved: dict, save) -> dict:
  """Runs every (method, seed) search missing from `saved["picks"]`; `save(saved)` after each."""
  from micronas_jax.hardware import latency
  from micronas_jax.search import objective
  from micronas_jax.search import run as search_run

  lut = latency.board("stm32f746")
  picks = saved.setdefault("picks", {})
  todo = [(label, wf, wl, seed) for seed in range(seeds) for label, wf, wl in methods(weights)
          if f"{label}|{seed}" not in picks]
  for done, (label, w_flops, w_latency, seed) in enumerate(todo, 1):
    report = search_run.run(search_run.SearchRequest(
        lut, objective.Limits(board_memory=False),
        search_run.Prune(objective.Weights.micronas(w_flops, w_latency), fast=mode == "fast",
                         repeats=repeats), seed))
    picks[f"{label}|{seed}"] = {"index": report["index"], "seconds": report["search_seconds"]}
    save(saved)
    print(f"[{done}/{len(todo)}] {label} seed {seed}: index {report['index']} "
          f"({report['search_seconds']:.1f} s)", file=sys.stderr, flush=True)
  if todo:  # a render-only invocation keeps the count of the run that searched
    saved["compilations"] = report["compilations"]
  return saved


def summarize(saved: dict, weights, seeds: int, accuracy: np.ndarray, costs: dict) -> list[dict]:
  """One row per method: accuracy, cost and speedup over the same seed's TE-NAS pick."""
  rows = []
  for label, _, _ in methods(weights):
    picks = [saved["picks"][f"{label}|{s}"] for s in range(seeds)]
    tenas = [saved["picks"][f"TE-NAS|{s}"]["index"] for s in range(seeds)]
    index = np.array([p["index"] for p in picks])
    speedup = costs["latency_ms"][tenas] / costs["latency_ms"][index]
    rows.append({"method": label, "acc": accuracy[index], "flops_m": costs["flops_m"][index],
                 "params_m": costs["params_m"][index], "latency_ms": costs["latency_ms"][index],
                 "speedup": speedup, "seconds": np.array([p["seconds"] for p in picks]),
                 "indices": index})
  return rows


def render(rows: list[dict]) -> str:
  """The Markdown table of `summarize`'s rows (means over seeds; accuracy with its std)."""
  lines = ["| method | CIFAR-10 acc % | FLOPs M | params M | latency ms | speedup vs TE-NAS | "
           "search s | distinct picks |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    lines.append(f"| {r['method']} | {r['acc'].mean():.2f} ± {r['acc'].std():.2f} | "
                 f"{r['flops_m'].mean():.1f} | {r['params_m'].mean():.3f} | "
                 f"{r['latency_ms'].mean():.1f} | {r['speedup'].mean():.2f}x | "
                 f"{r['seconds'].mean():.1f} | {len(set(r['indices'].tolist()))} |")
  return "\n".join(lines)


def plot(rows, accuracy, costs, path: pathlib.Path) -> bool:
  """Latency vs accuracy of the whole space, its Pareto front and each method's picks (PNG)."""
  from micronas_jax.search import table

  plt = _results.pyplot()
  if plt is None:
    return False
  valid = np.isfinite(accuracy)
  lat, acc = costs["latency_ms"][valid], accuracy[valid]
  front = table.pareto_front(-acc, lat)  # higher accuracy is better
  fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
  ax.scatter(lat, acc, s=2, c="0.8", label="all cells", rasterized=True)
  ax.step(lat[front], acc[front], "k-", where="post", lw=1, label="Pareto front")
  markers = {"TE-NAS": ("*", "tab:red"), "FLOPs": ("o", "tab:blue"),
             "latency": ("s", "tab:green")}
  shown = set()
  for r in rows:
    kind = "TE-NAS" if r["method"] == "TE-NAS" else r["method"].split()[1]
    marker, color = markers[kind]
    label = {"TE-NAS": "TE-NAS", "FLOPs": "MicroNAS FLOPs-guided",
             "latency": "MicroNAS latency-guided"}[kind]
    ax.scatter(r["latency_ms"], r["acc"], marker=marker, s=60 if kind == "TE-NAS" else 25,
               facecolors="none" if kind != "TE-NAS" else color, edgecolors=color,
               label=None if label in shown else label, zorder=3)
    shown.add(label)
  ax.set_xscale("log")
  ax.set_ylim(max(80.0, float(np.nanmin(acc))), float(np.nanmax(acc)) + 0.5)
  ax.set_xlabel("latency on the STM32F746 LUT (ms, log scale)")
  ax.set_ylabel("NAS-Bench-201 CIFAR-10 test accuracy (%)")
  ax.set_title("Picks of the pruning search over seeds and weights")
  ax.legend(loc="lower right", fontsize=8)
  _results.save_figure(fig, path)
  return True


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mode", choices=("fast", "exact"), default="fast")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--weights", default=",".join(f"{w:g}" for w in DEFAULT_WEIGHTS),
                      help="comma-separated MicroNAS weights in (0, 1)")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--data", type=pathlib.Path,
                      default=REPO.parent / "shared/data/nb201/cifar10.csv")
  parser.add_argument("--json", type=pathlib.Path, default=None,
                      help="saved searches (resumed from; default benchmarks/data/table1_MODE.json)")
  parser.add_argument("--plot", type=pathlib.Path, default=REPO / "benchmarks/figures/table1.png")
  parser.add_argument("--no-write", action="store_true", help="only print the table")
  parser.add_argument("--note", default=None, help="a line to add (e.g. how loaded the machine was)")
  args = parser.parse_args()
  weights = [float(w) for w in args.weights.split(",")]
  if not all(0 < w < 1 for w in weights):
    parser.error(f"weights must lie in (0, 1), got {args.weights}")
  if not args.data.exists():
    parser.error(f"ground truth {args.data} not found (give --data)")
  path = args.json or REPO / f"benchmarks/data/table1_{args.mode}.json"
  settings = {"mode": args.mode, "repeats": args.repeats}
  saved = json.loads(path.read_text()) if path.exists() else {}
  if saved and saved.get("settings") != settings:
    parser.error(f"{path} holds a run with settings {saved.get('settings')}, not {settings}")
  saved["settings"] = settings

  def save(state):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)  # atomic: an interrupted save keeps the last good file

  load = os.getloadavg()[0]  # other work on the machine inflates the search times
  run(args.mode, args.seeds, weights, args.repeats, saved, save)
  from micronas_jax import ground_truth, space
  from micronas_jax.hardware import costs as hw_costs
  from micronas_jax.hardware import latency

  accuracy = ground_truth.read_accuracy(args.data)
  costs = hw_costs.cell_costs(space.all_archs(), latency.board("stm32f746"))
  rows = summarize(saved, weights, args.seeds, accuracy, costs)
  table = render(rows)
  print(table)
  plotted = plot(rows, accuracy, costs, args.plot)
  if args.no_write:
    return
  seconds = np.concatenate([r["seconds"] for r in rows])
  body = "\n".join([
      f"Command: `{_results.command()}` ({_results.machine()}).", "",
      f"Pruning search (NTK proxy: {'ntk_fast' if args.mode == 'fast' else 'ntk'}, "
      f"{args.repeats} repeats, batch 32; LR 3 x 1000 of 3x3; standard-normal inputs) over seeds "
      f"0..{args.seeds - 1} per method; means over seeds; latency, FLOPs and params of the full "
      f"network (C=16, N=5) on the packaged STM32F746 LUT (analytic, not measured on a board); "
      f"speedup = the same seed's TE-NAS pick latency / this pick's latency; accuracy from "
      f"`{args.data.name}` (NAS-Bench-201, 200 epochs). Search seconds include the one "
      f"compilation in the first search ({len(seconds)} searches, "
      f"{saved.get('compilations', '?')} compilation(s) in the last invocation; load average "
      f"{load:.1f} when it started).", "",
      "Paper (MicroNAS, arXiv 2401.08996): 93.88% at 51 MFLOPs and 3.23x faster MCU inference "
      "than TE-NAS's pick; TE-NAS: 93.9 ± 0.47.", "",
      table, "",
      f"Note: {args.note}" if args.note else "",
      f"![latency vs accuracy]({args.plot.relative_to(REPO / 'benchmarks')})" if plotted else ""])
  _results.write_section(TITLE, body)
  print(f"wrote '{TITLE}' to {_results.RESULTS}", file=sys.stderr)


if __name__ == "__main__":
  main()
