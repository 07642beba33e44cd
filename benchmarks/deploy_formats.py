"""Standard deploy formats: TFLM's arena and the .tflite against `hardware.tflm`; int8 agreement.

Memory (section "Standard formats: TFLM's arena and the .tflite against the estimate"): for
`--cells` random NB201 cells (seeded, uniform over the cells whose output depends on the input)
of the full CIFAR-10 network (C=16, N=5), the int8 `.tflite` of `deploy --format tflite`
(initialized weights with their BN statistics drawn at random, `export.randomized_batch_norm`,
so the converted graph is a trained network's; scales from 8 standard-normal images: sizes do
not depend on values) is converted and run once in TFLite Micro (`tflite-micro`, the 64-bit host
build), whose recording allocator reports the arena's head and tail. Against it: the exact model
of `hardware.tflm.arena` (target host), the search's vectorized estimate
(`hardware.tflm.estimated_sram`, host), and what `hw` estimated before (the live activations,
`memory.peak_sram` plan tflm). Flash: the `.tflite`'s size against `tflm.file_bytes` and
against the earlier estimate (weights and biases, `memory.flash`). Rows are kept in `--rows`
(JSON lines), so an interrupted run resumes where it stopped.

Agreement (section "Standard formats: int8 agreement with the float network", with
`--checkpoint` and `--data`): a trained checkpoint's network converted to each format (scales
from `--calibration-images` training images) and run on the test split's first `--test-images`
images (class-balanced): top-1 of the float network, of TFLM on the `.tflite`, of onnxruntime on
the QDQ `.onnx`, and each format's top-1 agreement with the float network.

    python3 -m benchmarks deploy-formats                       # 50 cells, writes RESULTS.md
    python3 -m benchmarks deploy-formats --cells 2 --no-write
    python3 -m benchmarks deploy-formats --cells 0 --checkpoint run/ \\
        --data ../shared/data/cifar10/cifar10-jpeg.zip
"""
from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results
from micronas_jax import data, export, graph, space
from micronas_jax.deploy import formats, onnx_qdq, tflite
from micronas_jax.hardware import memory, tflm
from micronas_jax.network import NB201_CIFAR10

SECTION = "Standard formats: TFLM's arena and the .tflite against the estimate"
AGREEMENT_SECTION = "Standard formats: int8 agreement with the float network"
TARGET = 0.10
ROWS = _results.REPO / "benchmarks/data/deploy_formats_cells.jsonl"


def draw_cells(count: int, seed: int) -> list[int]:
  """`count` distinct random cells whose network is not a constant."""
  rng = np.random.default_rng(seed)
  live = np.flatnonzero(graph.reachability(space.all_archs()).output)
  return [int(i) for i in rng.choice(live, count, replace=False)]


def measure_cell(index: int, seed: int) -> dict:
  """One row: TFLM's arena and the file's size, the models and the earlier estimates."""
  ops = space.arch_at(index)
  config = NB201_CIFAR10
  variables, _, _ = export.cell_variables(ops, None, seed)
  variables = export.randomized_batch_norm(variables, seed=seed + index)
  images = np.random.default_rng(seed).standard_normal((8, *config.input_shape), np.float32)
  start = time.perf_counter()
  model_bytes = tflite.convert(variables, ops, config, images)
  seconds = time.perf_counter() - start
  _, arena = tflite.tflm_run(model_bytes, np.zeros((1, *config.input_shape), np.int8))
  host = tflm.arena(ops, config, tflm.HOST)
  return {
      "index": index, "arch": space.format_arch(ops), "convert_seconds": seconds,
      "file_bytes": len(model_bytes), "tflm": {"head": arena.head, "tail": arena.tail,
                                                "total": arena.total},
      "model": host.to_dict(),
      "vectorized": int(tflm.estimated_sram(ops[None], config, tflm.HOST)[0]),
      "live_activations": int(memory.peak_sram(ops, config, dead_code=True)),
      "weights_flash": int(memory.flash(ops, config, dead_code=True)),
      "cortex_m": tflm.arena(ops, config, tflm.CORTEX_M).total}


def measure(indices: list[int], seed: int, rows_path: pathlib.Path) -> list[dict]:
  """The rows of `indices`, those in `rows_path` reused, new ones appended as they are made."""
  done = {}
  if rows_path.exists():
    for line in rows_path.read_text().splitlines():
      row = json.loads(line)
      done[row["index"]] = row
  rows = []
  for n, index in enumerate(indices):
    if index not in done:
      done[index] = measure_cell(index, seed)
      rows_path.parent.mkdir(parents=True, exist_ok=True)
      with rows_path.open("a") as file:
        file.write(json.dumps(done[index]) + "\n")
    row = done[index]
    rows.append(row)
    print(f"[{n + 1}/{len(indices)}] {index:>6} TFLM {row['tflm']['total']:>7} model "
          f"{row['model']['total']:>7}  file {row['file_bytes']:>8} model "
          f"{row['model']['file_bytes']:>8}  {row['convert_seconds']:.1f} s", flush=True)
  return rows


