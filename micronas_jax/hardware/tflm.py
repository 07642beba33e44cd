"""TensorFlow Lite Micro's tensor arena for a network, from its graph alone: no TensorFlow needed.

TFLM lays out one arena per model (TFLM's `MicroAllocator`):
  head  the activations and the kernels' scratch buffers, placed by TFLM's default memory
        planner (`GreedyMemoryPlanner`); what is not live at the same time shares bytes;
  tail  what persists for the model's life: one `TfLiteEvalTensor` per tensor (constants too),
        one node-and-registration struct per op, each op's builtin options and kernel data
        (per-channel requantization multipliers and shifts), and the interpreter's own structs.

`arena(ops, config)` models both for the `.tflite` that `deploy --format tflite` writes: the
converter's ops and tensors (`memory.planned_nodes`, plan PLAN_TFLM), each buffer rounded up to
TFLM's 16-byte alignment, placed the way the greedy planner places them (largest first, each at
the lowest offset free for its whole lifetime), plus the tail's bytes per tensor and per op.

TARGETS are the builds it models: "host", the 64-bit build of the `tflite-micro` package with
TFLM's reference kernels, which the tests and `benchmarks/deploy_formats.py` measure byte for
byte; and "cortex-m", a 32-bit Cortex-M build with CMSIS-NN kernels: 32-bit pointers in the tail
(struct sizes derived for the 32-bit ABI, not measured) and CMSIS-NN's convolution scratch
buffers in the head. Left out: the interpreter's code (flash), its stack, and buffers a
deployment places outside the arena.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import numpy as np

from micronas_jax import graph
from micronas_jax.graph import Block, Kind, Node
from micronas_jax.hardware import memory
from micronas_jax.network import NetworkConfig

HOST, CORTEX_M = "host", "cortex-m"
TARGETS = (HOST, CORTEX_M)
ALIGNMENT = 16  # TFLM's kBufferAlignment: every planned buffer starts and ends on it


def align(size: int, alignment: int = ALIGNMENT) -> int:
  """`size` rounded up to a multiple of `alignment`."""
  return -(-int(size) // alignment) * alignment


@dataclasses.dataclass(frozen=True)
class Op:
  """One operator of the converted model.

  Attributes:
    builtin: TFLite's builtin op name (CONV_2D, ...).
    inputs: the activation tensors it reads; output: the one it writes.
    node: the planned node it comes from.
  """
  builtin: str
  inputs: tuple[str, ...]
  output: str
  node: Node


_BUILTINS = {
    Kind.ZEROS: "MUL", Kind.CONV: "CONV_2D", Kind.POOL3: "AVERAGE_POOL_2D",
    Kind.POOL2: "AVERAGE_POOL_2D", Kind.ADD: "ADD", Kind.RELU: "RELU", Kind.PAD: "PAD",
    Kind.BN: "MUL", Kind.GLOBAL_POOL: "SUM", Kind.LINEAR: "FULLY_CONNECTED",
}


def converter_ops(network: graph.Graph) -> tuple[list[Op], dict[str, tuple[int, ...]]]:
  """The ops of the `.tflite` of `network`, in execution order, and the shape of every
  activation tensor (the image's and each op's output)."""
  return _lowered(network.nodes, network.shapes)


def _builtin(node: Node) -> str:
  # The head's ReLU is its BN shift: an ADD of a constant with the ReLU fused.
  if node.kind is Kind.RELU and node.block is Block.HEAD:
    return "ADD"
  return _BUILTINS[node.kind]


@dataclasses.dataclass(frozen=True)
class Buffer:
  """A buffer of the head: `size` bytes (aligned) live from op `first` to op `last` inclusive."""
  size: int
  first: int
  last: int


def greedy_plan(buffers: Sequence[Buffer]) -> list[int]:
  """The offset of each buffer as TFLM's greedy memory planner places them: in order of
  decreasing size (of equal sizes, the later one first), each at the lowest offset where it
  overlaps no already placed buffer that is live at the same time."""
  order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, -i))
  offsets = [0] * len(buffers)
  placed: list[int] = []
  for i in order:
    buffer = buffers[i]
    taken = sorted((offsets[j], offsets[j] + buffers[j].size) for j in placed
                   if buffers[j].first <= buffer.last and buffer.first <= buffers[j].last)
    offset = 0
    for start, end in taken:
      if start - offset >= buffer.size:
        break
      offset = max(offset, end)
    offsets[i] = offset
    placed.append(i)
  return offsets


def head_buffers(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]],
                 target: str = HOST) -> list[Buffer]:
  """The head's buffers: every activation tensor (the image from before the first op, the
  logits to the end) and each op's scratch buffers (live during that op only)."""
  _check_target(target)
  span = graph.lifetimes([op.node for op in ops], (graph.IMAGE,), (graph.LOGITS,))
  buffers = [Buffer(align(np.prod(shapes[name])), max(first, 0), last)
             for name, (first, last) in span.items()]
  for i, op in enumerate(ops):
    buffers += [Buffer(align(size), i, i) for size in scratch_bytes(op, shapes, target)]
  return buffers


