"""An analytic int8 latency model: cycles = cycles/MAC x MAC-equivalents + cycles/layer x layers.

MAC-equivalents count work the way muNAS's resource model does (eliberis/uNAS,
`resource_models/models.py::inference_latency` with compute weight 1, commit f4ac70ae):
  conv, dense:  MACs                        pool:  output elements x window area
  add:          (terms - 1) x elements
and, by the same rule for one-input elementwise ops, one per element for a standalone ReLU and for
the head's BatchNorm (a per-channel affine: it follows an add, so no conv can absorb it).

The graph is the one a runtime that runs every op executes (TFLite Micro style; BN folded into the
preceding conv). A cell op's entry includes its share of the node sum: one elementwise add of its
output into the node (a node with k inputs then pays k adds where a runtime runs k - 1; one
tensor-sized add per node, under 1% of a conv op). Ops per stage s with E = C_s * H_s * W_s:
  none:          nothing (a zero op is no kernel)
  skip_connect:  add                                         E
  nor_conv_kxk:  ReLU, conv (BN folded), add                 E + k*k*C_s*E + E
  avg_pool_3x3:  pool 3x3 (stride 1), add                    9E + E
Outside the cells: the stem conv; each reduction block = ReLU, conv_a (3x3, stride 2, ReLU fused),
conv_b (3x3), avg-pool 2x2 + 1x1 shortcut conv, add; the head = BN, ReLU, global pool, linear.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from micronas_jax import space
from micronas_jax.network import NetworkConfig


@dataclasses.dataclass(frozen=True)
class Work:
  """MAC-equivalents and layer counts of every LUT entry of one network shape.

  Attributes:
    ops: `[num_stages, 5]` MAC-equivalents of one op on one edge of one cell.
    op_layers: `[num_stages, 5]` runtime layers (kernels) that op runs.
    stem, head: (MAC-equivalents, layers).
    reductions: one (MAC-equivalents, layers) per reduction block, `num_stages - 1` of them.
  """
  ops: np.ndarray
  op_layers: np.ndarray
  stem: tuple[int, int]
  reductions: tuple[tuple[int, int], ...]
  head: tuple[int, int]


def work(config: NetworkConfig) -> Work:
  """MAC-equivalents and layers of every LUT entry for networks of shape `config`."""
  ops = np.zeros((config.num_stages, space.NUM_OPS), np.int64)
  layers = np.zeros_like(ops)
  reductions = []
  for stage, (channels, size) in enumerate(zip(config.stage_channels, config.stage_resolutions)):
    elements = channels * size * size
    ops[stage, space.SKIP], layers[stage, space.SKIP] = elements, 1
    for op, kernel in ((space.CONV1X1, 1), (space.CONV3X3, 3)):
      ops[stage, op] = elements + kernel * kernel * channels * elements + elements
      layers[stage, op] = 3
    ops[stage, space.POOL], layers[stage, space.POOL] = 9 * elements + elements, 2
    if stage > 0:
      c_in = config.stage_channels[stage - 1]
      in_elements = c_in * (2 * size) ** 2
      reductions.append((
          in_elements  # ReLU
          + 9 * c_in * elements + 9 * channels * elements  # conv_a (stride 2), conv_b
          + 4 * c_in * size * size + c_in * elements  # 2x2 avg pool, 1x1 shortcut conv
          + elements,  # residual add
          6))
  stem = (9 * config.in_channels * config.channels * config.resolution ** 2 if config.stem else 0,
          int(config.stem))
  last = config.stage_channels[-1] * config.stage_resolutions[-1] ** 2
  head = (3 * last + config.stage_channels[-1] * config.num_classes, 4)  # BN, ReLU, pool, linear
  return Work(ops, layers, stem, tuple(reductions), head)


@dataclasses.dataclass(frozen=True)
class Model:
  """Constants of the analytic model, in cycles.

  Attributes:
    cycles_per_mac: cycles per MAC-equivalent.
    cycles_per_layer: fixed cost of launching one layer (kernel).
    overhead_cycles: constant cost of one inference outside the layers.
  """
  cycles_per_mac: float
  cycles_per_layer: float
  overhead_cycles: float


def entry_cycles(model: Model, config: NetworkConfig) -> dict:
  """Cycles of every LUT entry: {"ops": [S, 5], "stem", "reductions": [S-1], "head", "overhead"}."""
  w = work(config)
  cost = lambda macs, layers: model.cycles_per_mac * macs + model.cycles_per_layer * layers
  return {
      "ops": cost(w.ops.astype(np.float64), w.op_layers),
      "stem": cost(*w.stem),
      "reductions": [cost(*r) for r in w.reductions],
      "head": cost(*w.head),
      "overhead": model.overhead_cycles,
  }
