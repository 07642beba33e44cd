"""The aging-evolution search, its log-rank fitness and the skip-span topology indicator."""
import numpy as np
import pytest

from micronas_jax import space, topology
from micronas_jax.search import evolution

TOY = {"toy": True}


def test_log_rank_fitness_matches_a_hand_computation():
  # Ranks (n = best): a higher-better [3, 1, 2] -> [3, 1, 2]; b lower-better [5, 5, 1] -> ties
  # share (1 + 2) / 2 = 1.5, so [1.5, 1.5, 3]; F = log(r_a / 3) + log(r_b / 3).
  fitness = evolution.log_rank_fitness(
      {"a": np.array([3.0, 1.0, 2.0]), "b": np.array([5.0, 5.0, 1.0])},
      {"a": np.ones(3, bool), "b": np.ones(3, bool)}, {"a": True, "b": False})
  np.testing.assert_allclose(fitness, np.log([3 / 3, 1 / 3, 2 / 3]) + np.log([0.5, 0.5, 1.0]))


def test_log_rank_fitness_ranks_invalid_and_nan_values_last():
  fitness = evolution.log_rank_fitness(
      {"a": np.array([1e9, np.nan, 2.0, 1.0])}, {"a": np.array([False, True, True, True])},
      {"a": True})
  # Valid: 2.0 (rank 4), 1.0 (rank 3); the invalid 1e9 and the NaN tie below them at 1.5.
  np.testing.assert_allclose(fitness, np.log(np.array([1.5, 1.5, 4, 3]) / 4))


def test_skip_span_counts_the_nodes_each_identity_edge_bypasses():
  # Edges (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) bypass (0, 1, 0, 2, 1, 0) nodes.
  S, C, N = space.SKIP, space.CONV3X3, space.NONE
  cells = np.array([[C, C, C, S, C, C],    # one skip 0->3: 2
                    [S, C, S, S, C, C],    # skips 1<-0, 2<-1, 3<-0: (0 + 0 + 2) / 3
                    [C, S, C, C, S, C],    # skips 2<-0, 3<-1: (1 + 1) / 2
                    [C, C, C, C, C, C],    # no identity: 0
                    [S, N, S, N, N, S]])   # a chain of identities bypasses nothing: 0
  np.testing.assert_allclose(topology.skip_span(cells), [2, 2 / 3, 1, 0, 0])
  assert topology.skip_span(space.all_archs()).shape == (space.NUM_CELLS,)
  with pytest.raises(ValueError, match="expected archs"):
    topology.skip_span(np.zeros((2, 5), int))


def test_evolution_finds_the_maximum_of_a_toy_indicator(toy):
  # Tournament = population: the parent is always the fittest member, so the search climbs one
  # edge at a time; 6 edges x 4 other ops = at most 24 children per improvement.
  config = evolution.EvolutionConfig(population=20, tournament=20, budget=300)
  for seed in range(3):
    result = evolution.evolve(toy.evaluator(), np.ones(space.NUM_CELLS, bool), seed, config, TOY)
    assert result.index == toy.best and not result.exhaustive
    assert result.indicators == {"toy": toy.value(np.array([toy.best]))[0]}
    assert len(result.evaluated) == 300 == len(set(result.evaluated.tolist()))


def test_evolution_only_measures_cells_that_meet_the_limits(toy):
  # Exclude the toy optimum and its whole first edge's op: the answer is the best feasible cell.
  feasible = space.all_archs()[:, 0] != 3
  calls = []
  config = evolution.EvolutionConfig(population=20, tournament=20, budget=300)
  result = evolution.evolve(toy.evaluator(calls), feasible, 0, config, TOY)
  assert feasible[calls].all() and feasible[result.index]
  values = np.where(feasible, toy.value(np.arange(space.NUM_CELLS)), -np.inf)
  assert toy.value(np.array([result.index]))[0] == values.max()


def test_evolution_is_exhaustive_when_the_budget_covers_every_feasible_cell(toy):
  feasible = np.zeros(space.NUM_CELLS, bool)
  feasible[[5, 17, 400, 9000]] = True
  calls = []
  result = evolution.evolve(toy.evaluator(calls), feasible, 0,
                            evolution.EvolutionConfig(2, 2, 10), TOY)
  assert result.exhaustive and sorted(calls) == [5, 17, 400, 9000]
  assert result.index == [5, 17, 400, 9000][int(np.argmax(toy.value(np.array(calls))))]


