"""The ranked objective: dense ranks, weights, limits (hand examples)."""
import numpy as np
import pytest

from micronas_jax import space
from micronas_jax.hardware import latency
from micronas_jax.search import objective


def test_dense_rank_shares_ties_and_counts_distinct_values():
  values = [0.3, 0.1, 0.3, 0.2]
  # Lower is better: 0.1 -> 1, 0.2 -> 2, both 0.3 -> 3 (dense: no gap after a tie).
  np.testing.assert_array_equal(objective.dense_rank(values, False), [3, 1, 3, 2])
  np.testing.assert_array_equal(objective.dense_rank(values, True), [1, 3, 1, 2])


def test_dense_rank_puts_invalid_entries_last_without_shifting_valid_ranks():
  ranks = objective.dense_rank([5.0, -100.0, 7.0, 5.0], False, valid=[True, False, True, True])
  np.testing.assert_array_equal(np.asarray(ranks)[[0, 2, 3]], [1, 2, 1])
  assert ranks[1] > 2


def test_combined_score_is_weighted_rank_sum():
  # Three cells: NTK [10, 20, 10] (lower better) -> [1, 2, 1]; LR [5, 9, 7] (higher) -> [3, 1, 2].
  ranks = {"ntk": objective.dense_rank([10.0, 20.0, 10.0], False),
           "lr": objective.dense_rank([5.0, 9.0, 7.0], True)}
  score = objective.combined_score(ranks, objective.Weights(0.5, 0.5))
  np.testing.assert_allclose(score, [2.0, 1.5, 1.5])  # 0.5 * (1 + 3), 0.5 * (2 + 1), 0.5 * (1 + 2)


def test_round_significant_keeps_three_figures():
  np.testing.assert_allclose(objective.round_significant([0.0123456, -2345.6, 0.0, 1.0]),
                             [0.0123, -2350.0, 0.0, 1.0], rtol=1e-6)


def test_micronas_weights_split_the_rest_between_ntk_and_lr():
  weights = objective.Weights.micronas(0.2, 0.4)
  assert (weights.ntk, weights.lr, weights.flops, weights.latency) == pytest.approx(
      (0.2, 0.2, 0.2, 0.4))
  assert objective.Weights.micronas() == objective.Weights(0.5, 0.5, 0.0, 0.0)  # TE-NAS


def test_micronas_weights_with_meco_split_the_rest_in_thirds():
  weights = objective.Weights.micronas(0.1, 0.3, meco=True)
  assert (weights.ntk, weights.lr, weights.meco, weights.flops, weights.latency) == pytest.approx(
      (0.2, 0.2, 0.2, 0.1, 0.3))
  assert objective.Weights.micronas(meco=True).as_array(("meco", "ntk")) == pytest.approx(
      [1 / 3, 1 / 3])
  with pytest.raises(objective.ObjectiveError, match="above 1"):
    objective.Weights(0.5, 0.5, meco=0.1)


@pytest.mark.parametrize("w_flops, w_latency, message", [
    (1.5, 0.0, "w_flops must lie in [0, 1]"), (-0.1, 0.0, "w_flops must lie in [0, 1]"),
    (0.6, 0.6, "is above 1")])
def test_bad_weights_are_refused(w_flops, w_latency, message):
  with pytest.raises(objective.ObjectiveError, match=message.replace("[", r"\[")):
    objective.Weights.micronas(w_flops, w_latency)


def test_board_memory_is_a_limit_unless_a_user_limit_is_tighter():
  lut = latency.board("stm32f746")
  bounds = objective.Limits(max_sram_kb=64).bounds(lut)
  assert bounds["sram_kb"][0] == 64 and bounds["flash_kb"][0] == 1024
  assert "flash_kb" not in objective.Limits(board_memory=False).bounds(lut)


def test_limits_mark_exactly_the_cells_within_every_bound():
  lut = latency.board("stm32f746")
  archs = space.all_archs()
  costs = objective.cell_costs(archs, lut)
  feasible, _ = objective.space_feasibility(lut, objective.Limits(max_latency_ms=300))
  expected = ((costs["latency_ms"] <= 300) & (costs["sram_kb"] <= 320)
              & (costs["flash_kb"] <= 1024))
  np.testing.assert_array_equal(feasible, expected)


def test_a_limit_no_cell_meets_is_named():
  lut = latency.board("stm32f746")
  with pytest.raises(objective.ObjectiveError, match=r"no cell meets max_latency_ms=1: .* ms"):
    objective.space_feasibility(lut, objective.Limits(max_latency_ms=1))
