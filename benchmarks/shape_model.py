"""Shape-aware latency: the per-kernel cycle models (`hardware.shapes`) against emulated runs.

Three checks, one RESULTS.md section ("Shape-aware latency: kernel models against emulated
networks"):
  1. the fit: each kernel's largest and median relative residual on its grid
     (`hardware/emu/shape_fit.GRID`);
  2. the default network (C=16, N=5, 32x32x3): the model's LUT entries against the packaged
     `stm32f746` table, whose entries were emulated kernel by kernel at that shape;
  3. whole networks at skeletons outside the grid (widths, depths, inputs, channels and classes
     the fit never ran): one `nb201_forward` call per random (skeleton, cell) on the emulated
     Cortex-M7 with the same cycle model, against `latency.estimate` of `shapes.lut_for`.
     Targets: Kendall tau >= 0.98 and median |error| <= 5 %.

Needs arm-none-eabi-gcc and the `emu` extra. Rows are kept in benchmarks/data/
shape_model_networks.jsonl, so an interrupted run resumes. About 3 minutes for 30 networks on
2 cores; `--fit` first refits the shipped model (about a minute).
    python3 -m benchmarks shape-model --fit
    python3 -m benchmarks shape-model --networks 5 --no-write
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
from scipy import stats

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results
from micronas_jax import graph, space
from micronas_jax.hardware import latency, shapes
from micronas_jax.network import NetworkConfig

SECTION = "Shape-aware latency: kernel models against emulated networks"
ROWS = _results.REPO / "benchmarks/data/shape_model_networks.jsonl"
MODEL_PATH = _results.REPO / "micronas_jax/hardware/luts" / shapes.MODEL_FILE
TAU_TARGET, MEDIAN_TARGET = 0.98, 5.0
# Skeletons outside the fit's grid: widths, inputs and class counts it never ran.
WIDTHS, CELLS, RESOLUTIONS = (12, 20, 24), (1, 2), (20, 28, 36)


def skeletons(count: int, seed: int) -> list[tuple[NetworkConfig, int]]:
  """`count` (network, cell index) pairs: random skeletons of WIDTHS x CELLS x RESOLUTIONS with 1
  or 3 input channels and 5 or 12 classes, each with a random cell whose output depends on its
  input."""
  rng = np.random.default_rng(seed)
  live = [i for i in range(space.NUM_CELLS) if graph.reachability(space.arch_at(i)).output]
  pairs = []
  for _ in range(count):
    pick = lambda values: int(rng.choice(values))
    config = NetworkConfig(channels=pick(WIDTHS), cells_per_stage=pick(CELLS),
                           resolution=pick(RESOLUTIONS), in_channels=pick((1, 3)),
                           num_classes=pick((5, 12)))
    pairs.append((config, int(rng.choice(live))))
  return pairs


def _key(config: NetworkConfig, index: int) -> str:
  return (f"{config.channels}/{config.cells_per_stage}/{config.resolution}/{config.in_channels}/"
          f"{config.num_classes}/{index}")


def emulate(pairs, rows_path: pathlib.Path, seed: int) -> list[dict]:
  """Modelled cycles of each whole network on the emulated M7, rows kept in `rows_path`."""
  from micronas_jax.hardware.emu import cycles, kernels
  from micronas_jax.runtime import params as runtime_params

  done = {}
  if rows_path.exists():
    for line in rows_path.read_text().splitlines():
      row = json.loads(line)
      done[row["key"]] = row
  m = None
  for config, index in pairs:
    key = _key(config, index)
    if key in done:
      continue
    m = m or cycles.CycleMachine()
    rng = np.random.default_rng([seed, index])
    params = runtime_params.random_network(rng, config.channels, config.cells_per_stage,
                                           config.num_stages, config.in_channels,
                                           config.num_classes)
    network = kernels.Network(m, params, config.resolution, config.in_channels)
    image = rng.integers(-128, 128, config.input_shape).astype(np.int8)
    start = time.perf_counter()
    _, count = network.forward(image, space.arch_at(index))
    done[key] = {"key": key, "index": index, "config": [config.channels, config.cells_per_stage,
                                                        config.resolution, config.in_channels,
                                                        config.num_classes],
                 "cycles": int(count), "seconds": round(time.perf_counter() - start, 2)}
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    with open(rows_path, "a") as f:
      f.write(json.dumps(done[key]) + "\n")
    print(f"{key:<24} {count:>12,} cycles  {done[key]['seconds']:.1f} s", flush=True)
  return [done[_key(config, index)] for config, index in pairs]


def predicted_cycles(config: NetworkConfig, index: int, board: latency.LUT) -> float:
  """The model's cycles of one whole network: its LUT estimate at that skeleton, unscaled."""
  lut = shapes.lut_for(config, board)
  ms = float(latency.estimate(space.arch_at(index)[None], lut)[0])
  return ms * board.clock_mhz * 1e3 / float(board.constants["resnet8"]["scale"])


