"""Fits `hardware.shapes`' per-kernel cycle models to emulated runs on a grid of shapes.

Each kernel of `runtime/kernels.c` runs once per grid shape on a `cycles.CycleMachine` (seeded
random int8 data), and its modelled cycles are fitted by least squares to `shapes.features`.
The grid (`GRID`) spans the channels and sizes a skeleton's stages take (4-64 channels, 4-32 px
maps), with odd input channels for the stem (1 and 3). The driver's overhead is fitted to small
whole networks with every edge 'none'.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np

from micronas_jax.hardware import shapes
from micronas_jax.hardware.emu import cycles, kernels
from micronas_jax.hardware.emu import lut as emu_lut
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NetworkConfig
from micronas_jax.runtime import params as runtime_params

_CHANNELS = (4, 8, 16, 32)
# Shapes each kernel runs at: its `shapes.features` arguments.
GRID = {
    "stem": list(itertools.product((8, 16, 24, 32), (1, 3), (4, 8, 16, 32, 64))),
    "conv3x3": list(itertools.product((4, 8, 12, 16), _CHANNELS, _CHANNELS)),
    "conv3x3_s2": list(itertools.product((8, 12, 16, 24), _CHANNELS, _CHANNELS)),
    "conv1x1": list(itertools.product((4, 8, 16, 24), (*_CHANNELS, 64), (*_CHANNELS, 64))),
    "shortcut": list(itertools.product((4, 8, 16, 24), (*_CHANNELS, 64), (*_CHANNELS, 64))),
    "avgpool3x3": list(itertools.product((4, 8, 12, 16, 24, 32), (*_CHANNELS, 64))),
    "avgpool2x2": list(itertools.product((4, 8, 12, 16, 24, 32), (*_CHANNELS, 64))),
    "add": [(n,) for n in (64, 256, 1024, 4096, 16384, 65536)],
    "head": list(itertools.product((2, 4, 8), (8, 16, 32, 64), (2, 10, 20))),
    "overhead": list(itertools.product((4, 8), (1, 2, 3), (8, 16, 32))),  # (C, N, resolution)
}


def run_kernel(m: emu_machine.Machine, rng: np.random.Generator, kernel: str,
               *shape: int) -> int:
  """Modelled cycles of one call of `kernel` at `shape` (its `shapes.features` arguments; for
  "overhead", (C, N, resolution) of an all-'none' network)."""
  x = lambda h, c: rng.integers(-128, 128, (h, h, c)).astype(np.int8)
  if kernel in shapes.CONVS:
    h, c_in, c_out = shape
    k, stride, relu = shapes.CONVS[kernel]
    return kernels.conv(m, x(h, c_in), runtime_params.random_conv(rng, c_in, c_out, k), stride,
                        relu_in=bool(relu))[1]
  if kernel == "avgpool3x3":
    return kernels.avgpool3x3(m, x(*shape))[1]
  if kernel == "avgpool2x2":
    return kernels.avgpool2x2(m, x(*shape))[1]
  if kernel == "add":
    values = rng.integers(-128, 128, shape[0]).astype(np.int8)
    return kernels.add(m, values, values[::-1].copy())[1]
  if kernel == "head":
    h, c, classes = shape
    return kernels.head(m, x(h, c), runtime_params.random_head(rng, c, classes))[1]
  channels, cells, resolution = shape
  config = NetworkConfig(channels=channels, cells_per_stage=cells, resolution=resolution)
  return emu_lut.measure(config, int(rng.integers(1 << 30)), m)["overhead"]


def overhead_features(channels: int, cells: int, resolution: int) -> tuple[int, int]:
  """`shapes.features("overhead", ...)`'s arguments of a 3-stage network: (cells, zeroed bytes)."""
  config = NetworkConfig(channels=channels, cells_per_stage=cells, resolution=resolution)
  shapes_ = zip(config.stage_channels, config.stage_resolutions)
  return 3 * cells, 3 * cells * sum(c * r * r for c, r in shapes_)


def fit(seed: int = 0, progress: Callable[[int, int], None] | None = None,
        core: str = "cortex-m7") -> shapes.KernelModel:
  """The kernel model of `core` (`cycles.PIPELINES`): every kernel run on `GRID`, least squares
  on its features. Raises `emu_machine.ToolchainMissing` without the cross-compiler, Unicorn or
  capstone."""
  reason = cycles.capstone_missing()
  if reason:
    raise emu_machine.ToolchainMissing(reason)
  m = cycles.CycleMachine(core=core)
  rng = np.random.default_rng(seed)
  total, done, start = sum(map(len, GRID.values())), 0, time.perf_counter()
  coefficients, residuals = {}, {}
  for kernel, grid in GRID.items():
    rows, measured = [], []
    for shape in grid:
      measured.append(run_kernel(m, rng, kernel, *shape))
      argument = overhead_features(*shape) if kernel == "overhead" else shape
      rows.append(shapes.features(kernel, *argument))
      done += 1
      if progress:
        progress(done, total)
    design, target = np.array(rows), np.array(measured, np.float64)
    coefficients[kernel] = np.linalg.lstsq(design, target, rcond=None)[0]
    error = np.abs(design @ coefficients[kernel] - target) / np.maximum(target, 1.0)
    residuals[kernel] = {"runs": len(grid), "max_relative_error": round(float(error.max()), 5),
                         "median_relative_error": round(float(np.median(error)), 6)}
  provenance = {
      "by": "python3 -m benchmarks shape-model --fit (micronas_jax/hardware/emu/shape_fit.py)",
      "cycle_model": f"micronas_jax/hardware/emu/cycles.py ({cycles.CORE_NAMES[core]} "
                     "pipeline, as that core's board tables)",
      "toolchain": emu_machine.compiler_version(), "flags": " ".join(emu_machine.FLAGS),
      "seed": seed, "grid": {kernel: [list(s) for s in grid] for kernel, grid in GRID.items()},
      "fit": residuals, "seconds": round(time.perf_counter() - start, 1)}
  return shapes.KernelModel(core, coefficients, provenance)