def scratch_bytes(op: Op, shapes: Mapping[str, tuple[int, ...]], target: str = HOST) -> list[int]:
  """The scratch buffers (bytes, in request order) op `op` asks TFLM for on `target`."""
  if op.builtin == "SUM":
    # The int8 reduction: an int32 accumulator per output element, the input's index
    # iterator (4 bytes per input dimension, batch included) and the reduced axes.
    rank, axes = len(shapes[op.inputs[0]]) + 1, 2
    return [4 * int(np.prod(shapes[op.output])), 4 * rank, 4 * axes]
  if target != CORTEX_M:
    return []  # the reference int8 kernels of every other op ask for none
  if op.builtin == "CONV_2D":
    c_in = shapes[op.inputs[0]][-1]
    kernel = op.node.kernel
    if kernel == 1:
      return []  # CMSIS-NN's 1x1 kernels read the input in place (GCC build)
    # arm_convolve_s8 on a DSP core: two im2col columns as int16, padded to 4 elements.
    return [2 * align(kernel * kernel * c_in, 4) * 2]
  if op.builtin == "AVERAGE_POOL_2D":
    return [4 * shapes[op.output][-1]]  # arm_avgpool_s8: an int32 sum per channel
  return []


# Where the tail's numbers come from: each struct's size and alignment, for the 64-bit host
# wheel (`tflite-micro`, built with compression, recording allocator, reference kernels; every
# total checked against its recording allocator) and for a 32-bit Cortex-M7 build
# (arm-none-eabi-g++ 12.2 on TFLM's headers, short enums, no compression, the plain allocator
# and CMSIS-NN's kernels; derived, not measured). Sources: tensorflow/tflite-micro @90b983c
# (micro_allocator.cc, single_arena_buffer_allocator.cc, the kernels' Init and Prepare), and
# the host wheel of 2026-10-23 for the fully connected params (32 bytes, aligned 8).
_STRUCTS = {
    HOST: dict(
        allocators=((104, 8), (72, 8), (272, 8)),  # recording arena, planner, allocator
        builtin_allocator=(16, 8), subgraph=(24, 8), eval_tensor=(24, 8), node=(64, 8),
        tensor=(64, 8), quantization=(24, 8), scratch_handle=(8, 8), pointer=8,
        params={"CONV_2D": (28, 4), "AVERAGE_POOL_2D": (40, 4), "ADD": (8, 4),
                "MUL": (4, 4), "FULLY_CONNECTED": (32, 8), "SUM": (1, 1)},
        op_data={"CONV_2D": 80, "FULLY_CONNECTED": 72, "ADD": 60, "MUL": 36,
                 "AVERAGE_POOL_2D": 32, "SUM": 44, "RELU": 28, "PAD": 56}),
    CORTEX_M: dict(
        allocators=((36, 4), (44, 4), (36, 4)),  # arena, planner, allocator
        builtin_allocator=(8, 4), subgraph=(8, 4), eval_tensor=(12, 4), node=(32, 4),
        tensor=(32, 4), quantization=(12, 4), scratch_handle=(4, 4), pointer=4,
        params={"CONV_2D": (28, 4), "AVERAGE_POOL_2D": (40, 4), "ADD": (2, 1),
                "MUL": (1, 1), "FULLY_CONNECTED": (16, 4), "SUM": (1, 1)},
        # CMSIS-NN's own op data for conv, FC, add and pool; MUL, PAD, RELU, SUM reference.
        op_data={"CONV_2D": 60, "FULLY_CONNECTED": 72, "ADD": 60, "MUL": 36,
                 "AVERAGE_POOL_2D": 36, "SUM": 44, "RELU": 28, "PAD": 56}),
}


