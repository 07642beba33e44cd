"""`hardware.tflm`: TFLite Micro's arena and the `.tflite`'s size from the graph, against the
converter and TFLM's own report (the `tflite` extra, which CI installs)."""
import numpy as np
import pytest

from micronas_jax import export, graph, space
from micronas_jax.hardware import tflm
from micronas_jax.model import NB201_CIFAR10, NetworkConfig

N, S, C1, C3, P = space.NONE, space.SKIP, space.CONV1X1, space.CONV3X3, space.POOL
TINY = NetworkConfig(channels=2, cells_per_stage=1, resolution=8)


def test_greedy_plan_places_largest_first_in_the_lowest_free_gap():
  buffers = [tflm.Buffer(32, 0, 1), tflm.Buffer(64, 1, 2), tflm.Buffer(32, 2, 3),
             tflm.Buffer(16, 0, 3)]
  offsets = tflm.greedy_plan(buffers)
  # 64 first at 0; the two 32s (the later first) above it, sharing bytes since they never
  # meet; the 16, live throughout, above them all.
  assert offsets == [64, 0, 64, 96]


def test_greedy_plan_breaks_ties_by_placing_the_later_buffer_first():
  offsets = tflm.greedy_plan([tflm.Buffer(16, 0, 1), tflm.Buffer(16, 0, 1)])
  assert offsets == [16, 0]


def test_the_lowered_cell_is_the_converters():
  # 1<-0 conv1x1, 2<-0 skip, 3<-1 pool, 3<-2 conv3x3: the cell input's ReLU serves both convs
  # and is fused into the stem (every reader reads through it); the pool reads conv0 as it is.
  ops = np.array([C1, S, N, N, P, C3])
  lowered, shapes = tflm.converter_ops(graph.build(ops, TINY, dead_code=True))
  stage1 = [op.builtin for op in lowered if op.node.stage == 0]
  assert stage1 == ["CONV_2D", "CONV_2D", "AVERAGE_POOL_2D", "CONV_2D", "ADD"]
  reduction = [op.builtin for op in lowered if op.node.block is graph.Block.REDUCTION
               and op.node.stage == 1]
  assert reduction == ["RELU", "PAD", "CONV_2D", "CONV_2D", "AVERAGE_POOL_2D", "CONV_2D", "ADD"]
  assert [op.builtin for op in lowered[-4:]] == ["MUL", "ADD", "SUM", "FULLY_CONNECTED"]
  assert shapes[lowered[-1].output] == (10,)


def test_identical_pools_are_one_op():
  ops = np.array([P, P, N, S, N, N])  # nodes 1 and 2 both pool node 0; node 3 = node 0
  lowered, _ = tflm.converter_ops(graph.build(ops, TINY))
  pools = [op for op in lowered if op.builtin == "AVERAGE_POOL_2D" and op.node.stage == 0]
  assert len(pools) == 1


def test_constant_networks_have_no_arena():
  with pytest.raises(ValueError, match="constant"):
    tflm.arena(np.array([C3, C3, C3, N, N, N]), TINY)


def test_the_vectorized_estimate_follows_the_exact_one():
  cells = [i for i in range(0, space.NUM_CELLS, 797)
           if not graph.build(space.arch_at(i), NB201_CIFAR10, True).constant]
  archs = np.stack([space.arch_at(i) for i in cells])
  tails, files = tflm.estimated_costs(archs, NB201_CIFAR10)
  for index, tail, size in zip(cells, tails, files):
    exact = tflm.arena(space.arch_at(index), NB201_CIFAR10, tflm.CORTEX_M)
    # Each allocation rounded alone, and a ReLU the converter fuses across a block counted.
    assert 0.99 * exact.tail <= tail <= 1.1 * exact.tail
    assert 0.99 * exact.file_bytes <= size <= 1.02 * exact.file_bytes
    # The live peak is the greedy plan's lower bound.
    head = tflm.estimated_sram(space.arch_at(index)[None], NB201_CIFAR10)[0] - tail
    assert head <= exact.head


