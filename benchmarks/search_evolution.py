"""The default search (aging evolution, `micronas-jax search`) against NAS-Bench-201 CIFAR-10.

Every search goes through `micronas_jax.search.run.run`, the call the CLI makes. Per seed:
  - unconstrained: the pick's accuracy (target: mean >= 94.0 over 10 seeds; TE-NAS 93.9);
  - sweep: under each of `--sweep` latency limits (the 2%..98% quantiles of all cells' latency on
    the STM32F746 LUT) the gap to the most accurate cell meeting the limit (target: mean <= 0.3,
    max <= 1.0 points), for the first `--sweep-seeds` seeds;
  - Table I: under the TE-NAS row's latency / 3.23 (mean latency of the six cells with five
    conv 3x3 and one conv 1x1, the TE-NAS pick the paper's figures identify) on each packaged
    STM32F746 LUT, the pick against index 13987 (MicroNAS's pick, 93.60%);
  - side by side with a saved pruning run on the same images (`--prune-json`): the evolution
    under each of its seeds' limits (a third of the pruning pick's latency).
Seconds per search are wall time on this machine; the first includes compilation. Measurements
of one seed are shared between its searches (same draw), so later searches of a seed measure
only cells not seen before; the unconstrained search runs first, on a fresh seed.

    python3 -m benchmarks search-evolution --data ../shared/data/cifar10/cifar10-jpeg.zip
    python3 -m benchmarks search-evolution --seeds 2 --sweep 5 --no-write   # quick look

Ground truth: --accuracy (index,test_acc CSV; default ../shared/data/nb201/cifar10.csv). Progress
is saved to --save-json after every search, and a rerun with the same file resumes.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results
from micronas_jax import data, ground_truth, space
from micronas_jax.hardware import latency
from micronas_jax.search import objective
from micronas_jax.search import run as search_run

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "Default search: aging evolution"
LUTS = ("stm32f746", "stm32f746-analytic", "stm32f746-emu")
# The saved pruning run (`search-quality --save-json`) set its limits on the analytic table, the
# default when it ran; the evolution searches under those limits on that same table.
PRUNE_RUN_LUT = "stm32f746-analytic"
PAPER_SPEEDUP = 3.23
MICRONAS_PICK = 13987


def tenas_row() -> np.ndarray:
  """Benchmark indices of the six cells with five conv 3x3 and one conv 1x1."""
  archs = space.all_archs()
  return np.flatnonzero(((archs == space.CONV3X3).sum(1) == 5)
                        & ((archs == space.CONV1X1).sum(1) == 1))


def sweep_limits(all_latency: np.ndarray, count: int) -> list[float]:
  """`count` latency limits (ms): evenly spaced 2%..98% quantiles of all cells' latency."""
  return [float(q) for q in np.quantile(all_latency, np.linspace(0.02, 0.98, count))]


def prune_rows(path: str | None) -> list[dict]:
  """The rows of a saved `search-quality --save-json` run of the pruning search, or []."""
  if not path or not pathlib.Path(path).is_file():
    return []
  return json.loads(pathlib.Path(path).read_text())["result"]["rows"]


def one_search(lut, seed, images, data_path, max_latency_ms=None) -> dict:
  start = time.perf_counter()
  report = search_run.run(search_run.SearchRequest(
      lut, objective.Limits(max_latency_ms=max_latency_ms, board_memory=False), seed=seed,
      images=images, data_path=data_path))
  return {"index": report["index"], "latency_ms": report["latency_ms"],
          "seconds": round(time.perf_counter() - start, 2), "limit": max_latency_ms}


