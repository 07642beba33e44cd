"""The PyTorch reference (benchmarks/torch_reference.py) agrees with the JAX proxies, tiny configs.

Skipped without torch (an optional dependency: pip install -e '.[bench]').
"""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: pip install -e '.[bench]'")

from benchmarks import torch_reference  # noqa: E402
from micronas_jax import model, space  # noqa: E402

# Tiny NTK network: C=2, one cell per stage, 8x8 inputs (3 stages: 8 -> 4 -> 2), batch of 6.
TINY = model.NetworkConfig(channels=2, cells_per_stage=1, resolution=8, bn_momentum=0.0)
# 0: the first benchmark cell; 1462: a 3x3 conv on every edge; 8960: conv(x) into node 1 that
# never reaches the output (no gradient in torch, zero in JAX) and a node 2 without inputs.
INDICES = (0, 1462, 8960)


@pytest.mark.parametrize("index", INDICES)
def test_torch_network_matches_jax_logits_in_train_mode(index):
  variables = model.init(jax.random.key(0), TINY)
  x = jax.random.normal(jax.random.key(1), (4, *TINY.input_shape))
  ops = space.arch_at(index)
  expected, _ = jax.jit(model.apply, static_argnums=3)(variables, ops, x, TINY)
  net = torch_reference.torch_network(ops, TINY)
  torch_reference.load_jax_variables(net, ops, variables, TINY)
  net.train()
  with torch.no_grad():
    logits = net(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
  np.testing.assert_allclose(logits.numpy(), np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_torch_and_jax_proxies_agree_on_three_cells():
  with jax.default_matmul_precision("highest"):
    results = torch_reference.compare(INDICES, ntk_batch=6, lr_batches=2, lr_batch=100,
                                      ntk_config=TINY)
  for proxy in ("ntk", "ntk-fast"):
    assert max(results[proxy].kernel_rel_diff) < torch_reference.TOLERANCE, proxy
    assert max(results[proxy].value_rel_diff) < torch_reference.TOLERANCE, proxy
  assert results["lr"].jax_values == results["lr"].torch_values
  table = torch_reference.table(results)
  assert table.count("\n") == 2 + len(torch_reference.PROXIES) - 1  # header, rule, one row each


def test_load_refuses_variables_of_another_config():
  variables = model.init(jax.random.key(0), TINY)
  ops = space.arch_at(1462)
  net = torch_reference.torch_network(ops, model.NetworkConfig(channels=2, cells_per_stage=2,
                                                               resolution=8))
  with pytest.raises(ValueError, match="without a JAX source"):
    torch_reference.load_jax_variables(net, ops, variables, TINY)


def test_float64_comparison_leaves_only_definition_differences():
  # Same float32 draws, both sides widened to float64: rounding no longer hides a difference in
  # definitions, so the kernels must agree far below the float32 tolerance.
  with jax.enable_x64(True), jax.default_matmul_precision("highest"):
    results = torch_reference.compare(INDICES, ntk_batch=6, lr_batches=2, lr_batch=100,
                                      ntk_config=TINY, proxies=("ntk", "ntk-fast"), float64=True)
  for proxy in ("ntk", "ntk-fast"):
    assert max(results[proxy].kernel_rel_diff) < 1e-10, proxy
    assert max(results[proxy].value_rel_diff) < 1e-9, proxy


def test_float64_comparison_needs_x64():
  with pytest.raises(ValueError, match="jax_enable_x64"):
    torch_reference.compare(INDICES[:1], proxies=("ntk",), float64=True)
