"""Deployed C library: estimated vs built flash and SRAM over random cells; int8 vs float accuracy.

Memory (section "Deployed C library: estimated vs built memory"): for `--cells` random
NB201 cells (seeded, uniform over the 15,625 indices) of the full CIFAR-10 network (C=16, N=5),
the int8 library that `micronas-jax deploy` writes (initialized weights, seed 0; scales from 8
standard-normal inputs: the sizes do not depend on the values) is built with arm-none-eabi-gcc
for a Cortex-M7 and measured: flash = .text + .rodata + .data, SRAM = .data + .bss + the stack's
high-water mark of one emulated `mnj_run` (painted stack). The estimate is the one `deploy`
prints: `hardware.memory` with the C library's plan (PLAN_C) plus the `stm32f746-emu` LUT's
runtime bytes. Emulating a network takes 10-60 s, so only the first `--emulate` cells are run
(stack, and their logits against the integer reference); the others use the largest stack
measured, which the table says.

Accuracy (section "Deployed C library: int8 vs float accuracy", with `--checkpoint`
and `--data`): the trained network's float and int8 top-1 on the test split's first
`--test-images` images (class-balanced), scales calibrated on `--calibration-images` training
images; plus the top-1 agreement between the two.

    python3 -m benchmarks deploy-memory                          # 50 cells, writes RESULTS.md
    python3 -m benchmarks deploy-memory --cells 3 --emulate 1 --no-write
    python3 -m benchmarks deploy-memory --cells 0 --checkpoint run/ \\
        --data ../shared/data/cifar10/cifar10-jpeg.zip
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import jax
import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results
from micronas_jax import data, export, space
from micronas_jax.deploy import api, build, codegen
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NB201_CIFAR10
from micronas_jax.runtime import float_reference, quantize

SECTION = "Deployed C library: estimated vs built memory"
ACCURACY_SECTION = "Deployed C library: int8 vs float accuracy"
TARGET = 0.05


def measure_cells(indices, emulate: int, seed: int) -> list[dict]:
  """One row per cell: estimated and built flash and SRAM (bytes), stack when emulated."""
  lut = latency.board(api.DEFAULT_BOARD)
  start = time.perf_counter()
  # As `deploy` draws them without a checkpoint (jitted init: its compilation is the time).
  variables, config, _ = export.cell_variables(space.arch_at(0), None, seed)
  assert config == NB201_CIFAR10
  variables = jax.block_until_ready(variables)
  init_seconds = time.perf_counter() - start
  inputs = np.random.default_rng(seed).standard_normal((8, *NB201_CIFAR10.input_shape),
                                                        np.float32)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for n, index in enumerate(indices):
      start = time.perf_counter()
      ops = space.arch_at(int(index))
      network, _ = api.quantized_network(ops, variables, NB201_CIFAR10, inputs)
      folder = pathlib.Path(tmp) / str(index)
      folder.mkdir()
      written = codegen.write(folder, network, "initialized")
      quantized = time.perf_counter()
      elf = build.compile_image(folder, "cortex-m7")
      built = time.perf_counter()
      sizes = emu_machine.sections(elf)
      row = {"index": int(index), "arch": space.format_arch(ops), "sections": sizes,
             "estimated": api.estimate(ops, NB201_CIFAR10, lut),
             "arena": written["arena_bytes"], "stack": None, "init_seconds": init_seconds,
             "quantize_seconds": quantized - start, "build_seconds": built - quantized}
      if n < emulate:
        images_q = network.quantize_images(inputs[:1])
        emulated = build.emulate(elf, images_q, NB201_CIFAR10.num_classes)
        row["stack"] = emulated.stack_bytes
        row["bit_exact"] = bool(np.array_equal(emulated.logits, quantize.run(network, images_q)))
        row["instructions"] = int(emulated.instructions[0])
        row["lut_instructions"] = api.lut_instructions(network.program, lut)
      row["seconds"] = time.perf_counter() - start
      rows.append(row)
      print(f"{index:>6} flash est {row['estimated']['flash_bytes']:>8} built {sizes.flash:>8}  "
            f"SRAM est {row['estimated']['sram_bytes']:>7} built {sizes.static_ram:>7} "
            f"+ stack {row['stack']}  {row['seconds']:.0f} s", flush=True)
  return rows


def memory_table(rows: list[dict]) -> tuple[str, str]:
  """(per-cell table, summary line) of estimated vs built memory."""
  stacks = [r["stack"] for r in rows if r["stack"] is not None]
  stack = max(stacks)
  lines = [("| index | flash est KB | flash built KB | error % | SRAM est KB | SRAM built KB "
            "| error % | stack B | arena B |"),
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  flash_err, sram_err = [], []
  for r in rows:
    est, sizes = r["estimated"], r["sections"]
    sram = sizes.static_ram + (r["stack"] if r["stack"] is not None else stack)
    flash_err.append((est["flash_bytes"] - sizes.flash) / sizes.flash)
    sram_err.append((est["sram_bytes"] - sram) / sram)
    stack_cell = r["stack"] if r["stack"] is not None else f"({stack})"
    lines.append(f"| {r['index']} | {est['flash_bytes'] / 1024:.1f} | {sizes.flash / 1024:.1f} | "
                 f"{100 * flash_err[-1]:+.2f} | {est['sram_bytes'] / 1024:.1f} | "
                 f"{sram / 1024:.1f} | {100 * sram_err[-1]:+.2f} | {stack_cell} | {r['arena']} |")
  flash_err, sram_err = np.array(flash_err), np.array(sram_err)
  summary = (
      f"| cells | flash error % (min / mean / max) | within ±5 % | SRAM error % "
      f"(min / mean / max) | within ±5 % | stacks measured (distinct values) |\n"
      f"| ---: | --- | ---: | --- | ---: | --- |\n"
      f"| {len(rows)} | {100 * flash_err.min():+.2f} / {100 * flash_err.mean():+.2f} / "
      f"{100 * flash_err.max():+.2f} | {int((np.abs(flash_err) <= TARGET).sum())} / {len(rows)} | "
      f"{100 * sram_err.min():+.2f} / {100 * sram_err.mean():+.2f} / {100 * sram_err.max():+.2f} | "
      f"{int((np.abs(sram_err) <= TARGET).sum())} / {len(rows)} | {len(stacks)} "
      f"({', '.join(map(str, sorted(set(stacks))))} B) |")
  return "\n".join(lines), summary


def instruction_lines(rows: list[dict]) -> str:
  """Emulated instructions against the LUT, per emulated cell."""
  lines = [("| index | bit-exact | emulated instructions | LUT (program) | error % | hw estimate "
            "| error % |"), "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
  for r in rows:
    if r["stack"] is None:
      continue
    hw = r["estimated"]["instructions"]
    lines.append(f"| {r['index']} | {'yes' if r['bit_exact'] else 'NO'} | {r['instructions']:,} | "
                 f"{r['lut_instructions']:,} | "
                 f"{100 * (r['instructions'] - r['lut_instructions']) / r['lut_instructions']:+.3f}"
                 f" | {hw:,} | {100 * (r['instructions'] - hw) / hw:+.2f} |")
  return "\n".join(lines)


def accuracy(checkpoint: str, data_path: str, calibration: int, test: int) -> dict:
  """Float and int8 test top-1 (and their agreement) of a trained checkpoint's network."""
  stored, ops, variables, config = _results.checkpoint_network(checkpoint)
  network, weights = api.quantized_network(
      ops, variables, config, data.load_images(data_path, max_images=calibration))
  images, labels = data.load_split(data_path, "test", max_images=test)
  x = data.normalize(images)
  floats = float_reference.float_forward(network.program, weights, x).argmax(1)
  ints = quantize.run(network, network.quantize_images(x)).argmax(1)
  return {"arch": stored["meta"]["arch"], "index": space.index_of(ops), "config": config,
          "epochs": stored["epoch"], "of": stored["meta"]["training"]["epochs"],
          "float": float(np.mean(floats == labels)), "int8": float(np.mean(ints == labels)),
          "agreement": float(np.mean(floats == ints)), "test": len(labels),
          "calibration": calibration}


