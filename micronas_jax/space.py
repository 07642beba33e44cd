"""The NAS-Bench-201 cell space: 5 ops on the 6 edges of a 4-node cell, 5**6 = 15,625 cells.

A cell is an int array `ops: [6]` of op indices, edges in the benchmark's order
(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2). Op names and their order follow NAS-Bench-201
(Dong & Yang, ICLR 2020; `SearchSpaceNames['nas-bench-201']` in its code).

Arch strings use the benchmark's form, one `|op~input|` group per edge and `+` between nodes:
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`.

The benchmark index (0..15624) is the benchmark's own order, not lexicographic; it ships with the
package in `data/nb201_index_order.txt` (see `scripts/build_index_order.py` for its source).
"""
from __future__ import annotations

import functools
import importlib.resources
from typing import Sequence

import numpy as np

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NUM_OPS = len(OPS)
# (to_node, from_node) for each edge, in the benchmark's edge order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)
NUM_NODES = 4
NUM_CELLS = NUM_OPS**NUM_EDGES  # 15,625

NONE, SKIP, CONV1X1, CONV3X3, POOL = range(NUM_OPS)


class ArchError(ValueError):
  """An arch string, op list or benchmark index that does not name a NAS-Bench-201 cell."""


def parse_arch(arch: str) -> np.ndarray:
  """Decodes a benchmark arch string into op indices `[6]` (int32), edges in benchmark order."""
  text = arch.strip()
  if not (text.startswith("|") and text.endswith("|")):
    raise ArchError(f"arch string must start and end with '|': {arch!r}")
  nodes = text[1:-1].split("|+|")
  if len(nodes) != NUM_NODES - 1:
    raise ArchError(f"arch string has {len(nodes)} nodes, expected {NUM_NODES - 1} "
                    f"(groups separated by '+'): {arch!r}")
  ops = []
  for to_node, node in enumerate(nodes, start=1):
    edges = node.split("|")
    if len(edges) != to_node:
      raise ArchError(f"node {to_node} has {len(edges)} input edges, expected {to_node}: {arch!r}")
    for from_node, edge in enumerate(edges):
      name, sep, source = edge.partition("~")
      if not sep:
        raise ArchError(f"edge {edge!r} is not of the form op~input: {arch!r}")
      if name not in OPS:
        raise ArchError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
      if source != str(from_node):
        raise ArchError(f"edge {edge!r} into node {to_node} should read from node {from_node}")
      ops.append(OPS.index(name))
  return np.asarray(ops, dtype=np.int32)


def format_arch(ops: Sequence[int] | np.ndarray) -> str:
  """Encodes op indices `[6]` as the benchmark's arch string."""
  ops = validate_ops(ops)
  groups, edge = [], 0
  for to_node in range(1, NUM_NODES):
    groups.append("|" + "|".join(f"{OPS[ops[edge + i]]}~{i}" for i in range(to_node)) + "|")
    edge += to_node
  return "+".join(groups)


def validate_ops(ops: Sequence[int] | np.ndarray) -> np.ndarray:
  """Checks that `ops` is 6 op indices in [0, 5) and returns them as int32 `[6]`."""
  array = np.asarray(ops)
  if array.shape != (NUM_EDGES,):
    raise ArchError(f"a cell has {NUM_EDGES} edges, got ops of shape {array.shape}")
  if not np.issubdtype(array.dtype, np.integer):
    raise ArchError(f"op indices must be integers, got dtype {array.dtype}")
  if array.min() < 0 or array.max() >= NUM_OPS:
    raise ArchError(f"op indices must lie in [0, {NUM_OPS}), got {array.tolist()}")
  return array.astype(np.int32)


@functools.cache
def _index_order() -> np.ndarray:
  text = importlib.resources.files("micronas_jax").joinpath("data/nb201_index_order.txt")
  lines = [line for line in text.read_text().splitlines() if line and not line.startswith("#")]
  table = np.asarray([[int(c) for c in line] for line in lines], dtype=np.int32)
  if table.shape != (NUM_CELLS, NUM_EDGES):
    raise RuntimeError(f"packaged index order has shape {table.shape}; reinstall micronas-jax")
  table.flags.writeable = False
  return table


@functools.cache
def _code_to_index() -> np.ndarray:
  lookup = np.empty(NUM_CELLS, dtype=np.int32)
  lookup[encode(_index_order())] = np.arange(NUM_CELLS, dtype=np.int32)
  return lookup


