import numpy as np
import pytest

from micronas_jax import graph, space
from micronas_jax.hardware import memory
from micronas_jax.model import NB201_CIFAR10, NetworkConfig

N, S, C1, C3, P = space.NONE, space.SKIP, space.CONV1X1, space.CONV3X3, space.POOL
# Stage tensors (int8, bytes): 2x8x8 = 128, 4x4x4 = 64, 8x2x2 = 32; input 3x8x8 = 192.
TINY = NetworkConfig(channels=2, cells_per_stage=1, resolution=8)
MIXED = np.array([C1, S, N, N, P, C3])


def test_fixed_blocks_by_hand():
  peaks = memory.fixed_peaks(TINY)
  assert peaks["stem"] == 192 + 128
  # reduction 1: x 128, ReLU 128, PAD 2x10x10 = 200 (for the strided conv_a) -> peak at the
  # PAD: x + ReLU + PAD = 456; at conv_a the ReLU is dead: x + PAD + conv_a 64 = 392
  assert peaks["reduction1"] == 456
  # reduction 2: x 64, ReLU 64, PAD 4x6x6 = 144 -> 272
  assert peaks["reduction2"] == 272
  # head: x 32 -> MUL 32 -> ADD with ReLU 32 (x dead) -> SUM 8 -> linear 10: peak x + MUL = 64
  assert peaks["head"] == 64


def test_mixed_cell_by_hand():
  # One ReLU of n0 serves both convs that read it (1<-0, and 3<-2 since 2<-0 is a skip), so
  # n0 dies once it exists: 1<-0 conv (relu0, conv0); 3<-1 pool (relu0, conv0, pool4: 3);
  # 3<-2 conv (relu0, pool4, conv5), add (pool4, conv5, sum5): at most 3 tensors.
  assert memory.cell_live_tensors(MIXED) == 3
  # 3 x 128 bytes in stage 1 is less than reduction 1 (456), the peak.
  assert memory.peak_sram(MIXED, TINY) == 456
  assert memory.peak_sram(MIXED, TINY, runtime_bytes=1000) == 1456


def test_all_conv3x3_cell_holds_five_tensors():
  # at node 2's add: ReLU(n0) and ReLU(n1) (read again by 3<-0 and 3<-1), conv(2<-0),
  # conv(2<-1) and their sum are live; n0 and n1 died once rectified.
  assert memory.cell_live_tensors(np.full(6, C3)) == 5
  assert memory.peak_sram(np.full(6, C3), TINY) == 5 * 128
  assert memory.peak_sram(space.arch_at(1462), NB201_CIFAR10) == 5 * 16 * 32 * 32


def test_identity_cell_leaves_the_stem_as_peak():
  identity = np.array([N, N, N, S, N, N])
  assert memory.cell_live_tensors(identity) == 1
  assert memory.peak_sram(identity, TINY) == 456  # reduction 1


def test_zero_node_is_materialized_when_read():
  # node 1 has no input; 3<-1 conv reads it: zeros (0 x n0), its ReLU, the conv, the sum; n0
  # (kept by 3<-0 skip) and at most two of them at once -> 3 tensors.
  ops = np.array([N, N, N, S, C3, N])
  assert memory.cell_live_tensors(ops) == 3


def test_dead_code_drops_unused_ops_and_folds_constant_networks():
  dead = np.array([C3, N, C3, S, N, N])  # nodes 1 and 2 never reach the output
  # The C library's plan, whose reductions (256 bytes) leave the cells and the stem the peak.
  assert memory.peak_sram(dead, TINY, plan=memory.PLAN_C) == 3 * 128  # n0, conv0, conv2
  # identity cell: the stem
  assert memory.peak_sram(dead, TINY, dead_code=True, plan=memory.PLAN_C) == 320
  folded = np.array([C3, C3, C3, N, N, N])
  assert memory.peak_sram(folded, TINY, dead_code=True) == 10  # only the constant logits


@pytest.mark.parametrize("plan", memory.PLANS)
@pytest.mark.parametrize("index", [0, 1, 3, 1462, 6111, 15624])
def test_block_decomposition_matches_whole_network_liveness(index, plan):
  # The vectorized estimate (cached cells x stage bytes, block peaks) against the liveness of the
  # whole network's graph at once, under the plan's tensors.
  config = NetworkConfig(channels=3, cells_per_stage=2, resolution=8)
  network = graph.build(space.arch_at(index), config)
  nodes, shapes = memory.planned_nodes(network.nodes, network.shapes, plan)
  element = {node.output: node.element_bytes for node in nodes}
  expected = graph.peak_live_bytes(
      nodes, lambda name: int(np.prod(shapes[name])) * element.get(name, 1), (graph.IMAGE,),
      (graph.LOGITS,))
  assert memory.peak_sram(space.arch_at(index), config, plan=plan) == expected


def test_flash_by_hand():
  # per conv edge (int8 weights + int32 bias), stage channels 2, 4, 8:
  #   conv1x1: 4+8, 16+16, 64+32 = 12, 32, 96; conv3x3: 36+8, 144+16, 576+32 = 44, 160, 608
  # fixed: stem 9*3*2 + 4*2 = 62; reduction 2->4: 72 + 144 + 2*4*4 + 2*4 (shortcut) = 256;
  # reduction 4->8: 288 + 576 + 2*4*8 + 4*8 = 960; head BN 5*8 = 40; linear 8*10 + 4*10 = 120
  fixed = 62 + 256 + 960 + 40 + 120
  assert memory.flash(np.zeros(6, np.int32), TINY) == fixed
  assert memory.flash(MIXED, TINY) == fixed + (12 + 44) + (32 + 160) + (96 + 608)
  assert memory.flash(MIXED, TINY, runtime_bytes=7) == fixed + 952 + 7


def test_flash_tracks_params_of_the_full_network():
  # int8 weights: flash ~ params (BN scale+shift (2 params) -> int32 bias (4 bytes) per channel).
  from micronas_jax import complexity
  archs = space.all_archs()
  ratio = memory.flash(archs) / complexity.params(archs)
  assert 0.99 < ratio.min() and ratio.max() < 1.05


def test_peak_sram_of_a_batch_of_cells_equals_each_cell_alone():
  # The vectorized path over any leading shape gives every cell's own value.
  archs = space.all_archs()[::157][:40].reshape(5, 8, 6)
  batched = memory.peak_sram(archs)
  assert batched.shape == (5, 8)
  for position in np.ndindex(5, 8):
    assert batched[position] == memory.peak_sram(archs[position])