def timing_line(rows: list[dict]) -> str:
  """The time of one deploy at C=16, N=5 without --verify, and its target."""
  quantize_s = np.median([r["quantize_seconds"] for r in rows])
  build_s = np.median([r["build_seconds"] for r in rows])
  first_deploy_s = quantize_s + rows[0]["init_seconds"]
  return (f"Time of one deploy (median over the {len(rows)} cells, initialized weights): "
          f"{quantize_s:.1f} s to calibrate, quantize and write the library, {build_s:.1f} s for "
          f"arm-none-eabi-gcc (one CPU); drawing the initialized weights as `deploy` does took "
          f"{rows[0]['init_seconds']:.0f} s (XLA compilation of the init, once per network size "
          "and process; a `--checkpoint` needs none). Target: at most 60 s plus the "
          f"compiler's time: **{'met' if first_deploy_s <= 60 else 'not met'}** "
          f"({first_deploy_s:.0f} s with the first compilation).")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cells", type=int, default=50)
  parser.add_argument("--emulate", type=int, default=5,
                      help="cells (the first ones) run in the emulator for their stack")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--checkpoint", help="a trained run for the accuracy section")
  parser.add_argument("--data", help="CIFAR-10 (train and test splits) for the accuracy section")
  parser.add_argument("--calibration-images", type=int, default=256)
  parser.add_argument("--test-images", type=int, default=10000)
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()

  if args.cells:
    start = time.perf_counter()
    indices = np.random.default_rng(args.seed).choice(space.NUM_CELLS, args.cells, replace=False)
    rows = measure_cells(indices, max(1, args.emulate), args.seed)
    table, summary = memory_table(rows)
    print(summary)
    body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}; {time.perf_counter() - start:.0f} s in all.