def encode(ops: np.ndarray) -> np.ndarray:
  """Base-5 code of op indices `[..., 6]` -> `[...]`; edge 1<-0 is the most significant digit."""
  weights = NUM_OPS ** np.arange(NUM_EDGES - 1, -1, -1)
  return np.asarray(ops, dtype=np.int64) @ weights


def all_archs() -> np.ndarray:
  """All 15,625 cells as op indices `[15625, 6]`, row k = benchmark index k (read-only)."""
  return _index_order()


def arch_at(index: int) -> np.ndarray:
  """Op indices `[6]` of the cell with benchmark index `index`."""
  if not 0 <= int(index) < NUM_CELLS:
    raise ArchError(f"benchmark index {index} out of range [0, {NUM_CELLS})")
  return _index_order()[int(index)].copy()


def index_of(ops: Sequence[int] | np.ndarray) -> np.ndarray | int:
  """Benchmark index of op indices `[..., 6]` -> `[...]` (an int for a single cell)."""
  array = np.asarray(ops)
  if array.ndim == 1:
    return int(_code_to_index()[encode(validate_ops(array))])
  if array.shape[-1] != NUM_EDGES or array.min() < 0 or array.max() >= NUM_OPS:
    raise ArchError(f"expected op indices [..., {NUM_EDGES}] in [0, {NUM_OPS}), got shape {array.shape}")
  return _code_to_index()[encode(array)]


def resolve(arch_or_index: str) -> np.ndarray:
  """Op indices `[6]` from a user's string: a benchmark index ("1462") or an arch string."""
  text = arch_or_index.strip()
  if text.lstrip("-").isdigit():
    return arch_at(int(text))
  if "|" not in text:
    raise ArchError(f"{arch_or_index!r} is neither a benchmark index nor an arch string "
                    "like '|nor_conv_3x3~0|+|...|'")
  return parse_arch(text)


def parse_index_range(spec: str) -> np.ndarray:
  """Benchmark indices from "START:STOP" (Python slice, STOP exclusive) or "i,j,k" -> `[n]`."""
  text = spec.strip()
  try:
    if ":" in text:
      start_text, stop_text = text.split(":", 1)
      start = int(start_text) if start_text else 0
      stop = int(stop_text) if stop_text else NUM_CELLS
      indices = np.arange(start, stop, dtype=np.int32)
    else:
      indices = np.asarray([int(part) for part in text.split(",") if part.strip()], dtype=np.int32)
  except ValueError:
    raise ArchError(f"index range {spec!r} is not START:STOP or a comma-separated list") from None
  if indices.size == 0:
    raise ArchError(f"index range {spec!r} selects no cells")
  if indices.min() < 0 or indices.max() >= NUM_CELLS:
    raise ArchError(f"index range {spec!r} leaves [0, {NUM_CELLS})")
  return indices


def read_arch_file(path: str) -> np.ndarray:
  """Benchmark indices `[n]` from a file of indices or arch strings, one per line ('#' starts a
  comment); a bad line raises ArchError naming the file and line."""
  indices = []
  with open(path) as lines:
    for number, line in enumerate(lines, start=1):
      text = line.split("#", 1)[0].strip()
      if not text:
        continue
      try:
        indices.append(index_of(resolve(text)))
      except ArchError as error:
        raise ArchError(f"{path}:{number}: {error}") from None
  if not indices:
    raise ArchError(f"{path}: no cells listed")
  return np.asarray(indices, np.int32)

def one_hot(ops: np.ndarray) -> np.ndarray:
  """Edge-op weights `[..., 6, 5]` (float32) of op indices `[..., 6]`: 1 on the chosen op."""
  return np.eye(NUM_OPS, dtype=np.float32)[np.asarray(ops)]


def supernet_weights(mask: np.ndarray) -> np.ndarray:
  """Edge-op weights `[..., 6, 5]` from a boolean op mask: each active op weighs 1/k on its edge.

  This is the TE-NAS supernet convention: an edge with k active ops outputs their mean.
  """
  mask = np.asarray(mask, dtype=bool)
  if mask.shape[-2:] != (NUM_EDGES, NUM_OPS):
    raise ArchError(f"op mask must be [..., {NUM_EDGES}, {NUM_OPS}], got {mask.shape}")
  counts = mask.sum(-1, keepdims=True)
  if (counts == 0).any():
    raise ArchError("every edge needs at least one active op (use 'none' for a missing edge)")
  return (mask / counts).astype(np.float32)
