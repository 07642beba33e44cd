"""The search objective: indicators become dense ranks, the score is their weighted sum.

For candidates c with indicators I_k (NTK condition number, linear regions, FLOPs, latency) the
combined score is

    S(c) = sum_k w_k * rank_k(c),   rank_k = dense rank of I_k, 1 = best, ties share a rank,

and lower S is better. Defaults follow the reference code: TE-NAS (arXiv 2102.11535) weighs NTK
and LR equally; MicroNAS (arXiv 2401.08996, fork YeQiao/TG-NAS) adds FLOPs and latency with
w_ntk = w_lr = (1 - w_flops - w_latency) / 2. Beyond the paper, MeCo can join NTK and LR as a
third training-free indicator (`Weights.micronas(..., meco=True)`). Hard limits (latency, SRAM,
flash, FLOPs) are constraints on the candidates, never weights.

`dense_rank` and `round_significant` are written in jax.numpy so that the pruning search can run
them inside jit; they accept numpy arrays as well.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from micronas_jax import proxies, space
from micronas_jax.errors import Param, ParamError, joined
from micronas_jax.hardware import latency
from micronas_jax.hardware.costs import COST_NAMES, KB, cell_costs  # noqa: F401 (re-exported)

INDICATORS = ("ntk", "lr", "flops", "latency", "meco")
# How each indicator's value orders cells. The proxies' directions come from their registry (the
# "ntk" indicator is either NTK proxy; both are condition numbers). FLOPs and latency are
# hardware costs in this objective (MicroNAS's rank aggregate), so lower is better; as an
# indicator of capacity FLOPs order the other way (`draws.ANALYTIC_HIGHER_IS_BETTER`).
HIGHER_IS_BETTER = {"ntk": proxies.get("ntk").higher_is_better,
                    "lr": proxies.get("lr").higher_is_better,
                    "flops": False, "latency": False,
                    "meco": proxies.get("meco").higher_is_better}


class ObjectiveError(ParamError):
  """Weights or limits that define no search: the message is one line naming the problem."""


def dense_rank(values, higher_is_better: bool, valid=None) -> jnp.ndarray:
  """Dense ranks `[n]` (int32, 1 = best) of `values: [n]`; equal values share a rank.

  Ranks count distinct values: [0.3, 0.1, 0.3, 0.2] lower-is-better -> [3, 1, 3, 2]. Entries
  with `valid` False are ranked after every valid one and do not shift the valid ranks.
  """
  values = jnp.asarray(values)
  key = -values if higher_is_better else values
  if valid is not None:
    key = jnp.where(jnp.asarray(valid), key, jnp.inf)
  order = jnp.argsort(key, stable=True)
  ordered = key[order]
  new_value = jnp.concatenate([jnp.ones(1, bool), ordered[1:] != ordered[:-1]])
  return jnp.zeros(values.shape, jnp.int32).at[order].set(jnp.cumsum(new_value, dtype=jnp.int32))


def round_significant(x, digits: int = 3) -> jnp.ndarray:
  """Rounds to `digits` significant figures (TE-NAS rounds its relative changes so that nearly
  equal ones tie); zero and non-finite values pass through."""
  x = jnp.asarray(x)
  safe = jnp.where((x == 0) | ~jnp.isfinite(x), 1.0, jnp.abs(x))
  scale = 10.0**(digits - 1 - jnp.floor(jnp.log10(safe)))
  return jnp.where((x == 0) | ~jnp.isfinite(x), x, jnp.round(x * scale) / scale)


@dataclasses.dataclass(frozen=True)
class Weights:
  """Weights of the ranks in S = sum_k w_k rank_k (each in [0, 1], summing to at most 1).

  `meco` weighs MeCo (Jiang et al., NeurIPS 2023; `proxies.meco`), an indicator beyond the paper
  (0 = the paper's objective).
  """
  ntk: float = 0.5
  lr: float = 0.5
  flops: float = 0.0
  latency: float = 0.0
  meco: float = 0.0

  def __post_init__(self):
    for name in INDICATORS:
      value = getattr(self, name)
      if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ObjectiveError("weight ", Param(f"w_{name}"), f" must lie in [0, 1], got {value}")
    total = sum(getattr(self, name) for name in INDICATORS)
    if total > 1.0 + 1e-9:
      raise ObjectiveError(f"weights sum to {total:g}, above 1")

  @classmethod
  def micronas(cls, w_flops: float = 0.0, w_latency: float = 0.0,
               meco: bool = False) -> "Weights":
    """MicroNAS weighting: w_ntk = w_lr = (1 - w_flops - w_latency) / 2 (TE-NAS when both are 0).
    With `meco`, NTK, LR and MeCo share 1 - w_flops - w_latency equally (a third each)."""
    for name, value in (("w_flops", w_flops), ("w_latency", w_latency)):
      if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ObjectiveError(Param(name), f" must lie in [0, 1], got {value}")
    if w_flops + w_latency > 1.0 + 1e-9:
      raise ObjectiveError(Param("w_flops"), " + ", Param("w_latency"),
                           f" = {w_flops + w_latency:g} is above 1")
    rest = max(0.0, 1.0 - w_flops - w_latency) / (3 if meco else 2)
    return cls(rest, rest, w_flops, w_latency, rest if meco else 0.0)

  def as_array(self, names: tuple[str, ...] = INDICATORS) -> np.ndarray:
    """`[len(names)]` float32: the weights of `names` (default: all INDICATORS), in that order."""
    return np.asarray([getattr(self, name) for name in names], np.float32)


def combined_score(ranks: dict, weights: Weights):
  """S = sum_k w_k * rank_k over the INDICATORS present in `ranks` ({name: [n]}) -> `[n]`."""
  return sum(getattr(weights, name) * jnp.asarray(ranks[name], jnp.float32)
             for name in INDICATORS if name in ranks)


@dataclasses.dataclass(frozen=True)
class Limits:
  """Hard limits; None means no limit. Memory is in KB (1024 bytes), FLOPs in M (NB201 rules).

  `board_memory` adds the board's own SRAM and flash (from the LUT) as limits: a cell that does
  not fit cannot run there.
  """
  max_latency_ms: float | None = None
  max_sram_kb: float | None = None
  max_flash_kb: float | None = None
  max_flops_m: float | None = None
  board_memory: bool = True

  def __post_init__(self):
    for field in ("max_latency_ms", "max_sram_kb", "max_flash_kb", "max_flops_m"):
      value = getattr(self, field)
      if value is not None and not (math.isfinite(value) and value > 0):
        raise ObjectiveError(Param(field), f" must be a positive number, got {value}")

  def bounds(self, lut: latency.LUT) -> dict[str, tuple[float, str | Param]]:
    """{cost column: (bound, where it comes from)} of every active limit on `lut`'s board: the
    parameter that set it (`errors.Param`), or the board's memory as text."""
    bounds = {}
    if self.max_latency_ms is not None:
      bounds["latency_ms"] = (self.max_latency_ms,
                             Param("max_latency_ms", f"{self.max_latency_ms:g}"))
    if self.max_flops_m is not None:
      bounds["flops_m"] = (self.max_flops_m, Param("max_flops_m", f"{self.max_flops_m:g}"))
    for column, option, board_bytes in (
        ("sram_kb", "max_sram_kb", lut.memory.sram_bytes if lut.memory else None),
        ("flash_kb", "max_flash_kb", lut.memory.flash_bytes if lut.memory else None)):
      user = getattr(self, option)
      board = board_bytes / KB if (self.board_memory and board_bytes) else None
      if user is not None and (board is None or user <= board):
        bounds[column] = (user, Param(option, f"{user:g}"))
      elif board is not None:
        bounds[column] = (board, f"the board's {column[:-3].upper()} ({board:g} KB)")
    return bounds


def feasible(costs: dict[str, np.ndarray], bounds: dict) -> np.ndarray:
  """Cells (bool, shape of the cost columns) that meet every bound of `Limits.bounds`."""
  shape = np.shape(next(iter(costs.values())))
  ok = np.ones(shape, bool)
  for column, (bound, _) in bounds.items():
    ok &= costs[column] <= bound
  return ok


def check_meetable(costs: dict[str, np.ndarray], bounds: dict) -> np.ndarray:
  """The feasible mask of `costs`; raises ObjectiveError naming the limit no cell meets."""
  for column, (bound, source) in bounds.items():
    if not (costs[column] <= bound).any():
      what, unit = COST_NAMES[column]
      raise ObjectiveError("no cell meets ", source, f": the least {what} of any cell is "
                           f"{costs[column].min():.4g} {unit}")
  ok = feasible(costs, bounds)
  if not ok.any():
    raise ObjectiveError("no cell meets all limits together (",
                         joined([source for _, source in bounds.values()], ", "),
                         "), though each alone can be met")
  return ok


def space_feasibility(lut: latency.LUT, limits: Limits) -> tuple[np.ndarray, dict]:
  """(feasible `[15625]` bool in benchmark order, bounds) for `limits` on `lut`'s board."""
  bounds = limits.bounds(lut)
  if not bounds:
    return np.ones(space.NUM_CELLS, bool), bounds
  return check_meetable(cell_costs(space.all_archs(), lut), bounds), bounds
