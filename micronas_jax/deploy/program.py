"""The deployed network of one fixed cell: its graph (`graph.build`) and its activation arena.

The program is the network's graph itself, in the graph's execution order, which is also the
order of the memory plan PLAN_C (`hardware.memory`): the C code, the arena and the SRAM estimate
follow one order. Every tensor is NHWC of one image (`[h, w, c]`), int8 once quantized; the
logits are int32.
"""
from __future__ import annotations

import numpy as np

from micronas_jax import graph
from micronas_jax.graph import IMAGE, Graph
from micronas_jax.network import NetworkConfig

ALIGN = 4  # arena offsets: word loads of the kernels stay aligned


def build(ops, config: NetworkConfig) -> Graph:
  """The program of cell `ops: [6]` in the network `config` (which must have a stem)."""
  if not config.stem:
    raise ValueError("deployment needs a network with a stem")
  return graph.build(ops, config)


# --- the activation arena -------------------------------------------------------------------------


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
  not count (`graph.peak_live_bytes`, the estimate); the tests and the benchmark compare the two.
  """
  span = graph.lifetimes(program.nodes, (IMAGE,))
  orders = (sorted(span, key=lambda name: (-program.size(name), span[name][0])),
            sorted(span, key=lambda name: (-program.size(name), -span[name][1])),
            sorted(span, key=lambda name: (span[name][0], -program.size(name))))
  plans = [_first_fit(program, span, order) for order in orders]
  sizes = [max(o[name] + program.size(name) for name in o) for o in plans]
  best = int(np.argmin(sizes))
  return plans[best], sizes[best]
