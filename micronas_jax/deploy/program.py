"""The deployed network of one fixed cell: its graph (`graph.build`), float forward and arena.

The program is the network's graph itself, in the graph's execution order, which is also the
order of the memory plan PLAN_C (`hardware.memory`): the C code, the arena and the SRAM estimate
follow one order. Every tensor is NHWC of one image (`[h, w, c]`), int8 once quantized; the
logits are int32.
"""
from __future__ import annotations

import numpy as np

from micronas_jax import graph, network
from micronas_jax.graph import IMAGE, LOGITS, Graph, Kind, Node  # noqa: F401 (re-exported)
from micronas_jax.naming import Layer, LayerKind
from micronas_jax.network import NetworkConfig

ALIGN = 4  # arena offsets: word loads of the kernels stay aligned


def build(ops, config: NetworkConfig) -> Graph:
  """The program of cell `ops: [6]` in the network `config` (which must have a stem)."""
  if not config.stem:
    raise ValueError("deployment needs a network with a stem")
  return graph.build(ops, config)


# --- float forward --------------------------------------------------------------------------------


def _conv_float(x, kernel_oihw, bias, stride: int, relu_in: bool):
  if relu_in:
    x = np.maximum(x, 0)
  c_out, _, k, _ = kernel_oihw.shape
  pad = k // 2
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  out = np.broadcast_to(np.asarray(bias, np.float32), (n, oh, ow, c_out)).copy()
  for ky in range(k):
    for kx in range(k):
      window = padded[:, ky:ky + stride * (oh - 1) + 1:stride,
                      kx:kx + stride * (ow - 1) + 1:stride]
      out += window @ kernel_oihw[:, :, ky, kx].T
  return out


def _pool3_float(x):
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  total = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
  return total / network.pool_3x3_counts(h, w)[None, :, :, None]


def conv_weights(weights: dict, node: Node) -> tuple[np.ndarray, np.ndarray]:
  """(OIHW kernel, bias) of a CONV node from `export.folded_weights` (zero bias for the shortcut,
  which has no BN)."""
  entry = weights[node.layers[0]]
  if isinstance(entry, tuple):
    return entry
  return entry, np.zeros(entry.shape[0], np.float32)


def float_forward(program: Graph, weights: dict, images: np.ndarray, visit=None) -> np.ndarray:
  """Float logits `[N, classes]` of normalized `images [N, r, r, c]` through the program with the
  folded float `weights`; `visit(name, tensor)` sees every tensor as it is made (calibration)."""
  tensors = {IMAGE: np.asarray(images, np.float32)}
  last_use = {}
  for i, step in enumerate(program.nodes):
    for name in step.inputs:
      last_use[name] = i
  if visit:
    visit(IMAGE, tensors[IMAGE])
  for i, step in enumerate(program.nodes):
    inputs = [tensors[name] for name in step.inputs]
    if step.kind is Kind.CONV:
      out = _conv_float(inputs[0], *conv_weights(weights, step), step.stride, step.relu_in)
    elif step.kind is Kind.POOL3:
      out = _pool3_float(inputs[0])
    elif step.kind is Kind.POOL2:
      n, h, w, c = inputs[0].shape
      out = inputs[0].reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    elif step.kind is Kind.ADD:
      out = inputs[0] + inputs[1]
    elif step.kind is Kind.ZEROS:
      out = np.zeros((len(images), *program.shapes[step.output]), np.float32)
    else:
      scale, shift = weights[Layer(LayerKind.HEAD_BN)]
      kernel, bias = weights[Layer(LayerKind.CLASSIFIER)]
      bn = inputs[0] * scale + shift
      if visit:
        visit("head/bn", np.maximum(bn, 0))
      out = np.maximum(bn, 0).mean((1, 2)) @ kernel + bias
    tensors[step.output] = out.astype(np.float32)
    if visit:
      visit(step.output, tensors[step.output])
    for name in set(step.inputs):
      if last_use[name] == i:
        del tensors[name]  # calibration batches of the full network would not fit otherwise
  return tensors[LOGITS]


# --- the activation arena -------------------------------------------------------------------------


def lifetimes(program: Graph) -> dict[str, tuple[int, int]]:
  """(first, last) node index during which each tensor must exist; the image exists from -1."""
  return graph.lifetimes(program.nodes, (IMAGE,))


def _first_fit(program: Graph, span: dict, order: list[str]) -> dict[str, int]:
  offsets: dict[str, int] = {}
  for name in order:
    first, last = span[name]
    busy = sorted((offsets[o], offsets[o] + program.size(o)) for o in offsets
                  if span[o][0] <= last and first <= span[o][1])
    offset = 0
    for start, end in busy:
      if offset + program.size(name) <= start:
        break
      offset = max(offset, -(-end // ALIGN) * ALIGN)
    offsets[name] = offset
  return offsets


def plan_arena(program: Graph) -> tuple[dict[str, int], int]:
  """Offsets of every tensor in one arena and its size in bytes.

  Each tensor goes to the lowest aligned offset that overlaps no tensor already placed whose
  lifetime overlaps its own, in three orders: largest first (TFLite Micro's
  GreedyMemoryPlanner; ties by first use, or by last use, latest first) and by first use; the
  smallest arena wins. Either can leave gaps that the live-tensor peak does
  not count (`peak_live_bytes`, the estimate); the tests and the benchmark compare the two.
  """
  span = lifetimes(program)
  orders = (sorted(span, key=lambda name: (-program.size(name), span[name][0])),
            sorted(span, key=lambda name: (-program.size(name), -span[name][1])),
            sorted(span, key=lambda name: (span[name][0], -program.size(name))))
  plans = [_first_fit(program, span, order) for order in orders]
  sizes = [max(o[name] + program.size(name) for name in o) for o in plans]
  best = int(np.argmin(sizes))
  return plans[best], sizes[best]


def peak_live_bytes(program: Graph) -> int:
  """The largest total of tensors live at once: the arena's lower bound."""
  return graph.peak_live_bytes(program.nodes, program.size, (IMAGE,))
