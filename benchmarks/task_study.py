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
The ResNet-8 comparison alone with a longer recipe (its own section, rows and runs):
    python3 -m benchmarks task-study --data ... --anchor-only --epochs 10 --train-images 50000 \
        --test-images 10000 --rows benchmarks/data/task_anchor.jsonl \
        --runs ~/.cache/micronas-jax/task-anchor
"""
from __future__ import annotations

import argparse
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
from micronas_jax import data, export, space, train
from micronas_jax.hardware import costs, latency, shapes
from micronas_jax.network import NB201_CIFAR10
from micronas_jax.search import evolution, joint, objective
from micronas_jax.search import run as search_run

SECTION = "Your task: networks of the joint space trained on two tasks"
ANCHOR_SECTION = "Your task: the searched network against ResNet-8, a longer recipe"
ROWS = _results.REPO / "benchmarks/data/task_study.jsonl"
RUNS = pathlib.Path.home() / ".cache/micronas-jax/task-study"
NB201_CSV = _results.REPO.parent / "shared/data/nb201/cifar10.csv"
BUDGET_MS = 64.8  # ResNet-8 on the default F746 table (its anchor)
TASKS = {"cifar10-32-rgb": (32, 3), "cifar10-16-gray": (16, 1)}
TAU_GOAL, PICK_GOAL, RESNET8_GOAL = 0.5, 1.0, 1.5
CALIBRATION_IMAGES = 256  # as `deploy`'s default: the first training images
# Networks also converted to int8 and run in TFLite Micro (besides ResNet-8 on the RGB task).
INT8_ROLES = ("search pick", "largest that fits", "NB201's best cell, scaled")
# The task of the ResNet-8 comparison, and the role of the search's pick under its budget.
ANCHOR_TASK, ANCHOR_PICK = "cifar10-32-rgb", "pick under ResNet-8's budget"
FREE_PICK = "pick of the free (C, N, cell) evolution"


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
  scaled = pairs.largest(best_cell)  # on the largest skeleton where it fits
  if scaled is not None:
    chosen["NB201's best cell, scaled"] = scaled
  return chosen


def indicators(pairs: joint.JointSpace, indices, images, seed: int) -> dict:
  """The evolution's indicators of each pair (its cell's, and its network's FLOPs)."""
  config = search_run.evolution_config(images)
  evaluate = search_run.cell_evaluator(config, images, seed)
  values = evaluate(np.asarray(indices) % space.NUM_CELLS)
  values["flops"] = (pairs.flops_m[np.asarray(indices)], np.ones(len(indices), bool))
  return values


def run_folder(pairs, index: int, task_name: str, runs: pathlib.Path) -> pathlib.Path:
  """The training run folder of a pair."""
  k, cell = pairs.split(index)
  config = pairs.networks[k]
  return runs / task_name / f"{config.channels}-{config.cells_per_stage}-{cell}"


def train_pair(pairs, index: int, task_name: str, train_set, test_set, recipe, runs: pathlib.Path,
               log) -> float:
  k, cell = pairs.split(index)
  result = train.train(space.arch_at(cell), train_set, test_set,
                       run_folder(pairs, index, task_name, runs), pairs.networks[k], recipe,
                       log=log)
  return float(result.test_accuracy)


def deployed(model_bytes: bytes, test_set, board: latency.LUT) -> dict:
  """The int8 `.tflite` run by TFLite Micro on the test images: its top-1, its measured arena
  and `.tflite` size with the board's runtime added (KB)."""
  from micronas_jax.deploy import tflite

  given, _ = tflite.io_quantization(model_bytes)
  images, labels = test_set
  outputs, arena = tflite.tflm_run(model_bytes, given.quantize(data.normalize(images)))
  runtime_sram, runtime_flash = costs.runtime_memory(board)
  return {"int8_accuracy": float(np.mean(np.argmax(outputs, -1) == labels)),
          "tflm_sram_kb": (arena.total + runtime_sram) / costs.KB,
          "tflm_flash_kb": (len(model_bytes) + runtime_flash) / costs.KB}


def int8_of_pair(pairs, index: int, task_name: str, runs: pathlib.Path, calibration,
                 test_set, board) -> dict:
  """`deployed` of a trained pair, converted as `deploy --format tflite` converts it."""
  from micronas_jax.deploy import tflite

  ops = space.arch_at(pairs.split(index)[1])
  variables, config, _ = export.cell_variables(
      ops, checkpoint=str(run_folder(pairs, index, task_name, runs)))
  return deployed(tflite.convert(variables, ops, config, calibration), test_set, board)