Toolchain: {latency.board(api.DEFAULT_BOARD).provenance['toolchain']}, `-mcpu=cortex-m7 \
-mfloat-abi=soft {' '.join(codegen.CFLAGS)} {' '.join(codegen.LDFLAGS)}`.

{args.cells} random cells (seed {args.seed}) of the CIFAR-10 network (C=16, N=5), each deployed
as the int8 C library of `micronas-jax deploy` and built for a Cortex-M7. Built flash = .text +
.rodata + .data; built SRAM = .data + .bss + the stack's high-water mark of one emulated
`mnj_run` (painted stack), measured on the first {min(args.emulate, args.cells)} cells; the
others (stack in parentheses) use the largest of those: `mnj_run` is one frame calling the same
kernels in every cell, so the stack depends only on which kernels a cell calls (8 bytes apart).
Estimate: `hardware.memory` with plan `micronas-c` plus the `stm32f746-emu` LUT's runtime bytes,
as `deploy` prints it. Error = (estimate - built) / built.

{summary}

Where they differ: flash, by the code of `mnj_run` (about 20 bytes per kernel call, more
calls in cells with more edges) against the LUT's runtime flash (the kernels' whole `.text`,
with the every-op driver the library leaves out), and the `conv_params`/`head_params` structs
(16 bytes per conv); SRAM, by the stack (the LUT's runtime SRAM holds only the scratch). The
arena equals the live-tensor peak that the estimate counts.

Emulated instruction counts of the emulated cells against the LUT: "LUT (program)" sums the
`stm32f746-emu` entries over the library's own kernel calls (`deploy.api.lut_instructions`; the
check `deploy --verify` makes, tolerance 2 %); "hw estimate" is `latency.estimate`, which models
a runtime that zeroes every node and adds every edge into it.

{instruction_lines(rows)}

{timing_line(rows)}

<details><summary>Per cell</summary>

{table}

</details>
"""
    if not args.no_write:
      _results.write_section(SECTION, body)
      print(f"wrote section '{SECTION}' to {_results.RESULTS}")
  if args.checkpoint:
    result = accuracy(args.checkpoint, args.data, args.calibration_images, args.test_images)
    config = result["config"]
    line = (f"| {result['index']} | C={config.channels}, N={config.cells_per_stage} | "
            f"{result['epochs']} of {result['of']} | {result['test']} | "
            f"{100 * result['float']:.2f} | {100 * result['int8']:.2f} | "
            f"{100 * result['agreement']:.2f} |")
    print(line)
    body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}.

Cell {result['arch']} trained briefly on the CPU (`micronas-jax train {result['index']} --data
cifar10-jpeg.zip --channels {config.channels} --cells {config.cells_per_stage}`, batch 128, the
checkpoint after the epochs shown), quantized as `deploy` does it (scales from
{result['calibration']} training images), evaluated on the CIFAR-10 test split (class-balanced
first images): the float network (BN folded) and the int8 integer reference, which the emulated
C library equals bit for bit.

| cell | network | epochs | test images | float top-1 % | int8 top-1 % | top-1 agreement % |
| ---: | --- | --- | ---: | ---: | ---: | ---: |
{line}

Target: agreement >= {100 * api.MIN_AGREEMENT:.0f} %: \
{"met" if result["agreement"] >= api.MIN_AGREEMENT else "NOT met"}.
"""
    if not args.no_write:
      _results.write_section(ACCURACY_SECTION, body)
      print(f"wrote section '{ACCURACY_SECTION}' to {_results.RESULTS}")


if __name__ == "__main__":
  main()