def default_table_errors(board: latency.LUT) -> np.ndarray:
  """Relative errors (%) of the model's LUT entries at the board's own network against its
  emulated entries (ops other than 'none', stem, reductions, head, overhead)."""
  model = shapes.lut_for(board.config, board)
  ours = [v for name, v in latency.entries(model) if v]
  theirs = [v for name, v in latency.entries(board) if v]
  return 100 * (np.array(ours) / np.array(theirs) - 1)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--networks", type=int, default=30)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--fit", action="store_true", help="refit and rewrite the shipped model")
  parser.add_argument("--rows", default=str(ROWS), help="JSON lines kept between runs")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()
  start = time.perf_counter()
  if args.fit:
    from micronas_jax.hardware.emu import shape_fit

    model = shape_fit.fit(args.seed)
    MODEL_PATH.write_text(json.dumps(model.to_dict(), indent=1) + "\n")
    shapes.packaged.cache_clear()
    print(f"wrote {MODEL_PATH.relative_to(_results.REPO)} ({model.provenance['seconds']} s)")
  model = shapes.packaged()
  board = latency.board("stm32f746")
  fit_rows = "\n".join(
      f"| {kernel} | {r['runs']} | {100 * r['median_relative_error']:.3f} | "
      f"{100 * r['max_relative_error']:.2f} |" for kernel, r in model.provenance["fit"].items())
  table = default_table_errors(board)
  pairs = skeletons(args.networks, args.seed)
  rows = emulate(pairs, pathlib.Path(args.rows), args.seed)
  emulated = np.array([row["cycles"] for row in rows], np.float64)
  predicted = np.array([predicted_cycles(c, i, board) for c, i in pairs])
  error = 100 * (predicted / emulated - 1)
  tau = float(stats.kendalltau(predicted, emulated)[0])
  median = float(np.median(np.abs(error)))
  print(f"{'skeleton C/N/R/in/classes/cell':<30} {'emulated':>12} {'model':>12} {'error %':>8}")
  for row, guess, e in zip(rows, predicted, error):
    print(f"{row['key']:<30} {row['cycles']:>12,} {guess:>12,.0f} {e:>8.2f}")
  print(f"tau {tau:.4f}, median |error| {median:.2f} %, max {np.abs(error).max():.2f} %")
  verdict = lambda ok: "met" if ok else "**missed**"
  median_verdict = verdict(median <= MEDIAN_TARGET)
  body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}; {time.perf_counter() - start:.0f} s in this run (rows already in
`{_results.shown_path(args.rows)}` are reused); emulating the networks took
{sum(row['seconds'] for row in rows):.0f} s in all, the fit {model.provenance['seconds']:.0f} s.

The skeleton search prices networks of any width C, depth N, input (resolution, 1 or 3
channels) and class count. `hardware/shapes.py` fits one cycle model per kernel of
`runtime/kernels.c`: least squares over the iteration counts of its loops, on a grid of shapes
run on the emulated Cortex-M7 (`emu/cycles.py`, the pipeline model of the default `stm32f746`
table). The fitted model ships as `micronas_jax/hardware/luts/{shapes.MODEL_FILE}`, so pricing a
network needs neither the cross-compiler nor the emulator.

**Fit residuals** (modelled cycles; relative error of each grid run, %):

| kernel | runs | median | max |
|---|---:|---:|---:|
{fit_rows}

**The default network** (C=16, N=5, 32x32x3, 10 classes): the model's {len(table)} non-zero LUT
entries against the packaged `stm32f746` table's emulated entries: median |error|
{np.median(np.abs(table)):.2f} %, largest {np.abs(table).max():.2f} %.

**Whole networks outside the grid**: {len(rows)} random skeletons (C in {WIDTHS}, N in
{CELLS}, resolution in {RESOLUTIONS}, 1 or 3 input channels, 5 or 12 classes), each with a
random cell whose output depends on its input, run as one `nb201_forward` call on the emulated
M7 with random int8 weights (seed {args.seed}), against `latency.estimate` on
`shapes.lut_for(skeleton, stm32f746)`:

| metric | value | target | |
|---|---:|---:|---|
| Kendall tau | {tau:.4f} | >= {TAU_TARGET} | {verdict(tau >= TAU_TARGET)} |
| median abs. error | {median:.2f} % | <= {MEDIAN_TARGET:.0f} % | {median_verdict} |
| largest abs. error | {np.abs(error).max():.2f} % | | |
| error range | {error.min():+.2f} .. {error.max():+.2f} % | | |

Both sides are the same cycle model over the same kernels: this measures the kernel models
and the LUT's composition (one op = kernel + node add; the driver's overhead), not the cycle
model against a board (see "LUT agreement" for that).
"""
  if not args.no_write:
    _results.write_section(SECTION, body)


if __name__ == "__main__":
  main()
