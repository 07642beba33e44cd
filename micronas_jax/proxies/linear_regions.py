"""Expressivity: number of linear regions, counted as distinct ReLU activation patterns.

TE-NAS (arXiv 2102.11535; code VITA-Group/TENAS) feeds many tiny inputs (by default 3 batches of
1000 samples of 1x3x3) through a one-cell network (C=1, no stem, then BN + ReLU, pool, linear) and
counts how many distinct on/off patterns over all of the network's ReLUs they produce. Each
pattern is one linear region of the piecewise-linear network that the inputs reach. Higher is
better. The reference computes  sum_i 1 / #{j : pattern_j == pattern_i}, which equals the number
of distinct patterns; here it is counted exactly, inside jit, by a sort with static shapes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from micronas_jax import model


def pack_bits(patterns: jax.Array) -> jax.Array:
  """Packs boolean rows `[N, U]` into uint32 words `[N, ceil(U / 32)]`."""
  n, units = patterns.shape
  padded = jnp.pad(patterns, ((0, 0), (0, -units % 32))).reshape(n, -1, 32)
  shifts = jnp.arange(32, dtype=jnp.uint32)
  return jnp.sum(padded.astype(jnp.uint32) << shifts, axis=-1, dtype=jnp.uint32)


def count_distinct_rows(patterns: jax.Array) -> jax.Array:
  """Number of distinct rows of a boolean `[N, U]` array (int32 scalar)."""
  words = pack_bits(patterns)
  order = jnp.lexsort([words[:, w] for w in range(words.shape[1])])
  ordered = words[order]
  changes = jnp.any(ordered[1:] != ordered[:-1], axis=1)
  return 1 + jnp.sum(changes, dtype=jnp.int32)


def linear_regions(variables, arch, x, config: model.NetworkConfig):
  """TE-NAS expressivity: (count, valid) for inputs `x: [num_batches, batch, H, W, C]`.

  Each batch goes through the network on its own (BN in training mode uses that batch's
  statistics, as in the reference); the patterns of all batches are counted together. Inputs
  with a NaN or infinite value make the count invalid: a NaN compares false, so every ReLU of
  every sample would read "off" and the count would be a meaningless 1.
  """
  patterns = jax.lax.map(lambda batch: model.relu_patterns(variables, arch, batch, config), x)
  count = count_distinct_rows(patterns.reshape(-1, patterns.shape[-1]))
  return count.astype(jnp.float32), jnp.isfinite(x).all()
