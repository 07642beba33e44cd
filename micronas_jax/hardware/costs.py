"""Every hardware cost of NB201 cells on one board, in one place for the search and the CLI."""
from __future__ import annotations

import numpy as np

from micronas_jax import complexity
from micronas_jax.hardware import latency, memory, tflm

KB = 1024
# Columns of `cell_costs`: (what, unit).
COST_NAMES = {"latency_ms": ("latency", "ms"), "sram_kb": ("peak SRAM", "KB"),
              "flash_kb": ("flash", "KB"), "flops_m": ("FLOPs", "M"), "params_m": ("params", "M")}


def memory_plan(lut: latency.LUT) -> str:
  """The memory plan of the LUT's runtime: `constants.memory_plan.value` (`memory.PLANS`; the
  emulated board's is the package's own C code), else TFLite Micro's."""
  return (lut.constants or {}).get("memory_plan", {}).get("value", memory.PLAN_TFLM)


def runtime_memory(lut: latency.LUT) -> tuple[int, int]:
  """(SRAM, flash) bytes of the LUT's runtime beside the network's; 0 where unknown."""
  return ((lut.memory.runtime_sram_bytes, lut.memory.runtime_flash_bytes) if lut.memory
          else (0, 0))


def cell_costs(archs, lut: latency.LUT, dead_code: bool | None = None) -> dict[str, np.ndarray]:
  """Hardware costs of cells `archs: [..., 6]` on `lut`'s board -> {name: [...]} (float64).

  latency_ms, sram_kb (peak, runtime included), flash_kb (runtime included), flops_m and params_m
  of the board's network (`lut.config`). `dead_code` overrides the LUT's runtime semantics. The
  memory follows the plan of the LUT's runtime (`memory_plan`): for TFLite Micro's, the arena of
  `hardware.tflm.estimated_memory` (activations and the persistent tail, on a Cortex-M) and the
  `.tflite`'s bytes, dead code removed as the converter does; for the C library's, `memory`'s
  plan PLAN_C. The LUT's runtime SRAM and flash come on top.
  """
  archs = np.asarray(archs)
  dead_code = lut.semantics == "dead-code" if dead_code is None else dead_code
  runtime_sram, runtime_flash = runtime_memory(lut)
  plan = memory_plan(lut)
  if plan == memory.PLAN_TFLM:
    # The converter removes dead code whatever the latency semantics.
    sram, flash = tflm.estimated_memory(archs, lut.config)
    sram, flash = sram + runtime_sram, flash + runtime_flash
  else:
    sram = memory.peak_sram(archs, lut.config, runtime_sram, dead_code, plan)
    flash = memory.flash(archs, lut.config, runtime_flash, dead_code, plan)
  return {
      "latency_ms": np.asarray(latency.estimate(archs, lut, dead_code), np.float64),
      "sram_kb": sram / KB,
      "flash_kb": flash / KB,
      "flops_m": complexity.flops(archs, lut.config) / 1e6,
      "params_m": complexity.params(archs, lut.config) / 1e6,
  }


def exact_memory(ops, lut: latency.LUT,
                 dead_code: bool | None = None) -> tuple[int, int, tflm.ArenaEstimate | None]:
  """(SRAM bytes, flash bytes, TFLM arena or None) of one cell `ops: [6]` on `lut`'s board, the
  runtime's included: under TFLite Micro's plan TFLM's arena and the `.tflite` exactly
  (`tflm.arena`, Cortex-M), which the vectorized `cell_costs` only estimates; otherwise (and for
  a cell whose output is constant, which the converter folds away) `cell_costs`' values
  (`dead_code` as there)."""
  from micronas_jax import graph

  if memory_plan(lut) == memory.PLAN_TFLM and graph.reachability(ops).output:
    arena = tflm.arena(ops, lut.config, tflm.CORTEX_M)
    runtime_sram, runtime_flash = runtime_memory(lut)
    return arena.total + runtime_sram, arena.file_bytes + runtime_flash, arena
  values = cell_costs(np.asarray(ops)[None], lut, dead_code)
  return round(float(values["sram_kb"][0]) * KB), round(float(values["flash_kb"][0]) * KB), None
