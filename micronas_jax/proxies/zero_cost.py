"""Zero-cost saliency proxies at initialization: synflow, grad_norm and snip.

Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021, arXiv 2101.08134; code
SamsungLabs/zero-cost-nas) score a network by summing a per-weight saliency over the weights of
every conv and linear layer (`kernel` leaves here: no biases, no BN parameters):

  grad_norm = sum_l ||dL/dW_l||_2                     (L: cross-entropy of one batch)
  snip      = sum_l sum |W_l * dL/dW_l|               (Lee et al., ICLR 2019)
  synflow   = sum_l sum |W_l * dR/dW_l|,  R = sum of the logits of the network with every
              parameter replaced by its absolute value, BN removed, one all-ones input
              (Tanaka et al., NeurIPS 2020)

Higher is better for all three. As the reference runs them: grad_norm and snip with BN in training
mode (batch statistics) on one batch; synflow with BN layers made the identity (its `bn=False`) in
float64, because the all-positive network's output grows as a product over layers (about 1e43 for
the C=16, N=5 network, beyond float32's 3e38). Inactive ops of the arch-as-data network get zero
gradient, so they add nothing, as if absent.

Every proxy here is a pure function `(variables, arch, inputs, config) -> (value, valid)` with
`inputs = {"images": [num_batches, B, H, W, C], "labels": [num_batches, B] int}`; these read the
first batch (synflow only its shape).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from micronas_jax import model, naming
from micronas_jax.naming import Role

# A NaN or infinite value scores this (flagged invalid): every proxy here is higher-is-better, so
# the row ranks last instead of crashing the run.
INVALID_SENTINEL = -1e12


def is_kernel(path: tuple[str, ...]) -> bool:
  """Whether a flat parameter path is a conv or linear weight (what the reference scores)."""
  return naming.role_of(path) is Role.KERNEL


def _is_batch_norm(path: tuple[str, ...]) -> bool:
  role = naming.role_of(path)
  return role is not None and role.batch_norm


def checked(value: jax.Array, sentinel: float = INVALID_SENTINEL):
  """(value, valid): a NaN or infinite value becomes `sentinel`, flagged invalid."""
  valid = jnp.isfinite(value)
  return jnp.where(valid, value, sentinel), valid


def loss_gradients(variables, arch, images, labels, config: model.NetworkConfig) -> dict:
  """dL/dW for every kernel, {path: array}: cross-entropy of `images: [B, H, W, C]`, BN in training
  mode (the batch's statistics), as the reference's `bn=True` measures run."""
  kernels, rest = model.partition_params(variables["params"], is_kernel)

  def loss(k):
    network_vars = {"params": model.merge_params(k, rest),
                    "batch_stats": variables["batch_stats"]}
    logits, _ = model.apply(network_vars, arch, images, config, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return jax.grad(loss)(kernels)


def grad_norm(variables, arch, inputs, config):
  """Sum over conv/linear layers of the L2 norm of dL/dW on the first batch -> (value, valid).

  Higher is better.
  """
  grads = loss_gradients(variables, arch, inputs["images"][0], inputs["labels"][0], config)
  return checked(sum(jnp.sqrt(jnp.sum(jnp.square(g))) for g in grads.values()))


def snip(variables, arch, inputs, config):
  """SNIP connection sensitivity: sum over conv/linear weights of |W * dL/dW| -> (value, valid).

  Higher is better.
  """
  grads = loss_gradients(variables, arch, inputs["images"][0], inputs["labels"][0], config)
  kernels, _ = model.partition_params(variables["params"], is_kernel)
  return checked(sum(jnp.sum(jnp.abs(kernels[path] * g)) for path, g in grads.items()))


def synflow_variables(variables):
  """Synflow's network, in float64: every parameter |theta|, BN the identity (scale 1, shift 0,
  running mean 0 and variance 1 - eps, to be applied with `train=False`)."""
  def params_leaf(path, leaf):
    leaf = leaf.astype(jnp.float64)
    if _is_batch_norm(path):
      return (jnp.ones_like(leaf) if naming.role_of(path) is Role.BN_SCALE
              else jnp.zeros_like(leaf))
    return jnp.abs(leaf)

  def stats_leaf(path, leaf):
    # Eval-mode BN computes (x - mean) * rsqrt(var + eps): 1 - eps makes it exactly x.
    return (jnp.full(leaf.shape, 1.0 - 1e-5, jnp.float64) if naming.role_of(path) is Role.BN_VAR
            else jnp.zeros(leaf.shape, jnp.float64))

  params = traverse_util.flatten_dict(variables["params"])
  stats = traverse_util.flatten_dict(variables["batch_stats"])
  return {
      "params": traverse_util.unflatten_dict({p: params_leaf(p, v) for p, v in params.items()}),
      "batch_stats": traverse_util.unflatten_dict({p: stats_leaf(p, v) for p, v in stats.items()}),
  }


def synflow(variables, arch, inputs, config):
  """Synaptic flow: sum over conv/linear weights of |W * dR/dW| -> (value, valid), float64.

  R = sum of the logits of the all-positive, BN-free network (see `synflow_variables`) on one
  all-ones input `[1, H, W, C]`. Higher is better.
  """
  with jax.enable_x64(True):
    positive = synflow_variables(variables)
    kernels, rest = model.partition_params(positive["params"], is_kernel)
    ones = jnp.ones((1, *inputs["images"].shape[2:]), jnp.float64)

    def flow(k):
      network_vars = {"params": model.merge_params(k, rest),
                      "batch_stats": positive["batch_stats"]}
      return model.apply(network_vars, arch, ones, config, train=False)[0].sum()

    grads = jax.grad(flow)(kernels)
    return checked(sum(jnp.sum(jnp.abs(kernels[path] * g)) for path, g in grads.items()))
