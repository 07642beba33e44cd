"""MeCo: the minimum eigenvalue of the channel correlation of every feature map, for one input.

Jiang, Wang & Bie, "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum
Eigenvalue of Correlation" (NeurIPS 2023; code HamsterMiZhang/MeCo). One image goes forward
through the untrained network (BN in training mode); each layer's output map of that image,
reshaped to `[C, H * W]`, gives the Pearson correlation matrix of its channels `P: [C, C]`, and

  MeCo = sum over layers of lambda_min(P)

with NaN entries of P (a channel constant over the map, e.g. all zeros) set to 0 first, as the
reference does. Higher is better: channels that stay decorrelated at initialization train well.

Layers: every ReLU (the `relu` intermediates, an inactive op's zeroed) and every other layer's
output (`features`: stem, each edge's op, each cell, the reduction blocks' convs, shortcut and
sum, the head's BN); see `model`. A `none` edge gives an all-zero map, so P = 0 and it adds 0,
as the reference's Zero module does. Deviation: the reference hooks every PyTorch module, so a
container (a ReLU-conv-BN sequence, a cell's op list) repeats its last child's map, and a conv
and its BN (same correlation: BN is a positive per-channel affine map) count twice; here each
distinct map counts once. This changes the weights of the sum, not what is measured.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from micronas_jax import model
from micronas_jax.proxies import zero_cost


def min_eig_correlation(feature_map: jax.Array) -> jax.Array:
  """lambda_min of the channel correlation of one map `[H, W, C]` (NaN entries of it set to 0)."""
  rows = feature_map.reshape(-1, feature_map.shape[-1]).T  # [C, H * W]
  corr = jnp.corrcoef(rows)
  corr = jnp.where(jnp.isfinite(corr), corr, 0.0)
  return jnp.linalg.eigvalsh(jnp.atleast_2d(corr))[0]


def feature_maps(variables, arch, x, config: model.NetworkConfig) -> list[jax.Array]:
  """Every layer's output map of batch `x: [B, H, W, C]`, BN in training mode: `[B, H', W', C']`
  each (the ReLUs' and `features`; see the module doc)."""
  _, state = model.network(config).apply(variables, x, arch, train=True,
                                         mutable=["batch_stats", "intermediates", "features"])
  return (jax.tree_util.tree_leaves(state["intermediates"])
          + jax.tree_util.tree_leaves(state["features"]))


def meco(variables, arch, inputs, config):
  """MeCo on the first image `inputs["images"][0, :1]` -> (value, valid). Higher is better; a
  NaN or infinite map (not just a constant channel) is invalid."""
  maps = feature_maps(variables, arch, inputs["images"][0, :1], config)
  value = sum(min_eig_correlation(m[0]) for m in maps)
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(m)) for m in maps]))
  value, valid = zero_cost.checked(value)
  return jnp.where(finite, value, zero_cost.INVALID_SENTINEL), valid & finite
