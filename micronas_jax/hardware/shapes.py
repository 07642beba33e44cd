"""Latency of the package's int8 kernels at any shape: per-kernel cycle models fitted to emulated
runs, shipped as data, so any network of the skeleton space is priced without the emulator.

A LUT (`latency.LUT`) prices one shape per stage: the network it was profiled for. The skeleton
search visits other widths, depths and inputs. Each kernel's modelled cycles (`emu/cycles.py`,
the Cortex-M7 pipeline model the default table uses) are linear in the iteration counts of its
loops, which the kernel's shape fixes (`runtime/kernels.c`). So each kernel gets a least-squares
fit over those counts (`FEATURES`) on a grid of shapes run in the emulator (`fit`), and a
network's LUT entries are sums of kernel predictions built exactly as `emu.lut.measure` builds
them from runs (`network_cycles`). `lut_for(config, board)` then gives a LUT at that network in
the board's units, scaled as the board's default table is (`constants.resnet8.scale`).

Validated on whole emulated networks at shapes outside the grid: benchmarks/RESULTS.md
("Shape-aware latency"; `python3 -m benchmarks shape-model`). The fitted model is
`hardware/luts/cortex-m7-kernels.json`; regenerate it with that benchmark's `--fit`.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json

import numpy as np

from micronas_jax import space
from micronas_jax.hardware import latency
from micronas_jax.network import NetworkConfig

FORMAT = "micronas-jax-kernels/1"
MODEL_FILE = "cortex-m7-kernels.json"

# Conv variants the network runs (kernel size, stride, ReLU on the input), by name.
CONVS = {"stem": (3, 1, 0), "conv3x3": (3, 1, 1), "conv3x3_s2": (3, 2, 1), "conv1x1": (1, 1, 1),
         "shortcut": (1, 1, 0)}


def _conv_features(k: int, stride: int):
  def features(h: int, c_in: int, c_out: int) -> list[float]:
    oh = (h + 2 * (k // 2) - k) // stride + 1
    pixels, size = oh * oh, k * k * c_in
    words, tail, pairs = size // 4, size % 4, (c_out + 1) // 2
    # Row loop, pixel loop, im2col elements and its padded borders, channel-pair passes
    # (bias, 2 requantizations), the SMLAD word loop and its scalar tail.
    return [1.0, oh, pixels, pixels * size, oh * k * c_in, pixels * pairs,
            pixels * pairs * words, pixels * pairs * tail]
  return features


# Each kernel's features: the counts its cycles are linear in, from its shape arguments.
FEATURES = {
    **{name: _conv_features(k, stride) for name, (k, stride, _) in CONVS.items()},
    # sum zeroing, window sums ((3h-2)^2 c in all, fewer on the border), the divisions
    "avgpool3x3": lambda h, c: [1.0, h, h * h, c, h * c, h * h * c],
    "avgpool2x2": lambda h, c: [1.0, h // 2, (h // 2) ** 2, (h // 2) ** 2 * c],
    "add": lambda n: [1.0, n],
    "head": lambda h, c, classes: [1.0, c, h * h * c, classes, classes * c],
    # The driver with every edge 'none': zeroing 3 nodes per cell and the edge loops.
    "overhead": lambda cells, zeroed: [1.0, cells, zeroed],
}


def features(kernel: str, *shape: int) -> np.ndarray:
  """The counts `[F]` that `kernel`'s cycles are linear in, at `shape` (its arguments: convs
  (h, c_in, c_out) of the input, pools (h, c), add (n,), head (h, c, classes), overhead
  (cells, zeroed bytes))."""
  return np.asarray(FEATURES[kernel](*shape), np.float64)


@dataclasses.dataclass(frozen=True)
class KernelModel:
  """Per-kernel cycle models of one core.

  Attributes:
    core: the cycle model's core, e.g. "cortex-m7".
    coefficients: {kernel: `[F]` cycles per feature (`features`)}.
    provenance: how it was fitted: grid, residuals, toolchain.
  """
  core: str
  coefficients: dict[str, np.ndarray]
  provenance: dict

  def cycles(self, kernel: str, *shape: int) -> float:
    """Modelled cycles of one kernel call at `shape` (see `features`)."""
    return float(features(kernel, *shape) @ self.coefficients[kernel])

  def to_dict(self) -> dict:
    """JSON-ready fields (`from_dict` reads them back)."""
    return {"format": FORMAT, "core": self.core,
            "coefficients": {name: [float(v) for v in c] for name, c in self.coefficients.items()},
            "provenance": self.provenance}

  @classmethod
  def from_dict(cls, fields: dict) -> KernelModel:
    """The model of `to_dict`'s fields; LUTError for another format or a missing kernel."""
    if fields.get("format") != FORMAT:
      raise latency.LUTError(f"not a kernel model (format {fields.get('format')!r}, expected "
                             f"{FORMAT!r})")
    missing = sorted(set(FEATURES) - set(fields.get("coefficients", {})))
    if missing:
      raise latency.LUTError(f"kernel model lacks {', '.join(missing)}")
    coefficients = {name: np.asarray(fields["coefficients"][name], np.float64)
                    for name in FEATURES}
    return cls(fields["core"], coefficients, fields.get("provenance", {}))


