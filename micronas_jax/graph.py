"""The network of one cell as typed nodes in execution order: the description every pass reads.

`build(ops, config)` lays out the NB201 network (Fig. 1 of NAS-Bench-201) as the kernels a
runtime that runs one op at a time calls, in the order it calls them:

    stem       CONV 3x3 (BN folded) of the image
    reduction  CONV conv_a (ReLU on its input, stride 2), CONV conv_b (ReLU on its input),
               POOL2 (2x2 average pool) of the block input, CONV shortcut (1x1, no BN), ADD
    cell       edges in benchmark order: a conv edge is CONV (ReLU on its input), a pool edge
               POOL3; a skip edge is no node (its output is its input tensor); a node's sum adds
               each edge's output to the running sum as soon as it exists (binary ADDs, as
               `a + b + c` exports); a node with no inputs is a ZEROS tensor, made when first read
    head       HEAD: BN, ReLU, global average pool and linear, one kernel

The passes: FLOPs and params (`complexity`), latency from a LUT (`hardware.latency`), peak SRAM
and flash under each memory plan (`hardware.memory`, through `lifetimes`), BN folding and the
ONNX export (`export`), the int8 program and its C code (`runtime`, `deploy`). The whole-space
paths stay vectorized: `stage_op_table` derives their per-op tables from the graph of one cell
per op. Reachability of a cell's edges is `reachability`, the one function for it.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from micronas_jax import naming, space
from micronas_jax.naming import Layer, LayerKind
from micronas_jax.network import NetworkConfig

IMAGE, LOGITS = "image", "logits"
# The op index of an edge that a dead-code-removing runtime drops: it costs nothing.
DROPPED = space.NUM_OPS


class Kind(enum.Enum):
  """The computation of a node. The first six are the network's kernels; RELU, PAD, BN,
  GLOBAL_POOL and LINEAR are the separate tensors a runtime that does not fuse them makes
  (`hardware.memory`'s TFLite Micro plan)."""
  CONV = "conv"
  POOL3 = "pool3"
  POOL2 = "pool2"
  ADD = "add"
  ZEROS = "zeros"
  HEAD = "head"
  RELU = "relu"
  PAD = "pad"
  BN = "bn"
  GLOBAL_POOL = "global_pool"
  LINEAR = "linear"


class Block(enum.Enum):
  """The part of the network a node belongs to."""
  STEM = "stem"
  REDUCTION = "reduction"
  CELL = "cell"
  HEAD = "head"


@dataclasses.dataclass(frozen=True)
class Node:
  """One kernel call: `kind` reads tensors `inputs` and writes tensor `output` of `shape`.

  Attributes:
    shape: the output's `[h, w, c]` (`[classes]` for the logits).
    block, stage, cell, edge: where it sits (0-based stage and cell; `edge` in benchmark order
      for a cell's CONV, POOL3 and the ADD after that edge, else None).
    kernel, stride: of a CONV or pool window.
    relu_in: a ReLU precedes it (applied to its first input).
    relu_fused: that ReLU is the fused activation of the conv that makes the input (conv_b's, in
      the reduction block, whose input conv_a has no other reader), so an exported graph has no
      separate ReLU tensor for it.
    layers: the parametrized layers it reads (`naming.Layer`).
    element_bytes: bytes per element of the output once quantized (int8; the head's int32
      logits).
  """
  kind: Kind
  output: str
  inputs: tuple[str, ...]
  shape: tuple[int, ...]
  block: Block
  stage: int = 0
  cell: int | None = None
  edge: int | None = None
  kernel: int = 0
  stride: int = 1
  relu_in: bool = False
  relu_fused: bool = False
  layers: tuple[Layer, ...] = ()
  element_bytes: int = 1

  @property
  def bytes(self) -> int:
    """Bytes of the output tensor."""
    return int(np.prod(self.shape)) * self.element_bytes


@dataclasses.dataclass(frozen=True)
class Graph:
  """The network of cell `ops` (the executed ops: DROPPED where a dead-code-removing build,
  `dead_code`, drops an edge) in network `config`: `nodes` in execution order."""
  ops: tuple[int, ...]
  config: NetworkConfig
  nodes: tuple[Node, ...]
  dead_code: bool = False

  @property
  def constant(self) -> bool:
    """Whether a dead-code-removing runtime folds the whole network into a constant (its cell
    output does not depend on its input)."""
    return self.dead_code and not bool(reachability(np.asarray(self.ops)).output)

  @functools.cached_property
  def shapes(self) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape: the image's and each node's output."""
    return {IMAGE: self.config.input_shape, **{node.output: node.shape for node in self.nodes}}

  def size(self, name: str) -> int:
    """Bytes of tensor `name` once quantized (int8; int32 for the head's logits)."""
    producer = self.producers.get(name)
    element = producer.element_bytes if producer else 1
    return int(np.prod(self.shapes[name])) * element

  @functools.cached_property
  def producers(self) -> dict[str, Node]:
    """{tensor name: the node that writes it}; the network's input has none."""
    return {node.output: node for node in self.nodes}

  def cell_ops(self) -> list[tuple[int, tuple[int, ...]]]:
    """(stage, executed ops) of every cell of the network, in order."""
    return [(stage, self.ops) for stage in range(self.config.num_stages)
            for _ in range(self.config.cells_per_stage)]


# --- reachability ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reachability:
  """Which parts of cells `[...]` carry the input to the output.

  Attributes:
    edges: `[..., 6]` bool, an edge that is not 'none' and whose target node reaches the cell's
      output through non-'none' edges (what a dead-code-removing runtime keeps).
    output: `[...]` bool, the cell's output depends on its input (else the network is constant).
  """
  edges: np.ndarray
  output: np.ndarray

  def executed(self, ops) -> np.ndarray:
    """`ops` `[..., 6]` with the edges that do not reach the output replaced by DROPPED."""
    return np.where(self.edges, ops, DROPPED)


def reachability(ops) -> Reachability:
  """Reachability of cells `ops: [..., 6]` over the cell's DAG, vectorized over the leading axes."""
  ops = np.asarray(ops)
  active = (ops != space.NONE) & (ops != DROPPED)
  batch = ops.shape[:-1]
  to_output = [np.zeros(batch, bool) for _ in range(space.NUM_NODES)]
  to_output[-1] = np.ones(batch, bool)
  for node in range(space.NUM_NODES - 2, -1, -1):
    for edge, (target, source) in enumerate(space.EDGES):
      if source == node:
        to_output[node] = to_output[node] | (active[..., edge] & to_output[target])
  from_input = [np.ones(batch, bool)]
  for node in range(1, space.NUM_NODES):
    reached = np.zeros(batch, bool)
    for edge, (target, source) in enumerate(space.EDGES):
      if target == node:
        reached = reached | (active[..., edge] & from_input[source])
    from_input.append(reached)
  edges = np.stack([active[..., e] & to_output[t] for e, (t, _) in enumerate(space.EDGES)], -1)
  return Reachability(edges, from_input[-1])


def executed_ops(ops, dead_code: bool) -> np.ndarray:
  """Op indices `[..., 6]` with the edges a dead-code-removing runtime drops (`dead_code`)
  replaced by DROPPED."""
  ops = np.asarray(ops)
  return reachability(ops).executed(ops) if dead_code else ops


def dead_code_cost(ops, dead_code: bool, cost: Callable[[np.ndarray], np.ndarray],
                   constant) -> np.ndarray:
  """`cost(executed ops)` of cells `ops: [..., 6]` -> `[...]`; with `dead_code`, the runtime
  drops the edges that do not reach the output, and a network whose output does not depend on
  its input is folded into a constant that costs `constant`. One reachability pass serves both."""
  ops = np.asarray(ops)
  if not dead_code:
    return cost(ops)
  reach = reachability(ops)
  return np.where(reach.output, cost(reach.executed(ops)), constant)


# --- the builders ----------------------------------------------------------------------------


def stem_nodes(config: NetworkConfig, x: str = IMAGE) -> list[Node]:
  """The stem: one CONV 3x3 of `x` to C channels (none without a stem)."""
  if not config.stem:
    return []
  return [Node(Kind.CONV, "stem", (x,), (config.resolution, config.resolution, config.channels),
               Block.STEM, kernel=3, layers=(Layer(LayerKind.STEM),))]


def reduction_nodes(config: NetworkConfig, stage: int, x: str) -> list[Node]:
  """The stride-2 ResNet block before stage `stage` (>= 1), reading tensor `x`."""
  name = naming.reduction_module(stage)
  channels, size = config.stage_channels[stage], config.stage_resolutions[stage]
  shape, pooled = (size, size, channels), (size, size, config.stage_channels[stage - 1])
  part = lambda kind, output, inputs, out_shape, **fields: Node(
      kind, f"{name}/{output}", inputs, out_shape, Block.REDUCTION, stage, **fields)
  return [
      part(Kind.CONV, "conv_a", (x,), shape, kernel=3, stride=2, relu_in=True,
           layers=(Layer(LayerKind.CONV_A, stage),)),
      part(Kind.CONV, "conv_b", (f"{name}/conv_a",), shape, kernel=3, relu_in=True,
           relu_fused=True, layers=(Layer(LayerKind.CONV_B, stage),)),
      part(Kind.POOL2, "pool", (x,), pooled, kernel=2, stride=2),
      part(Kind.CONV, "shortcut", (f"{name}/pool",), shape, kernel=1,
           layers=(Layer(LayerKind.SHORTCUT, stage),)),
      part(Kind.ADD, "add", (f"{name}/conv_b", f"{name}/shortcut"), shape),
  ]


def cell_nodes(ops, shape: tuple[int, int, int], x: str, stage: int = 0,
               cell: int = 0) -> tuple[list[Node], str]:
  """The nodes of one cell of executed ops `ops: [6]` (DROPPED edges left out) on input tensor
  `x` of `shape`; returns them and the name of the cell's output tensor.

  Tensor names: `{prefix}/zeros{node}`, `conv{edge}`, `pool{edge}`, `sum{edge}` (the node's
  running sum after that edge), under the cell's module name as prefix.
  """
  prefix = naming.cell_module(stage, cell)
  nodes: list[Node] = []
  values: list[str | None] = [x]
  place = dict(block=Block.CELL, stage=stage, cell=cell)

  def read(node: int) -> str:
    if values[node] is None:
      values[node] = f"{prefix}/zeros{node}"
      nodes.append(Node(Kind.ZEROS, values[node], (), shape, **place))
    return values[node]

  for node in range(1, space.NUM_NODES):
    total = None
    for edge, (target, source) in enumerate(space.EDGES):
      op = int(ops[edge])
      if target != node or op in (space.NONE, DROPPED):
        continue
      value = read(source)
      if op in naming.CONV_OPS:
        nodes.append(Node(Kind.CONV, f"{prefix}/conv{edge}", (value,), shape, **place, edge=edge,
                          kernel=naming.CONV_OPS[op][1], relu_in=True,
                          layers=(Layer(LayerKind.EDGE, stage, cell, edge, op),)))
        value = nodes[-1].output
      elif op == space.POOL:
        nodes.append(Node(Kind.POOL3, f"{prefix}/pool{edge}", (value,), shape, **place,
                          edge=edge, kernel=3))
        value = nodes[-1].output
      if total is not None:
        nodes.append(Node(Kind.ADD, f"{prefix}/sum{edge}", (total, value), shape, **place,
                          edge=edge))
        value = nodes[-1].output
      total = value
    values.append(total)
  return nodes, read(space.NUM_NODES - 1)


def head_nodes(config: NetworkConfig, x: str) -> list[Node]:
  """The head on tensor `x`: BN, ReLU, global average pool and linear as one HEAD node."""
  return [Node(Kind.HEAD, LOGITS, (x,), (config.num_classes,), Block.HEAD,
               config.num_stages - 1,
               layers=(Layer(LayerKind.HEAD_BN), Layer(LayerKind.CLASSIFIER)), element_bytes=4)]


def build(ops, config: NetworkConfig, dead_code: bool = False) -> Graph:
  """The graph of the network of cell `ops: [6]` in network `config`; with `dead_code` the
  edges that do not reach the cell's output are left out (`reachability`)."""
  ops = tuple(int(op) for op in executed_ops(space.validate_ops(ops), dead_code))
  nodes = stem_nodes(config)
  x = nodes[-1].output if nodes else IMAGE
  for stage, (channels, size) in enumerate(zip(config.stage_channels, config.stage_resolutions)):
    if stage > 0:
      nodes += reduction_nodes(config, stage, x)
      x = nodes[-1].output
    for cell in range(config.cells_per_stage):
      cell_part, x = cell_nodes(ops, (size, size, channels), x, stage, cell)
      nodes += cell_part
  nodes += head_nodes(config, x)
  return Graph(ops, config, tuple(nodes), dead_code)


# --- liveness --------------------------------------------------------------------------------


def lifetimes(nodes: Sequence[Node], inputs: Sequence[str] = (IMAGE,),
              outputs: Sequence[str] = ()) -> dict[str, tuple[int, int]]:
  """(first, last) node index during which each tensor must exist: from the node that writes it
  (-1 for `inputs`, which exist before the first node) to its last reader; `outputs` live to the
  last node."""
  span = {name: (-1, -1) for name in inputs}
  for i, node in enumerate(nodes):
    span[node.output] = (i, i)
    for name in node.inputs:
      span[name] = (span[name][0], i)
  for name in outputs:
    span[name] = (span[name][0], max(len(nodes) - 1, span[name][1]))
  return span


def peak_live_bytes(nodes: Sequence[Node], size: Callable[[str], int] | Mapping[str, int],
                    inputs: Sequence[str] = (IMAGE,), outputs: Sequence[str] = ()) -> int:
  """The largest total of `size` over the tensors live at once (`lifetimes`), over every node
  (and before the first): the lower bound of any arena."""
  size = size.__getitem__ if isinstance(size, Mapping) else size
  span = lifetimes(nodes, inputs, outputs)
  first = -1 if not nodes else 0
  steps = max(len(nodes), 1) - first
  # A sweep: each tensor adds its size where it is born and removes it after its last use.
  change = [0] * (steps + 1)
  for name, (born, last) in span.items():
    if last < first:
      continue  # an input no node reads and no output keeps: never live during the nodes
    born = max(born, first)
    change[born - first] += size(name)
    change[last - first + 1] -= size(name)
  live, peak = 0, 0
  for delta in change[:steps]:
    live += delta
    peak = max(peak, live)
  return peak


# --- per-op tables for the whole space --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StageOpTable:
  """A cost that is `fixed + cells_per_stage * sum_s sum_e per_op[s, ops[e]]`: every cell of a
  network has the same ops, so the cost of a whole space is one gather and sum.

  Attributes:
    per_op: `[num_stages, 5 or 6]` cost of one op on one edge of one cell in each stage (a
      sixth column prices DROPPED edges, zero).
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


def fixed_nodes(config: NetworkConfig) -> tuple[list[Node], Mapping[str, tuple[int, ...]]]:
  """The nodes outside the cells (stem, reduction blocks, head) and the shapes of every tensor
  they read and write: those of the network whose cells are all 'none' (one ZEROS node each)."""
  network = build([space.NONE] * space.NUM_EDGES, config)
  return [node for node in network.nodes if node.block is not Block.CELL], network.shapes


def single_op_cell(op: int, config: NetworkConfig, stage: int) -> list[Node]:
  """The nodes of a cell at `stage` whose only edge (3 <- 0) runs `op`: one op's share of a
  cell, since a lone edge into the output node needs no sum and reads no zero node."""
  ops = [space.NONE] * space.NUM_EDGES
  ops[space.EDGES.index((3, 0))] = op
  size = config.stage_resolutions[stage]
  return cell_nodes(ops, (size, size, config.stage_channels[stage]), "x", stage)[0]


def stage_op_table(config: NetworkConfig, cost: Callable[[Node, Mapping], float],
                   dropped_column: bool = False) -> StageOpTable:
  """The StageOpTable of a cost that is a sum over nodes of `cost(node, shapes)` with no cost for
  sums (ADD, ZEROS nodes must cost 0 under `cost`); `shapes` maps every tensor the node reads to
  its shape. Checked against `build` on every cell by the tests."""
  columns = space.NUM_OPS + (1 if dropped_column else 0)
  per_op = np.zeros((config.num_stages, columns))
  for stage, (channels, size) in enumerate(zip(config.stage_channels, config.stage_resolutions)):
    shapes = {"x": (size, size, channels)}
    for op in range(space.NUM_OPS):
      nodes = single_op_cell(op, config, stage)
      shapes.update((node.output, node.shape) for node in nodes)
      per_op[stage, op] = sum(cost(node, shapes) for node in nodes)
  nodes, shapes = fixed_nodes(config)
  fixed = sum(cost(node, shapes) for node in nodes)
  return StageOpTable(per_op, fixed, config.cells_per_stage)

