"""Latency lookup tables (LUTs): the JSON format, its schema check, the estimate, and the NNLS fit.

A LUT holds the latency of every part of an NB201 network on one device (format documented in
`hardware/luts/README.md`): each of the 5 cell ops at each stage (channels, resolution), the stem,
the reduction blocks, the head and a constant overhead. The whole-network estimate is

    latency = overhead + stem + sum_r reduction_r + head + N * sum_s sum_e lut[s][op_e]

with N cells per stage and e over the 6 edges of the cell.

Runtime semantics (the LUT's `semantics`, overridable per call):
  every-op   every op on every edge runs (TFLite Micro and other MCU runtimes, PyTorch).
  dead-code  the runtime drops ops whose output never reaches the cell output, and when the cell
             output cannot be reached from its input the whole network is a constant that the
             converter folds away: only the overhead remains. This is how the Raspberry Pi 4 and
             Pixel 3 timings of HW-NAS-Bench behave. Ops fed by a node that is constant zero still
             run on those devices (measured), so only reachability *to* the output counts.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import math
import os

import numpy as np
from scipy import optimize

from micronas_jax import graph, paths, space
from micronas_jax.errors import Param, ParamError
from micronas_jax.graph import DROPPED, StageOpTable
from micronas_jax.hardware import analytic
from micronas_jax.network import NB201_CIFAR10, NetworkConfig

FORMAT = "micronas-jax-lut/1"
UNITS = ("ms", "us", "cycles")
SEMANTICS = ("every-op", "dead-code")
_MS_PER_UNIT = {"ms": 1.0, "us": 1e-3}
_NETWORK_FIELDS = ("channels", "cells_per_stage", "num_stages", "resolution", "in_channels",
                   "num_classes")
_MEMORY_FIELDS = ("sram_bytes", "flash_bytes", "runtime_sram_bytes", "runtime_flash_bytes")
_FIELDS = ("format", "device", "clock_mhz", "unit", "semantics", "provenance", "network", "stem",
           "stages", "reductions", "head", "overhead", "memory", "constants")
_OPTIONAL = ("clock_mhz", "memory", "constants")


# The slowest NB201 network on the slowest packaged board (every edge conv 3x3 on the emulated
# F746) takes 2.6 s. An inference above an hour is no MCU's: a LUT that says so has its numbers in
# another unit than it declares (cycles labelled ms make that network 155 h) or a corrupt entry.
MAX_PLAUSIBLE_MS = 3.6e6
# No processor's clock reaches 10 GHz: a larger clock_mhz was given in Hz or kHz, not MHz.
MAX_CLOCK_MHZ = 1e4

# What a LUT's numbers are, by its provenance method. "Measured" is said only of timings taken on
# a board: `provenance.measured` says whether something was run (it is true for instructions
# counted in the emulator), not where, and a user's worksheet or timings do not record where.
_SOURCES = {
    "analytic": "NOT measured: analytic model",
    "emulated": "NOT measured on a board: instruction counts on an emulated core",
    "emulated + cycle model": "NOT measured on a board: cycle model over emulated kernels",
    "profiled": "user-supplied timings (lut build): not known to be from a board",
    "fitted": "fitted to user-supplied timings (lut fit): not known to be from a board",
}


class LUTError(ParamError):
  """A LUT, worksheet or timings file that is malformed: the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Memory:
  """Memory of the board and of its runtime, in bytes (weights and activations excluded)."""
  sram_bytes: int
  flash_bytes: int
  runtime_sram_bytes: int = 0
  runtime_flash_bytes: int = 0

  @classmethod
  def from_kb(cls, sram_kb: float | None, flash_kb: float | None, runtime_sram_kb: float = 0.0,
              runtime_flash_kb: float = 0.0) -> "Memory | None":
    """The memory of sizes in KB (1024 bytes); None when neither the board's SRAM nor its flash
    is given. Raises LUTError for a negative size or only one of the two."""
    sizes = {"sram_kb": sram_kb, "flash_kb": flash_kb, "runtime_sram_kb": runtime_sram_kb,
             "runtime_flash_kb": runtime_flash_kb}
    for name, value in sizes.items():
      # A 32-bit core addresses 4 GiB: a larger size is a unit slip, not a board.
      if value is not None and not 0 <= value <= ADDRESSABLE_KB:
        raise LUTError(Param(name), f" must lie in [0, {ADDRESSABLE_KB}] KB, got {value}")
    if (sram_kb is None) != (flash_kb is None):
      raise LUTError(Param("sram_kb"), " and ", Param("flash_kb"),
                     ": give both (the board's memory) or neither")
    if sram_kb is None:
      if runtime_sram_kb or runtime_flash_kb:
        raise LUTError(Param("runtime_sram_kb"), " and ", Param("runtime_flash_kb"),
                       " need the board's ", Param("sram_kb"), " and ", Param("flash_kb"))
      return None
    return cls(*(round(kb * 1024) for kb in sizes.values()))


