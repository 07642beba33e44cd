"""TE-NAS / MicroNAS pruning search: start from the supernet, prune one op per edge per round.

The supernet is the NB201 cell with every op but `none` on every edge (TE-NAS removes `none`
first), each active op weighted 1/k (`space.supernet_weights`). Each round, for every active op
on every edge that still has more than one, the op is removed and each indicator's relative
change  delta = (I(supernet) - I(pruned)) / I(supernet)  is measured: NTK and LR averaged over
`repeats` draws (fresh weights and batch per draw; the supernet and all its pruned copies of a
draw share the weights and the batch, so their differences are not drowned by draw noise), and
rounded to 3 significant figures as TE-NAS does. FLOPs and latency deltas are exact: the cost of
the removed op over the supernet's cost (the supernet runs every active op). All candidates of a
round are ranked together (dense ranks, `objective.dense_rank`):

  NTK delta descending (pruning that lowers the condition number most is best),
  LR delta ascending (pruning that loses the fewest linear regions is best),
  MeCo delta ascending, when the search measures it (beyond the paper; `proxies.meco`),
  FLOPs and latency deltas descending (pruning that saves the most is best),

combined as S = sum_k w_k rank_k; on each edge the candidate with the lowest S is pruned (ties:
the lower NTK rank, then edge/op order, as the reference's stable sort). With 4 ops per edge
that is 3 rounds of 24 + 18 + 12 = 54 candidates. One more pass measures the final cell.

Limits: a candidate whose removal leaves no cell of the pruned supernet that meets every limit
is excluded from the ranking. The round's removals are then taken best first, one per edge, each
only if a feasible cell survives it together with the removals already taken (two removals that
are each fine alone may exclude every feasible cell together). While the supernet holds a
feasible cell c, an edge with more than one op can always drop an op other than c's, so every
edge is pruned each round and by induction the final cell meets every limit. If the `none`-free
supernet holds no feasible cell, the search starts from the full supernet with `none` instead.
Without limits this is exactly the reference's rule (on each edge, its best candidate). Feasibility is checked exactly against all 15,625 cells,
so it covers non-additive costs such as peak SRAM.

The whole search is one jitted function with static shapes (`[6, 5]` op masks, a fixed number
of candidate slots, rounds in `lax.scan`): one compilation per configuration serves every seed,
weight and limit. Candidates run one at a time on a CPU (`lax.cond` skips empty slots) or
vmapped in groups on an accelerator.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from micronas_jax import complexity, data, proxies, space
from micronas_jax.errors import Param, ParamError
from micronas_jax.hardware import latency
from micronas_jax.proxies import draws
from micronas_jax.search import objective

SLOTS = space.NUM_EDGES * space.NUM_OPS  # 30 (edge, op) slots of an op mask
SIGNIFICANT_DIGITS = 3  # TE-NAS rounds its relative changes before ranking


@dataclasses.dataclass(frozen=True)
class Indicators:
  """The measured indicators, injectable (tests plug in synthetic ones).

  Attributes:
    draw: `key -> state`, one draw of everything random (network weights, input batches).
    measure: `(state, weights [6, 5]) -> [len(names)]` float32: the indicators `names` of the
      supernet with edge-op weights `weights`. Must be traceable by jit, scan and vmap.
    name: recorded in reports.
    names: which objective indicators `measure` returns, in order: ("ntk", "lr") or
      ("ntk", "lr", "meco").
  """
  draw: Callable[[jax.Array], Any]
  measure: Callable[[Any, jax.Array], jax.Array]
  name: str = "custom"
  names: tuple[str, ...] = ("ntk", "lr")


def search_config(fast: bool, meco: bool = False, repeats: int = 3, ntk_batch: int = 32,
                  images=None) -> draws.ScoreConfig:
  """The scoring configuration of a search's indicators: the exact NTK ("ntk") or, with `fast`,
  "ntk_fast", then "lr" and, with `meco`, "meco"; `images` (normalized `[N, H, W, C]`, or None
  for standard-normal inputs) are recorded by their fingerprint, and give the networks' input
  channels."""
  return draws.ScoreConfig(
      proxies=("ntk_fast" if fast else "ntk", "lr", *(("meco",) if meco else ())),
      repeats=repeats, ntk_batch=ntk_batch,
      data=None if images is None else data.fingerprint(images),
      in_channels=draws.image_channels(images))


def proxy_indicators(config: draws.ScoreConfig, images=None) -> Indicators:
  """The indicators of a scoring configuration: its NTK proxy ("ntk" or "ntk_fast"), "lr" and,
  if the configuration has it, "meco", each on its family's network and inputs
  (`draws.family_draw`)."""
  by_family = {proxies.get(name).family: name for name in config.network_proxies}
  if (set(by_family) - {"zc"} != {"ntk", "lr"} or by_family.get("zc", "meco") != "meco"
      or len(by_family) != len(config.network_proxies)):
    raise ValueError(f"the pruning search needs one NTK proxy, 'lr' and optionally 'meco', got "
                     f"{', '.join(config.network_proxies) or 'none'}")
  families = tuple(f for f in ("ntk", "lr", "zc") if f in by_family)
  networks = config.networks()
  images = None if images is None else jnp.asarray(images, jnp.float32)

  def draw(key):
    return {family: draws.family_draw(key, family, config, images) for family in families}

  def measure(state, weights):
    values = []
    for family in families:
      variables, inputs = state[family]
      value, _ = proxies.get(by_family[family]).fn(variables, weights, inputs, networks[family])
      values.append(value)
    return jnp.stack(values).astype(jnp.float32)

  names = tuple("ntk" if f == "ntk" else by_family[f] for f in families)
  return Indicators(draw, measure, name="+".join(by_family[f] for f in families), names=names)


def supernet_mask(with_none: bool = False) -> np.ndarray:
  """The starting op mask `[6, 5]` (bool): every op on every edge, `none` only if asked."""
  mask = np.ones((space.NUM_EDGES, space.NUM_OPS), bool)
  mask[:, space.NONE] = with_none
  return mask


def op_costs(lut: latency.LUT | None) -> tuple[np.ndarray, np.ndarray]:
  """Per-op costs of a supernet (every active op runs) -> (per_op `[2, 5]`, fixed `[2]`) for
  (FLOPs, latency): cost(mask) = fixed + sum_{e, o} mask[e, o] * per_op[o]. Without a LUT the
  latency row is 0 (its ranks all tie)."""
  tables = [complexity.flops_table(lut.config if lut else complexity.NB201_CIFAR10)]
  tables.append(lut.table() if lut else None)
  per_op, fixed = np.zeros((2, space.NUM_OPS)), np.zeros(2)
  for row, table in enumerate(tables):
    if table is not None:
      # Every cell of the network shares the arch: an edge's op runs N times in each stage.
      per_op[row] = table.cells_per_stage * np.asarray(table.per_op)[:, :space.NUM_OPS].sum(0)
      fixed[row] = table.fixed
  return per_op.astype(np.float32), fixed.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class PruneResult:
  """The outcome of one pruning search.

  Attributes:
    ops: `[6]` op indices of the chosen cell.
    ntk, lr: the chosen cell's indicators, averaged over the repeats.
    meco: the chosen cell's MeCo (averaged), or None where the search did not measure it.
    rounds: per pruning round {"candidates": [(edge, op)], "delta": {name: [n]},
      "rank": {name: [n]}, "score": [n] (inf = excluded by a limit), "pruned": [(edge, op)]}.
    start_with_none: whether the search had to start with `none` (limits; see module doc).
    seconds: wall time of the search, compilation included.
  """
  ops: np.ndarray
  ntk: float
  lr: float
  rounds: list
  start_with_none: bool
  seconds: float
  meco: float | None = None


class PruneSearch:
  """The jitted pruning search for one indicator setup; compiles once per start mask size.

  `search(seed, weights, lut, feasible) -> PruneResult`; `trace_count` counts compilations.
  """

  def __init__(self, indicators: Indicators, repeats: int = 3, candidates_per_step: int = 1):
    if repeats < 1 or candidates_per_step < 1:
      raise ParamError(Param("repeats"), " and candidates_per_step must be positive")
    self.indicators = indicators
    # Pruning deltas first, in this order, then the exact hardware ones (see the module doc).
    self.names = (*indicators.names, "flops", "latency")
    self.repeats = int(repeats)
    self.candidates_per_step = int(candidates_per_step)
    self.trace_count = 0
    self.on_measure: Callable[[], None] | None = None  # progress hook: one call per supernet
    self._run = jax.jit(self._search, static_argnames=("ops_per_edge",))

  def _tick(self):
    if self.on_measure is not None:
      self.on_measure()

  def evaluations(self, with_none: bool = False) -> int:
    """Supernets one search measures: per round the supernet and its 6 * ops candidates, then
    the final cell, each `repeats` times (3 * (25 + 19 + 13 + 1) = 174 for NB201)."""
    ops = space.NUM_OPS - (0 if with_none else 1)
    return self.repeats * (sum(1 + space.NUM_EDGES * k for k in range(ops, 1, -1)) + 1)

  def _measure_all(self, state, masks, evaluate):
    """Indicators `[n, k]` of supernets `masks: [n, 6, 5]`; rows with `evaluate` False are 0."""
    def one(args):
      mask, flag = args
      weights = mask / jnp.maximum(mask.sum(-1, keepdims=True), 1)
      # On one candidate at a time lax.cond really skips empty slots; under vmap it selects.
      def run():
        jax.debug.callback(self._tick)
        return self.indicators.measure(state, weights)
      measured = len(self.indicators.names)
      return jax.lax.cond(flag, run, lambda: jnp.zeros(measured, jnp.float32))
    step = self.candidates_per_step
    return jax.lax.map(one, (masks.astype(jnp.float32), evaluate),
                       batch_size=None if step == 1 else step)

  def _search(self, key, mask, cells, feasible, per_op, fixed, weights, ops_per_edge: int):
    """Rounds of pruning from `mask: [6, 5]` with `ops_per_edge` ops on each edge."""
    self.trace_count += 1  # runs at trace time only: counts compilations
    slots_per_round = space.NUM_EDGES * ops_per_edge  # round 0: every active op
    edges = jnp.arange(space.NUM_EDGES)

    def viable(candidate):
      """Whether any feasible cell `cells: [15625, 6]` keeps all its ops in `candidate`."""
      return jnp.any(feasible & jnp.all(candidate[edges, cells], axis=-1))

    def one_round(mask, round_index):
      counts = mask.sum(-1)
      prunable = (mask & (counts[:, None] > 1)).reshape(-1)
      slots = jnp.nonzero(prunable, size=slots_per_round, fill_value=0)[0]
      real = jnp.arange(slots_per_round) < prunable.sum()
      flat = jnp.broadcast_to(mask.reshape(-1), (slots_per_round, SLOTS))
      candidates = flat.at[jnp.arange(slots_per_round), slots].set(False).reshape(-1, *mask.shape)
      masks = jnp.concatenate([mask[None], candidates])
      evaluate = jnp.concatenate([jnp.ones(1, bool), real])

      def one_repeat(repeat):
        state = self.indicators.draw(jax.random.fold_in(jax.random.fold_in(key, round_index),
                                                        repeat))
        return self._measure_all(state, masks, evaluate)

      values = jax.lax.map(one_repeat, jnp.arange(self.repeats))  # [repeats, 1 + n, k]
      base = values[:, :1]
      measured = jnp.mean((base - values[:, 1:]) / base, axis=0)  # [n, k]
      ops = slots % space.NUM_OPS
      supernet_cost = fixed + (mask[..., None] * per_op.T).sum((0, 1))  # [2]
      # Without a LUT the latency row is all zero: its deltas are 0 (all tie), not 0 / 0.
      hardware = per_op.T[ops] / jnp.where(supernet_cost > 0, supernet_cost, 1.0)  # [n, 2]
      delta = objective.round_significant(jnp.concatenate([measured, hardware], axis=1),
                                          SIGNIFICANT_DIGITS)  # [n, k + 2] in self.names order
      ok = real & jax.vmap(viable)(candidates)
      # delta = relative drop on pruning: for a lower-is-better indicator (NTK condition number,
      # FLOPs, latency) the highest drop is best; for LR and MeCo the lowest (it loses the least).
      descending = [not objective.HIGHER_IS_BETTER[name] for name in self.names]
      ranks = jnp.stack([objective.dense_rank(delta[:, k], higher, ok)
                         for k, higher in enumerate(descending)], axis=1)
      score = jnp.where(ok, ranks.astype(jnp.float32) @ weights, jnp.inf)
      order = jnp.lexsort((jnp.arange(slots_per_round), ranks[:, 0], score))

      def take(carry, i):
        """Prunes candidate i (best first) if its edge has none pruned yet and a feasible cell
        survives the removals so far: edges pruned together must still share a feasible cell."""
        flat, done = carry
        edge = slots[i] // space.NUM_OPS
        trial = flat.at[slots[i]].set(False)
        accept = ok[i] & ~done[edge] & viable(trial.reshape(mask.shape))
        return ((jnp.where(accept, trial, flat), done.at[edge].set(done[edge] | accept)),
                jnp.where(accept, slots[i], -1))

      (new_flat, _), pruned = jax.lax.scan(
          take, (mask.reshape(-1), jnp.zeros(space.NUM_EDGES, bool)), order)
      new_mask = new_flat.reshape(mask.shape)
      record = {"base": jnp.mean(values[:, 0], axis=0), "slots": slots, "real": real, "ok": ok,
                "delta": delta, "ranks": ranks, "score": score, "pruned": pruned}
      return new_mask, record

    # ops_per_edge - 1 pruning rounds, then one pass that only measures the final cell.
    return jax.lax.scan(one_round, mask, jnp.arange(ops_per_edge))

  def search(self, seed: int, weights: objective.Weights = objective.Weights(),
             lut: latency.LUT | None = None, feasible: np.ndarray | None = None) -> PruneResult:
    """Prunes the supernet to one cell; `feasible: [15625]` bool marks the cells meeting the
    limits (None: all); the result is one of them. Same seed, same cell."""
    unmeasured = [name for name in objective.INDICATORS
                  if getattr(weights, name) > 0 and name not in self.names]
    if unmeasured:
      raise ValueError(f"weights on {', '.join(unmeasured)}, which this search does not measure "
                       f"({self.indicators.name})")
    start = time.perf_counter()
    cells = space.all_archs()
    feasible = np.ones(space.NUM_CELLS, bool) if feasible is None else np.asarray(feasible, bool)
    if feasible.shape != (space.NUM_CELLS,) or not feasible.any():
      raise ValueError("feasible must be [15625] bool with at least one True")
    with_none = not feasible[(cells != space.NONE).all(1)].any()
    mask = supernet_mask(with_none)
    per_op, fixed = op_costs(lut)
    with jax.default_matmul_precision("highest"):
      final_mask, records = self._run(jax.random.key(seed), jnp.asarray(mask), jnp.asarray(cells),
                                      jnp.asarray(feasible), per_op, fixed,
                                      weights.as_array(self.names),
                                      ops_per_edge=int(mask.sum(1)[0]))
    final_mask = np.asarray(final_mask)
    records = jax.tree_util.tree_map(np.asarray, records)
    if not (final_mask.sum(1) == 1).all():
      raise RuntimeError(f"pruning ended with {final_mask.sum(1).tolist()} ops per edge")
    ops = final_mask.argmax(1).astype(np.int32)
    if not feasible[space.index_of(ops)]:
      raise RuntimeError("pruning ended on a cell that violates a limit")
    final = dict(zip(self.indicators.names, records["base"][-1].tolist()))
    return PruneResult(ops, final["ntk"], final["lr"], _rounds(records, self.names), with_none,
                       time.perf_counter() - start, final.get("meco"))


def _rounds(records: dict, names: tuple[str, ...]) -> list[dict]:
  """Per-round summaries (Python lists) of the scan's stacked records; drops the last pass."""
  rounds = []
  for r in range(len(records["real"]) - 1):
    real = records["real"][r]
    slots = records["slots"][r][real]
    pairs = [(int(s) // space.NUM_OPS, int(s) % space.NUM_OPS) for s in slots]
    rounds.append({
        "candidates": pairs,
        "delta": {name: records["delta"][r][real, k].tolist() for k, name in enumerate(names)},
        "rank": {name: records["ranks"][r][real, k].tolist() for k, name in enumerate(names)},
        "score": records["score"][r][real].tolist(),
        "pruned": [(int(s) // space.NUM_OPS, int(s) % space.NUM_OPS)
                   for s in records["pruned"][r] if s >= 0],
    })
  return rounds


def default_candidates_per_step() -> int:
  """1 on a CPU (one supernet at a time); all 25 slots of a round vmapped on an accelerator."""
  return 1 if jax.local_devices()[0].platform == "cpu" else 25


def prune_search(config: draws.ScoreConfig, candidates_per_step: int | None = None,
                 images=None) -> PruneSearch:
  """The PruneSearch of a scoring configuration's proxies on `images: [N, 32, 32, 3]` (normalized,
  `data.load_images`; None: standard-normal inputs). Searchers are kept per configuration (whose
  hash covers the images' fingerprint), so a configuration compiles once per process."""
  step = candidates_per_step or default_candidates_per_step()
  key = (config.hash(), step)
  if key not in _SEARCHERS:
    _SEARCHERS[key] = PruneSearch(proxy_indicators(config, images), config.repeats, step)
  return _SEARCHERS[key]


_SEARCHERS: dict[tuple[str, int], PruneSearch] = {}
