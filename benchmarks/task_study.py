"""Evidence where no benchmark exists: networks of the joint space trained on two tasks.

For each task (CIFAR-10 at 32x32 RGB, and the derived CIFAR-10 at 16x16 gray), under one MCU
budget (the default STM32F746 table: ResNet-8's 64.8 ms and the board's 320 KB SRAM and 1 MB
flash), it trains with one short recipe:
  - `--networks` (skeleton, cell) pairs spread over the feasible joint space: random cells at
    evenly spaced FLOPs quantiles of the feasible pairs (seeded);
  - the default search's pick (`micronas-jax search --data ... --max-latency-ms 64.8`, seed 0);
  - the hand-made baselines a user would try: the largest network that fits (most FLOPs, memory
    checked exactly) and NB201's best C=16 cell (by NB201's CIFAR-10 accuracy) on the largest
    skeleton where it fits;
  - on the RGB task, MLPerf Tiny's ResNet-8 (`benchmarks/resnet8.py`).
It reports Kendall tau of the search's fitness (the log-rank fitness of the evolution's
indicators over the trained networks) against trained accuracy, and the pick against the best
trained network. Goals (issue 26): tau >= 0.5; the pick within 1 point of the best; the pick
1.5 points above ResNet-8.

Rows are kept in benchmarks/data/task_study.jsonl and training runs checkpoint every epoch under
`--runs`, so the study resumes where it stopped. On the 2-core CPU: about 2-3 hours with the
defaults (8,000 training images, 4 epochs, 2,000 test images).
    python3 -m benchmarks task-study --data ../shared/data/cifar10/cifar10-jpeg.zip
    python3 -m benchmarks task-study --data ... --networks 4 --epochs 1 --no-write   # a smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import numpy as np
from scipy import stats

try:
  from benchmarks import _results, resnet8
except ImportError:  # run as a file: its folder is on the path
  import _results
  import resnet8
from micronas_jax import data, space, train
from micronas_jax.hardware import latency, shapes
from micronas_jax.network import NB201_CIFAR10
from micronas_jax.search import evolution, joint, objective
from micronas_jax.search import run as search_run

SECTION = "Your task: networks of the joint space trained on two tasks"
ROWS = _results.REPO / "benchmarks/data/task_study.jsonl"
RUNS = pathlib.Path.home() / ".cache/micronas-jax/task-study"
NB201_CSV = _results.REPO.parent / "shared/data/nb201/cifar10.csv"
BUDGET_MS = 64.8  # ResNet-8 on the default F746 table (its anchor)
TASKS = {"cifar10-32-rgb": (32, 3), "cifar10-16-gray": (16, 1)}
TAU_GOAL, PICK_GOAL, RESNET8_GOAL = 0.5, 1.0, 1.5


def nb201_best_cell() -> int:
  """NB201's most accurate cell on CIFAR-10 (`../shared/data/nb201/cifar10.csv`)."""
  from micronas_jax import ground_truth

  accuracy = ground_truth.read_accuracy(NB201_CSV)
  return int(np.nanargmax(accuracy))


def study_networks(pairs: joint.JointSpace, count: int, seed: int, pick: int,
                   best_cell: int) -> dict[str, int]:
  """{role: pair index}: `count` spread pairs, the search's pick and the two baselines."""
  rng = np.random.default_rng(seed)
  feasible = np.flatnonzero(pairs.screened)
  by_flops = feasible[np.argsort(pairs.flops_m[feasible], kind="stable")]
  chosen = {"search pick": pick}
  for q in range(count):  # a random pair near each FLOPs quantile, memory checked exactly
    centre = int((q + 0.5) / count * len(by_flops))
    window = by_flops[max(0, centre - 200):centre + 200]
    for index in rng.permutation(window):
      if pairs.admit(np.asarray([index]))[0]:
        chosen[f"spread {q + 1}"] = int(index)
        break
  for index in by_flops[::-1]:
    if pairs.admit(np.asarray([index]))[0]:
      chosen["largest that fits"] = int(index)
      break
  best = [k * space.NUM_CELLS + best_cell for k in range(len(pairs.networks))
          if pairs.screened[k * space.NUM_CELLS + best_cell]]
  for index in sorted(best, key=lambda i: -pairs.flops_m[i]):
    if pairs.admit(np.asarray([index]))[0]:
      chosen["NB201's best cell, scaled"] = int(index)
      break
  return chosen