ADDRESSABLE_KB = 4 * 1024 * 1024  # 4 GiB in KB


@dataclasses.dataclass(frozen=True)
class LUT:
  """A device's latency table for networks of shape `config`, in `unit`.

  Attributes:
    ops: `[num_stages, 5]` latency of one op on one edge of one cell (its node-sum add included).
    stem, head, overhead: latencies of the stem, head and one inference's constant overhead.
    reductions: `num_stages - 1` latencies of the reduction blocks.
    clock_mhz: the clock that converts cycles to time (required when unit is "cycles").
    provenance: how the numbers were made and by whom or what; `measured` says if something was
      run for them (on a board or in an emulator); `source` says which, in words.
    memory: SRAM and flash of the board and its runtime, or None when unknown.
    constants: free-form record of the model constants and their sources.
  """
  device: str
  unit: str
  semantics: str
  provenance: dict
  config: NetworkConfig
  ops: np.ndarray
  stem: float
  reductions: tuple[float, ...]
  head: float
  overhead: float
  clock_mhz: float | None = None
  memory: Memory | None = None
  constants: dict | None = None

  @property
  def ms_per_unit(self) -> float:
    """Milliseconds per LUT unit."""
    if self.unit == "cycles":
      return 1.0 / (self.clock_mhz * 1e3)
    return _MS_PER_UNIT[self.unit]

  @property
  def network_fixed(self) -> float:
    """Latency of everything outside the cells except the overhead (stem, reductions, head)."""
    return self.stem + sum(self.reductions) + self.head

  def table(self) -> StageOpTable:
    """The LUT as a StageOpTable over op indices 0..5, where 5 is a dropped edge (cost 0)."""
    per_op = np.concatenate([self.ops, np.zeros((self.config.num_stages, 1))], axis=1)
    return StageOpTable(per_op, self.overhead + self.network_fixed, self.config.cells_per_stage)


def source(provenance: dict) -> str:
  """The label a report prints for where a LUT's numbers come from, by `provenance.method`: the
  package's own methods name their emulator or model, a user's worksheet or timings are user-supplied,
  and only another method whose LUT declares `measured` (a table timed on a board) is "measured on
  a board"."""
  method = provenance.get("method")
  if method in _SOURCES:
    return _SOURCES[method]
  if provenance.get("measured") is True:
    return f"measured on a board ({method}), as the LUT declares"
  return f"NOT measured ({method})"


def measured_on_board(provenance: dict) -> bool:
  """Whether a LUT's numbers are timings taken on a board (`source`)."""
  return source(provenance).startswith("measured on a board")


def entries(lut: LUT) -> list[tuple[str, float]]:
  """(name, value) of every entry of `lut`, named as `lut worksheet` rows: 'nor_conv_3x3 stage 2'."""
  named = [("stem", lut.stem)]
  named += [(f"{name} stage {s + 1}", lut.ops[s, op])
            for s in range(lut.config.num_stages) for op, name in enumerate(space.OPS)]
  named += [(f"reduction stage {s + 2}", r) for s, r in enumerate(lut.reductions)]
  named += [("head", lut.head), ("overhead", lut.overhead)]
  return [(name, float(value)) for name, value in named]