def run(args, accuracy: np.ndarray, saved: dict, save) -> dict:
  images = (None if args.data is None
            else data.load_images(args.data, max_images=data.INDICATOR_IMAGES))
  luts = {name: latency.board(name) for name in LUTS}
  all_latency = {name: latency.estimate(space.all_archs(), lut) for name, lut in luts.items()}
  limits = sweep_limits(all_latency["stm32f746"], args.sweep)
  prune_limits = {row["seed"]: row["limit_ms"] for row in prune_rows(args.prune_json)}
  saved.setdefault("searches", {})
  for seed in range(args.seeds):
    jobs = [("free", "stm32f746", None)]
    jobs += [(f"table1|{name}", name, float(all_latency[name][tenas_row()].mean()) / PAPER_SPEEDUP)
             for name in LUTS]
    if seed < args.sweep_seeds:
      jobs += [(f"sweep|{k}", "stm32f746", limit) for k, limit in enumerate(limits)]
    if seed in prune_limits:
      jobs.append(("prune-limit", PRUNE_RUN_LUT, prune_limits[seed]))
    for key, lut_name, limit in jobs:
      full_key = f"{seed}|{key}"
      if full_key in saved["searches"]:
        continue
      result = one_search(luts[lut_name], seed, images, args.data, limit)
      result["test_acc"] = float(accuracy[result["index"]])
      if limit is not None:
        feasible = all_latency[lut_name] <= limit
        result["best_feasible"] = float(accuracy[feasible].max())
      saved["searches"][full_key] = result
      print(f"seed {seed} {key}: index {result['index']} {result['test_acc']:.2f}% "
            f"{result['seconds']:.1f} s", flush=True)
      save(saved)
  saved["limits"] = limits
  return saved


def summarize(saved: dict, accuracy: np.ndarray) -> dict:
  searches = saved["searches"]
  free = [v for k, v in searches.items() if k.endswith("|free")]
  sweep = [v for k, v in searches.items() if "|sweep|" in k]  # on the default table
  gaps = np.array([v["best_feasible"] - v["test_acc"] for v in sweep])
  times = [v["seconds"] for v in searches.values()]
  free_acc = np.array([v["test_acc"] for v in free])
  out = {"seeds": len(free), "free_mean": float(free_acc.mean()), "free_std": float(free_acc.std()),
         "free_min": float(free_acc.min()), "free_picks": [v["index"] for v in free],
         "free_seconds": [v["seconds"] for v in free],
         "sweep_searches": len(sweep), "sweep_seeds": len({k.split("|")[0] for k in searches
                                                            if "|sweep|" in k}),
         "gap_mean": float(gaps.mean()) if len(gaps) else None,
         "gap_max": float(gaps.max()) if len(gaps) else None,
         "gap_within_05": int((gaps <= 0.5).sum()) if len(gaps) else None,
         "median_seconds": float(np.median(times))}
  for name in LUTS:
    rows = [v for k, v in searches.items() if k.endswith(f"|table1|{name}")]
    out[f"table1_{name}"] = {
        "limit": rows[0]["limit"], "picks": [v["index"] for v in rows],
        "acc_mean": float(np.mean([v["test_acc"] for v in rows])),
        "at_least_13987": int(sum(v["test_acc"] >= accuracy[MICRONAS_PICK] for v in rows)),
        "speedups": [round(float(latency.estimate(space.all_archs()[tenas_row()],
                                                   latency.board(name)).mean()
                                 / latency.estimate(space.arch_at(v["index"]),
                                                    latency.board(name))), 2) for v in rows]}
  return out


