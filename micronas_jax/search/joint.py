"""The joint space of the default search: NB201 cells x skeletons (width C, depth N, input side).

A candidate is a (skeleton, cell) pair, numbered `skeleton * 15625 + cell`. Every skeleton has
its own latency table (`hardware.shapes.at_network`), so latency, FLOPs and params of all pairs
are vectorized; memory is screened with lower bounds and checked exactly (`costs.exact_memory`,
TFLM's arena) only for the pairs tried while a drawn cell's largest network is sought
(`JointSpace.admit`), since the exact plan costs milliseconds per network and the whole joint
space holds hundreds of thousands.

How the two parts are chosen: each cell gets the skeleton where it computes the most (FLOPs)
within every limit (`JointSpace.largest`), and the evolution searches cells, each with its
largest network. The indicators other than FLOPs (MeCo, linear regions, skip span) describe the
cell on fixed proxy networks and are validated as cell rankers at one skeleton; they say
nothing about width or depth. MCUNet's TinyNAS (Lin et al., NeurIPS 2020, sec. 3.1) chooses
the width and resolution whose networks have the most FLOPs under the constraint, on the
observation that more computation under the same constraint gives more accuracy. On a
microcontroller a narrow network spends its latency on per-layer overhead, so the most FLOPs
under a latency limit is also the skeleton the hardware runs best. A free (skeleton, cell)
evolution with FLOPs as one log-rank term of four was tried first: it picked narrow deep
networks (C=4, N=3) for a top cell whose trained accuracy was 11.5 points below the best trained
network of its budget (RESULTS.md, "Your task: networks of the joint space trained on two
tasks").

Constant networks (a cell whose output does not depend on its input) are left out of the joint
space: every skeleton of theirs is the same useless network.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from micronas_jax import complexity, graph, space
from micronas_jax.hardware import costs, latency, shapes
from micronas_jax.network import NetworkConfig
from micronas_jax.search import objective

# The skeleton grid: stage-1 widths (multiples of 4, as the kernels pair channels and MCUNet's
# widths are multiples of 8 from 8 up), cells per stage (NB201's 5 at most).
CHANNELS = (4, 8, 12, 16, 24, 32, 48, 64)
CELLS = (1, 2, 3, 4, 5)


def skeletons(base: NetworkConfig, channels=None, cells=None,
              resolutions=None) -> tuple[NetworkConfig, ...]:
  """`base` at every (C, N, resolution) of the grid, C outermost: `channels` (default
  CHANNELS), `cells` (default CELLS), `resolutions` (default the base's own)."""
  return tuple(dataclasses.replace(base, channels=c, cells_per_stage=n, resolution=r)
               for c in (channels or CHANNELS) for n in (cells or CELLS)
               for r in (resolutions or (base.resolution,)))



def meets_memory(indices: np.ndarray, memory, bounds: dict) -> np.ndarray:
  """`[n]` bool: the candidates whose exact `memory(index) -> (SRAM, flash)` bytes meet the
  "sram_kb" and "flash_kb" bounds (`Limits.bounds`)."""
  ok = np.ones(len(indices), bool)
  for row, index in enumerate(map(int, indices)):
    sram, flash = memory(index)
    for column, value in (("sram_kb", sram), ("flash_kb", flash)):
      if column in bounds and value / costs.KB > bounds[column][0]:
        ok[row] = False
  return ok


def _live_cells() -> np.ndarray:
  """`[15625]` bool: cells whose output depends on their input."""
  return np.array([graph.reachability(ops).output for ops in space.all_archs()])


@dataclasses.dataclass
class JointSpace:
  """The (skeleton, cell) pairs of one search and their costs.

  Attributes:
    networks: the skeletons `[K]`; luts: the board's table at each.
    limits: the search's limits; bounds: `Limits.bounds` (the same on every skeleton: the
      board's memory does not depend on the network).
    screened: `[K * 15625]` bool: pairs whose latency and FLOPs meet the limits, whose memory
      lower bounds do, and whose output depends on the input.
    flops_m, latency_ms: `[K * 15625]` of every pair.
  """
  networks: tuple[NetworkConfig, ...]
  luts: tuple[latency.LUT, ...]
  limits: objective.Limits
  bounds: dict
  screened: np.ndarray
  flops_m: np.ndarray
  latency_ms: np.ndarray
  checked: dict = dataclasses.field(default_factory=dict)
  chosen: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def build(cls, board: latency.LUT, networks, limits: objective.Limits) -> JointSpace:
    """The joint space of `networks` on `board` (its table at each: `shapes.at_network`)."""
    archs, live = space.all_archs(), _live_cells()
    luts = tuple(shapes.at_network(board, config) for config in networks)
    bounds = limits.bounds(luts[0])
    runtime_sram, runtime_flash = costs.runtime_memory(board)
    columns = {"latency_ms": [], "flops_m": [], "sram_kb": [], "flash_kb": []}
    for config, lut in zip(networks, luts):
      columns["latency_ms"].append(np.asarray(latency.estimate(archs, lut), np.float64))
      columns["flops_m"].append(complexity.flops(archs, config) / 1e6)
      # Lower bounds: int8 weights are in flash, and the input and the stem's output are live
      # together in SRAM.
      columns["flash_kb"].append((complexity.params(archs, config) + runtime_flash) / costs.KB)
      stem = config.resolution**2 * (config.in_channels + config.channels)
      columns["sram_kb"].append(np.full(space.NUM_CELLS, (stem + runtime_sram) / costs.KB))
    flat = {name: np.concatenate(values) for name, values in columns.items()}
    screened = np.tile(live, len(networks))
    if bounds:
      screened &= objective.check_meetable(flat, bounds)
    return cls(tuple(networks), luts, limits, bounds, screened, flat["flops_m"],
               flat["latency_ms"])

  def split(self, index: int) -> tuple[int, int]:
    """(skeleton, cell) of a pair's index."""
    return divmod(int(index), space.NUM_CELLS)

  def memory(self, index: int) -> tuple[int, int]:
    """(SRAM, flash) bytes of a pair, exact (`costs.exact_memory`); kept once computed."""
    if index not in self.checked:
      k, cell = self.split(index)
      self.checked[index] = costs.exact_memory(space.arch_at(cell), self.luts[k])[:2]
    return self.checked[index]

  def admit(self, indices: np.ndarray) -> np.ndarray:
    """`[n]` bool: the pairs whose exact SRAM and flash meet the bounds."""
    return meets_memory(indices, self.memory, self.bounds)

  def cells(self) -> np.ndarray:
    """`[15625]` bool: cells with at least one screened skeleton."""
    return self.screened.reshape(len(self.networks), space.NUM_CELLS).any(axis=0)

  def largest(self, cell: int) -> int | None:
    """The pair of `cell` with the most FLOPs that meets every limit, memory checked exactly
    (ties: the lower latency, then the lower index); None when no skeleton of it does. Kept once
    found."""
    if cell not in self.chosen:
      pairs = np.flatnonzero(self.screened[cell::space.NUM_CELLS]) * space.NUM_CELLS + cell
      order = pairs[np.lexsort((pairs, self.latency_ms[pairs], -self.flops_m[pairs]))]
      self.chosen[cell] = next((int(i) for i in order if self.admit(np.asarray([i]))[0]), None)
    return self.chosen[cell]

  def admit_cells(self, cells: np.ndarray) -> np.ndarray:
    """`[n]` bool: the cells with a skeleton that meets every limit (`largest`)."""
    return np.array([self.largest(int(cell)) is not None for cell in cells], bool)
