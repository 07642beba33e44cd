import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from micronas_jax import model, space
from micronas_jax.proxies import ntk

# Tiny NTK network: C=2, one cell per stage, 8x8 inputs, batch of 6.
TINY = model.NetworkConfig(channels=2, cells_per_stage=1, resolution=8, bn_momentum=0.0)
BATCH = 6
exact_ntk = jax.jit(ntk.ntk_exact, static_argnums=3)
fast_ntk = jax.jit(ntk.ntk_fast, static_argnums=3)


@pytest.fixture(scope="module")
def setup():
  variables = jax.jit(model.init, static_argnums=1)(jax.random.key(0), TINY)  # one program
  x = jax.random.normal(jax.random.key(1), (BATCH, *TINY.input_shape))
  return variables, x


def _weight_vector(grads) -> np.ndarray:
  flat = jax.tree_util.tree_leaves_with_path(grads)
  return np.concatenate([np.asarray(leaf).ravel() for path, leaf in flat
                         if jax.tree_util.keystr(path).rstrip("']").endswith(("kernel", "scale"))])


@jax.jit
@jax.grad
def _sample_logit_sum(params, batch_stats, ops, x, i):
  logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, ops, x, TINY, train=True)
  return logits[i].sum()


def _slow_exact_ntk(variables, ops, x) -> np.ndarray:
  """One jax.grad per sample of logits[i].sum() through the whole batch (BN couples samples).

  Jitted only because op-by-op execution of the switch is slow (one program for every cell and
  sample); the loop stays per sample.
  """
  rows = [_weight_vector(_sample_logit_sum(variables["params"], variables["batch_stats"], ops, x,
                                           i)) for i in range(x.shape[0])]
  jacobian = np.stack(rows).astype(np.float64)
  return jacobian @ jacobian.T


@jax.jit
@jax.grad
def _frozen_logit_sum(params, batch_stats, ops, sample):
  network_vars = {"params": params, "batch_stats": batch_stats}
  return model.apply(network_vars, ops, sample[None], TINY, train=False)[0].sum()


def _slow_fast_ntk(variables, ops, x) -> np.ndarray:
  """Per-sample gradients with BN statistics computed on the batch (numpy) and held fixed."""
  # Momentum 0: the batch's statistics. Jitted: op by op, the network took 17 s.
  _, batch_stats = jax.jit(model.apply, static_argnums=3)(variables, ops, x, TINY)
  rows = [_weight_vector(_frozen_logit_sum(variables["params"], batch_stats, ops, sample))
          for sample in x]
  jacobian = np.stack(rows).astype(np.float64)
  return jacobian @ jacobian.T


@pytest.mark.parametrize("index", [1462, 1, 6111])
def test_exact_ntk_matches_per_sample_gradient_loop(setup, index):
  variables, x = setup
  ops = space.arch_at(index)
  fast_path = np.asarray(exact_ntk(variables, ops, x, TINY))
  np.testing.assert_allclose(fast_path, _slow_exact_ntk(variables, ops, x), rtol=1e-5,
                             atol=1e-5 * np.abs(fast_path).max())


@pytest.mark.parametrize("index", [1462, 1])
def test_fast_ntk_matches_frozen_statistics_loop(setup, index):
  variables, x = setup
  ops = space.arch_at(index)
  fast_path = np.asarray(fast_ntk(variables, ops, x, TINY))
  np.testing.assert_allclose(fast_path, _slow_fast_ntk(variables, ops, x), rtol=1e-5,
                             atol=1e-5 * np.abs(fast_path).max())


def test_fast_ntk_ignores_config_momentum(setup):
  variables, x = setup
  ops = space.arch_at(1462)
  momentum_config = dataclasses.replace(TINY, bn_momentum=0.9)
  np.testing.assert_allclose(fast_ntk(variables, ops, x, momentum_config),
                             fast_ntk(variables, ops, x, TINY), rtol=1e-6)


def test_exact_and_fast_differ_through_batch_statistics(setup):
  variables, x = setup
  ops = space.arch_at(1462)
  exact = np.asarray(exact_ntk(variables, ops, x, TINY))
  fast = np.asarray(fast_ntk(variables, ops, x, TINY))
  assert not np.allclose(exact, fast, rtol=1e-3)


def test_supernet_one_hot_weights_give_the_cell_ntk(setup):
  variables, x = setup
  ops = space.arch_at(6111)
  np.testing.assert_allclose(exact_ntk(variables, space.one_hot(ops), x, TINY),
                             exact_ntk(variables, ops, x, TINY), rtol=1e-4, atol=1e-6)


def test_condition_number_of_hand_made_kernel():
  rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
  kernel = rotation @ np.diag([0.5, 2.0, 4.0]) @ rotation.T
  kappa, valid = ntk.condition_number(jnp.asarray(kernel, jnp.float32))
  assert bool(valid) and float(kappa) == pytest.approx(8.0, rel=1e-4)


@pytest.mark.parametrize("kernel", [
    np.zeros((3, 3)),                        # singular: lambda_min = 0
    np.diag([1.0, -1e-3, 2.0]),              # indefinite (rounding): negative lambda_min
    np.full((3, 3), np.nan),                 # NaN from a broken network
])
def test_condition_number_flags_singular_or_nan_kernels(kernel):
  kappa, valid = ntk.condition_number(jnp.asarray(kernel, jnp.float32))
  assert not bool(valid) and float(kappa) == np.float32(ntk.SINGULAR_SENTINEL)
