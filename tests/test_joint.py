"""search.joint: the (skeleton, cell) space of the default search, its exact memory check, the
evolution over it on a toy indicator with a known optimum, and limits met at other skeletons."""
import numpy as np
import pytest

from micronas_jax import space
from micronas_jax.hardware import costs, latency, shapes, tflm
from micronas_jax.network import NB201_CIFAR10
from micronas_jax.search import evolution, joint, objective

SMALL = joint.skeletons(NB201_CIFAR10, channels=(4, 8), cells=(1, 2))


def test_the_grid_and_its_neighbours():
  assert [(n.channels, n.cells_per_stage) for n in SMALL] == [(4, 1), (4, 2), (8, 1), (8, 2)]
  assert len(joint.skeletons(NB201_CIFAR10)) == len(joint.CHANNELS) * len(joint.CELLS)
  pairs = joint.JointSpace.build(latency.board("stm32f746"), SMALL, objective.Limits())
  cell = 1462
  moves = pairs.neighbours(1 * space.NUM_CELLS + cell)  # (C=4, N=2)
  assert len(moves) == 24 + 2  # 24 one-edge neighbours; C=8 at N=2, and N=1 at C=4
  assert set(moves[-2:]) == {0 * space.NUM_CELLS + cell, 3 * space.NUM_CELLS + cell}
  assert all(m // space.NUM_CELLS == 1 for m in moves[:24])


def test_the_evolution_finds_a_known_joint_optimum_and_repeats_it(toy):
  pairs = joint.JointSpace.build(latency.board("stm32f746"), SMALL, objective.Limits())
  bonus = np.array([0.0, 3.0, 40.0, 1.0])  # skeleton (8, 1) is worth the most

  def evaluate(indices):
    skeleton, cell = np.divmod(np.asarray(indices), space.NUM_CELLS)
    return {"toy": (toy.value(cell) + bonus[skeleton], np.ones(len(indices), bool))}

  config = evolution.EvolutionConfig(population=20, tournament=10, budget=300)
  found = [evolution.evolve(evaluate, pairs.screened, 0, config, {"toy": True},
                            neighbours=pairs.neighbours, admit=pairs.admit) for _ in range(2)]
  assert found[0].index == 2 * space.NUM_CELLS + toy.best
  assert found[1].index == found[0].index
  np.testing.assert_array_equal(found[0].evaluated, found[1].evaluated)


def test_limits_hold_exactly_at_other_skeletons():
  board = latency.board("stm32f746")
  limits = objective.Limits(max_latency_ms=30, max_sram_kb=40, max_flash_kb=120)
  pairs = joint.JointSpace.build(board, SMALL, limits)
  drawn = np.flatnonzero(pairs.screened)[::997][:40]
  admitted = pairs.admit(drawn)
  assert admitted.any() and not admitted.all()  # the exact check decides some
  for index, ok in zip(drawn, admitted):
    k, cell = pairs.split(index)
    config, ops = SMALL[k], space.arch_at(cell)
    arena = tflm.arena(ops, config, tflm.CORTEX_M)
    runtime_sram, runtime_flash = costs.runtime_memory(board)
    assert pairs.memory(int(index)) == (arena.total + runtime_sram,
                                        arena.file_bytes + runtime_flash)
    ms = float(latency.estimate(ops[None], shapes.lut_for(config, board))[0])
    assert ms == pytest.approx(pairs.latency_ms[index]) and ms <= 30
    assert ok == ((arena.total + runtime_sram) <= 40 * 1024
                  and (arena.file_bytes + runtime_flash) <= 120 * 1024)


def test_constant_networks_are_left_out():
  pairs = joint.JointSpace.build(latency.board("stm32f746"), SMALL, objective.Limits())
  all_none = space.index_of(np.zeros(6, np.int64))
  assert not pairs.screened[all_none] and pairs.screened[1462]