def int8_of_resnet8(variables, calibration, test_set, board) -> dict:
  """`deployed` of the trained ResNet-8, through the same converter settings."""
  from micronas_jax.deploy import tflite

  forward = resnet8.forward_function(variables)
  # Names stripped as for the searched networks: TFLM never reads them.
  model_bytes = tflite.without_names(tflite.convert_function(forward, calibration.shape[1:],
                                                             calibration))
  return deployed(model_bytes, test_set, board)


class Study:
  """One task of the study: its data, its searches and its rows (kept in `done` and appended
  to the rows file as they are made, so the study resumes)."""

  def __init__(self, task_name: str, args, recipe: train.TrainConfig, board: latency.LUT,
               rows_path: pathlib.Path, runs: pathlib.Path, done: dict):
    resolution, channels = TASKS[task_name]
    shape = (resolution, resolution, channels)
    self.name, self.args, self.recipe, self.board = task_name, args, recipe, board
    self.rows_path, self.runs, self.done = rows_path, runs, done
    self.task = data.infer_task(args.data, resolution, channels)
    self.train_set = data.load_split(args.data, "train", max_images=args.train_images,
                                     shape=shape)
    self.test_set = data.load_split(args.data, "test", max_images=args.test_images, shape=shape)
    self.images = data.load_images(args.data, data.INDICATOR_IMAGES, shape)
    self.calibration = data.normalize(self.train_set[0][:CALIBRATION_IMAGES])
    self.network = self.task.network(NB201_CIFAR10)
    self.skeletons = joint.skeletons(self.network)

  def _keep(self, row: dict) -> dict:
    self.done[(self.name, row["role"])] = row
    self.rows_path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.rows_path, "a") as f:  # a later line takes the place of an earlier one
      f.write(json.dumps(row) + "\n")
    return row

  def pick(self, limits: objective.Limits) -> int:
    """The default search's pick under `limits` (seed `--seed`), as a pair index of the
    task's skeletons."""
    report = search_run.run(search_run.SearchRequest(
        shapes.at_network(self.board, self.network), limits, seed=self.args.seed,
        images=self.images, data_path=self.args.data, task=self.task,
        skeletons=self.skeletons))
    k = next(k for k, n in enumerate(self.skeletons)
             if search_run.network_fields(n) == report["network"])
    return k * space.NUM_CELLS + report["index"]

  def trained(self, pairs: joint.JointSpace, role: str, index: int,
              fitness: float | None = None) -> dict:
    """The row of pair `index` trained with the recipe (trained once; resumed if stopped)."""
    if (self.name, role) in self.done and self.done[(self.name, role)]["index"] == index:
      return self.done[(self.name, role)]
    k, cell = pairs.split(index)
    config = pairs.networks[k]
    print(f"{self.name}: training {role}: C={config.channels}, N={config.cells_per_stage}, "
          f"cell {cell}", flush=True)
    accuracy = train_pair(pairs, index, self.name, self.train_set, self.test_set, self.recipe,
                          self.runs, lambda line: print(line, flush=True))
    sram, flash = pairs.memory(index)
    return self._keep({
        "task": self.name, "role": role, "index": int(index), "cell": cell,
        "channels": config.channels, "cells_per_stage": config.cells_per_stage,
        "fitness": fitness, "test_accuracy": accuracy,
        "latency_ms": float(pairs.latency_ms[index]), "flops_m": float(pairs.flops_m[index]),
        "sram_kb": sram / costs.KB, "flash_kb": flash / costs.KB})

  def with_int8(self, pairs: joint.JointSpace, role: str, index: int) -> dict:
    """The role's row with its int8 run in TFLite Micro (`int8_of_pair`)."""
    row = self.done[(self.name, role)]
    if "int8_accuracy" in row:
      return row
    if not train.checkpoint_path(run_folder(pairs, index, self.name, self.runs)).exists():
      # The row's run folder is gone (another machine's): train it again, same recipe and seed.
      print(f"{self.name}: training {role} again for its weights", flush=True)
      row = {**row, "test_accuracy": train_pair(
          pairs, index, self.name, self.train_set, self.test_set, self.recipe, self.runs,
          lambda line: print(line, flush=True))}
    return self._keep({**row, **int8_of_pair(pairs, index, self.name, self.runs,
                                             self.calibration, self.test_set, self.board)})

  def resnet8(self) -> dict:
    """ResNet-8's row: trained with the recipe, then run in int8 by TFLite Micro."""
    row = self.done.get((self.name, "ResNet-8"), {})
    if "int8_accuracy" in row:
      return row
    result = resnet8.train_resnet8(self.train_set, self.test_set, self.recipe, log=print,
                                   out=self.runs / self.name / "resnet-8")
    return self._keep({
        "task": self.name, "role": "ResNet-8", "test_accuracy": result["test_accuracy"],
        "latency_ms": BUDGET_MS, "flops_m": resnet8.MACS / 1e6,  # NB201 counts MACs
        "params": result["params"], "seconds": result["seconds"],
        **int8_of_resnet8(result["variables"], self.calibration, self.test_set, self.board)})