def _error(estimate, measured) -> np.ndarray:
  return 100 * (np.asarray(estimate, float) - measured) / np.asarray(measured, float)


def _stats(errors: np.ndarray) -> str:
  within = int((np.abs(errors) <= 100 * TARGET).sum())
  return (f"{errors.min():+.2f} / {np.median(errors):+.2f} / {errors.max():+.2f} | "
          f"{within} / {len(errors)}")


def memory_tables(rows: list[dict]) -> tuple[str, str]:
  """(summary table, per-cell table) of the estimates against TFLM and the file."""
  tflm_total = np.array([r["tflm"]["total"] for r in rows])
  head = np.array([r["tflm"]["head"] for r in rows])
  tail = np.array([r["tflm"]["tail"] for r in rows])
  size = np.array([r["file_bytes"] for r in rows])
  model = lambda key: np.array([r["model"][key] for r in rows])
  estimates = [
      ("`hardware.tflm.arena` (exact model, host)", "TFLM's arena", model("total"), tflm_total),
      ("... its head", "TFLM's head", model("head"), head),
      ("... its tail", "TFLM's tail", model("tail"), tail),
      ("`tflm.estimated_sram` (the search's, vectorized, host)", "TFLM's arena",
       [r["vectorized"] for r in rows], tflm_total),
      ("before: live activations (`memory.peak_sram`)", "TFLM's arena",
       [r["live_activations"] for r in rows], tflm_total),
      ("`tflm.file_bytes`", "the .tflite", model("file_bytes"), size),
      ("before: weights and biases (`memory.flash`)", "the .tflite",
       [r["weights_flash"] for r in rows], size)]
  summary = "\n".join(["| estimate | of | error % (min / median / max) | within ±10 % |",
                       "| --- | --- | --- | ---: |"]
                      + [f"| {name} | {of} | {_stats(_error(estimate, measured))} |"
                         for name, of, estimate, measured in estimates])
  lines = [("| index | TFLM head | TFLM tail | TFLM total | model total | error % | "
            "vectorized error % | .tflite bytes | model | error % | Cortex-M arena (model) | "
            "convert s |"),
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    measured = r["tflm"]["total"]
    lines.append(
        f"| {r['index']} | {r['tflm']['head']:,} | {r['tflm']['tail']:,} | {measured:,} | "
        f"{r['model']['total']:,} | {_error(r['model']['total'], measured):+.2f} | "
        f"{_error(r['vectorized'], measured):+.2f} | {r['file_bytes']:,} | "
        f"{r['model']['file_bytes']:,} | {_error(r['model']['file_bytes'], r['file_bytes']):+.2f}"
        f" | {r['cortex_m']:,} | {r['convert_seconds']:.1f} |")
  return summary, "\n".join(lines)


def agreement(checkpoint: str, data_path: str, calibration: int, test: int) -> dict:
  """Top-1 of the float network and of each int8 file on the test images, and agreements."""
  stored, ops, variables, config = _results.checkpoint_network(checkpoint)
  calibration_x = data.load_images(data_path, max_images=calibration)  # normalized
  images, labels = data.load_split(data_path, "test", max_images=test)
  x = data.normalize(images)
  floats = formats.float_logits(export.folded_weights(variables, ops, config), ops, config, x)
  result = {"arch": stored["meta"]["arch"], "index": space.index_of(ops), "config": config,
            "epochs": stored["epoch"], "test": len(labels), "calibration": calibration,
            "training": stored["meta"].get("training", {}), "data": stored["meta"].get("data"),
            "float": float(np.mean(floats.argmax(1) == labels)), "formats": {}}
  start = time.perf_counter()
  model_bytes = tflite.convert(variables, ops, config, calibration_x)
  converted = time.perf_counter() - start
  given, _ = tflite.io_quantization(model_bytes)
  outputs, _ = tflite.tflm_run(model_bytes, given.quantize(x))
  result["formats"]["tflite (TFLite Micro)"] = (outputs.argmax(1), converted)
  with tempfile.TemporaryDirectory() as folder:
    path = pathlib.Path(folder) / "model.onnx"
    start = time.perf_counter()
    onnx_qdq.convert(variables, ops, config, calibration_x, path)
    converted = time.perf_counter() - start
    result["formats"]["onnx-qdq (onnxruntime)"] = (onnx_qdq.run(path, x).argmax(1), converted)
  result["formats"] = {name: {"top1": float(np.mean(top == labels)),
                              "agreement": float(np.mean(top == floats.argmax(1))),
                              "seconds": seconds}
                       for name, (top, seconds) in result["formats"].items()}
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cells", type=int, default=50)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rows", default=str(ROWS), help="JSON lines kept between runs")
  parser.add_argument("--checkpoint", help="a trained run for the agreement section")
  parser.add_argument("--data", help="CIFAR-10 (train and test splits) for the agreement section")
  parser.add_argument("--calibration-images", type=int, default=256)
  parser.add_argument("--test-images", type=int, default=1000)
  parser.add_argument("--training-note", default="",
                      help="what the checkpoint was trained on, for the section's text")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()

  if args.cells:
    start = time.perf_counter()
    rows = measure(draw_cells(args.cells, args.seed), args.seed, pathlib.Path(args.rows))
    summary, table = memory_tables(rows)
    print(summary)
    seconds = np.array([r["convert_seconds"] for r in rows])
    vectorized = _error([r["vectorized"] for r in rows], [r["tflm"]["total"] for r in rows])
    vectorized_missed = int((np.abs(vectorized) > 100 * TARGET).sum())
    vectorized_worst = float(vectorized.min())
    body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}; {time.perf_counter() - start:.0f} s in this run (rows already in
`{_results.shown_path(args.rows)}` are reused).

