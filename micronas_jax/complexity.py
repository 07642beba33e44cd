"""FLOPs and parameters of NB201 networks, by NAS-Bench-201's own counting rules.

NAS-Bench-201 measures cost with the FLOP counter of its code (AutoDL-Projects,
`utils/flop_benchmark.py`), which sums only Conv2d and Linear modules:
  conv:   k*k * C_in * C_out * H_out * W_out   (+ C_out * H_out * W_out with a bias; ours have none)
  linear: in * out + out
Pooling, BN, ReLU and additions count zero FLOPs. Parameters are every learnable tensor: conv
kernels, BN scale and shift (2C), the linear weight and bias. Figures are for one input (batch 1).

Both are passes over the network's graph (`graph.py`): `node_flops` and `node_params` price one
node, `flops_of` and `params_of` sum a graph. Every cell of a network has the same ops, so the
whole-space tables (`flops_table`, `params_table`) are derived from the graph of one cell per op
(`graph.stage_op_table`); the tests hold them equal to the graph pass.
"""
from __future__ import annotations

import csv
import functools
from collections.abc import Mapping

import numpy as np

from micronas_jax import graph, space
from micronas_jax.graph import Kind, Node, StageOpTable  # noqa: F401 (StageOpTable re-exported)
from micronas_jax.network import NB201_CIFAR10, NetworkConfig


def _conv_weights(node: Node, shapes: Mapping) -> int:
  return node.kernel * node.kernel * shapes[node.inputs[0]][-1] * node.shape[-1]


def node_flops(node: Node, shapes: Mapping) -> int:
  """FLOPs of one node by NB201's rules; `shapes` holds the shapes of the tensors it reads."""
  if node.kind is Kind.CONV:
    height, width, _ = node.shape
    return _conv_weights(node, shapes) * height * width
  if node.kind is Kind.HEAD:
    channels, classes = shapes[node.inputs[0]][-1], node.shape[0]
    return channels * classes + classes  # the linear layer
  return 0


def node_params(node: Node, shapes: Mapping) -> int:
  """Learnable parameters one node reads: conv kernel (+ BN scale and shift), head BN + linear."""
  if node.kind is Kind.CONV:
    batch_norm = 2 * node.shape[-1] if node.layers[0].has_batch_norm else 0
    return _conv_weights(node, shapes) + batch_norm
  if node.kind is Kind.HEAD:
    channels, classes = shapes[node.inputs[0]][-1], node.shape[0]
    return 2 * channels + channels * classes + classes
  return 0


def flops_of(network: graph.Graph) -> int:
  """FLOPs of a whole graph: the sum of `node_flops`."""
  return sum(node_flops(node, network.shapes) for node in network.nodes)


def params_of(network: graph.Graph) -> int:
  """Parameters of a whole graph: the sum of `node_params`."""
  return sum(node_params(node, network.shapes) for node in network.nodes)


@functools.lru_cache(maxsize=None)
def _cost_tables(config: NetworkConfig) -> tuple[StageOpTable, StageOpTable]:
  return (graph.stage_op_table(config, node_params), graph.stage_op_table(config, node_flops))


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