def anchor_comparison(study: Study) -> list[dict]:
  """[the search's pick under ResNet-8's budget, ResNet-8]: both trained with the study's
  recipe and run in int8 by TFLite Micro."""
  anchor = study.resnet8()
  # The anchor's own budget: its latency, and its SRAM and flash as TFLM measures them.
  limits = objective.Limits(max_latency_ms=BUDGET_MS, max_sram_kb=anchor["tflm_sram_kb"],
                            max_flash_kb=anchor["tflm_flash_kb"])
  pairs = joint.JointSpace.build(study.board, study.skeletons, limits)
  study.trained(pairs, ANCHOR_PICK, study.pick(limits))
  return [study.with_int8(pairs, ANCHOR_PICK, study.done[(study.name, ANCHOR_PICK)]["index"]),
          anchor]


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
  parser.add_argument("--anchor-only", action="store_true",
                      help="only the ResNet-8 comparison (its own section; give it its own "
                           "--rows and --runs when the recipe differs)")
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
  if args.anchor_only:
    study = Study(ANCHOR_TASK, args, recipe, board, rows_path, runs, done)
    body = _anchor_section(anchor_comparison(study), args, time.perf_counter() - start)
    print(body)
    if not args.no_write:
      _results.write_section(ANCHOR_SECTION, body)
    return
  best_cell = nb201_best_cell()
  summaries = {}
  for task_name in args.tasks.split(","):
    study = Study(task_name, args, recipe, board, rows_path, runs, done)
    limits = objective.Limits(max_latency_ms=BUDGET_MS)
    pairs = joint.JointSpace.build(board, study.skeletons, limits)
    chosen = study_networks(pairs, args.networks, args.seed, study.pick(limits), best_cell)
    values = indicators(pairs, list(chosen.values()), study.images, args.seed)
    fitness = evolution.log_rank_fitness({n: v for n, (v, _) in values.items()},
                                         {n: ok for n, (_, ok) in values.items()},
                                         evolution.INDICATORS)
    for (role, index), fit in zip(chosen.items(), fitness):
      study.trained(pairs, role, index, fitness=float(fit))
    for role in INT8_ROLES:
      study.with_int8(pairs, role, chosen[role])
    rows, anchors = [done[(task_name, role)] for role in chosen], []
    if task_name == ANCHOR_TASK:
      anchors = anchor_comparison(study)
    # Rows of earlier searches kept for the record (shown, not in tau).
    shown = {row["role"] for row in rows + anchors}
    summaries[task_name] = (rows, anchors, [row for (name, role), row in done.items()
                                            if name == task_name and role not in shown])
  body = _section(summaries, args, time.perf_counter() - start)
  print(body)
  if not args.no_write:
    _results.write_section(SECTION, body)


def _comparison(rows: list[dict]) -> list[str]:
  """The int8 table of `rows` that were run in TFLite Micro, and the ResNet-8 goal's line."""
  shown = [r for r in rows if "int8_accuracy" in r]
  lines = [("| network | float top-1 % | int8 top-1 % (TFLM) | latency ms | SRAM KB (TFLM) "
            "| flash KB | MFLOPs (MACs) |"), "|---|---:|---:|---:|---:|---:|---:|"]
  for r in shown:
    lines.append(f"| {r['role']} | {100 * r['test_accuracy']:.2f} | "
                 f"{100 * r['int8_accuracy']:.2f} | {r['latency_ms']:.1f} | "
                 f"{r['tflm_sram_kb']:.1f} | {r['tflm_flash_kb']:.1f} | {r['flops_m']:.2f} |")
  pick = next((r for r in shown if r["role"] == ANCHOR_PICK), None)
  anchor = next((r for r in shown if r["role"] == "ResNet-8"), None)
  if pick and anchor:
    lead = [100 * (pick[k] - anchor[k]) for k in ("test_accuracy", "int8_accuracy")]
    over = [name for name, key in (("latency", "latency_ms"), ("SRAM", "tflm_sram_kb"),
                                   ("flash", "tflm_flash_kb")) if pick[key] > anchor[key]]
    verdict = "met" if min(lead) >= RESNET8_GOAL else "missed"
    lines += ["", (f"The search's pick under ResNet-8's budget against ResNet-8: "
                   f"**{lead[0]:+.2f} points** float, **{lead[1]:+.2f}** int8 (goal >= "
                   f"+{RESNET8_GOAL}: {verdict}), at "
                   + (f"MORE {' and '.join(over)}" if over else
                      "no more latency, SRAM or flash") + ".")]
  return lines


