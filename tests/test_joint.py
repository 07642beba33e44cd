"""search.joint: the (skeleton, cell) space of the default search, its exact memory check, each
cell's largest network, the evolution over it on a toy indicator with a known optimum, and
limits met at other skeletons."""
import numpy as np
import pytest

from micronas_jax import space
from micronas_jax.hardware import costs, latency, shapes, tflm
from micronas_jax.network import NB201_CIFAR10
from micronas_jax.search import evolution, joint, objective

SMALL = joint.skeletons(NB201_CIFAR10, channels=(4, 8), cells=(1, 2))


def test_the_grid():
  assert [(n.channels, n.cells_per_stage) for n in SMALL] == [(4, 1), (4, 2), (8, 1), (8, 2)]
  assert len(joint.skeletons(NB201_CIFAR10)) == len(joint.CHANNELS) * len(joint.CELLS)


def test_each_cell_gets_its_largest_network_within_the_limits():
  # 30 KB of SRAM: the exact plan rejects every screened skeleton of some cells, and the larger
  # skeletons of others.
  limits = objective.Limits(max_latency_ms=30, max_sram_kb=30, max_flash_kb=120)
  pairs = joint.JointSpace.build(latency.board("stm32f746"), SMALL, limits)
  cells = np.flatnonzero(pairs.cells())[::1531][:12]
  found = [pairs.largest(int(cell)) for cell in cells]
  assert any(f is None for f in found) and any(f is not None for f in found)
  for cell, pair in zip(cells, found):
    fitting = [k * space.NUM_CELLS + cell for k in range(len(SMALL))
               if pairs.screened[k * space.NUM_CELLS + cell]
               and pairs.admit(np.asarray([k * space.NUM_CELLS + cell]))[0]]
    if pair is None:
      assert not fitting
    else:
      assert pair % space.NUM_CELLS == cell and pair in fitting
      assert pairs.flops_m[pair] == max(pairs.flops_m[fitting])
  np.testing.assert_array_equal(pairs.admit_cells(cells), [f is not None for f in found])


def test_the_evolution_finds_a_known_optimum_on_its_largest_network_and_repeats_it(toy):
  limits = objective.Limits(max_latency_ms=40)
  pairs = joint.JointSpace.build(latency.board("stm32f746"), SMALL, limits)
  config = evolution.EvolutionConfig(population=20, tournament=10, budget=300)
  found = [evolution.evolve(toy.evaluator(), pairs.cells(), 0, config, {"toy": True},
                            admit=pairs.admit_cells) for _ in range(2)]
  assert found[0].index == toy.best
  np.testing.assert_array_equal(found[0].evaluated, found[1].evaluated)
  pair = pairs.largest(toy.best)
  assert pairs.latency_ms[pair] <= 40
  # The largest network of the toy's best cell: the widest and deepest that meets 40 ms.
  meeting = [k for k in range(len(SMALL)) if pairs.latency_ms[k * space.NUM_CELLS + toy.best] <= 40]
  assert pair // space.NUM_CELLS == max(meeting, key=lambda k: pairs.flops_m[
      k * space.NUM_CELLS + toy.best])


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
