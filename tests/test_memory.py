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
  # reduction 1: x 128, ReLU 128, conv_a 64 -> peak at conv_a: x + relu + conv_a = 320
  assert peaks["reduction1"] == 320
  # reduction 2: x 64, ReLU 64, conv_a 32 -> 160
  assert peaks["reduction2"] == 160
  # head: x 32 -> BN 32 -> ReLU 32 (x dead) -> pool 8 -> linear 10: peak x + BN = 64
  assert peaks["head"] == 64


def test_mixed_cell_by_hand():
  # 1<-0 conv1x1: ReLU, conv (n0, relu0, conv0 live: 3); 2<-0 skip: node 2 is n0 itself;
  # 3<-1 pool: n0, conv0, pool4 (3); 3<-2 conv3x3 on n0: ReLU (n0, pool4, relu5), conv
  # (pool4, relu5, conv5), add (pool4, conv5, sum5): at most 3 tensors.
  assert memory.cell_live_tensors(MIXED) == 3
  # 3 x 128 bytes in stage 1 beats the stem (320) and the reductions.
  assert memory.peak_sram(MIXED, TINY) == 384
  assert memory.peak_sram(MIXED, TINY, runtime_bytes=1000) == 1384


def test_all_conv3x3_cell_holds_five_tensors():
  # while node 2's second conv runs: n0, n1, conv(2<-0), ReLU(n1), conv(2<-1) are live.
  assert memory.cell_live_tensors(np.full(6, C3)) == 5
  assert memory.peak_sram(np.full(6, C3), TINY) == 5 * 128
  assert memory.peak_sram(space.arch_at(1462), NB201_CIFAR10) == 5 * 16 * 32 * 32


def test_identity_cell_leaves_the_stem_as_peak():
  identity = np.array([N, N, N, S, N, N])
  assert memory.cell_live_tensors(identity) == 1
  assert memory.peak_sram(identity, TINY) == 320


def test_zero_node_is_materialized_when_read():
  # node 1 has no input; 3<-1 conv reads it: n0 (kept by 3<-0 skip), zeros, ReLU -> 3 tensors.
  ops = np.array([N, N, N, S, C3, N])
  assert memory.cell_live_tensors(ops) == 3


def test_dead_code_drops_unused_ops_and_folds_constant_networks():
  dead = np.array([C3, N, C3, S, N, N])  # nodes 1 and 2 never reach the output
  assert memory.peak_sram(dead, TINY) == 3 * 128  # n0, ReLU, conv
  assert memory.peak_sram(dead, TINY, dead_code=True) == 320  # identity cell: the stem
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