{args.cells} random cells (seed {args.seed}) whose output depends on the input, of the
CIFAR-10 network (C=16, N=5), each converted as `deploy --format tflite` converts it
(initialized weights with random BN statistics, `export.randomized_batch_norm`: the graph a
trained network converts to) and run in TFLite Micro (the `tflite-micro` package's 64-bit host
build, reference kernels). Its recording allocator gives the arena (head: activations and
scratch, as its greedy planner placed them; tail: persistent structs). Error = (estimate -
measured) / measured; target ±10 % on every cell.

{summary}

The exact model (what `hw` and `deploy` report) replays TFLM: the converter's ops and tensors
(one ReLU per tensor, fused into a CONV, ADD or pool producer; a PAD before each strided conv;
identical pools merged; the head's BN folded into a last conv that feeds only it), in the
graph's order (`deploy` writes the file's operators in it), the greedy planner's placement, and
the tail's structs, op data and per-channel arrays. **The search's vectorized estimate misses
the ±10 % target on {vectorized_missed} of {len(rows)} cells**: it takes the live activations'
peak, a lower bound of the greedy plan, which leaves gaps between buffers on most cells (up to
{-vectorized_worst:.0f} % of the arena below TFLM); its tail is within a few bytes. What none
of these counts: the interpreter's code in flash (the host build cannot show it: TFLM's docs
give 16-22 KB on a Cortex-M, the LUT's `runtime_flash_bytes`), its stack,
and on a Cortex-M build the arena differs (32-bit structs, CMSIS-NN's scratch buffers): the
"Cortex-M arena (model)" column is derived, not measured.

Conversion: median {np.median(seconds):.1f} s per cell (max {seconds.max():.1f} s), TensorFlow's
import and jax2tf tracing included, after the first cell.

<details><summary>Per cell</summary>

{table}

</details>
"""
    if not args.no_write:
      _results.write_section(SECTION, body)
      print(f"wrote section '{SECTION}' to {_results.RESULTS}")
  if args.checkpoint:
    result = agreement(args.checkpoint, args.data, args.calibration_images, args.test_images)
    config = result["config"]
    lines = ["| format (runtime) | top-1 % | top-1 agreement with float % | conversion s |",
             "| --- | ---: | ---: | ---: |",
             f"| float (JAX, BN folded) | {100 * result['float']:.2f} | | |"]
    lines += [f"| {name} | {100 * f['top1']:.2f} | {100 * f['agreement']:.2f} | "
              f"{f['seconds']:.1f} |" for name, f in result["formats"].items()]
    table = "\n".join(lines)
    missed = [f"{name} at {100 * f['agreement']:.1f} %" for name, f in result["formats"].items()
              if f["agreement"] < 0.98]
    note = f" ({args.training_note})" if args.training_note else ""
    verdict = ("**met** by every format" if not missed else
               "**not met** by " + ", ".join(missed))
    print(table)
    body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}.

Cell {result['index']} {result['arch']} (C={config.channels}, N={config.cells_per_stage}),
trained briefly on the CPU: the checkpoint after {result['epochs']} epochs of the run's recipe
`{json.dumps(result['training'])}` on data of fingerprint `{result['data']}`{note}. Each int8
file calibrated on the first {result['calibration']} training images (class-balanced), as
`deploy --format` does; evaluated on the first {result['test']}
CIFAR-10 test images (class-balanced). Target: each format agrees with the float network's
top-1 on at least 98 % (`deploy --verify`'s check): {verdict}.

{table}

A briefly trained network has many images whose two best logits are close, and int8 rounding
flips those; agreement is a property of the trained weights as much as of the format.
"""
    if not args.no_write:
      _results.write_section(AGREEMENT_SECTION, body)
      print(f"wrote section '{AGREEMENT_SECTION}' to {_results.RESULTS}")


if __name__ == "__main__":
  main()