def side_by_side(saved: dict, rows: list[dict]) -> str:
  """A Markdown table: the evolution and the saved pruning run, same seeds and limits."""
  searches = saved["searches"]
  paired = [(row, searches.get(f"{row['seed']}|prune-limit"), searches.get(f"{row['seed']}|free"))
            for row in rows]
  paired = [(row, limited, free) for row, limited, free in paired if limited and free]
  if not paired:
    return ""
  prune_free = np.array([row["acc"] for row, _, _ in paired])
  prune_gap = np.array([row["gap"] for row, _, _ in paired])
  evo_free = np.array([free["test_acc"] for _, _, free in paired])
  evo_gap = np.array([row["best_feasible_acc"] - limited["test_acc"] for row, limited, _ in paired])
  prune_s = np.median([row["seconds"] for row, _, _ in paired][1:] or [paired[0][0]["seconds"]])
  evo_s = np.median([free["seconds"] for _, _, free in paired][1:] or [paired[0][2]["seconds"]])
  return "\n".join([
      f"Side by side on the same images and seeds ({len(paired)}; the limit of each seed is a "
      "third of the pruning pick's latency, the pruning benchmark's own protocol; pruning from "
      "`search-quality --mode fast --images cifar10-jpeg.zip --save-json`):", "",
      "| method | unconstrained | gap under the pruning run's limits (mean, max) | "
      "median s per search after the first |", "| --- | --- | --- | ---: |",
      f"| evolution (default) | {evo_free.mean():.2f} ± {evo_free.std():.2f} % | "
      f"{evo_gap.mean():.2f}, {evo_gap.max():.2f} | {evo_s:.1f} |",
      f"| pruning, `ntk_fast` + LR (TE-NAS, `--method prune --fast`) | {prune_free.mean():.2f} ± "
      f"{prune_free.std():.2f} % | {prune_gap.mean():.2f}, {prune_gap.max():.2f} | "
      f"{prune_s:.1f} |"]) + "\n"


def render(summary: dict, saved: dict, command: str, rows: list[dict] = ()) -> str:
  s = summary
  lines = [
      f"Measured with `{command}` ({saved.get('machine', '')}); inputs: "
      f"{saved.get('data') or 'standard normal'}; indicators `meco` (C=16, N="
      f"{search_run.EVOLUTION_ZC_CELLS}), `lr`, FLOPs, skip span; population 50, tournament 10, "
      "budget 300 cells; one draw per seed.", "",
      "| measure | value | target |", "| --- | --- | --- |",
      f"| unconstrained, {s['seeds']} seeds | {s['free_mean']:.2f} ± {s['free_std']:.2f} % "
      f"(min {s['free_min']:.2f}; picks {', '.join(map(str, s['free_picks']))}) | >= 94.0 "
      f"**{'met' if s['free_mean'] >= 94.0 else 'not met'}** |"]
  if s["gap_mean"] is not None:
    lines.append(
        f"| latency sweep, {len(saved['limits'])} limits x {s['sweep_seeds']} seeds | mean gap "
        f"{s['gap_mean']:.2f}, max {s['gap_max']:.2f} points ({s['gap_within_05']} of "
        f"{s['sweep_searches']} within 0.5) | mean <= 0.3, max <= 1.0 **"
        f"{'met' if s['gap_mean'] <= 0.3 and s['gap_max'] <= 1.0 else 'not met'}** |")
  for name in LUTS:
    t = s[f"table1_{name}"]
    lines.append(
        f"| Table I on `{name}`: limit {t['limit']:.1f} ms (TE-NAS row / 3.23) | picks "
        f"{', '.join(map(str, t['picks']))}, mean {t['acc_mean']:.2f} %, {t['at_least_13987']} "
        f"of {len(t['picks'])} at least as accurate as 13987 (93.60 %); speedups over the TE-NAS "
        f"row {', '.join(f'{x:.2f}x' for x in t['speedups'])} | 13987 or better "
        f"**{'met' if t['at_least_13987'] == len(t['picks']) else 'not met'}** |")
  lines.append(
      f"| seconds per search | median {s['median_seconds']:.1f} s; unconstrained, first of the "
      f"run (compilation included) {s['free_seconds'][0]:.1f} s, then "
      f"{', '.join(f'{x:.0f}' for x in s['free_seconds'][1:])} | <= 60 s |")
  lines += [
      "", "Anchors: TE-NAS 93.9 ± 0.47 (paper), TG-NAS 93.75, AZ-NAS 93.53, NASWOT 91.5; the best "
      "cell of the space is index 6111 (94.37 %). The gap is the accuracy of the most accurate "
      "cell meeting the limit minus the pick's. Seconds are wall time of `search_run.run` on "
      "the machine above (the first search of a seed pays for the cells it is the first to "
      "measure; a search after the first of its seed measures only cells not yet seen).",
      "The pruning search on the same images: `search-quality --images cifar10-jpeg.zip` (section "
      "\"Pruning and table search quality\"); the fitness's indicator sets: section "
      "\"Evolution fitness: indicator ablation\"."]
  table = side_by_side(saved, list(rows))
  return "\n".join(lines) + "\n" + ("\n" + table if table else "")


