"""Trainability: condition number of the neural tangent kernel (NTK) at initialization.

TE-NAS (Chen, Gong & Wang, ICLR 2021, arXiv 2102.11535; code VITA-Group/TENAS) scores a network by
kappa = lambda_max / lambda_min of the empirical NTK  Theta = J J^T  on one batch, where row i of J
is the gradient of sample i's summed logits with respect to the network's weights. Lower is better
(a well-conditioned kernel trains fast).

As the reference code runs it: BN in training mode (batch statistics), so samples interact through
BN and row i is the gradient of logits[i].sum() through the whole batch's graph; the weights are
every tensor PyTorch names "weight" (conv kernels, BN scales, the classifier's weight), not biases
or BN shifts; eigenvalues by a symmetric eigensolver in float32.

Two modes, both pure functions `(variables, arch, x, config) -> (kappa, valid)`:
  exact: `jax.jacrev` of the batch's summed logits (B backward passes through the B-sample graph).
  fast:  BN statistics computed once on the batch and then held fixed, per-sample gradients by
         `vmap(grad)`: B single-sample backward passes, about B times cheaper. It drops the
         gradient paths through the batch statistics; its rank agreement with exact is measured
         in benchmarks/, not assumed.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from micronas_jax import model, naming
from micronas_jax.naming import Role

# The parameter leaves that are PyTorch's "weight" tensors: conv and linear kernels, BN scales.
WEIGHT_ROLES = (Role.KERNEL, Role.BN_SCALE)
# A singular, indefinite or NaN kernel scores this (flagged invalid), so that it ranks last.
SINGULAR_SENTINEL = 1e12


def is_weight(path: tuple[str, ...]) -> bool:
  """Whether a flat parameter path is one of PyTorch's "weight" tensors (see WEIGHT_ROLES)."""
  return naming.role_of(path) in WEIGHT_ROLES


def _gram(jacobian: dict, batch: int) -> jax.Array:
  """Sum over leaves of J_l J_l^T for per-sample Jacobians {path: [B, ...]} -> [B, B]."""
  kernel = jnp.zeros((batch, batch), jnp.float32)
  for leaf in jacobian.values():
    rows = leaf.reshape(batch, -1)
    kernel = kernel + rows @ rows.T
  return kernel


def ntk_exact(variables, arch, x, config: model.NetworkConfig) -> jax.Array:
  """Empirical NTK `[B, B]` of the network on batch `x: [B, H, W, C]`, BN in training mode."""
  weights, rest = model.partition_params(variables["params"], is_weight)

  def summed_logits(w):
    network_vars = {"params": model.merge_params(w, rest),
                    "batch_stats": variables["batch_stats"]}
    return model.apply(network_vars, arch, x, config, train=True)[0].sum(axis=1)

  return _gram(jax.jacrev(summed_logits)(weights), x.shape[0])


def ntk_fast(variables, arch, x, config: model.NetworkConfig) -> jax.Array:
  """NTK `[B, B]` with BN statistics of the batch frozen: per-sample gradients by `vmap(grad)`."""
  # With momentum 0 one training-mode pass stores exactly the batch's own mean and variance.
  frozen_config = dataclasses.replace(config, bn_momentum=0.0)
  _, batch_stats = model.apply(variables, arch, x, frozen_config, train=True)
  weights, rest = model.partition_params(variables["params"], is_weight)

  def summed_logit(w, sample):
    network_vars = {"params": model.merge_params(w, rest), "batch_stats": batch_stats}
    return model.apply(network_vars, arch, sample[None], frozen_config, train=False)[0].sum()

  jacobian = jax.vmap(jax.grad(summed_logit), in_axes=(None, 0))(weights, x)
  return _gram(jacobian, x.shape[0])


def condition_number(kernel: jax.Array, sentinel: float = SINGULAR_SENTINEL):
  """kappa = lambda_max / lambda_min of a symmetric `[B, B]` kernel -> (kappa, valid) scalars.

  Eigenvalues by `eigvalsh` (ascending) in float32. A kernel whose smallest eigenvalue is not
  positive, or whose ratio is not finite, gives `(sentinel, False)`: the reference code turned NaN
  into 100000 and let a negative ratio through, which ranks a singular kernel as the best.
  """
  kernel = kernel.astype(jnp.float32)
  finite = jnp.all(jnp.isfinite(kernel))
  # LAPACK's eigensolver may crash on NaN input: hand it the identity instead and flag the row.
  eigenvalues = jnp.linalg.eigvalsh(jnp.where(finite, kernel, jnp.eye(kernel.shape[0])))
  kappa = eigenvalues[-1] / eigenvalues[0]
  valid = finite & (eigenvalues[0] > 0) & jnp.isfinite(kappa)
  return jnp.where(valid, kappa, sentinel), valid


def ntk_condition_exact(variables, arch, x, config):
  """TE-NAS trainability, exact mode: (kappa, valid); lower kappa is better."""
  return condition_number(ntk_exact(variables, arch, x, config))


def ntk_condition_fast(variables, arch, x, config):
  """TE-NAS trainability, fast mode (frozen BN statistics): (kappa, valid); lower is better."""
  return condition_number(ntk_fast(variables, arch, x, config))