def check_plausible(lut: LUT, origin: str) -> LUT:
  """`lut`, if its numbers can be an MCU's; a one-line LUTError naming `origin` otherwise.

  Every entry is finite and non-negative; a clock is in MHz (0 < clock_mhz <= MAX_CLOCK_MHZ) and
  given when the unit is cycles; the slowest network of the space takes at most MAX_PLAUSIBLE_MS.
  That network has every edge on the op whose entries sum highest over the stages (every-op): as
  entries are non-negative, it bounds each entry, the fixed ones and every op's.
  """
  for name, value in entries(lut):
    if not math.isfinite(value) or value < 0:
      raise LUTError(f"{origin}: {name}: must be a finite non-negative number, got {value!r}")
  if lut.clock_mhz is not None and not 0 < lut.clock_mhz <= MAX_CLOCK_MHZ:
    raise LUTError(f"{origin}: ", Param("clock_mhz"), f": must be in (0, {MAX_CLOCK_MHZ:g}] MHz, "
                   f"got {lut.clock_mhz!r}: is it in MHz?")
  if lut.unit == "cycles" and lut.clock_mhz is None:
    raise LUTError(f"{origin}: ", Param("clock_mhz"),
                   ": a positive clock is required when unit is 'cycles'")
  per_edge = lut.ops.sum(0)  # [5]: one edge's cost over all stages, per op
  worst = int(np.argmax(per_edge))
  slowest = (lut.overhead + lut.network_fixed + lut.config.cells_per_stage * space.NUM_EDGES
             * float(per_edge[worst])) * lut.ms_per_unit
  if not slowest <= MAX_PLAUSIBLE_MS:
    name, value = max(entries(lut), key=lambda entry: entry[1])
    raise LUTError(f"{origin}: the slowest cell (all {space.OPS[worst]}) would take "
                   f"{slowest / 3.6e6:.3g} h per inference, and no MCU network takes an hour "
                   f"(largest entry: {name} = {value:.6g} {lut.unit}): is the unit right "
                   f"({', '.join(UNITS)})?")
  return lut


def _dead_code(lut: LUT, dead_code: bool | None) -> bool:
  return lut.semantics == "dead-code" if dead_code is None else dead_code


def estimate(archs, lut: LUT, dead_code: bool | None = None) -> np.ndarray:
  """Whole-network latency in ms of cells `archs: [..., 6]` -> `[...]` (float64).

  `dead_code` picks the runtime semantics (module docstring); None follows the LUT's.
  """
  total = graph.dead_code_cost(archs, _dead_code(lut, dead_code), lut.table(), lut.overhead)
  return total * lut.ms_per_unit


def graph_latency(network: graph.Graph, lut: LUT) -> float:
  """Latency in ms of a network graph from `lut`: a pass over its blocks (the stem, each
  reduction, each cell's executed edges, the head) plus the overhead. A graph built with
  `dead_code` whose cell output is unreachable is a constant: the overhead alone. `estimate` is
  its vectorized form over many cells (the tests hold them equal)."""
  if lut.config != network.config:
    raise LUTError(f"the LUT prices network {lut.config}, not {network.config}")
  if network.constant:
    return lut.overhead * lut.ms_per_unit
  total = lut.overhead + lut.network_fixed
  for stage, ops in network.cell_ops():
    total += sum(float(lut.ops[stage, op]) for op in ops if op != DROPPED)
  return total * lut.ms_per_unit


# ---------------------------------------------------------------------------------------------
# JSON: parse with a schema check, write, packaged boards.