def constant_tensors(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]]) -> int:
  """The constant tensors of the converted model (`_op_constants` and the shared ones)."""
  return sum(len(_op_constants(op, shapes)) for op in ops) + _shared_tensors(ops) - 1


def _interpreter_allocations(structs: dict) -> list[tuple[str, int, int]]:
  """The allocator objects the interpreter places in the arena first."""
  made = [("allocator", size, alignment) for size, alignment in structs["allocators"]]
  return made + [("builtin data allocator", *structs["builtin_allocator"]),
                 ("subgraph allocations", *structs["subgraph"])]


def _shared_tensors(ops: Sequence[Op]) -> int:
  """Tensors that are no one op's: the image, the paddings all PADs share and the 0 all
  ZEROS' MULs share (the converter writes equal constants once)."""
  return (1 + any(op.builtin == "PAD" for op in ops)
          + any(op.node.kind is Kind.ZEROS for op in ops))


def _io_allocations(structs: dict) -> list[tuple[str, int, int]]:
  """The `TfLiteTensor`s of the model's input and output, made last."""
  made = []
  for what in ("input", "output"):
    made += [(f"{what} tensor pointer", structs["pointer"], ALIGNMENT),
             (f"{what} TfLiteTensor", *structs["tensor"]),
             (f"{what} quantization", *structs["quantization"]),
             (f"{what} zero points", 4 + 4, 4)]  # TfLiteIntArray of one (per-tensor) zero point
  return made


# The order in which TFLM makes the persistent allocations of the ops: the eval tensors and
# the nodes as one array each, then every op's builtin params, then every kernel's op data
# (Init), then the per-channel multipliers and shifts (Prepare), then the scratch handles (one
# array).
_PHASES = ("eval tensors", "nodes", "params", "op data", "per channel", "scratch handles")
_ARRAYS = ("eval tensors", "nodes", "scratch handles")


def _op_allocations(op: Op, shapes: Mapping[str, tuple[int, ...]], target: str,
                    structs: dict) -> dict[str, list[tuple[str, int, int]]]:
  """The persistent allocations one op makes, by phase (`_PHASES`): its output's and
  constants' eval tensors, its node, builtin params, kernel op data, per-channel multipliers
  and shifts, scratch handles."""
  size, alignment = structs["eval_tensor"]
  made = {phase: [] for phase in _PHASES}
  made["eval tensors"].append(
      ("TfLiteEvalTensor data", size * (1 + len(_op_constants(op, shapes))), alignment))
  made["nodes"].append(("NodeAndRegistration struct", *structs["node"]))
  if op.builtin in structs["params"]:
    made["params"].append((f"{op.builtin} params", *structs["params"][op.builtin]))
  made["op data"].append((f"{op.builtin} op data", structs["op_data"][op.builtin], ALIGNMENT))
  if op.builtin in ("CONV_2D", "FULLY_CONNECTED"):
    # CONV always per channel; FC when its weights are (the converter quantizes them so).
    channels = shapes[op.output][-1]
    made["per channel"] += [(f"{op.builtin} multipliers", 4 * channels, ALIGNMENT),
                            (f"{op.builtin} shifts", 4 * channels, ALIGNMENT)]
  handles = len(scratch_bytes(op, shapes, target))
  if handles:
    size, alignment = structs["scratch_handle"]
    made["scratch handles"].append(("scratch buffer handles", size * handles, alignment))
  return made