def test_same_seed_same_search_and_another_seed_another_path(toy):
  config = evolution.EvolutionConfig(population=10, tournament=3, budget=60)
  runs = [evolution.evolve(toy.evaluator(), np.ones(space.NUM_CELLS, bool), seed, config, TOY)
          for seed in (4, 4, 5)]
  np.testing.assert_array_equal(runs[0].evaluated, runs[1].evaluated)
  assert runs[0].index == runs[1].index
  assert not np.array_equal(runs[0].evaluated, runs[2].evaluated)


def test_an_evaluator_without_an_indicator_is_refused(toy):
  with pytest.raises(ValueError, match="no 'meco'"):
    evolution.evolve(toy.evaluator(), np.ones(space.NUM_CELLS, bool), 0,
                     evolution.EvolutionConfig(2, 2, 4))


@pytest.mark.parametrize("sizes, message", [
    ((0, 1, 10), "population must be at least 1"), ((5, 6, 10), "tournament (6) is larger"),
    ((5, 2, 4), "budget (4) is smaller")])
def test_bad_evolution_sizes_are_refused(sizes, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    evolution.EvolutionConfig(*sizes)


SCREENED = {"toy": True, "cheap": True}


def test_the_screen_measures_the_cells_the_free_indicator_ranks_highest(toy):
  # A free indicator that agrees with the toy: after 5 random cells, the screen's 20 are the
  # top 20 of its ranking among the rest, so a 25-cell search finds the optimum, which the
  # evolution alone, with the same 25 cells, does not.
  free = {"cheap": toy.value(np.arange(space.NUM_CELLS))}
  feasible = np.ones(space.NUM_CELLS, bool)
  config = evolution.EvolutionConfig(population=5, tournament=5, budget=25, screened=20)
  for seed in range(3):
    calls = []

    def evaluate(indices, calls=calls):
      values = toy.evaluator(calls)(indices)["toy"]
      return {"toy": values, "cheap": values}

    result = evolution.evolve(evaluate, feasible, seed, config, SCREENED, free=free)
    order = evolution.screen_order(free, np.arange(space.NUM_CELLS), SCREENED)
    expected = [i for i in order if i not in set(calls[:5])][:20]
    assert calls[5:] == [int(i) for i in expected] and result.index == toy.best
    alone = evolution.evolve(evaluate, feasible, seed, config, SCREENED)
    assert alone.index != toy.best


def test_the_screen_skips_cells_the_exact_check_rejects(toy):
  free = {"cheap": toy.value(np.arange(space.NUM_CELLS))}
  rejected = {toy.best}
  calls = []

  def evaluate(indices):
    values = toy.evaluator(calls)(indices)["toy"]
    return {"toy": values, "cheap": values}

  admit = lambda cells: np.array([int(c) not in rejected for c in cells])
  config = evolution.EvolutionConfig(population=5, tournament=5, budget=25, screened=20)
  result = evolution.evolve(evaluate, np.ones(space.NUM_CELLS, bool), 0, config, SCREENED,
                            admit=admit, free=free)
  assert toy.best not in calls and len(calls) == 25
  second = evolution.screen_order(free, np.arange(space.NUM_CELLS), SCREENED)[1]
  assert result.index == second


def test_a_free_indicator_outside_the_fitness_is_refused(toy):
  with pytest.raises(ValueError, match=r"free indicators \['flops'\]"):
    evolution.evolve(toy.evaluator(), np.ones(space.NUM_CELLS, bool), 0,
                     evolution.EvolutionConfig(2, 2, 4), TOY,
                     free={"flops": np.zeros(space.NUM_CELLS)})
  with pytest.raises(ValueError, match="screened must be at least 0"):
    evolution.EvolutionConfig(screened=-1)


def test_free_columns_are_what_the_scorer_computes():
  columns = evolution.free_columns()
  assert set(columns) == set(evolution.FREE_INDICATORS) == {"flops", "skip_span"}
  np.testing.assert_allclose(columns["skip_span"], topology.skip_span(space.all_archs()))
  assert columns["flops"].shape == (space.NUM_CELLS,)
