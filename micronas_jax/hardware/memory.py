"""Peak SRAM and flash of an NB201 network deployed with int8 tensors, batch 1: passes over its
graph (`graph.py`) under a memory plan.

Peak SRAM is the maximum, over the execution order, of the bytes of all live tensors (int8: one
byte per element), plus the runtime's own SRAM (the LUT states it). A tensor lives from the step
that produces it to its last consumer. The order is the one a runtime that runs one op at a time
follows (TFLite Micro; no op works in place):
  stem       conv (BN folded)
  cell       edges in benchmark order; a conv edge = ReLU then conv (the ReLU cannot be fused into
             the producer, since the node also feeds skip and pool edges), a pool edge = pool, a
             skip edge reuses its input; the node sum adds each edge's output to the running sum
             as soon as it exists (binary adds, as `a + b + c` exports). A node with no inputs is a
             zero tensor, made when first read. The cell's input lives until its last edge.
  reduction  ReLU, conv_a (ReLU fused), conv_b; then the shortcut: 2x2 avg pool and 1x1 conv of
             the block input, which therefore lives through conv_a and conv_b; then the add
  head       BN (a per-channel affine), ReLU, global average pool, linear
Every tensor inside one cell has the shape of that stage, so a cell's peak is (live tensors) x
(tensor bytes); cells of a stage are identical, so one cell per stage gives the peak.

Flash: int8 weights and int32 biases, BN folded into the conv before it (the 1x1 shortcut conv has
no BN, hence no bias; the head BN follows an add, so it stays a per-channel int8 scale and int32
shift), plus the runtime's flash (from the LUT).

With `dead_code=True` the edges a dead-code-removing runtime drops are left out (see
`graph.dead_code_cost`), and a network whose cell output is unreachable is one constant: the logits.

`plan` names the runtime whose code the estimate follows: PLAN_TFLM (above, the default) or
PLAN_C, the package's own int8 C library (`micronas_jax.deploy`, kernels in `micronas_jax.runtime`). It
differs in three ways, each because its code does: a conv applies the ReLU while it reads its
input (im2col), so no ReLU tensor exists; the head (BN, ReLU, pool, linear) is one kernel whose
only tensor is the int32 logits; and every conv stores, besides its int8 weights, an int32 bias,
multiplier and shift per output channel (the 1x1 shortcut too: the kernel reads a bias), while
the head stores its BN as int32 scale and shift per channel plus one multiplier and shift.
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence

import numpy as np

from micronas_jax import graph, space
from micronas_jax.graph import Block, Kind, Node, StageOpTable
from micronas_jax.network import NB201_CIFAR10, NetworkConfig
from micronas_jax.runtime import params as runtime_params

BIAS_BYTES = 4  # int32
PLAN_TFLM, PLAN_C = "tflm", "micronas-c"
PLANS = (PLAN_TFLM, PLAN_C)
# What the C runtime stores per conv output channel and for its head: its parameter types'.
C_CHANNEL_BYTES = runtime_params.CONV_CHANNEL_BYTES
C_HEAD_SCALAR_BYTES = runtime_params.HEAD_SCALAR_BYTES


def _check_plan(plan: str) -> None:
  if plan not in PLANS:
    raise ValueError(f"Unknown memory plan {plan!r}; known: {', '.join(PLANS)}")


def _reading(node: Node, inputs: tuple[str, ...]) -> Node:
  """`node` reading `inputs` instead (a shallow copy: `dataclasses.replace` re-runs the
  constructor, the most of this module's time over the whole space)."""
  moved = copy.copy(node)
  object.__setattr__(moved, "inputs", inputs)
  return moved


# Ops whose fused activation the TFLite converter turns a following ReLU into.
_FUSES_RELU = (Kind.CONV, Kind.ADD, Kind.ZEROS, Kind.POOL3, Kind.POOL2)


def planned_nodes(nodes: Sequence[Node], shapes: Mapping[str, tuple[int, ...]],
                  plan: str = PLAN_TFLM) -> tuple[list[Node], dict[str, tuple[int, ...]]]:
  """The tensors a runtime of memory plan `plan` makes for graph `nodes`, in its order, and the
  shapes of all of them (`shapes` holds those of `nodes` and their inputs).

  PLAN_C runs the graph's own nodes. PLAN_TFLM makes the ops of the int8 `.tflite` that
  TensorFlow's converter writes for the network (`deploy.tflite`; checked op by op in the tests):
    - one RELU tensor per tensor read through a ReLU, made before its first reader and shared
      by all of them, unless every reader reads it through the ReLU and its producer is a CONV,
      ADD, pool or ZEROS' MUL: the converter then fuses the ReLU into that producer;
    - a PAD tensor (`kernel // 2` on each side) before a strided conv, whose symmetric padding
      TFLite's asymmetric SAME cannot express;
    - the head as four ops: BN as a per-channel MUL, its shift as an ADD with the ReLU fused
      (kinds BN and RELU here), the global pool as SUM (GLOBAL_POOL) and the linear layer
      (LINEAR), each with its own int8 tensor; the first two folded into the last cell's conv
      where that conv feeds only the head;
    - a ZEROS node as a MUL by 0 of the latest tensor of its shape, as `export` writes it;
    - one pool (or zeros) per tensor: the converter merges identical ops on one tensor.
  """
  _check_plan(plan)
  shapes = dict(shapes)
  if plan == PLAN_C:
    return list(nodes), shapes
  producers = {node.output: node for node in nodes}
  # A ZEROS node is exported as 0 x the latest tensor of its shape (no activation-sized
  # constant in the file), which the converter keeps: x * 0 is not 0 for every float.
  latest = {shape: name for name, shape in shapes.items() if name not in producers}
  alias: dict[str, str] = {}  # a pool's (or zeros') output -> the same op's of that tensor
  merged: dict[tuple, str] = {}
  resolved = []
  for node in nodes:
    if node.kind is Kind.ZEROS:
      node = _reading(node, (latest[node.shape],))
    latest[node.shape] = node.output
    inputs = tuple(alias.get(name, name) for name in node.inputs)
    if node.kind in (Kind.POOL3, Kind.POOL2, Kind.ZEROS):
      key = (node.kind, inputs)
      if key in merged:
        alias[node.output] = merged[key]
        continue
      merged[key] = node.output
    resolved.append(_reading(node, inputs) if inputs != node.inputs else node)
  nodes = resolved
  readers: dict[str, list[bool]] = {}  # tensor -> per reading, whether through a ReLU
  for node in nodes:
    for position, name in enumerate(node.inputs):
      readers.setdefault(name, []).append(node.relu_in and position == 0)
  fused = {name for name, through_relu in readers.items()
           if all(through_relu) and name in producers
           and producers[name].kind in _FUSES_RELU}
  rectified: dict[str, str] = {}
  planned = []

  def add(kind, name, inputs, shape, node, **fields):
    planned.append(Node(kind, name, inputs, shape, block=node.block, stage=node.stage,
                        cell=node.cell, edge=node.edge, **fields))
    shapes[name] = shape
    return name

  for node in nodes:
    inputs = list(node.inputs)
    if node.relu_in and inputs[0] not in fused:
      source = inputs[0]
      if source not in rectified:
        rectified[source] = add(Kind.RELU, f"{source}:relu", (source,), shapes[source], node)
      inputs[0] = rectified[source]
    if node.kind is Kind.CONV and node.stride > 1 and node.kernel > 1:
      h, w, c = shapes[inputs[0]]
      pad = 2 * (node.kernel // 2)
      inputs[0] = add(Kind.PAD, f"{node.output}:pad", (inputs[0],), (h + pad, w + pad, c), node)
    if node.kind is Kind.HEAD:
      source = inputs[0]
      channels = shapes[source][-1]
      parts = [(Kind.BN, shapes[source]), (Kind.RELU, shapes[source]),
               (Kind.GLOBAL_POOL, (channels,)), (Kind.LINEAR, node.shape)]
      if producers.get(source) is not None and producers[source].kind is Kind.CONV and len(
          readers[source]) == 1:
        parts = parts[2:]  # the converter folds BN and ReLU into the conv that feeds only it
      for kind, shape in parts:
        name = node.output if kind is Kind.LINEAR else f"{node.output}:{kind.value}"
        source = add(kind, name, (source,), shape, node)
      continue
    planned.append(_reading(node, tuple(inputs)) if tuple(inputs) != node.inputs else node)
  return planned, shapes


def planned_peak(nodes: Sequence[Node], shapes: Mapping, inputs: Sequence[str],
                 outputs: Sequence[str], plan: str = PLAN_TFLM, unit: bool = False) -> int:
  """Peak live bytes (`graph.peak_live_bytes`) of `nodes` run under `plan`, from `inputs` to
  `outputs`; with `unit` every tensor counts 1 (a count of tensors)."""
  planned, shapes = planned_nodes(nodes, shapes, plan)
  element = {node.output: node.element_bytes for node in planned}
  size = ((lambda name: 1) if unit else
          (lambda name: int(np.prod(shapes[name])) * element.get(name, 1)))
  return graph.peak_live_bytes(planned, size, inputs, outputs)


@functools.lru_cache(maxsize=None)
def _cell_live_tensors(ops: tuple[int, ...], plan: str) -> int:
  nodes, output = graph.cell_nodes(ops, (1, 1, 1), "n0")
  shapes = {"n0": (1, 1, 1), **{node.output: node.shape for node in nodes}}
  return planned_peak(nodes, shapes, ("n0",), (output,), plan, unit=True)


def cell_live_tensors(ops, plan: str = PLAN_TFLM) -> np.ndarray:
  """Most tensors live at once inside one cell, for op indices `[..., 6]` (DROPPED allowed) ->
  `[...]` (int): every tensor of a cell has the stage's shape, so this times the tensor's bytes
  is the cell's peak."""
  _check_plan(plan)
  ops = np.asarray(ops)
  flat = ops.reshape(-1, space.NUM_EDGES)
  counts = [_cell_live_tensors(tuple(int(op) for op in row), plan) for row in flat]
  return np.asarray(counts, np.int64).reshape(ops.shape[:-1])


def fixed_peaks(config: NetworkConfig, plan: str = PLAN_TFLM) -> dict[str, int]:
  """Peak bytes of the stem, each reduction block and the head (no stem entry without one)."""
  nodes, shapes = graph.fixed_nodes(config)
  peaks = {}
  for key, block, stage in ([("stem", Block.STEM, 0)] if config.stem else []) + [
      (f"reduction{stage}", Block.REDUCTION, stage) for stage in range(1, config.num_stages)] + [
      ("head", Block.HEAD, config.num_stages - 1)]:
    part = [node for node in nodes if node.block is block and node.stage == stage]
    written = {node.output for node in part}
    inputs = tuple(dict.fromkeys(name for node in part for name in node.inputs
                                 if name not in written))
    peaks[key] = planned_peak(part, shapes, inputs, (part[-1].output,), plan)
  return peaks


def peak_sram(archs, config: NetworkConfig = NB201_CIFAR10, runtime_bytes: int = 0,
              dead_code: bool = False, plan: str = PLAN_TFLM) -> np.ndarray:
  """Peak SRAM in bytes of cells `archs: [..., 6]` -> `[...]` (int64), runtime included."""
  tensor_bytes = np.array([c * r * r for c, r in zip(config.stage_channels,
                                                      config.stage_resolutions)], np.int64)
  fixed = max(fixed_peaks(config, plan).values())

  def peak(executed):
    cells = cell_live_tensors(executed, plan)[..., None] * tensor_bytes
    return np.maximum(cells.max(-1), fixed)

  return graph.dead_code_cost(archs, dead_code, peak, config.num_classes) + runtime_bytes


def node_flash(node: Node, shapes: Mapping, plan: str = PLAN_TFLM) -> int:
  """Flash bytes of the weights one node reads under `plan` (module docstring)."""
  channel = C_CHANNEL_BYTES if plan == PLAN_C else BIAS_BYTES  # per conv output channel
  if node.kind is Kind.CONV:
    c_in, c_out = shapes[node.inputs[0]][-1], node.shape[-1]
    # The 1x1 shortcut has no BN, so no bias for TFLite; the C kernel reads one (zeros).
    per_channel = channel if node.layers[0].has_batch_norm or plan == PLAN_C else 0
    return node.kernel * node.kernel * c_in * c_out + per_channel * c_out
  if node.kind is Kind.HEAD:
    last, classes = shapes[node.inputs[0]][-1], node.shape[0]
    if plan == PLAN_C:
      head_bn = 2 * BIAS_BYTES * last + C_HEAD_SCALAR_BYTES  # int32 scale and shift
    else:
      head_bn = (1 + BIAS_BYTES) * last  # int8 scale, int32 shift
    return head_bn + last * classes + BIAS_BYTES * classes  # + linear
  return 0


@functools.lru_cache(maxsize=None)
def flash_table(config: NetworkConfig = NB201_CIFAR10, plan: str = PLAN_TFLM) -> StageOpTable:
  """Flash bytes of the weights as a StageOpTable over op indices 0..5 (5 = dropped edge),
  derived from the graph (`node_flash`)."""
  _check_plan(plan)
  return graph.stage_op_table(config, functools.partial(node_flash, plan=plan),
                              dropped_column=True)


def flash_of(network: graph.Graph, plan: str = PLAN_TFLM) -> int:
  """Flash bytes of the weights of a whole graph: the sum of `node_flash`."""
  return sum(node_flash(node, network.shapes, plan) for node in network.nodes)


def flash(archs, config: NetworkConfig = NB201_CIFAR10, runtime_bytes: int = 0,
          dead_code: bool = False, plan: str = PLAN_TFLM) -> np.ndarray:
  """Flash in bytes of cells `archs: [..., 6]` -> `[...]` (int64): weights, biases, runtime."""
  table = flash_table(config, plan)
  weights = graph.dead_code_cost(archs, dead_code, lambda ops: table(ops).astype(np.int64),
                                 config.num_classes)
  return weights + runtime_bytes