def tail_allocations(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]],
                     target: str = HOST) -> list[tuple[str, int, int]]:
  """TFLM's persistent allocations for the model, in the order it makes them: (what, bytes,
  alignment). The interpreter's allocator objects; the ops' allocations phase by phase
  (`_PHASES`; the eval tensors, the nodes and the scratch handles each one array, the image's
  and the shared constants' eval tensors included); and a `TfLiteTensor` with its
  quantization for the model's input and output.
  """
  _check_target(target)
  structs = _STRUCTS[target]
  per_op = [_op_allocations(op, shapes, target, structs) for op in ops]
  tensor_size, tensor_alignment = structs["eval_tensor"]
  shared = [("TfLiteEvalTensor data", tensor_size * _shared_tensors(ops), tensor_alignment)]
  made = _interpreter_allocations(structs)
  for phase in _PHASES:
    allocations = (shared if phase == "eval tensors" else []) + [
        allocation for op_made in per_op for allocation in op_made[phase]]
    if phase in _ARRAYS and allocations:
      name, _, alignment = allocations[0]
      allocations = [(name, sum(size for _, size, _ in allocations), alignment)]
    made += allocations
  return made + _io_allocations(structs)


def tail_bytes(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]],
               target: str = HOST) -> int:
  """Bytes of the tail: the allocations of `tail_allocations`, each placed below the last and
  its start aligned down, from an arena end aligned to 16."""
  used = 0
  for _, size, alignment in tail_allocations(ops, shapes, target):
    used = align(used + size, alignment)
  return used


def _check_target(target: str) -> None:
  if target not in TARGETS:
    raise ValueError(f"Unknown TFLM target {target!r}; known: {', '.join(TARGETS)}")


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
  """The modelled arena in bytes: `head` (planned activations and scratch), `tail`
  (persistent), `total` = head + tail; `tensors` and `ops` of the model counted;
  `file_bytes`, the size of the `.tflite` without names (`file_bytes`)."""
  head: int
  tail: int
  total: int
  tensors: int
  ops: int
  file_bytes: int

  def to_dict(self) -> dict:
    """As JSON-ready data."""
    return dataclasses.asdict(self)


def head_bytes(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]],
               target: str = HOST) -> int:
  """Bytes of the head as the greedy planner lays it out: the end of its highest buffer."""
  buffers = head_buffers(ops, shapes, target)
  offsets = greedy_plan(buffers)
  return max((offset + buffer.size for offset, buffer in zip(offsets, buffers)), default=0)


def arena(ops, config: NetworkConfig, target: str = HOST) -> ArenaEstimate:
  """The modelled TFLM arena of the `.tflite` of cell `ops: [6]` in network `config`, dead code
  removed as the converter does, on `target`. Raises ValueError for a network whose output
  is a constant (`deploy` writes no model of it)."""
  network = graph.build(ops, config, dead_code=True)
  if network.constant:
    raise ValueError("the network is a constant (its output does not depend on its input): "
                     "there is no model to run")
  converted, shapes = converter_ops(network)
  head = head_bytes(converted, shapes, target)
  tail = tail_bytes(converted, shapes, target)
  tensors = 1 + len(converted) + constant_tensors(converted, shapes)
  return ArenaEstimate(head, tail, head + tail, tensors, len(converted),
                       file_bytes(converted, shapes))


# --- the .tflite file -------------------------------------------------------------------------