def test_an_unknown_target_is_refused():
  with pytest.raises(ValueError, match="known: host, cortex-m"):
    tflm.arena(space.arch_at(13987), TINY, "riscv")


# --- against the converter and TFLM --------------------------------------------------------


@pytest.fixture(scope="module")
def converted():
  pytest.importorskip("tensorflow", reason="the tflite extra: pip install 'micronas-jax[tflite]'")
  pytest.importorskip("tflite_micro", reason="the tflite extra")
  from micronas_jax.deploy import tflite

  config = NetworkConfig(channels=4, cells_per_stage=1)
  found = {}
  # all convs; pools and convs, with pools of one tensor merged; skips and a 'none' edge.
  for index in (1462, 9000, 13987):
    ops = space.arch_at(index)
    variables, _, _ = export.cell_variables(ops, None, 0, 4, 1)
    variables = export.randomized_batch_norm(variables, seed=index)
    images = np.random.default_rng(0).standard_normal((8, *config.input_shape), np.float32)
    found[index] = (ops, config, tflite.convert(variables, ops, config, images))
  return found


@pytest.mark.parametrize("index", [1462, 9000, 13987])
def test_the_model_matches_the_file_and_tflm_to_the_byte(converted, index):
  from micronas_jax.deploy import tflite

  ops, config, model_bytes = converted[index]
  lowered, _ = tflm.converter_ops(graph.build(ops, config, dead_code=True))
  operators, _ = tflite.operators(model_bytes)
  # Op for op, in the graph's order (the file's operators were put in it).
  assert [op.builtin for op in operators] == [op.builtin for op in lowered]
  _, measured = tflite.tflm_run(model_bytes, np.zeros((1, *config.input_shape), np.int8))
  modelled = tflm.arena(ops, config, tflm.HOST)
  assert (modelled.head, modelled.tail) == (measured.head, measured.tail)
  assert abs(modelled.file_bytes - len(model_bytes)) <= 0.01 * len(model_bytes)
  assert len(lowered) == modelled.ops


def test_operators_that_match_no_graph_are_left_in_the_converters_order(converted):
  from micronas_jax.deploy import tflite

  _, config, model_bytes = converted[13987]
  other, _ = tflm.converter_ops(graph.build(space.arch_at(1462), config, dead_code=True))
  assert tflite.run_in_order(model_bytes, other) is None


# Networks a task and the joint search make: a gray 16x16 input with 5 classes at N=2, and a
# 24x24 RGB input with 3 classes at C=8.
OTHER_SKELETONS = {
    13987: NetworkConfig(channels=4, cells_per_stage=2, resolution=16, in_channels=1,
                         num_classes=5),
    9000: NetworkConfig(channels=8, cells_per_stage=1, resolution=24, in_channels=3,
                        num_classes=3)}


@pytest.mark.parametrize("index", sorted(OTHER_SKELETONS))
def test_the_model_matches_tflm_to_the_byte_at_other_skeletons(index):
  pytest.importorskip("tensorflow", reason="the tflite extra: pip install 'micronas-jax[tflite]'")
  pytest.importorskip("tflite_micro", reason="the tflite extra")
  from micronas_jax.deploy import tflite

  ops = space.arch_at(index)
  variables, config, _ = export.cell_variables(ops, None, 0, network=OTHER_SKELETONS[index])
  variables = export.randomized_batch_norm(variables, seed=index)
  images = np.random.default_rng(0).standard_normal((8, *config.input_shape), np.float32)
  model_bytes = tflite.convert(variables, ops, config, images)
  _, measured = tflite.tflm_run(model_bytes, np.zeros((1, *config.input_shape), np.int8))
  modelled = tflm.arena(ops, config, tflm.HOST)
  assert (modelled.head, modelled.tail) == (measured.head, measured.tail)
  assert abs(modelled.file_bytes - len(model_bytes)) <= 0.01 * len(model_bytes)