def plot(saved: dict, accuracy: np.ndarray, path: pathlib.Path) -> bool:
  """The space's latency/accuracy cloud with the unconstrained and Table I picks."""
  plt = _results.pyplot()
  if plt is None:
    return False
  lat = latency.estimate(space.all_archs(), latency.board("stm32f746"))
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.scatter(lat, accuracy, s=1, c="0.8", label="all 15,625 cells")
  searches = saved["searches"]
  for kind, marker, colour in (("free", "*", "tab:red"), ("table1|stm32f746", "o", "tab:blue")):
    rows = [v for k, v in searches.items() if k.endswith(f"|{kind}")]
    ax.scatter([lat[v["index"]] for v in rows], [v["test_acc"] for v in rows], s=60,
               marker=marker, c=colour, zorder=3,
               label=f"evolution picks, {'unconstrained' if kind == 'free' else 'Table I limit'}")
  ax.scatter([lat[MICRONAS_PICK]], [accuracy[MICRONAS_PICK]], s=60, marker="x", c="k", zorder=4,
             label="13987 (MicroNAS)")
  ax.set_ylim(85, 94.6)
  ax.set_xlabel("latency on stm32f746 (ms, packaged LUT)")
  ax.set_ylabel("CIFAR-10 test accuracy (%)")
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  _results.save_figure(fig, path)
  return True


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--sweep", type=int, default=25, help="Latency limits of the sweep.")
  parser.add_argument("--sweep-seeds", type=int, default=3)
  parser.add_argument("--data", default=None, help="Images (image folder/.zip, CIFAR-10 python, "
                      ".npz); default: standard-normal inputs.")
  parser.add_argument("--accuracy", default=str(REPO.parent / "shared/data/nb201/cifar10.csv"))
  parser.add_argument("--save-json", default=str(REPO / "benchmarks/data/search_evolution.json"))
  parser.add_argument("--prune-json",
                      default=str(REPO / "benchmarks/data/search_fast_cifar10_cpu.json"),
                      help="A saved pruning run (search-quality --save-json) on the same images: "
                           "the evolution also searches under its limits, side by side.")
  parser.add_argument("--no-write", action="store_true", help="Do not touch RESULTS.md.")
  args = parser.parse_args()
  if not pathlib.Path(args.accuracy).is_file():
    sys.exit(f"error: {args.accuracy}: no such accuracy CSV (--accuracy)")
  accuracy = ground_truth.read_accuracy(args.accuracy)
  path = pathlib.Path(args.save_json)
  saved = json.loads(path.read_text()) if path.is_file() else {}
  saved.update(machine=_results.machine(), data=args.data and pathlib.Path(args.data).name)

  def save(state):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(path)

  saved = run(args, accuracy, saved, save)
  save(saved)
  summary = summarize(saved, accuracy)
  text = render(summary, saved, _results.command(), prune_rows(args.prune_json))
  figure = REPO / "benchmarks/figures/search_evolution.png"
  if plot(saved, accuracy, figure):
    text += f"\n![picks over the space](figures/{figure.name})\n"
  print(text)
  if not args.no_write:
    _results.write_section(SECTION, text)


if __name__ == "__main__":
  main()