# The flatbuffer's own bytes beside the constants' data and quantization arrays, measured on
# the converter's files once names are stripped (`deploy.tflite.without_names`): a tensor's
# table, shape, quantization table and buffer entry; an operator's table and index vectors; the
# model's fixed tables (operator codes, metadata). `benchmarks/deploy_formats.py` checks them
# on cells they were not measured on.
FILE_BYTES_PER_TENSOR, FILE_BYTES_PER_OP, FILE_BYTES_FIXED = 88, 32, 600
# Per quantization scale: a float32 scale and an int64 zero point.
FILE_BYTES_PER_SCALE = 4 + 8


def _op_constants(op: Op, shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[int, int]]:
  """(data bytes, quantization scales) of each constant tensor op `op` reads: int8 weights
  per output channel and an int32 bias for CONV and FC, an int8 per-channel operand for the
  head's MUL and ADD, SUM's int32 axes (not quantized). A ZEROS node's scalar 0 and PAD's
  paddings are shared by all such ops (`_shared_tensors`)."""
  out = shapes[op.output][-1]
  if op.builtin == "CONV_2D":
    c_in = shapes[op.inputs[0]][-1]
    return [(op.node.kernel ** 2 * c_in * out, out), (4 * out, out)]
  if op.builtin == "FULLY_CONNECTED":
    return [(shapes[op.inputs[0]][-1] * out, out), (4 * out, out)]
  if op.node.kind is Kind.ZEROS:
    return []  # its scalar 0 is shared (`_shared_tensors`)
  if op.builtin == "MUL" or (op.builtin == "ADD" and op.node.block is Block.HEAD):
    return [(out, 1)]
  if op.builtin == "SUM":
    return [(4 * 2, 0)]
  return []


def _op_file_bytes(op: Op, shapes: Mapping[str, tuple[int, ...]]) -> int:
  constants = _op_constants(op, shapes)
  return (FILE_BYTES_PER_OP + FILE_BYTES_PER_TENSOR * (1 + len(constants))
          + FILE_BYTES_PER_SCALE * (1 + sum(scales for _, scales in constants))
          + sum(align(data) for data, _ in constants))


def _shared_file_bytes(ops: Sequence[Op]) -> int:
  """The fixed tables, the image tensor and the constants ops share (`_shared_tensors`)."""
  image = FILE_BYTES_PER_TENSOR + FILE_BYTES_PER_SCALE
  paddings = FILE_BYTES_PER_TENSOR + align(4 * 4 * 2)  # int32 [4, 2]
  zero = FILE_BYTES_PER_TENSOR + FILE_BYTES_PER_SCALE + align(1)  # int8 scalar
  return (FILE_BYTES_FIXED + image + paddings * any(op.builtin == "PAD" for op in ops)
          + zero * any(op.node.kind is Kind.ZEROS for op in ops))


def file_bytes(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]]) -> int:
  """Bytes of the `.tflite` without names (what flash holds of the model): each constant's
  data padded to 16 bytes, a scale and zero point per quantization channel, and the tables."""
  return _shared_file_bytes(ops) + sum(_op_file_bytes(op, shapes) for op in ops)


# --- the whole space at once, for the search -------------------------------------------------


def _bytes(allocations) -> int:
  return sum(align(size, alignment) for _, size, alignment in allocations)


def _op_tail_bytes(op: Op, shapes: Mapping, target: str, structs: dict) -> int:
  """One op's tail allocations, each rounded up to its alignment alone."""
  return sum(_bytes(made) for made in _op_allocations(op, shapes, target, structs).values())


def _lowered(nodes: Sequence[Node], shapes: Mapping) -> tuple[list[Op], dict]:
  planned, shapes = memory.planned_nodes(nodes, shapes, memory.PLAN_TFLM)
  return [Op(_builtin(node), node.inputs, node.output, node) for node in planned], shapes


