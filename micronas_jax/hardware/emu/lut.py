"""The STM32F746 latency LUT measured on the emulated Cortex-M7: instruction counts -> ms.

Every LUT entry is measured by running its kernels once in the emulator (seeded random int8 data;
counts depend on shapes, not data, to within a data-dependent rounding branch):
  stem                   conv 3x3, in_channels -> C, at the input resolution
  <cell op> at stage s   the op at (C_s, R_s) plus one add of its output into the node:
                         none: 0 (no kernel); skip_connect: the add; nor_conv_kxk: conv with the
                         input ReLU and BN folded, then the add; avg_pool_3x3: the pool, then
                         the add
  reduction before s     conv_a (3x3, stride 2) + conv_b (3x3) + avgpool 2x2 + 1x1 shortcut + add
  head                   BN + ReLU + global average pool + linear
  overhead               the whole network with every edge 'none' (`nb201_forward`), less the
                         stem, reductions and head: zeroing the nodes and the driver's loops

    ms = instructions x CYCLES_PER_INSTRUCTION / (CLOCK_MHZ x 1000)
"""
from __future__ import annotations

import numpy as np

from micronas_jax import space
from micronas_jax.hardware import f746_analytic, latency, memory
from micronas_jax.hardware.emu import kernels
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NB201_CIFAR10, NetworkConfig
from micronas_jax.runtime import params as runtime_params

TARGET = "cortex-m7-emu"
CLOCK_MHZ = f746_analytic.CLOCK_MHZ
CYCLES_PER_INSTRUCTION = 1.0
CPI_SOURCE = (
    "ASSUMPTION, not a measurement: 1 cycle per executed instruction. The emulator models no "
    "pipeline. The Cortex-M7 dual-issues most instructions (LLVM ARMScheduleM7.td: IssueWidth = "
    "2, facts §6 [V]), which would allow as little as 0.5; byte loads have latency 2, a "
    "mispredict "
    "costs 4 cycles and flash has 7 wait states at 216 MHz behind the ART/L1 caches (facts §6 "
    "[V]), which push it above 1. No measured CPI for int8 kernels on the M7 was found. Taken as "
    "1.0: the board's latency may be up to 2x lower (perfect dual issue, code and data in "
    "ITCM/DTCM) or higher (cache misses, stalls).")
DEVICE = "STM32F746, emulated Cortex-M7 @ 216 MHz"
# The runtime of this board is the package's own C code: peak SRAM and flash follow its plan.
MEMORY_PLAN = {"value": memory.PLAN_C,
               "source": "hardware/memory.py PLAN_C: the C library of micronas_jax.deploy (ReLU "
                         "fused into the conv, one-kernel head, int32 bias, multiplier and shift "
                         "per output channel); built libraries measure within 5 % "
                         "(benchmarks/RESULTS.md, deploy_memory.py)"}


def _ops_entry(m: emu_machine.Machine, rng, op: int, channels: int, size: int) -> int:
  x = rng.integers(-128, 128, (size, size, channels)).astype(np.int8)
  if op == space.NONE:
    return 0
  _, add = kernels.add(m, x, x)
  if op == space.SKIP:
    return add
  if op == space.POOL:
    return kernels.avgpool3x3(m, x)[1] + add
  k = 1 if op == space.CONV1X1 else 3
  return kernels.conv(m, x, runtime_params.random_conv(rng, channels, channels, k), relu_in=True)[1] + add


def measure(config: NetworkConfig = NB201_CIFAR10, seed: int = 0,
            m: emu_machine.Machine | None = None) -> dict:
  """Instructions of every LUT entry: {"stem", "ops": [S][5], "reductions": [S-1], "head",
  "overhead"} (ints)."""
  m = m or emu_machine.Machine()
  rng = np.random.default_rng(seed)
  shapes = list(zip(config.stage_channels, config.stage_resolutions))
  image = rng.integers(-128, 128, config.input_shape).astype(np.int8)
  counts = {"stem": kernels.conv(m, image, runtime_params.random_conv(rng, config.in_channels,
                                                               config.channels, 3))[1]}
  counts["ops"] = [[_ops_entry(m, rng, op, c, r) for op in range(space.NUM_OPS)]
                   for c, r in shapes]
  params = runtime_params.random_network(rng, config.channels, config.cells_per_stage, config.num_stages,
                                  config.in_channels, config.num_classes)
  counts["reductions"] = []
  for (c_in, r_in), (c, r), block in zip(shapes, shapes[1:], params.reductions):
    x = rng.integers(-128, 128, (r_in, r_in, c_in)).astype(np.int8)
    conv_a, conv_b, shortcut = block
    y, a = kernels.conv(m, x, conv_a, stride=2, relu_in=True)
    _, b = kernels.conv(m, y, conv_b, relu_in=True)
    pooled, pool = kernels.avgpool2x2(m, x)
    _, short = kernels.conv(m, pooled, shortcut)
    _, add = kernels.add(m, y, y, *params.residual)
    counts["reductions"].append(a + b + pool + short + add)
  c, r = shapes[-1]
  x = rng.integers(-128, 128, (r, r, c)).astype(np.int8)
  counts["head"] = kernels.head(m, x, params.head)[1]
  network = kernels.Network(m, params, config.resolution, config.in_channels)
  _, empty = network.forward(image, [space.NONE] * space.NUM_EDGES)
  counts["overhead"] = empty - counts["stem"] - sum(counts["reductions"]) - counts["head"]
  return counts