def _number(value, where: str, integer: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise LUTError(f"{where}: must be a non-negative number, got {value!r}")
  if value < 0:
    raise LUTError(f"{where}: must be non-negative, got {value!r}")
  if integer and value != int(value):
    raise LUTError(f"{where}: must be a whole number, got {value!r}")
  return int(value) if integer else float(value)


def _mapping(value, where: str, required=(), allowed=None) -> dict:
  if not isinstance(value, dict):
    raise LUTError(f"{where}: must be a JSON object, got {type(value).__name__}")
  for key in required:
    if key not in value:
      raise LUTError(f"{where}: missing field '{key}'")
  if allowed is not None:
    for key in value:
      if key not in allowed:
        raise LUTError(f"{where}: unknown field '{key}'; known: {', '.join(allowed)}")
  return value


def _text(value, where: str) -> str:
  if not isinstance(value, str) or not value.strip():
    raise LUTError(f"{where}: must be a non-empty string, got {value!r}")
  return value


def _choice(value, where: str, choices) -> str:
  if value not in choices:
    raise LUTError(f"{where}: unknown value {value!r}; known: {', '.join(choices)}")
  return value


def _config(data, where: str) -> NetworkConfig:
  data = _mapping(data, where, _NETWORK_FIELDS, _NETWORK_FIELDS)
  values = {k: _number(data[k], f"{where}.{k}", integer=True) for k in _NETWORK_FIELDS}
  try:
    return NetworkConfig(**values)
  except ValueError as error:
    raise LUTError(f"{where}: {error}") from None


def _stage_ops(stages, where: str, config: NetworkConfig) -> np.ndarray:
  if not isinstance(stages, list) or len(stages) != config.num_stages:
    got = len(stages) if isinstance(stages, list) else type(stages).__name__
    raise LUTError(f"{where}: expected a list of {config.num_stages} stages, got {got}")
  table = np.zeros((config.num_stages, space.NUM_OPS))
  for s, stage in enumerate(stages):
    at = f"{where}[{s}]"
    stage = _mapping(stage, at, ("channels", "resolution", "ops"), ("channels", "resolution", "ops"))
    for key, expected in (("channels", config.stage_channels[s]),
                          ("resolution", config.stage_resolutions[s])):
      if stage[key] != expected:
        raise LUTError(f"{at}.{key}: stage {s + 1} of this network has {key} {expected}, "
                       f"got {stage[key]!r}")
    ops = _mapping(stage["ops"], f"{at}.ops")
    for op, name in enumerate(space.OPS):
      if name not in ops:
        raise LUTError(f"{at}.ops: missing op '{name}'")
      table[s, op] = _number(ops[name], f"{at}.ops.{name}")
    for name in ops:
      if name not in space.OPS:
        raise LUTError(f"{at}.ops: unknown op '{name}'; known ops: {', '.join(space.OPS)}")
  return table


def from_dict(data, origin: str = "LUT") -> LUT:
  """Parses and validates a LUT from its JSON object; errors name `origin` and the field."""
  data = _mapping(data, origin, [f for f in _FIELDS if f not in _OPTIONAL], _FIELDS)
  if data["format"] != FORMAT:
    raise LUTError(f"{origin}: format: expected {FORMAT!r}, got {data['format']!r}")
  unit = _choice(data["unit"], f"{origin}: unit", UNITS)
  clock = data.get("clock_mhz")
  if clock is not None:
    clock = _number(clock, f"{origin}: clock_mhz")
  if unit == "cycles" and not clock:
    raise LUTError(f"{origin}: clock_mhz: a positive clock is required when unit is 'cycles'")
  config = _config(data["network"], f"{origin}: network")
  reductions = data["reductions"]
  if not isinstance(reductions, list) or len(reductions) != config.num_stages - 1:
    raise LUTError(f"{origin}: reductions: expected a list of {config.num_stages - 1} numbers "
                   f"(one per reduction block), got {reductions!r}")
  memory = data.get("memory")
  if memory is not None:
    memory = _mapping(memory, f"{origin}: memory", _MEMORY_FIELDS[:2], _MEMORY_FIELDS)
    memory = Memory(**{k: _number(v, f"{origin}: memory.{k}", integer=True)
                       for k, v in memory.items()})
  provenance = _mapping(data["provenance"], f"{origin}: provenance", ("method", "measured"))
  if not isinstance(provenance["measured"], bool):
    raise LUTError(f"{origin}: provenance.measured: must be true or false")
  constants = data.get("constants")
  if constants is not None:
    constants = _mapping(constants, f"{origin}: constants")
  lut = LUT(
      device=_text(data["device"], f"{origin}: device"),
      unit=unit,
      semantics=_choice(data["semantics"], f"{origin}: semantics", SEMANTICS),
      provenance=provenance,
      config=config,
      ops=_stage_ops(data["stages"], f"{origin}: stages", config),
      stem=_number(data["stem"], f"{origin}: stem"),
      reductions=tuple(_number(r, f"{origin}: reductions[{i}]") for i, r in enumerate(reductions)),
      head=_number(data["head"], f"{origin}: head"),
      overhead=_number(data["overhead"], f"{origin}: overhead"),
      clock_mhz=clock,
      memory=memory,
      constants=constants,
  )
  return check_plausible(lut, origin)


def _round(value: float) -> float | int:
  value = float(f"{value:.6g}")
  return int(value) if value == int(value) and abs(value) < 2**53 else value


def to_dict(lut: LUT) -> dict:
  """The LUT as its JSON object (numbers to 6 significant digits)."""
  cfg = lut.config
  data = {"format": FORMAT, "device": lut.device}
  if lut.clock_mhz is not None:
    data["clock_mhz"] = _round(lut.clock_mhz)
  data.update({
      "unit": lut.unit,
      "semantics": lut.semantics,
      "provenance": lut.provenance,
      "network": {k: getattr(cfg, k) for k in _NETWORK_FIELDS},
      "stem": _round(lut.stem),
      "stages": [{"channels": c, "resolution": r,
                  "ops": {name: _round(lut.ops[s, op]) for op, name in enumerate(space.OPS)}}
                 for s, (c, r) in enumerate(zip(cfg.stage_channels, cfg.stage_resolutions))],
      "reductions": [_round(r) for r in lut.reductions],
      "head": _round(lut.head),
      "overhead": _round(lut.overhead),
  })
  if lut.memory is not None:
    data["memory"] = dataclasses.asdict(lut.memory)
  if lut.constants is not None:
    data["constants"] = lut.constants
  return data


def load(path: str | os.PathLike) -> LUT:
  """Reads and validates the LUT file at `path`; a LUTError names the file and the field."""
  try:
    with open(path) as f:
      text = f.read()
  except FileNotFoundError:
    raise LUTError(f"{path}: file not found") from None
  except OSError as error:
    raise LUTError(f"{path}: cannot read: {error.strerror}") from None
  try:
    data = json.loads(text)
  except json.JSONDecodeError as error:
    raise LUTError(f"{path}: not valid JSON: {error}") from None
  return from_dict(data, str(path))


def save(lut: LUT, path: str | os.PathLike) -> None:
  """Writes `lut` as JSON to `path` atomically (`paths.write_atomically`): a failed write leaves
  the old file, and raises a one-line PathError."""
  text = json.dumps(to_dict(lut), indent=2) + "\n"
  paths.write_atomically(path, lambda tmp: tmp.write_text(text))


def _luts_dir():
  return importlib.resources.files("micronas_jax.hardware").joinpath("luts")


def boards() -> tuple[str, ...]:
  """Names of the packaged LUTs (`luts/NAME.json`; `*-kernels.json` are the kernel models of
  `hardware.shapes`, not tables)."""
  return tuple(sorted(p.name[:-5] for p in _luts_dir().iterdir()
                      if p.name.endswith(".json") and not p.name.endswith("-kernels.json")))


@functools.cache
def board(name: str) -> LUT:
  """The packaged LUT of board `name` (see `boards()`)."""
  if name not in boards():
    raise LUTError(f"unknown board {name!r}; known boards: {', '.join(boards())}")
  return from_dict(json.loads(_luts_dir().joinpath(f"{name}.json").read_text()),
                   f"packaged LUT {name}.json")


# ---------------------------------------------------------------------------------------------
# Fit from whole-network timings.


def _stage_shares(config: NetworkConfig) -> tuple[np.ndarray, np.ndarray]:
  """How a fitted per-op total splits over stages, and the fixed total over stem/reductions/head.

  Whole-network timings only identify sums over stages (every stage holds the same cell) and the
  sum of the fixed parts; the split follows the analytic model's MAC-equivalents, so any split
  gives the same whole-network estimates.
  """
  w = analytic.work(config)
  totals = w.ops.sum(0, keepdims=True)
  uniform = np.full_like(w.ops, 1.0 / config.num_stages, dtype=np.float64)
  ops = np.where(totals > 0, w.ops / np.maximum(totals, 1), uniform)
  fixed = np.array([w.stem[0], *(r[0] for r in w.reductions), w.head[0]], np.float64)
  return ops, fixed / fixed.sum()


def fit_features(archs, dead_code: bool) -> np.ndarray:
  """Design matrix `[n, 6]` of whole-network timings: overhead, network, 4 op counts.

  Columns: 1; 1 if the network is not folded away (always 1 under every-op); then, per op
  skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3, the edges of one cell that run it (none
  in a folded network).
  'none' has no column: it runs no kernel, and under every-op its count is 6 minus the others, so
  it could not be told from the constant anyway.
  """
  archs = np.asarray(archs)
  reach = graph.reachability(archs) if dead_code else None
  executed = reach.executed(archs) if dead_code else archs
  runs = reach.output if dead_code else np.ones(archs.shape[0], bool)
  counts = [((executed == op) & runs[:, None]).sum(-1) for op in range(1, space.NUM_OPS)]
  return np.column_stack([np.ones(archs.shape[0]), runs, *counts]).astype(np.float64)


def fit(archs, latency_ms, dead_code: bool = False, config: NetworkConfig = NB201_CIFAR10,
        device: str = "fitted", source: str = "") -> LUT:
  """A LUT (unit ms) fitted by non-negative least squares to whole-network timings.

  Args:
    archs: `[n, 6]` op indices of the timed cells.
    latency_ms: `[n]` their measured latencies.
    dead_code: the runtime semantics the timings follow (module docstring).
  Minimizes ||F c - t||^2 over c >= 0, with F from `fit_features`; per-op totals and the fixed
  part are then split over stages and over stem/reductions/head by `_stage_shares`. When no timed
  cell is folded away the overhead cannot be told from the network's fixed part and is set to 0.
  The fitted LUT passes `check_plausible` (errors name `source`) like a loaded one.
  """
  archs = np.asarray(archs)
  times = np.asarray(latency_ms, np.float64)
  if archs.ndim != 2 or archs.shape[1] != space.NUM_EDGES or times.shape != archs.shape[:1]:
    raise ValueError(f"expected archs [n, 6] and latency_ms [n], got {archs.shape}, {times.shape}")
  features = fit_features(archs, dead_code)
  if not (dead_code and (features[:, 1] == 0).any()):
    features[:, 0] = 0.0  # overhead and network columns coincide: keep one
  if archs.shape[0] < 5:
    raise ValueError(f"a fit needs at least 5 timed cells, got {archs.shape[0]}")
  if not (np.isfinite(times) & (times >= 0)).all():
    raise ValueError("latency_ms must be finite and non-negative")
  coef, _ = optimize.nnls(features, times)
  op_shares, fixed_shares = _stage_shares(config)
  ops = np.zeros((config.num_stages, space.NUM_OPS))
  ops[:, 1:] = coef[2:] / config.cells_per_stage * op_shares[:, 1:]
  fixed = coef[1] * fixed_shares
  lut = LUT(
      device=device, unit="ms", semantics="dead-code" if dead_code else "every-op",
      provenance={
          "method": "fitted", "measured": True,
          "by": "micronas-jax lut fit (non-negative least squares on whole-network timings)",
          "timings": source or "in memory", "cells": int(archs.shape[0]),
          "note": "only whole-network sums are identified: the split over stages and over "
                  "stem/reductions/head follows the analytic model's MAC-equivalents",
      },
      config=config, ops=ops, stem=float(fixed[0]),
      reductions=tuple(float(r) for r in fixed[1:-1]), head=float(fixed[-1]),
      overhead=float(coef[0]))
  return check_plausible(lut, f"{source}: fitted LUT" if source else "fitted LUT")
