"""ZiCo: inverse coefficient of variation of the gradients over batches.

Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on Gradients" (ICLR 2023,
arXiv 2301.11300; code SLDGroup/ZiCo). For each conv/linear layer l with gradients g_b of the
cross-entropy on batches b = 1..n (BN in training mode):

  ZiCo = sum_l log( sum_{theta in l, std(g) > 0} mean_b |g_b(theta)| / std_b(g_b(theta)) )

(population std; a layer whose sum is 0, e.g. an inactive op's, is skipped). Higher is better:
large and consistent gradients across batches train fast and generalize.

Deviation: the reference's `getzico` calls `backward()` per batch without zeroing the gradients,
so its batch b sees the running sum g_1 + ... + g_b; here each batch's own gradient is used, as
the paper defines it.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from micronas_jax.proxies import zero_cost


def inverse_cv_log_sum(grads: jax.Array) -> jax.Array:
  """log sum over parameters of mean|g| / std(g) for per-batch gradients `grads: [n, ...]`,
  over the parameters with std > 0; 0 when no parameter qualifies (the layer is skipped)."""
  flat = grads.reshape(grads.shape[0], -1)
  std = jnp.std(flat, axis=0)
  nonzero = std > 0
  ratio = jnp.where(nonzero, jnp.mean(jnp.abs(flat), axis=0) / jnp.where(nonzero, std, 1.0), 0.0)
  total = jnp.sum(ratio)
  return jnp.where(total > 0, jnp.log(jnp.where(total > 0, total, 1.0)), 0.0)


def zico(variables, arch, inputs, config):
  """ZiCo over the batches `inputs["images"]: [n >= 2, B, H, W, C]` -> (value, valid).

  Higher is better.
  """
  def batch_gradients(batch):
    images, labels = batch
    return zero_cost.loss_gradients(variables, arch, images, labels, config)

  # One batch at a time: memory of one backward pass, not n.
  grads = jax.lax.map(batch_gradients, (inputs["images"], inputs["labels"]))
  value, valid = zero_cost.checked(sum(inverse_cv_log_sum(g) for g in grads.values()))
  # A NaN gradient has no std > 0 and would drop out of the sum silently: flag it.
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads.values()]))
  return jnp.where(finite, value, zero_cost.INVALID_SENTINEL), valid & finite
