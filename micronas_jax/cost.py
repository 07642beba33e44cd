"""FLOPs and parameters of NB201 networks, by NAS-Bench-201's own counting rules.

NAS-Bench-201 measures cost with the FLOP counter of its code (AutoDL-Projects,
`utils/flop_benchmark.py`), which sums only Conv2d and Linear modules:
  conv:   k*k * C_in * C_out * H_out * W_out   (+ C_out * H_out * W_out with a bias; ours have none)
  linear: in * out + out
Pooling, BN, ReLU and additions count zero FLOPs. Parameters are every learnable tensor: conv
kernels, BN scale and shift (2C), the linear weight and bias. Figures are for one input (batch 1).

Every cost here has the form  fixed + N * sum_stages sum_edges per_op[stage, op(edge)],  since all
cells of a network share the architecture; `StageOpTable` evaluates it for many cells at once.
"""
from __future__ import annotations

import csv
import dataclasses

import numpy as np

from micronas_jax import space
from micronas_jax.network import NB201_CIFAR10, NetworkConfig


@dataclasses.dataclass(frozen=True)
class StageOpTable:
  """A cost that is `fixed + cells_per_stage * sum_s sum_e per_op[s, ops[e]]`.

  Attributes:
    per_op: `[num_stages, 5]` cost of one op on one edge of one cell in each stage.
    fixed: cost of everything outside the cells (stem, reductions, head, constant overhead).
    cells_per_stage: N.
  """
  per_op: np.ndarray
  fixed: float
  cells_per_stage: int

  def __call__(self, ops) -> np.ndarray:
    """Cost of cells `ops: [..., 6]` -> `[...]` (float64)."""
    ops = np.asarray(ops)
    if ops.shape[-1:] != (space.NUM_EDGES,):
      raise space.ArchError(f"expected op indices [..., {space.NUM_EDGES}], got {ops.shape}")
    per_cell = np.take(np.asarray(self.per_op, np.float64), ops, axis=1).sum(axis=(0, -1))
    return self.fixed + self.cells_per_stage * per_cell


def _conv(c_in: int, c_out: int, kernel: int, out_size: int) -> tuple[int, int]:
  """(params, flops) of a bias-free conv."""
  weights = kernel * kernel * c_in * c_out
  return weights, weights * out_size * out_size


def _cost_tables(config: NetworkConfig) -> tuple[StageOpTable, StageOpTable]:
  params_per_op = np.zeros((config.num_stages, space.NUM_OPS))
  flops_per_op = np.zeros((config.num_stages, space.NUM_OPS))
  fixed_params = fixed_flops = 0
  for stage, (channels, size) in enumerate(zip(config.stage_channels, config.stage_resolutions)):
    for op, kernel in ((space.CONV1X1, 1), (space.CONV3X3, 3)):
      conv_params, conv_flops = _conv(channels, channels, kernel, size)
      params_per_op[stage, op] = conv_params + 2 * channels  # + BN scale and shift
      flops_per_op[stage, op] = conv_flops
    if stage > 0:
      previous = config.stage_channels[stage - 1]
      parts = (_conv(previous, channels, 3, size), _conv(channels, channels, 3, size),
               _conv(previous, channels, 1, size))  # conv_a (stride 2), conv_b, shortcut
      fixed_params += sum(p for p, _ in parts) + 2 * 2 * channels  # two BNs
      fixed_flops += sum(f for _, f in parts)
  if config.stem:
    stem_params, stem_flops = _conv(config.in_channels, config.channels, 3, config.resolution)
    fixed_params += stem_params + 2 * config.channels
    fixed_flops += stem_flops
  last = config.stage_channels[-1]
  fixed_params += 2 * last + last * config.num_classes + config.num_classes  # head BN + linear
  fixed_flops += last * config.num_classes + config.num_classes
  n = config.cells_per_stage
  return StageOpTable(params_per_op, fixed_params, n), StageOpTable(flops_per_op, fixed_flops, n)


def params_table(config: NetworkConfig = NB201_CIFAR10) -> StageOpTable:
  """Parameter count as a StageOpTable for networks of shape `config`."""
  return _cost_tables(config)[0]


def flops_table(config: NetworkConfig = NB201_CIFAR10) -> StageOpTable:
  """FLOPs (NB201 rules, batch 1) as a StageOpTable for networks of shape `config`."""
  return _cost_tables(config)[1]


def params(ops, config: NetworkConfig = NB201_CIFAR10) -> np.ndarray:
  """Parameter count of cells `ops: [..., 6]` -> `[...]`."""
  return params_table(config)(ops)


def flops(ops, config: NetworkConfig = NB201_CIFAR10) -> np.ndarray:
  """FLOPs of cells `ops: [..., 6]` -> `[...]`, as NAS-Bench-201 counts them."""
  return flops_table(config)(ops)


def cell_summary(ops) -> dict:
  """The JSON-ready description of one full-size CIFAR-10 cell network `ops: [6]`: index, arch,
  op names, FLOPs (M) and params (M)."""
  return {
      "index": space.index_of(ops),
      "arch": space.format_arch(ops),
      "ops": [space.OPS[op] for op in ops],
      "flops_m": round(float(flops(ops)) / 1e6, 6),
      "params_m": round(float(params(ops)) / 1e6, 6),
  }


def write_space_csv(stream) -> int:
  """Writes all 15,625 cells as CSV rows (index, arch, flops_m, params_m of the CIFAR-10
  network) to a text stream; returns the number of cells."""
  archs = space.all_archs()
  flops_m, params_m = flops(archs) / 1e6, params(archs) / 1e6
  writer = csv.writer(stream)
  writer.writerow(["index", "arch", "flops_m", "params_m"])
  for index, ops in enumerate(archs):
    writer.writerow([index, space.format_arch(ops), f"{flops_m[index]:.6f}",
                     f"{params_m[index]:.6f}"])
  return len(archs)
