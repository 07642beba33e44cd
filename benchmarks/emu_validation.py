"""How well the emulated-M7 LUT's sum predicts whole emulated networks.

For seeded random NB201 cells, run the full CIFAR-10 network (C=16, N=5, 3 stages, int8, one
32x32x3 image) as one C call (`nb201_forward`) on the emulated Cortex-M7 and count its executed
instructions; compare with the packaged LUT `stm32f746-emu` (entries measured kernel by kernel,
`micronas-jax lut profile --target cortex-m7-emu`). Both sides use the LUT's cycles per
instruction and clock, so the comparison is of instruction counts. Reports Kendall tau, MAPE and
the share within +-10%.

Needs arm-none-eabi-gcc and the `emu` extra. Not part of the test suite: one network takes 3-35 s
in the emulator (all-3x3 cell: 559 M instructions), 50 random cells about 10 minutes.
    python3 benchmarks/emu_validation.py              # 50 cells, rewrites its RESULTS.md section
    python3 benchmarks/emu_validation.py --cells 5 --no-write
"""
from __future__ import annotations

import argparse
import os
import time

import _results
import numpy as np
from scipy import stats

from micronas_jax import space
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import kernels
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.model import NB201_CIFAR10
from micronas_jax.runtime import params as runtime_params

SECTION = "Emulated Cortex-M7: LUT sum vs whole-network emulation"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cells", type=int, default=50)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()

  lut = latency.board("stm32f746-emu")
  cfg = NB201_CIFAR10
  rng = np.random.default_rng(args.seed)
  indices = rng.choice(space.NUM_CELLS, args.cells, replace=False)
  archs = space.all_archs()[indices]
  m = emu_machine.Machine()
  params = runtime_params.random_network(rng, cfg.channels, cfg.cells_per_stage, cfg.num_stages,
                                  cfg.in_channels, cfg.num_classes)
  network = kernels.Network(m, params, cfg.resolution, cfg.in_channels)
  ms_per_instruction = lut.provenance["cycles_per_instruction"] / (lut.clock_mhz * 1e3)
  predicted = latency.estimate(archs, lut)
  measured, seconds, cpu_seconds = [], [], []
  print(f"{'index':>6} {'arch':<100} {'emulated ms':>11} {'LUT ms':>9} {'error %':>8} {'s':>5} "
        f"{'cpu s':>5}")
  for arch, index, guess in zip(archs, indices, predicted):
    image = rng.integers(-128, 128, cfg.input_shape).astype(np.int8)
    start, cpu_start = time.perf_counter(), time.process_time()
    _, count = network.forward(image, arch)
    seconds.append(time.perf_counter() - start)
    cpu_seconds.append(time.process_time() - cpu_start)
    measured.append(count * ms_per_instruction)
    print(f"{index:>6} {space.format_arch(arch):<100} {measured[-1]:>11.2f} {guess:>9.2f} "
          f"{100 * (guess - measured[-1]) / measured[-1]:>+8.4f} {seconds[-1]:>5.1f} "
          f"{cpu_seconds[-1]:>5.1f}", flush=True)
  measured = np.array(measured)
  relative = (predicted - measured) / measured
  tau = stats.kendalltau(predicted, measured)[0]
  mape = 100 * np.abs(relative).mean()
  within = 100 * (np.abs(relative) <= 0.10).mean()
  summary = (
      f"| cells | Kendall tau | MAPE % | within ±10 % | max abs error % | mean error % "
      f"| emulated ms (min / median / max) | emulator wall s per network (mean / max) "
      f"| CPU s (mean / max) |\n"
      f"| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n"
      f"| {args.cells} | {tau:.4f} | {mape:.4f} | {within:.0f} | "
      f"{100 * np.abs(relative).max():.4f} | {100 * relative.mean():+.4f} | "
      f"{measured.min():.1f} / {np.median(measured):.1f} / {measured.max():.1f} | "
      f"{np.mean(seconds):.1f} / {np.max(seconds):.1f} | "
      f"{np.mean(cpu_seconds):.1f} / {np.max(cpu_seconds):.1f} |")
  print()
  print(summary)
  body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}; load average at the end {os.getloadavg()[0]:.1f} (shared
machine: wall times include waiting for a core, CPU times do not)
Toolchain: {lut.provenance['toolchain']}, `{lut.provenance['flags']}`; unicorn \
{__import__('unicorn').__version__}.

{args.cells} random NB201 cells (seed {args.seed}, uniform over the 15,625 indices). Each is run as
the full CIFAR-10 network (C=16, N=5, int8, one image) in one emulated call and its executed
instructions counted; the prediction is `latency.estimate` with the packaged `stm32f746-emu` LUT,
whose entries were measured kernel by kernel. Both at {lut.provenance['cycles_per_instruction']}
cycles/instruction (an assumption, see the LUT's README) and {lut.clock_mhz:g} MHz, so this
compares instruction counts: it checks that the LUT's decomposition (entries + overhead) adds up,
not the CPI.

{summary}

The remaining error is what the LUT cannot see: the driver's per-edge dispatch (a `none` edge
still costs a loop step; other edges a call), and data-dependent branches in the rounding of the
pools. The overhead entry comes from the all-`none` network, so that cell is exact by
construction.
"""
  if not args.no_write:
    _results.write_section(SECTION, body)
    print(f"wrote section '{SECTION}' to {_results.RESULTS}")


if __name__ == "__main__":
  main()
