"""NASWOT: how differently the untrained network's ReLUs partition one batch of inputs.

Mellor et al., "Neural Architecture Search without Training" (ICML 2021, arXiv 2006.04647; code
BayesWatch/nas-without-training). Sample i gets the binary code c_i of its ReLU inputs (x > 0) over
all N_A ReLU units of the network; the kernel is

  K_ij = N_A - d_H(c_i, c_j)   (number of units on which samples i and j agree),

and the score is log|det K| (slogdet). Higher is better: codes that differ more across inputs
make K closer to diagonal. As the reference runs it: BN in training mode, the codes of every ReLU
module (each conv op's, the reduction blocks', the head's), K accumulated in float64 (numpy).

With the arch as data, a ReLU of an inactive op is still computed (and sown as zeros): those units
are masked out by the arch, so N_A counts only the ReLUs the standalone cell has. Counting them
would add a constant to every K_ij and change the determinant.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from micronas_jax import model, naming, space
from micronas_jax.proxies import zero_cost


def hamming_kernel(codes: jax.Array, weights: jax.Array | None = None) -> jax.Array:
  """K_ij = sum_u w_u [c_iu == c_ju] for boolean `codes: [B, U]`, unit weights `[U]` (default 1).

  With weights in {0, 1}: K = N_A - Hamming distance over the units with weight 1. Float64; call
  it under `jax.enable_x64`.
  """
  signs = jnp.where(codes, 1.0, -1.0).astype(jnp.float32)
  if weights is None:
    weights = jnp.ones(codes.shape[1], jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  # agree - disagree = s_i . s_j: K = (N_A + sum_u w_u s_iu s_ju) / 2. Sums of +-1 are exact in
  # float32 below 2**24 units, so only the accumulation over layers needs float64.
  products = (signs * weights) @ signs.T
  return (jnp.sum(weights).astype(jnp.float64) + products.astype(jnp.float64)) / 2


def _conv_active(arch: jax.Array, edge: int) -> jax.Array:
  """Whether edge `edge` of `arch` ([6] ints or [6, 5] weights) runs a conv (has a ReLU)."""
  choice = jnp.asarray(arch)[edge]
  if choice.ndim == 0:
    return (choice == space.CONV1X1) | (choice == space.CONV3X3)
  return (choice[space.CONV1X1] != 0) | (choice[space.CONV3X3] != 0)


def relu_codes(variables, arch, x,
               config: model.NetworkConfig) -> list[tuple[jax.Array, jax.Array]]:
  """(codes `[B, U_l]` bool, active scalar bool) for every ReLU of the network on batch `x`,
  BN in training mode. Inactive ops' ReLUs come with active False."""
  _, state = model.network(config).apply(variables, x, arch, train=True,
                                         mutable=["batch_stats", "intermediates"])
  layers = []
  for path, sown in traverse_util.flatten_dict(state["intermediates"]).items():
    edge = naming.edge_of_intermediate(path)
    active = jnp.bool_(True) if edge is None else _conv_active(arch, edge)
    layers.extend((leaf.reshape(leaf.shape[0], -1) > 0, active) for leaf in sown)
  return layers


def relu_kernel(variables, arch, x, config: model.NetworkConfig) -> jax.Array:
  """NASWOT's K `[B, B]` (float64) over the ReLUs the cell `arch` has, for batch `x`."""
  layers = relu_codes(variables, arch, x, config)
  with jax.enable_x64(True):
    kernel = jnp.zeros((x.shape[0], x.shape[0]), jnp.float64)
    for codes, active in layers:
      kernel = kernel + jnp.where(active, hamming_kernel(codes), 0.0)
    return kernel


def naswot(variables, arch, inputs, config):
  """NASWOT score log|det K| on the first batch `inputs["images"][0]: [B, H, W, C]` ->
  (value, valid), float64. Higher is better; a singular K (log det = -inf) is invalid."""
  kernel = relu_kernel(variables, arch, inputs["images"][0], config)
  with jax.enable_x64(True):
    sign, logdet = jnp.linalg.slogdet(kernel)
    valid = jnp.isfinite(logdet) & (sign > 0)
    return jnp.where(valid, logdet, zero_cost.INVALID_SENTINEL), valid
