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
    shapes: of `inputs` then `output`, batch left out.
    node: the planned node it comes from.
  """
  builtin: str
  inputs: tuple[str, ...]
  output: str
  node: Node


_BUILTINS = {Kind.CONV: "CONV_2D", Kind.POOL3: "AVERAGE_POOL_2D", Kind.POOL2: "AVERAGE_POOL_2D",
             Kind.ADD: "ADD", Kind.RELU: "RELU", Kind.PAD: "PAD", Kind.BN: "MUL",
             Kind.GLOBAL_POOL: "SUM", Kind.LINEAR: "FULLY_CONNECTED"}


def converter_ops(network: graph.Graph) -> tuple[list[Op], dict[str, tuple[int, ...]]]:
  """The ops of the `.tflite` of `network`, in execution order, and the shape of every
  activation tensor (the image's and each op's output)."""
  nodes, shapes = memory.planned_nodes(network.nodes, network.shapes, memory.PLAN_TFLM)
  ops = []
  for node in nodes:
    # The head's ReLU is its BN shift: an ADD of a constant with the ReLU fused.
    builtin = ("ADD" if node.kind is Kind.RELU and node.block is Block.HEAD
               else _BUILTINS[node.kind])
    ops.append(Op(builtin, node.inputs, node.output, node))
  return ops, shapes


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
  """The scratch buffers (bytes) op `op` asks TFLM for on `target`."""
  if op.builtin == "SUM":
    # TFLM's reference int8 reduction: int32 index and axis arrays and an int32 accumulator
    # per output element.
    source, = op.inputs
    rank, axes = len(shapes[source]) + 1, 2
    return [4 * int(np.prod(shapes[op.output])), 4 * rank, 4 * axes]
  if target == CORTEX_M and op.builtin == "CONV_2D":
    h, w, c_in = shapes[op.inputs[0]]
    kernel = op.node.kernel
    if kernel == 1 and op.node.stride == 1:
      return []  # CMSIS-NN's 1x1 fast path reads the input in place
    # CMSIS-NN's s8 convolution on a DSP core: im2col of two output pixels as int16.
    return [2 * 2 * c_in * kernel * kernel]
  return []


def _check_target(target: str) -> None:
  if target not in TARGETS:
    raise ValueError(f"Unknown TFLM target {target!r}; known: {', '.join(TARGETS)}")


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
  """The modelled arena in bytes: `head` (planned activations and scratch), `tail`
  (persistent), `total` = head + tail; `tensors` and `ops` of the model counted."""
  head: int
  tail: int
  total: int
  tensors: int
  ops: int

  def to_dict(self) -> dict:
    """As JSON-ready data."""
    return dataclasses.asdict(self)


def head_bytes(ops: Sequence[Op], shapes: Mapping[str, tuple[int, ...]],
               target: str = HOST) -> int:
  """Bytes of the head as the greedy planner lays it out: the end of its highest buffer."""
  buffers = head_buffers(ops, shapes, target)
  offsets = greedy_plan(buffers)
  return max((offset + buffer.size for offset, buffer in zip(offsets, buffers)), default=0)
