"""Pruning search: known answers on synthetic indicators, limits, determinism, one compilation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from micronas_jax import scoring, space
from micronas_jax.search import objective, prune

NTK_ONLY = objective.Weights(1.0, 0.0)
LR_ONLY = objective.Weights(0.0, 1.0)


def test_ntk_only_pruning_keeps_the_lowest_ntk_op_on_each_edge(additive):
  # Removing the op with the largest A lowers NTK most, so rounds prune ops by descending A:
  # the survivor on each edge is the op (not 'none') of smallest A.
  result = prune.PruneSearch(additive.indicators(), repeats=1).search(0, NTK_ONLY)
  np.testing.assert_array_equal(result.ops, additive.A[:, 1:].argmin(1) + 1)


def test_lr_only_pruning_keeps_the_highest_lr_op_on_each_edge(additive):
  result = prune.PruneSearch(additive.indicators(), repeats=1).search(0, LR_ONLY)
  np.testing.assert_array_equal(result.ops, additive.B[:, 1:].argmax(1) + 1)


def test_rounds_rank_24_18_12_candidates_and_prune_one_op_per_edge(additive):
  result = prune.PruneSearch(additive.indicators(), repeats=2).search(0)
  assert [len(r["candidates"]) for r in result.rounds] == [24, 18, 12]  # 54 in all
  for r in result.rounds:
    assert sorted(edge for edge, _ in r["pruned"]) == list(range(6))
    assert all(op != space.NONE for _, op in r["candidates"])  # TE-NAS drops 'none' first


def test_candidate_deltas_are_relative_changes_rounded_to_three_figures(additive):
  result = prune.PruneSearch(additive.indicators(), repeats=1).search(0)
  first = result.rounds[0]
  supernet = space.supernet_weights(prune.supernet_mask())
  edge, op = first["candidates"][5]
  pruned_mask = prune.supernet_mask()
  pruned_mask[edge, op] = False
  base = (supernet * additive.A).sum()
  pruned = (space.supernet_weights(pruned_mask) * additive.A).sum()
  expected = float(objective.round_significant((base - pruned) / base))
  assert first["delta"]["ntk"][5] == pytest.approx(expected, rel=1e-5)


def test_same_seed_same_cell_and_one_compilation(additive):
  search = prune.PruneSearch(additive.indicators(noise=3.0), repeats=2)
  first = search.search(7)
  assert np.array_equal(search.search(7).ops, first.ops)
  search.search(8, LR_ONLY)
  assert search.trace_count == 1  # new seeds and weights reuse the compiled search


def test_limits_hold_when_the_unconstrained_pick_violates_them(additive):
  search = prune.PruneSearch(additive.indicators(), repeats=1)
  best = additive.A[:, 1:].argmin(1) + 1
  archs = space.all_archs()
  feasible = archs[:, 0] != best[0]  # forbid the best op on edge 0
  result = search.search(0, NTK_ONLY, feasible=feasible)
  # Edges are independent here, so the answer is the second-lowest A on edge 0.
  expected = best.copy()
  expected[0] = np.argsort(additive.A[0, 1:])[1] + 1
  np.testing.assert_array_equal(result.ops, expected)
  assert feasible[space.index_of(result.ops)]


def test_search_starts_with_none_when_only_cells_with_none_are_feasible(additive):
  archs = space.all_archs()
  result = prune.PruneSearch(additive.indicators(), repeats=1).search(
      0, NTK_ONLY, feasible=archs[:, 2] == space.NONE)
  assert result.start_with_none and result.ops[2] == space.NONE
  assert [len(r["candidates"]) for r in result.rounds] == [30, 24, 18, 12]


def test_proxy_indicators_run_the_real_networks_deterministically():
  config = scoring.ScoreConfig(proxies=("ntk_fast", "lr"), repeats=1, ntk_resolution=8,
                               ntk_batch=4, lr_batches=1, lr_batch=16)
  search = prune.PruneSearch(prune.proxy_indicators(config), repeats=1)
  first = search.search(0)
  assert np.array_equal(search.search(0).ops, first.ops)
  assert np.isfinite(first.ntk) and first.lr >= 1


def test_meco_only_pruning_keeps_the_highest_meco_op_and_reports_it(additive):
  search = prune.PruneSearch(additive.with_meco(), repeats=1)
  result = search.search(0, objective.Weights(0.0, 0.0, meco=1.0))
  np.testing.assert_array_equal(result.ops, additive.M[:, 1:].argmax(1) + 1)
  assert result.meco == pytest.approx(float(additive.M[np.arange(6), result.ops].sum()), rel=1e-5)
  assert set(result.rounds[0]["rank"]) == {"ntk", "lr", "meco", "flops", "latency"}
  # The NTK-only answer is unchanged by a measured but unweighted MeCo.
  np.testing.assert_array_equal(search.search(0, NTK_ONLY).ops, additive.A[:, 1:].argmin(1) + 1)


def test_a_weight_on_an_indicator_the_search_does_not_measure_is_refused(additive):
  with pytest.raises(ValueError, match="weights on meco"):
    prune.PruneSearch(additive.indicators(), repeats=1).search(
        0, objective.Weights(0.5, 0.0, meco=0.5))


def test_proxy_indicators_with_meco_measure_it_on_the_zero_cost_network():
  config = scoring.ScoreConfig(proxies=("ntk_fast", "lr", "meco"), repeats=1, ntk_resolution=8,
                               ntk_batch=4, lr_batches=1, lr_batch=16, zc_channels=2, zc_cells=1,
                               zc_resolution=8, zc_batch=2)
  indicators = prune.proxy_indicators(config)
  assert indicators.names == ("ntk", "lr", "meco")
  result = prune.PruneSearch(indicators, repeats=1).search(
      0, objective.Weights.micronas(meco=True))
  assert np.isfinite(result.meco) and result.meco > 0
  with pytest.raises(ValueError, match="optionally 'meco'"):
    prune.proxy_indicators(scoring.ScoreConfig(proxies=("ntk_fast", "lr", "zico")))


def test_search_config_names_the_measured_proxies_and_the_images():
  from micronas_jax import data
  assert prune.search_config(fast=False).proxies == ("ntk", "lr")
  images = np.zeros((2, 32, 32, 3), np.float32)
  config = prune.search_config(fast=True, meco=True, repeats=1, ntk_batch=8, images=images)
  assert config.proxies == ("ntk_fast", "lr", "meco")
  assert (config.repeats, config.ntk_batch, config.data) == (1, 8, data.fingerprint(images))
  assert prune.search_config(fast=True).data is None