def indicators(pairs: joint.JointSpace, indices, images, seed: int) -> dict:
  """The evolution's indicators of each pair (its cell's, and its network's FLOPs)."""
  config = search_run.evolution_config(images)
  evaluate = search_run.cell_evaluator(config, images, seed)
  values = evaluate(np.asarray(indices) % space.NUM_CELLS)
  values["flops"] = (pairs.flops_m[np.asarray(indices)], np.ones(len(indices), bool))
  return values


def train_pair(pairs, index: int, task_name: str, train_set, test_set, recipe, runs: pathlib.Path,
               log) -> float:
  k, cell = pairs.split(index)
  config = pairs.networks[k]
  folder = runs / task_name / f"{config.channels}-{config.cells_per_stage}-{cell}"
  result = train.train(space.arch_at(cell), train_set, test_set, folder, config, recipe, log=log)
  return float(result.test_accuracy)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", required=True, help="CIFAR-10 with train and test splits")
  parser.add_argument("--networks", type=int, default=16)
  parser.add_argument("--train-images", type=int, default=8000)
  parser.add_argument("--test-images", type=int, default=2000)
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--rows", default=str(ROWS), help="JSON lines kept between runs")
  parser.add_argument("--runs", default=str(RUNS), help="training run folders (resumable)")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()
  start = time.perf_counter()
  recipe = train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
  rows_path, runs = pathlib.Path(args.rows), pathlib.Path(args.runs)
  done = {}
  if rows_path.exists():
    for line in rows_path.read_text().splitlines():
      row = json.loads(line)
      done[(row["task"], row["role"])] = row
  board = latency.board("stm32f746")
  limits = objective.Limits(max_latency_ms=BUDGET_MS)
  best_cell = nb201_best_cell()
  summaries = {}
  for task_name in args.tasks.split(","):
    resolution, channels = TASKS[task_name]
    shape = (resolution, resolution, channels)
    task = data.infer_task(args.data, resolution, channels)
    train_set = data.load_split(args.data, "train", max_images=args.train_images, shape=shape)
    test_set = data.load_split(args.data, "test", max_images=args.test_images, shape=shape)
    images = data.load_images(args.data, data.INDICATOR_IMAGES, shape)
    network = task.network(NB201_CIFAR10)
    skeletons = joint.skeletons(network)
    report = search_run.run(search_run.SearchRequest(
        shapes.at_network(board, network), limits,
        seed=args.seed, images=images, data_path=args.data, task=task, skeletons=skeletons))
    pairs = joint.JointSpace.build(board, skeletons, limits)
    pick_k = next(k for k, n in enumerate(skeletons)
                  if search_run.network_fields(n) == report["network"])
    pick = pick_k * space.NUM_CELLS + report["index"]
    chosen = study_networks(pairs, args.networks, args.seed, pick, best_cell)
    values = indicators(pairs, list(chosen.values()), images, args.seed)
    fitness = evolution.log_rank_fitness({n: v for n, (v, _) in values.items()},
                                         {n: ok for n, (_, ok) in values.items()},
                                         evolution.INDICATORS)
    for (role, index), fit in zip(chosen.items(), fitness):
      if (task_name, role) in done:
        continue
      k, cell = pairs.split(index)
      config = pairs.networks[k]
      print(f"{task_name}: training {role}: C={config.channels}, N={config.cells_per_stage}, "
            f"cell {cell}", flush=True)
      accuracy = train_pair(pairs, index, task_name, train_set, test_set, recipe, runs,
                            lambda line: print(line, flush=True))
      sram, flash = pairs.memory(index)
      row = {"task": task_name, "role": role, "index": int(index), "cell": cell,
             "channels": config.channels, "cells_per_stage": config.cells_per_stage,
             "fitness": float(fit), "test_accuracy": accuracy,
             "latency_ms": float(pairs.latency_ms[index]), "flops_m": float(pairs.flops_m[index]),
             "sram_kb": sram / 1024, "flash_kb": flash / 1024}
      done[(task_name, role)] = row
      rows_path.parent.mkdir(parents=True, exist_ok=True)
      with open(rows_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    if task_name == "cifar10-32-rgb" and (task_name, "ResNet-8") not in done:
      result = resnet8.train_resnet8(train_set, test_set, recipe, log=print)
      row = {"task": task_name, "role": "ResNet-8", "test_accuracy": result["test_accuracy"],
             "latency_ms": BUDGET_MS, "flops_m": resnet8.MACS / 1e6,  # NB201 counts MACs
             "params": result["params"], "seconds": result["seconds"]}
      done[(task_name, "ResNet-8")] = row
      with open(rows_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    summaries[task_name] = [done[(task_name, role)] for role in chosen] + (
        [done[(task_name, "ResNet-8")]] if (task_name, "ResNet-8") in done else [])
  body = _section(summaries, args, time.perf_counter() - start)
  print(body)
  if not args.no_write:
    _results.write_section(SECTION, body)


def _section(summaries: dict, args, seconds: float) -> str:
  lines = []
  for task_name, rows in summaries.items():
    nets = [r for r in rows if r["role"] != "ResNet-8"]
    acc = np.array([100 * r["test_accuracy"] for r in nets])
    tau = float(stats.kendalltau([r["fitness"] for r in nets], acc)[0])
    pick = next(100 * r["test_accuracy"] for r in nets if r["role"] == "search pick")
    gap = float(acc.max()) - pick
    lines += [f"**{task_name}** ({len(nets)} networks): Kendall tau of the fitness against "
              f"trained accuracy **{tau:.3f}** (goal >= {TAU_GOAL}); the pick {pick:.2f} %, "
              f"the best trained {acc.max():.2f} %: **{gap:.2f} points** below (goal <= "
              f"{PICK_GOAL}).", "",
              "| network | C | N | cell | fitness | test acc. % | latency ms | FLOPs M | SRAM KB "
              "| flash KB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["test_accuracy"]):
      if r["role"] == "ResNet-8":
        lines.append(f"| ResNet-8 | | | | | {100 * r['test_accuracy']:.2f} | "
                     f"{r['latency_ms']:.1f} | {r['flops_m']:.1f} | | |")
        continue
      lines.append(f"| {r['role']} | {r['channels']} | {r['cells_per_stage']} | {r['cell']} | "
                   f"{r['fitness']:.2f} | {100 * r['test_accuracy']:.2f} | "
                   f"{r['latency_ms']:.1f} | {r['flops_m']:.1f} | {r['sram_kb']:.1f} | "
                   f"{r['flash_kb']:.1f} |")
    lines.append("")
  return f"""Command: `{_results.command()}`
Machine: {_results.machine()}; {seconds:.0f} s in this run (rows in
`{_results.shown_path(args.rows)}` are reused).

Recipe for every network: the package's (`train.TrainConfig`: SGD, Nesterov momentum 0.9,
weight decay 5e-4, cosine from 0.1, random crops and flips), {args.epochs} epochs at batch
{args.batch_size} on the first {args.train_images:,} CIFAR-10 training images (class-balanced),
tested on {args.test_images:,} test images. Budget: the default `stm32f746` table at each
skeleton, latency <= {BUDGET_MS} ms (ResNet-8's), the board's 320 KB SRAM and 1 MB flash
(TFLM's arena, exact). Far shorter than the 200 epochs of NB201: the ranks, not the
accuracies, carry over.

{chr(10).join(lines)}"""


if __name__ == "__main__":
  main()