def lut_entries(counts: dict, to_ms) -> dict:
  """`measure`'s counts converted by `to_ms(count)` into a LUT's timed fields: ops `[stages, 5]`,
  stem, reductions, head, overhead (keyword arguments of `latency.LUT`)."""
  return {"ops": np.array([[to_ms(n) for n in row] for row in counts["ops"]]),
          "stem": to_ms(counts["stem"]),
          "reductions": tuple(to_ms(n) for n in counts["reductions"]),
          "head": to_ms(counts["head"]), "overhead": to_ms(counts["overhead"])}


def counts_record(counts: dict) -> dict:
  """`measure`'s counts as a LUT's JSON record: stem, stages (op name -> count), reductions,
  head, overhead."""
  return {"stem": counts["stem"],
          "stages": [dict(zip(space.OPS, row)) for row in counts["ops"]],
          "reductions": counts["reductions"], "head": counts["head"],
          "overhead": counts["overhead"]}


def profile(config: NetworkConfig = NB201_CIFAR10, seed: int = 0) -> latency.LUT:
  """The LUT (unit ms, every-op) of the emulated STM32F746, with counts and method recorded."""
  m = emu_machine.Machine()
  counts = measure(config, seed, m)
  ms = lambda n: n * CYCLES_PER_INSTRUCTION / (CLOCK_MHZ * 1e3)
  sizes = emu_machine.sections(m.elf_path)  # link.ld puts .rodata into .text
  flash, static_ram = sizes.text, sizes.static_ram
  widest = config.stage_channels[-1]
  scratch = max(9 * widest * 2, 4 * widest)  # im2col int16 / pool sums int32
  board = f746_analytic.CONSTANTS
  provenance = {
      "method": "emulated", "measured": True,
      "by": f"micronas-jax lut profile --target {TARGET}",
      "emulator": "Unicorn (Cortex-M7 CPU model, Thumb mode); executed instructions counted per "
                  "basic block (block hook; instructions of a failed IT condition count)",
      "toolchain": emu_machine.compiler_version(),
      "flags": " ".join(emu_machine.FLAGS),
      "kernels": "micronas_jax/runtime/kernels.c: int8 NHWC, int32 accumulation (SMLAD on "
                 "int16 pairs after im2col), per-channel Q31 multiplier + shift requantization",
      "cycles_per_instruction": CYCLES_PER_INSTRUCTION,
      "cycles_per_instruction_source": CPI_SOURCE,
      "seed": seed,
      "note": "ms = instructions x cycles_per_instruction / 216 MHz. Instruction counts per entry "
              "are in constants.instructions. Overhead = the all-'none' network less stem, "
              "reductions and head. Validated against whole emulated networks: "
              "benchmarks/RESULTS.md (emu_validation.py).",
  }
  constants = {
      "instructions": counts_record(counts),
      "cycles_per_instruction": {"value": CYCLES_PER_INSTRUCTION, "status": "assumption",
                                 "source": CPI_SOURCE},
      "clock_mhz": board["clock_mhz"],
      "memory_plan": MEMORY_PLAN,
      "runtime_flash_bytes": {"value": flash, "status": "measured",
                              "source": ".text of the kernels' ELF (all kernels and the driver)"},
      "runtime_sram_bytes": {"value": scratch + static_ram, "status": "measured",
                             "source": "im2col/pool scratch of the widest stage (9 x 64 int16) "
                                       "plus the ELF's .data/.bss"},
  }
  return latency.LUT(
      device=DEVICE, unit="ms", semantics="every-op", provenance=provenance, config=config,
      **lut_entries(counts, ms), clock_mhz=CLOCK_MHZ,
      memory=latency.Memory(board["sram_bytes"]["value"], board["flash_bytes"]["value"],
                            scratch + static_ram, flash),
      constants=constants)