@functools.cache
def packaged(name: str = MODEL_FILE) -> KernelModel:
  """The kernel model shipped in `hardware/luts/`."""
  text = importlib.resources.files("micronas_jax.hardware").joinpath("luts", name).read_text()
  return KernelModel.from_dict(json.loads(text))


def network_cycles(config: NetworkConfig, model: KernelModel) -> dict:
  """Modelled cycles of every LUT entry of the network `config`, in `emu.lut.measure`'s layout:
  {"stem", "ops": [S][5], "reductions": [S-1], "head", "overhead"}."""
  shapes = list(zip(config.stage_channels, config.stage_resolutions))
  cycles = model.cycles
  counts = {"stem": cycles("stem", config.resolution, config.in_channels, config.channels)}
  ops = []
  for c, r in shapes:
    add = cycles("add", c * r * r)
    row = [0.0] * space.NUM_OPS
    row[space.SKIP] = add
    row[space.CONV1X1] = cycles("conv1x1", r, c, c) + add
    row[space.CONV3X3] = cycles("conv3x3", r, c, c) + add
    row[space.POOL] = cycles("avgpool3x3", r, c) + add
    ops.append(row)
  counts["ops"] = ops
  counts["reductions"] = [
      cycles("conv3x3_s2", r_in, c_in, c) + cycles("conv3x3", r, c, c)
      + cycles("avgpool2x2", r_in, c_in) + cycles("shortcut", r, c_in, c)
      + cycles("add", c * r * r)
      for (c_in, r_in), (c, r) in zip(shapes, shapes[1:])]
  c, r = shapes[-1]
  counts["head"] = cycles("head", r, c, config.num_classes)
  cells = config.cells_per_stage * config.num_stages
  zeroed = 3 * config.cells_per_stage * sum(c * r * r for c, r in shapes)
  counts["overhead"] = cycles("overhead", cells, zeroed)
  return counts


def lut_for(config: NetworkConfig, board: latency.LUT,
            model: KernelModel | None = None) -> latency.LUT:
  """`board`'s LUT at the network `config`: its entries from the kernel model (`network_cycles`)
  scaled to milliseconds as `board`'s were (its `constants.resnet8.scale` and clock), the rest
  (memory, semantics, device) as `board` has them. The kernel model is the board core's
  (`constants.kernel_model`, default the Cortex-M7's). `board` must be a cycle-model table."""
  from micronas_jax.hardware.emu import lut as emu_lut  # no emulator needed: only its layout

  constants = board.constants or {}
  model = model or packaged(constants.get("kernel_model", {}).get("value", MODEL_FILE))
  resnet8 = constants.get("resnet8", {})
  if "scale" not in resnet8 or not board.clock_mhz:
    raise latency.LUTError(f"{board.device}: not a cycle-model table (no constants.resnet8."
                           "scale and clock): other shapes cannot be priced from it")
  scale, clock = float(resnet8["scale"]), float(board.clock_mhz)
  ms = lambda cycles: cycles * scale / (clock * 1e3)
  provenance = {**board.provenance, "shapes": (
      f"entries at C={config.channels}, N={config.cells_per_stage}, "
      f"{config.resolution}x{config.resolution}x{config.in_channels}, "
      f"{config.num_classes} classes from the {model.core} kernel model "
      "(hardware/shapes.py), scaled as the board's table")}
  return dataclasses.replace(board, config=config, provenance=provenance,
                             **emu_lut.lut_entries(network_cycles(config, model), ms))


def at_network(board: latency.LUT, config: NetworkConfig) -> latency.LUT:
  """`board` itself when it was made for `config` (the network that prices it), else its table
  at `config` (`lut_for`); LUTError for a table of one shape only (no cycle model behind it)."""
  if config == board.config:
    return board
  try:
    return lut_for(config, board)
  except latency.LUTError:
    shown = board.config
    raise latency.LUTError(
        f"{board.device}: its table prices only C={shown.channels}, N={shown.cells_per_stage}, "
        f"{shown.resolution}x{shown.resolution}x{shown.in_channels}; other networks need a "
        "cycle-model table (--board stm32f746)") from None