def _row_line(r: dict, in_tau: bool) -> str:
  if r["role"] == "ResNet-8":
    return (f"| ResNet-8 | | | | | {100 * r['test_accuracy']:.2f} | {r['latency_ms']:.1f} | "
            f"{r['flops_m']:.1f} | {r['tflm_sram_kb']:.1f} | {r['tflm_flash_kb']:.1f} |")
  fitness = f"{r['fitness']:.2f}" if in_tau else "(not in tau)"
  return (f"| {r['role']} | {r['channels']} | {r['cells_per_stage']} | {r['cell']} | "
          f"{fitness} | {100 * r['test_accuracy']:.2f} | {r['latency_ms']:.1f} | "
          f"{r['flops_m']:.1f} | {r['sram_kb']:.1f} | {r['flash_kb']:.1f} |")


def _recipe(args, seconds: float) -> str:
  return f"""Command: `{_results.command()}`
Machine: {_results.machine()}; {seconds:.0f} s in this run (rows in
`{_results.shown_path(args.rows)}` are reused).

Recipe for every network, ResNet-8 included: the package's (`train.TrainConfig`: SGD, Nesterov
momentum 0.9, weight decay 5e-4, cosine from 0.1, random crops and flips), {args.epochs} epochs
at batch {args.batch_size} on the first {args.train_images:,} CIFAR-10 training images
(class-balanced), tested on {args.test_images:,} test images (standard error about
{100 * (0.25 / args.test_images) ** 0.5:.1f} points per accuracy, binomial at 50 %)."""


def _anchor_section(rows: list[dict], args, seconds: float) -> str:
  return f"""{_recipe(args, seconds)} The search runs as `micronas-jax search --data ...
--max-latency-ms {BUDGET_MS} --max-sram-kb S --max-flash-kb F` would, with S and F ResNet-8's
own SRAM and flash: the arena TFLite Micro reports for its int8 `.tflite` plus the board's
runtime, and the file plus the runtime. int8 as in the training study's section.

{chr(10).join(_comparison(rows))}
"""


def _section(summaries: dict, args, seconds: float) -> str:
  lines = []
  for task_name, (rows, anchors, earlier) in summaries.items():
    acc = np.array([100 * r["test_accuracy"] for r in rows])
    tau = float(stats.kendalltau([r["fitness"] for r in rows], acc)[0])
    # FLOPs alone: how the search ranks the skeletons of one cell (`JointSpace.largest`).
    tau_flops = float(stats.kendalltau([r["flops_m"] for r in rows], acc)[0])
    pick = next(100 * r["test_accuracy"] for r in rows if r["role"] == "search pick")
    gap = float(acc.max()) - pick
    lines += [(f"**{task_name}** ({len(rows)} networks): Kendall tau of the fitness against "
               f"trained accuracy **{tau:.3f}** (goal >= {TAU_GOAL}); the pick {pick:.2f} %, "
               f"the best trained {acc.max():.2f} %: **{gap:.2f} points** below (goal <= "
               f"{PICK_GOAL}). Kendall tau of FLOPs alone: {tau_flops:.3f}."), "",
              ("| network | C | N | cell | fitness | test acc. % | latency ms | FLOPs M "
               "| SRAM KB | flash KB |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    everything = [(r, True) for r in rows] + [(r, False) for r in anchors + earlier]
    lines += [_row_line(r, in_tau)
              for r, in_tau in sorted(everything, key=lambda pair: -pair[0]["test_accuracy"])]
    if any(r["role"] == FREE_PICK for r in earlier):
      lines += ["", (f"\"{FREE_PICK}\" is the search's pick before each cell was put on its "
                     "largest network (`search.joint`): an evolution over free (skeleton, cell) "
                     "pairs with the whole network's FLOPs one log-rank term of four. Kept for "
                     "the record; it is not in tau.")]
    lines += ["", *_comparison(rows + anchors), ""]
  return f"""{_recipe(args, seconds)} Budget: the default `stm32f746`
table at each skeleton, latency <= {BUDGET_MS} ms (ResNet-8's), the board's 320 KB SRAM and 1 MB
flash (TFLM's arena, exact). Far shorter than the 200 epochs of NB201: the ranks, not the
accuracies, carry over; results closer than the standard error are not told apart. "fitness" is the search's log-rank fitness over the trained
networks of the task. int8: TensorFlow's converter (`deploy --format tflite`'s settings, scales from the
first {CALIBRATION_IMAGES} training images), run by TFLite Micro's own interpreter on the same
test images; SRAM is the arena TFLM reports plus the board's runtime, flash the `.tflite` plus
the runtime. ResNet-8's latency is the default table's anchor (MLPerf Tiny's v1.0 result on the
F746); SRAM and flash in the first table are TFLM's plan as the search computes it.

{chr(10).join(lines)}"""


if __name__ == "__main__":
  main()
