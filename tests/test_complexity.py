import jax
import numpy as np
import pytest

from micronas_jax import complexity, model, space


def test_params_match_benchmark_for_all_cells(nb201_rows):
  params_m = complexity.params(space.all_archs()) / 1e6
  reference = np.array([float(row["params_m"]) for row in nb201_rows])
  np.testing.assert_allclose(params_m, reference, rtol=0, atol=1e-6)


def test_cifar10_flops_span_matches_benchmark_paper():
  flops_m = complexity.flops(space.all_archs()) / 1e6
  assert round(flops_m.min(), 2) == 7.78 and round(flops_m.max(), 2) == 220.12
  assert np.argmax(flops_m) == 1462


def test_flops_of_all_conv3x3_by_hand():
  # 3 stages x 5 cells x 6 edges of 3x3 convs, each 9*C*C*H*W = 2,359,296 at (16,32), (32,16),
  # (64,8); stem 9*3*16*32*32; reductions conv_a + conv_b + 1x1 shortcut; linear 64*10 + 10.
  cells = 3 * 5 * 6 * 2_359_296
  stem = 9 * 3 * 16 * 32 * 32
  reduction1 = 9 * 16 * 32 * 16 * 16 + 9 * 32 * 32 * 16 * 16 + 16 * 32 * 16 * 16
  reduction2 = 9 * 32 * 64 * 8 * 8 + 9 * 64 * 64 * 8 * 8 + 32 * 64 * 8 * 8
  assert complexity.flops(space.arch_at(1462)) == cells + stem + reduction1 + reduction2 + 650


def test_flops_for_imagenet16_scale_with_resolution_and_classes():
  config16 = model.NetworkConfig(resolution=16, num_classes=120)
  empty = np.zeros(6, np.int32)  # all-none cell: only fixed parts remain
  stem = 9 * 3 * 16 * 16 * 16
  reduction1 = 9 * 16 * 32 * 8 * 8 + 9 * 32 * 32 * 8 * 8 + 16 * 32 * 8 * 8
  reduction2 = 9 * 32 * 64 * 4 * 4 + 9 * 64 * 64 * 4 * 4 + 32 * 64 * 4 * 4
  assert complexity.flops(empty, config16) == stem + reduction1 + reduction2 + 64 * 120 + 120


def test_model_params_equal_cost_params():
  # Counting reads only the shapes: jax.eval_shape gives them without initializing C=16, N=5.
  shapes = jax.eval_shape(lambda key: model.init(key, model.NB201_CIFAR10), jax.random.key(0))
  for index in (0, 1, 1462, 6111, 15624):
    ops = space.arch_at(index)
    assert model.count_active_params(shapes["params"], ops) == complexity.params(ops), index


def test_cost_rejects_wrong_edge_count():
  with pytest.raises(space.ArchError):
    complexity.flops(np.zeros((3, 5), np.int32))


def test_cost_and_hardware_models_do_not_import_flax():
  # Layering: FLOPs, params, latency and memory read the network's configuration, not the model.
  import subprocess
  import sys
  code = ("import sys, micronas_jax.complexity, micronas_jax.hardware.latency, "
          "micronas_jax.hardware.memory, micronas_jax.hardware.costs; "
          "print('flax' in sys.modules, 'micronas_jax.model' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert result.stdout.split() == ["False", "False"]
