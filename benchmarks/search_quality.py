"""Pruning search quality and speed against NAS-Bench-201 CIFAR-10 ground truth.

For each seed: the unconstrained TE-NAS search (NTK + LR ranks, no limits), then the same search
with a latency limit of one third of the unconstrained pick's latency on the STM32F746 LUT; the
latency-limited pick is compared with the most accurate cell in the whole space meeting that
limit. Targets: mean unconstrained accuracy >= 93.9%; limited pick within 0.5 points of
the best feasible cell; exact search <= 5 min on a 2-core CPU (<= 15 s on an H100-class GPU),
fast mode <= 60 s.

    python3 -m benchmarks search-quality --mode fast --seeds 10  # rewrites its RESULTS.md part
    python3 -m benchmarks search-quality --mode exact --seeds 2 --save-json out.json --no-write
    python3 -m benchmarks search-quality --load-json out.json    # render a saved run
    python3 -m benchmarks search-quality --mode fast --seeds 10 --meco   # MeCo beside NTK and LR
    python3 -m benchmarks search-quality --mode fast --meco --scores TABLE.csv.gz \
        --limits-from benchmarks/data/search_fast_meco_cpu.json   # the table search, same limits
    python3 -m benchmarks search-quality --mode fast --scores TABLE.csv.gz --sweep 25  # 25 limits
    python3 -m benchmarks search-quality --mode fast --images benchmarks/data/natural_images.npz

With `--scores`, the table search (`micronas-jax search --method table`) over a whole-space score
table stands in for the pruning search: one unconstrained pick, then one pick per limit, the
limits being a third of that pick's latency or, with `--limits-from`, those of a saved pruning run
(so the two searches face the same limits), or with `--sweep N` N quantiles of all cells'
latency, with a plot of the pick against the best cell under each limit. `--images` runs the
pruning search's indicators on images (`natural_images.py`) instead of standard-normal inputs.

Ground truth: --data, by default ../shared/data/nb201/cifar10.csv (index, arch, test_acc,
params_m), read by `micronas_jax.ground_truth.read_accuracy` (an official NB201 .pth or NATS-Bench
file works too, with the `bench` extra).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file (python3 benchmarks/search_quality.py): its folder is on the path
  import _results
from micronas_jax import ground_truth

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "Pruning and table search quality"


def run(mode: str, seeds: int, accuracy: np.ndarray, repeats: int, checkpoint=None,
        meco: bool = False, images_path: pathlib.Path | None = None,
        limited_w_latency: float = 0.0) -> dict:
  """Searches `seeds` seeds unconstrained and latency-limited; returns rows and timings.
  `checkpoint(result)` gets the partial result after every seed. With `meco`, MeCo joins NTK and
  LR (a third of the weight each). `images_path` (`data.load_images`) replaces the
  standard-normal inputs. `limited_w_latency` weighs the latency rank in the limited search
  (MicroNAS latency guidance next to the hard limit; the unconstrained search stays TE-NAS)."""
  from micronas_jax import data, space
  from micronas_jax.hardware import latency
  from micronas_jax.search import objective, prune
  from micronas_jax.search import run as search_run

  lut = latency.board("stm32f746")
  all_latency = latency.estimate(space.all_archs(), lut)
  images = (None if images_path is None
            else data.load_images(images_path, max_images=data.INDICATOR_IMAGES))
  config = prune.search_config(mode == "fast", meco, repeats, images=images)
  weights = objective.Weights.micronas(meco=meco)
  limited_weights = objective.Weights.micronas(w_latency=limited_w_latency, meco=meco)
  request = search_run.SearchRequest(
      lut, objective.Limits(board_memory=False),
      search_run.Prune(weights, fast=mode == "fast", repeats=repeats), images=images)
  rows, times = [], []
  for seed in range(seeds):
    free = search_run.run(dataclasses.replace(request, seed=seed))
    times.append(free["search_seconds"])
    index = free["index"]
    limit = float(all_latency[index]) / 3
    limits = objective.Limits(max_latency_ms=limit, board_memory=False)
    feasible, _ = objective.space_feasibility(lut, limits)
    limited = search_run.run(dataclasses.replace(
        request, seed=seed, limits=limits,
        method=dataclasses.replace(request.method, weights=limited_weights)))
    times.append(limited["search_seconds"])
    limited_index = limited["index"]
    best_feasible = float(np.nanmax(np.where(feasible, accuracy, np.nan)))
    row = {"seed": seed, "index": index, "acc": float(accuracy[index]),
           "latency_ms": float(all_latency[index]), "seconds": free["search_seconds"],
           "limit_ms": limit,
           "limited_index": limited_index, "limited_acc": float(accuracy[limited_index]),
           "limited_latency_ms": float(all_latency[limited_index]),
           "limited_seconds": limited["search_seconds"], "best_feasible_acc": best_feasible}
    row["gap"] = best_feasible - row["limited_acc"]
    rows.append(row)
    print(f"[{mode}] seed {seed}: index {index} acc {row['acc']:.2f} ({free['search_seconds']:.1f} s); "
          f"limit {limit:.1f} ms -> index {limited_index} acc {row['limited_acc']:.2f}, "
          f"gap {row['gap']:.2f} ({limited['search_seconds']:.1f} s)", file=sys.stderr, flush=True)
    if checkpoint:
      checkpoint(summary(mode, repeats, rows, times, limited["compilations"],
                         "+".join(config.proxies), images_path, config.data, limited_w_latency))
  return summary(mode, repeats, rows, times, limited["compilations"], "+".join(config.proxies),
                 images_path, config.data, limited_w_latency)


def run_table(mode: str, scores_path: pathlib.Path, accuracy: np.ndarray, meco: bool = False,
              limits_ms: list[float] | None = None, limit_seeds: list[int] | None = None) -> dict:
  """The table search over the score table at `scores_path`: unconstrained, then under each of
  `limits_ms` (default: a third of the unconstrained pick's latency); rows like `run`'s, `seed`
  being the seed of the pruning run a limit comes from."""
  from micronas_jax import space
  from micronas_jax.hardware import latency
  from micronas_jax.search import objective, table

  lut = latency.board("stm32f746")
  all_latency = latency.estimate(space.all_archs(), lut)
  ntk_proxy = "ntk_fast" if mode == "fast" else "ntk"
  scores = table.load_scores(scores_path, ntk_proxy, meco=meco)
  weights = objective.Weights.micronas(meco=meco)
  start = time.perf_counter()
  free = table.search(scores, lut, weights, objective.Limits(board_memory=False))
  free_seconds = time.perf_counter() - start
  index = int(scores.indices[free.best])
  if limits_ms is None:
    limits_ms, limit_seeds = [float(all_latency[index]) / 3], [0]
  rows, times = [], [free_seconds]
  for seed, limit in zip(limit_seeds, limits_ms):
    limits = objective.Limits(max_latency_ms=limit, board_memory=False)
    start = time.perf_counter()
    limited = table.search(scores, lut, weights, limits)
    times.append(time.perf_counter() - start)
    limited_index = int(scores.indices[limited.best])
    feasible, _ = objective.space_feasibility(lut, limits)
    row = {"seed": seed, "index": index, "acc": float(accuracy[index]),
           "latency_ms": float(all_latency[index]), "seconds": free_seconds, "limit_ms": limit,
           "limited_index": limited_index, "limited_acc": float(accuracy[limited_index]),
           "limited_latency_ms": float(all_latency[limited_index]),
           "limited_seconds": times[-1],
           "best_feasible_acc": float(np.nanmax(np.where(feasible, accuracy, np.nan)))}
    row["gap"] = row["best_feasible_acc"] - row["limited_acc"]
    rows.append(row)
  indicators = "+".join((ntk_proxy, "lr", *(("meco",) if meco else ())))
  result = summary(mode, 0, rows, times, 0, indicators)
  result.update(method="table", scores=scores_path.name, cells=len(scores.indices),
                table_seeds=list(scores.seeds))
  return result


def sweep_limits(all_latency: np.ndarray, count: int) -> list[float]:
  """`count` latency limits (ms): the 2%...98% quantiles (evenly spaced) of all cells' latency,
  so that each limit is met by that share of the space."""
  return [float(q) for q in np.quantile(all_latency, np.linspace(0.02, 0.98, count))]


def plot_sweep(result: dict, path: pathlib.Path) -> bool:
  """Writes a PNG of a sweep: the best accuracy under each limit and the table search's pick;
  False (and a message) without matplotlib."""
  plt = _results.pyplot()
  if plt is None:
    return False
  rows = result["rows"]
  limit = [r["limit_ms"] for r in rows]
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
  ax.plot(limit, [r["best_feasible_acc"] for r in rows], "-", c="0.4",
          label="best cell under the limit (ground truth)")
  ax.plot(limit, [r["limited_acc"] for r in rows], "o", ms=4, c="tab:red",
          label=f"table search's pick ({result['indicators']})")
  ax.set_xlabel("latency limit on the STM32F746 LUT (ms)")
  ax.set_ylabel("CIFAR-10 test accuracy (%)")
  gaps = np.array([r["gap"] for r in rows])
  ax.set_title(f"mean gap {gaps.mean():.2f} points; within 0.5 at {(gaps <= 0.5).sum()} of "
               f"{len(gaps)} limits", fontsize=10)
  ax.set_ylim(max(80.0, min(r["limited_acc"] for r in rows) - 1), None)
  ax.legend(loc="lower right", fontsize=8)
  _results.save_figure(fig, path)
  return True


def summary(mode, repeats, rows, times, compilations, indicators="", images_path=None,
            images_fingerprint=None, limited_w_latency=0.0) -> dict:
  import jax

  device = jax.devices()[0]
  return {"mode": mode, "indicators": indicators, "repeats": repeats, "rows": rows,
          "images": None if images_path is None else pathlib.Path(images_path).name,
          "images_sha256_16": images_fingerprint, "limited_w_latency": limited_w_latency,
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
  ntk_proxy = "ntk_fast" if result["mode"] == "fast" else "ntk"
  meco_text = (" MeCo (one image through the full C=16, N=5 supernet) joins NTK and LR, a third "
               "of the weight each." if with_meco else "")
  if result.get("sweep"):
    title = (f"### table search over a latency sweep, {ntk_proxy}{' + MeCo' if with_meco else ''}"
             f", {result['device']}")
    setting = (f"Table search (`--method table`) over `{result['scores']}` ({result['cells']} "
               f"cells, scoring seed(s) {', '.join(map(str, result['table_seeds']))}) under "
               f"{len(rows)} latency limits, the 2%...98% quantiles of all cells' latency (the "
               "first column numbers the limit); ranks among the cells meeting each limit."
               f"{meco_text}" + (f" ![sweep]({result['plot']})" if result.get("plot") else ""))
  elif result.get("method") == "table":
    title = f"### table search, {ntk_proxy}{' + MeCo' if with_meco else ''}, {result['device']}"
    setting = (f"Table search (`--method table`) over `{result['scores']}` ({result['cells']} "
               f"cells, scoring seed(s) {', '.join(map(str, result['table_seeds']))}): ranks of "
               f"{ntk_proxy} and LR among the cells meeting the limit (all cells for the "
               f"unconstrained pick).{meco_text} The seed column names the pruning run whose "
               "limit a row uses; the unconstrained pick is the same in every row.")
  else:
    images = result.get("images")
    guided = result.get("limited_w_latency") or 0.0
    title = (f"### {result['mode']} mode{' + MeCo' if with_meco else ''}"
             f"{f', {images} images' if images else ''}"
             f"{f', limited search w_latency {guided:g}' if guided else ''}, {result['device']}")
    inputs = (f"inputs: the images of `{images}` (sha256 {result['images_sha256_16']}...; LR: "
              "random 3x3 crops of one channel)" if images else "standard-normal inputs")
    setting = (f"NTK proxy: {ntk_proxy} (exact = TE-NAS semantics), {result['repeats']} repeats, "
               f"batch 32, LR 3 x 1000 of 3x3, {inputs}; seeds 0..{len(rows) - 1}.{meco_text}"
               + (f" The limited search adds the latency rank with weight {guided:g} (MicroNAS "
                  "latency guidance; the rest split as usual)." if guided else ""))
  lines = [title, "",
           f"Command: `{command}` ({result['date']}; Python {result['python']}, "
           f"jax {result['jax']}). " + setting, "",
           f"| {'limit #' if result.get('sweep') else 'seed'} | pick | acc % | latency ms | limit ms | limited pick | acc % | best under "
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
            f"{len(gaps)} {'limits' if result.get('sweep') else 'seeds'} (target: within 0.5).",
            f"- Time per search: first {result['first_seconds']:.1f} s"
            + (" (compilation included), " if result.get("method") != "table" else ", ")
            + (f"then {steady:.1f} s on average" if steady is not None else "no second search")
            + (f"; {result['compilations']} compilation(s) for all searches of the run."
               if result.get("method") != "table" else " (the scoring of the table not counted).")]
  return "\n".join(lines) + "\n"


def table_errors() -> tuple[type[Exception], ...]:
  """Errors of a score table unfit for the table search: one message, no traceback."""
  from micronas_jax.search import objective, table
  return table.TableError, objective.ObjectiveError


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mode", choices=("fast", "exact"), default="fast")
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--meco", action="store_true",
                      help="MeCo as a third indicator beside NTK and LR (beyond the paper)")
  parser.add_argument("--data", type=pathlib.Path,
                      default=REPO.parent / "shared/data/nb201/cifar10.csv",
                      help="ground truth (accuracy per cell)")
  parser.add_argument("--images", type=pathlib.Path, default=None,
                      help="inputs of the indicators instead of standard-normal ones: an image "
                           "folder or .zip (e.g. cifar10-jpeg.zip), a CIFAR-10 python directory "
                           "or an .npz of [N,32,32,3] (e.g. from benchmarks/natural_images.py)")
  parser.add_argument("--scores", type=pathlib.Path, default=None,
                      help="run the table search over this whole-space score table instead")
  parser.add_argument("--limits-from", type=pathlib.Path, default=None,
                      help="with --scores: the latency limits of a saved pruning run (its JSON)")
  parser.add_argument("--limited-w-latency", type=float, default=0.0, metavar="W",
                      help="weight of the latency rank in the latency-limited search")
  parser.add_argument("--sweep", type=int, default=None, metavar="N",
                      help="with --scores: N latency limits, the 2%%...98%% quantiles of all "
                           "cells' latency, and a plot (benchmarks/figures/)")
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
    kept, skip = [], False
    for arg in sys.argv[1:]:  # the command to record: without where this run saves itself
      if not skip and arg not in ("--save-json", "--no-write") and not arg.startswith("--save-json="):
        kept.append(arg)
      skip = arg == "--save-json"
    command = "python3 benchmarks/search_quality.py " + " ".join(kept)
    start = time.perf_counter()
    def save(result):
      if args.save_json:
        args.save_json.write_text(json.dumps({"result": result, "command": command}, indent=1))
    accuracy = ground_truth.read_accuracy(args.data)
    if args.scores:
      limits_ms = limit_seeds = None
      if args.sweep:
        from micronas_jax import space
        from micronas_jax.hardware import latency
        limits_ms = sweep_limits(
            latency.estimate(space.all_archs(), latency.board("stm32f746")), args.sweep)
        limit_seeds = list(range(len(limits_ms)))
      elif args.limits_from:
        saved_rows = json.loads(args.limits_from.read_text())["result"]["rows"]
        limits_ms = [row["limit_ms"] for row in saved_rows]
        limit_seeds = [row["seed"] for row in saved_rows]
      try:
        result = run_table(args.mode, args.scores, accuracy, args.meco, limits_ms, limit_seeds)
      except (table_errors()) as error:
        raise SystemExit(str(error)) from None
      if args.sweep:
        name = f"sweep_{'fast' if args.mode == 'fast' else 'exact'}{'_meco' if args.meco else ''}"
        plot_path = REPO / "benchmarks/figures" / f"{name}.png"
        result["sweep"] = True
        if plot_sweep(result, plot_path):
          result["plot"] = str(plot_path.relative_to(REPO / "benchmarks"))
      save(result)
    else:
      result = run(args.mode, args.seeds, accuracy, args.repeats, save, args.meco, args.images,
                   args.limited_w_latency)
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)
  text = render(result, command)
  if args.note:
    text += f"- Note: {args.note}\n"
  print(text)
  if not args.no_write:
    _results.write_subsection(SECTION, text, "Generated by `benchmarks/search_quality.py` (see its "
                              "docstring).")
    print(f"wrote the subsection to {REPO / 'benchmarks/RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
  main()
