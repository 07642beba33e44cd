"""Score-table search: the best cell under limits by the objective, and the Pareto front."""
import numpy as np
import pytest

from micronas_jax import scoring, space, store
from micronas_jax.hardware import latency
from micronas_jax.search import objective, table


def test_pareto_front_keeps_points_no_other_beats_on_both():
  score = np.array([3.0, 1.0, 2.0, 1.0, 0.5])
  cost = np.array([1.0, 2.0, 2.0, 3.0, 9.0])
  # By cost: (1, 3) kept, (2, 1) kept, (2, 2) beaten, (3, 1) beaten (equal score), (9, 0.5) kept.
  np.testing.assert_array_equal(table.pareto_front(score, cost), [0, 1, 4])


def test_best_cell_minimizes_the_rank_sum_among_cells_meeting_the_limits(write_store, tmp_path):
  indices = np.array([0, 5, 1462, 7000])
  ntk = [30.0, 10.0, 20.0, 10.0]   # ranks (lower better) [3, 1, 2, 1]
  lr = [100.0, 300.0, 400.0, 200.0]  # ranks (higher better) [4, 2, 1, 3]
  scores = table.load_scores(write_store(tmp_path / "s.sqlite", indices, ntk, lr))
  lut = latency.board("stm32f746")
  result = table.search(scores, lut, objective.Weights(), objective.Limits(board_memory=False))
  # S = [3.5, 1.5, 1.5, 2.0]: 5 and 1462 tie; the lower NTK rank (5) wins.
  np.testing.assert_allclose(result.objective, [3.5, 1.5, 1.5, 2.0])
  assert scores.indices[result.best] == 5
  latency_5 = latency.estimate(space.arch_at(5), lut)
  limited = table.search(scores, lut, objective.Weights(),
                         objective.Limits(max_latency_ms=float(latency_5) - 1e-3))
  assert limited.costs["latency_ms"][limited.best] < latency_5


def test_ranks_are_taken_among_the_cells_meeting_the_limits(write_store, tmp_path):
  # Candidates 0, 3, 4 (<= 160 ms); 1462 and 9930 (> 870 ms) are excluded by the limit.
  indices = np.array([0, 3, 4, 1462, 9930])
  ntk = [10.0, 20.0, 30.0, 22.0, 24.0]   # candidates: ranks [1, 2, 3]; all five: [1, 2, 5, 3, 4]
  lr = [300.0, 400.0, 500.0, 100.0, 50.0]  # candidates: ranks [3, 2, 1]; all five: [3, 2, 1, 4, 5]
  scores = table.load_scores(write_store(tmp_path / "s.sqlite", indices, ntk, lr))
  lut = latency.board("stm32f746")
  weights = objective.Weights(ntk=0.4, lr=0.6)
  limits = objective.Limits(max_latency_ms=200.0, board_memory=False)
  result = table.search(scores, lut, weights, limits)
  np.testing.assert_array_equal(result.feasible, [True, True, True, False, False])
  np.testing.assert_array_equal(result.ranks["ntk"][:3], [1, 2, 3])
  np.testing.assert_array_equal(result.ranks["lr"][:3], [3, 2, 1])
  # Among candidates S = [0.4 + 1.8, 0.8 + 1.2, 1.2 + 0.6] = [2.2, 2.0, 1.8]: cell 4. Ranks over
  # all five cells would give [0.4 + 1.8, 0.8 + 1.2, 2.0 + 0.6] = [2.2, 2.0, 2.6]: cell 3.
  np.testing.assert_allclose(result.objective, [2.2, 2.0, 1.8, np.inf, np.inf])
  assert scores.indices[result.best] == 4
  assert np.isfinite(result.objective[result.front]).all()


def test_seeds_are_averaged(write_store, tmp_path):
  path = write_store(tmp_path / "s.sqlite", [3, 4], [10.0, 20.0], [1.0, 2.0], seed=0)
  write_store(path, [3, 4], [30.0, 40.0], [3.0, 4.0], seed=1)
  scores = table.load_scores(path)
  np.testing.assert_allclose(scores.ntk, [20.0, 30.0])
  assert scores.seeds == (0, 1)


def test_a_table_without_the_needed_ntk_proxy_is_refused(write_store, tmp_path):
  path = write_store(tmp_path / "s.sqlite", [3], [1.0], [1.0], proxies=("ntk_fast", "lr"))
  with pytest.raises(table.TableError, match="needs ntk .*search with fast=True"):
    table.load_scores(path, "ntk")


def test_meco_joins_the_ranks_when_weighted(write_store, tmp_path):
  path = write_store(tmp_path / "s.sqlite", [0, 5, 1462], [30.0, 10.0, 20.0],
                     [100.0, 300.0, 400.0], meco=[9.0, 1.0, 5.0])
  lut = latency.board("stm32f746")
  unlimited = objective.Limits(board_memory=False)
  with pytest.raises(table.TableError, match="without it"):
    table.search(table.load_scores(path), lut, objective.Weights(0, 0, meco=1.0), unlimited)
  scores = table.load_scores(path, meco=True)
  np.testing.assert_array_equal(table.rank_table(scores, objective.cell_costs(
      space.all_archs()[scores.indices], lut))["meco"], [1, 3, 2])
  result = table.search(scores, lut, objective.Weights(0, 0, meco=1.0), unlimited)
  assert scores.indices[result.best] == 0
  # NTK ranks [3, 1, 2], LR [3, 2, 1], MeCo [1, 3, 2]: thirds give S = [7/3, 2, 5/3].
  result = table.search(scores, lut, objective.Weights.micronas(meco=True), unlimited)
  assert scores.indices[result.best] == 1462
  no_meco = write_store(tmp_path / "n.sqlite", [0], [1.0], [1.0])
  with pytest.raises(table.TableError, match="needs meco"):
    table.load_scores(no_meco, meco=True)