@functools.cache
def _cell_costs(ops: tuple[int, ...], shape: tuple[int, int, int], stage: int,
                target: str) -> tuple[int, int]:
  """(tail, file) bytes of one cell's ops, lowered alone."""
  nodes, _ = graph.cell_nodes(ops, shape, "n0", stage)
  converted, shapes = _lowered(nodes, {"n0": shape, **{node.output: node.shape
                                                        for node in nodes}})
  structs = _STRUCTS[target]
  return (sum(_op_tail_bytes(op, shapes, target, structs) for op in converted),
          sum(_op_file_bytes(op, shapes) for op in converted))


@functools.cache
def _fixed_costs(config: NetworkConfig, target: str) -> tuple[int, int]:
  """(tail, file) bytes of everything outside the cells."""
  nodes, shapes = graph.fixed_nodes(config)
  converted, shapes = _lowered(nodes, shapes)
  structs = _STRUCTS[target]
  tensor_size, tensor_alignment = structs["eval_tensor"]
  shared = [("shared tensors", tensor_size * _shared_tensors(converted), tensor_alignment)]
  tail = (_bytes(_interpreter_allocations(structs) + shared + _io_allocations(structs))
          + sum(_op_tail_bytes(op, shapes, target, structs) for op in converted))
  return tail, file_bytes(converted, shapes)


def estimated_costs(archs, config: NetworkConfig,
                    target: str = CORTEX_M) -> tuple[np.ndarray, np.ndarray]:
  """(tail, file) bytes of cells `archs: [..., 6]` -> two `[...]` (int64) without building
  each network, for the search: the fixed blocks' and each cell's costs summed, dead code
  removed; 0 for a network whose output is constant. Each tail allocation is rounded up to
  its alignment alone (a few bytes each above `tail_bytes`), and each cell is lowered alone,
  so a ReLU the converter fuses into the block before the cell counts as an op of its own."""
  _check_target(target)
  archs = np.asarray(archs)
  reach = graph.reachability(archs)
  executed = reach.executed(archs).reshape(-1, archs.shape[-1])
  stages = list(enumerate(zip(config.stage_channels, config.stage_resolutions)))
  unique, inverse = np.unique(executed, axis=0, return_inverse=True)
  per_cell = np.array([np.sum([_cell_costs(tuple(int(op) for op in row),
                                           (size, size, channels), stage, target)
                               for stage, (channels, size) in stages], axis=0)
                       for row in unique], np.int64).reshape(-1, 2)
  costs = (np.asarray(_fixed_costs(config, target), np.int64)
           + config.cells_per_stage * per_cell[np.ravel(inverse)])
  costs = np.where(reach.output.reshape(-1, 1), costs, 0)
  return tuple(costs[:, k].reshape(archs.shape[:-1]) for k in range(2))


def estimated_memory(archs, config: NetworkConfig,
                     target: str = CORTEX_M) -> tuple[np.ndarray, np.ndarray]:
  """(TFLM's arena, the `.tflite`'s bytes) of cells `archs: [..., 6]` -> two `[...]` (int64),
  vectorized for the search. The arena is the peak of live activations (`memory.peak_sram`,
  plan PLAN_TFLM, dead code removed; a lower bound of the greedy plan, which can leave gaps)
  plus the tail of `estimated_costs`; a constant network costs its logits' bytes. For one
  cell `arena` is exact."""
  tail, file = estimated_costs(archs, config, target)
  head = memory.peak_sram(archs, config, dead_code=True, plan=memory.PLAN_TFLM)
  constant = ~graph.reachability(np.asarray(archs)).output
  return head + tail, np.where(constant, config.num_classes, file)


def estimated_sram(archs, config: NetworkConfig, target: str = CORTEX_M) -> np.ndarray:
  """TFLM's arena of `estimated_memory` for cells `archs: [..., 6]` -> `[...]` (int64)."""
  return estimated_memory(archs, config, target)[0]
