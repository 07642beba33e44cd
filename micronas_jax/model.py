"""The NAS-Bench-201 network with the architecture as data.

Read top to bottom like Fig. 1 of NAS-Bench-201 (Dong & Yang, ICLR 2020):

    stem (3x3 conv + BN)
    -> stage 1: N cells at C channels
    -> ResNet reduction block (stride 2) -> stage 2: N cells at 2C
    -> ResNet reduction block (stride 2) -> stage 3: N cells at 4C
    -> BN + ReLU -> global average pool -> linear

Every cell of the network shares one architecture, given at call time as edge-op weights
`arch: [6, 5]` (one-hot for a single cell; 1/k on k active ops for a TE-NAS supernet) or as op
indices `arch: [6]`. Each edge computes all five ops and sums them weighted, so a single XLA
compilation serves every cell, also under `vmap` over many cells. An op with weight 0 contributes
nothing and its parameters get zero gradient, so gradients (and the NTK) equal those of the
standalone cell. Layout is NHWC.

Ops as NB201 defines them: `nor_conv_kxk` = ReLU -> Conv(k, no bias) -> BN; `avg_pool_3x3` =
3x3 average pool, stride 1, padding 1 not counted; `skip_connect` = identity; `none` = zero.

Every ReLU output is sown into the `intermediates` collection under the name `relu`, zeroed where
its op is inactive (so that inactive ops add only constant columns to activation patterns); the
linear-region proxy reads them with `mutable=["intermediates"]`. Every other layer's output map
(stem, each edge's op, each cell, the reduction blocks' convs, shortcut and sum, the head's BN) is
sown into `features` under `map`, for MeCo (`proxies.meco`).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from micronas_jax import naming, space
from micronas_jax.network import pool_3x3_counts
from micronas_jax.naming import LayerKind, Role

# The configuration is plain data (network.py) that cost and hardware models read without Flax.
from micronas_jax.network import INITS, LR_NETWORK, NB201_CIFAR10, NTK_NETWORK, NetworkConfig  # noqa: F401 (re-exported)

Variables = Any  # {"params": ..., "batch_stats": ...}


def _torch_default_bias_init(fan_in: int):
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _kernel_init(init: str):
  if init == "torch-default":
    # gain**2 = 2 / (1 + a**2) with a = sqrt(5), so the bound is sqrt(3 * (1/3) / fan_in).
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
  return nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class ConvBN(nn.Module):
  """Conv (no bias) -> BN. Input `[B, H, W, C_in]` -> `[B, H', W', features]`."""
  features: int
  kernel: int
  stride: int = 1
  config: NetworkConfig = NB201_CIFAR10

  @nn.compact
  def __call__(self, x, train: bool):
    pad = self.kernel // 2
    x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride,
                padding=((pad, pad), (pad, pad)), use_bias=False,
                kernel_init=_kernel_init(self.config.init),
                conv_general_dilated=conv_general_dilated(), name=naming.CONV_SUBMODULE)(x)
    return nn.BatchNorm(use_running_average=not train, momentum=self.config.bn_momentum,
                        epsilon=1e-5, name=naming.BN_SUBMODULE)(x)


def avg_pool_3x3(x):
  """3x3 average pool, stride 1, padding 1 excluded from the count (NB201's avg_pool_3x3):
  `[B, H, W, C]` -> same shape."""
  window, strides, padding = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
  sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding)
  # The counts as a NumPy constant: flax's count_include_pad=False pools ones of x's whole
  # shape, which XLA constant-folds at compile time (seconds per pool edge at batch 64).
  counts = pool_3x3_counts(*x.shape[1:3])[None, :, :, None].astype(np.float32)
  return sums / counts.astype(x.dtype)


def batch_norm(x, scale, bias, mean, var, train: bool, epsilon: float = 1e-5):
  """BN over all axes but the last. Returns (y, batch_mean, batch_var); in eval mode uses `mean`,
  `var` and returns them unchanged. `x: [B, H, W, C]`, the rest `[C]`."""
  if train:
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
  return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias, mean, var


def conv_by_patches(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                    dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                    precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels as shifted slices and one matmul.

  Same signature and result (up to float rounding); other layouts, dilations or groups go to
  `lax.conv_general_dilated`. Why: XLA:CPU runs the gradient of a convolution that sits inside a
  conditional (`lax.switch` over a cell's ops, `lax.cond` over the pruning candidates) about 40x
  slower than outside one (measured: 1475 ms vs 34 ms for a [64, 32, 32, 16] 3x3 conv), while
  slices and matmuls keep their speed there (74 ms).
  """
  simple = (tuple(dimension_numbers or ()) == ("NHWC", "HWIO", "NHWC")
            and not isinstance(padding, str) and feature_group_count == 1
            and batch_group_count == 1 and all(d in (None, 1) for d in
                                               (*(lhs_dilation or ()), *(rhs_dilation or ()))))
  if not simple:
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)
  (pad_top, pad_bottom), (pad_left, pad_right) = padding
  stride_h, stride_w = window_strides
  kernel_h, kernel_w, in_features, out_features = rhs.shape
  padded = jnp.pad(lhs, ((0, 0), (pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
  out_h = (padded.shape[1] - kernel_h) // stride_h + 1
  out_w = (padded.shape[2] - kernel_w) // stride_w + 1
  patches = [jax.lax.slice(padded, (0, i, j, 0),
                           (padded.shape[0], i + stride_h * (out_h - 1) + 1,
                            j + stride_w * (out_w - 1) + 1, in_features),
                           (1, stride_h, stride_w, 1))
             for i in range(kernel_h) for j in range(kernel_w)]
  stacked = patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)
  return jnp.dot(stacked, rhs.reshape(kernel_h * kernel_w * in_features, out_features),
                 precision=precision, preferred_element_type=preferred_element_type)


def conv_general_dilated():
  """The convolution the network uses on this backend: `conv_by_patches` on a CPU (see there),
  XLA's own convolution elsewhere (measured on an H100 with it)."""
  return conv_by_patches if jax.default_backend() == "cpu" else jax.lax.conv_general_dilated


def conv(x, kernel, stride: int = 1):
  """Bias-free NHWC conv with padding k // 2 (PyTorch's), `kernel: [k, k, C_in, C_out]`."""
  pad = kernel.shape[0] // 2
  return conv_general_dilated()(x, kernel, (stride, stride), ((pad, pad), (pad, pad)),
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Edge(nn.Module):
  """One cell edge. `x: [B, H, W, C]`; `choice`: an op index (int scalar) or op weights `[5]`.

  With an op index the edge runs only that op (`lax.switch`; under `vmap` over cells JAX turns
  the switch into a select over all ops). With weights it returns the weighted sum of all five
  (the TE-NAS supernet). The two convs' parameters are held here as plain arrays, not as flax
  submodules, because a flax submodule cannot be called inside `lax.switch`.
  """
  features: int
  config: NetworkConfig

  def _conv_bn_variables(self, op: int, in_features: int):
    kernel = naming.CONV_OPS[op][1]
    leaf = lambda role: naming.edge_leaf(op, role)
    kernel_param = self.param(leaf(Role.KERNEL), _kernel_init(self.config.init),
                              (kernel, kernel, in_features, self.features))
    # float32 like flax's own layers, also under jax_enable_x64 (the switch needs one dtype).
    scale = self.param(leaf(Role.BN_SCALE), nn.initializers.ones, (self.features,), jnp.float32)
    bias = self.param(leaf(Role.BN_BIAS), nn.initializers.zeros, (self.features,), jnp.float32)
    mean = self.variable("batch_stats", leaf(Role.BN_MEAN), jnp.zeros, (self.features,),
                         jnp.float32)
    var = self.variable("batch_stats", leaf(Role.BN_VAR), jnp.ones, (self.features,),
                        jnp.float32)
    return kernel_param, scale, bias, mean, var

  @nn.compact
  def __call__(self, x, choice, train: bool):
    convs = {op: self._conv_bn_variables(op, x.shape[-1]) for op in naming.CONV_OPS}
    stats = {op: (variables[3].value, variables[4].value) for op, variables in convs.items()}
    # Every op must return one dtype: float64 weights (a float64 check) widen float32 inputs.
    x = x.astype(jnp.result_type(x, *(v for op_vars in convs.values() for v in op_vars[:3])))
    activated = nn.relu(x)

    def conv_branch(op):
      def run(x_in, activated_in, stats_in):
        kernel, scale, bias = convs[op][:3]
        out, mean, var = batch_norm(conv(activated_in, kernel), scale, bias, *stats_in[op], train)
        return out, {**stats_in, op: (mean, var)}
      return run

    branches = {
        space.NONE: lambda x_in, activated_in, stats_in: (jnp.zeros_like(x_in), stats_in),
        space.SKIP: lambda x_in, activated_in, stats_in: (x_in, stats_in),
        space.CONV1X1: conv_branch(space.CONV1X1),
        space.CONV3X3: conv_branch(space.CONV3X3),
        space.POOL: lambda x_in, activated_in, stats_in: (avg_pool_3x3(x_in), stats_in),
    }
    choice = jnp.asarray(choice)
    if choice.ndim == 0:
      conv_active = (choice == space.CONV1X1) | (choice == space.CONV3X3)
      out, new_stats = jax.lax.switch(choice, [branches[op] for op in range(space.NUM_OPS)],
                                      x, activated, stats)
    else:
      conv_active = (choice[space.CONV1X1] != 0) | (choice[space.CONV3X3] != 0)
      out, new_stats = x * choice[space.SKIP], dict(stats)
      for op in (space.CONV1X1, space.CONV3X3, space.POOL):
        # An op of weight 0 (pruned from the supernet) is not computed: on one supernet at a
        # time the cond really skips it (measured on the 2-core CPU: the exact NTK of the full
        # supernet 1.9 s -> 0.93 s, near the sum of its ops' own costs); under vmap it selects.
        op_out, op_stats = jax.lax.cond(choice[op] != 0, branches[op], branches[space.NONE],
                                        x, activated, stats)
        out = out + choice[op] * op_out
        if op in convs:
          new_stats[op] = op_stats[op]
    self.sow("intermediates", "relu", jnp.where(conv_active, activated, 0.0))
    self.sow("features", "map", out)
    if train and not self.is_initializing():
      momentum = self.config.bn_momentum
      for op, (mean, var) in new_stats.items():
        convs[op][3].value = momentum * convs[op][3].value + (1 - momentum) * mean
        convs[op][4].value = momentum * convs[op][4].value + (1 - momentum) * var
    return out


class Cell(nn.Module):
  """The NB201 cell: node j = sum over i < j of edge_ij(node i); output node 3.

  `x: [B, H, W, C]`, `arch: [6]` op indices or `[6, 5]` edge-op weights.
  """
  features: int
  config: NetworkConfig

  @nn.compact
  def __call__(self, x, arch, train: bool):
    nodes = [x]
    for to_node in range(1, space.NUM_NODES):
      node = 0.0
      for edge, (target, source) in enumerate(space.EDGES):
        if target == to_node:
          edge_fn = Edge(self.features, self.config, name=naming.edge_module(edge))
          node = node + edge_fn(nodes[source], arch[edge], train)
      nodes.append(node)
    self.sow("features", "map", nodes[-1])
    return nodes[-1]


class ReductionBlock(nn.Module):
  """NB201's ResNet basic block with stride 2: two ReLU-conv-BN plus avg-pool + 1x1 shortcut."""
  features: int
  config: NetworkConfig

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.relu(x)
    self.sow("intermediates", "relu", y)
    y = ConvBN(self.features, 3, stride=2, config=self.config,
               name=LayerKind.CONV_A.value)(y, train)
    self.sow("features", "map", y)
    y = nn.relu(y)
    self.sow("intermediates", "relu", y)
    y = ConvBN(self.features, 3, config=self.config, name=LayerKind.CONV_B.value)(y, train)
    self.sow("features", "map", y)
    shortcut = nn.avg_pool(x, (2, 2), strides=(2, 2))
    shortcut = nn.Conv(self.features, (1, 1), padding=((0, 0), (0, 0)), use_bias=False,
                       kernel_init=_kernel_init(self.config.init),
                       conv_general_dilated=conv_general_dilated(),
                       name=LayerKind.SHORTCUT.value)(shortcut)
    self.sow("features", "map", shortcut)
    self.sow("features", "map", shortcut + y)
    return shortcut + y


class Network(nn.Module):
  """The NB201 network. `x: [B, H, W, in_channels]`, `arch: [6]` ints or `[6, 5]` -> logits."""
  config: NetworkConfig

  @nn.compact
  def __call__(self, x, arch, train: bool = True):
    cfg = self.config
    arch = jnp.asarray(arch)
    if arch.ndim == 1:
      chex.assert_shape(arch, (space.NUM_EDGES,))
    else:
      chex.assert_shape(arch, (space.NUM_EDGES, space.NUM_OPS))
    chex.assert_shape(x, (None, *cfg.input_shape))

    if cfg.stem:
      x = ConvBN(cfg.channels, 3, config=cfg, name=naming.stem_module())(x, train)
      self.sow("features", "map", x)
    for stage, features in enumerate(cfg.stage_channels):
      if stage > 0:
        x = ReductionBlock(features, cfg, name=naming.reduction_module(stage))(x, train)
      for cell in range(cfg.cells_per_stage):
        x = Cell(features, cfg, name=naming.cell_module(stage, cell))(x, arch, train)
    x = nn.BatchNorm(use_running_average=not train, momentum=cfg.bn_momentum, epsilon=1e-5,
                     name=LayerKind.HEAD_BN.value)(x)
    self.sow("features", "map", x)
    x = nn.relu(x)
    self.sow("intermediates", "relu", x)
    x = jnp.mean(x, axis=(1, 2))
    bias_init = (_torch_default_bias_init(x.shape[-1]) if cfg.init == "torch-default"
                 else nn.initializers.zeros)
    return nn.Dense(cfg.num_classes, kernel_init=_kernel_init(cfg.init), bias_init=bias_init,
                    name=LayerKind.CLASSIFIER.value)(x)


@functools.lru_cache(maxsize=None)
def network(config: NetworkConfig) -> Network:
  """The flax module for `config` (cached, so jitted callers see one hashable module)."""
  return Network(config)


def init(key: jax.Array, config: NetworkConfig) -> Variables:
  """Draws fresh variables {"params", "batch_stats"} holding the weights of every op."""
  dummy_x = jnp.zeros((1, *config.input_shape), jnp.float32)
  dummy_arch = jnp.zeros((space.NUM_EDGES,), jnp.int32)
  # Only the variables: flax's init would also return the sown `features` maps of the dummy input.
  return network(config).init(key, dummy_x, dummy_arch, train=False,
                              mutable=["params", "batch_stats"])


def apply(variables: Variables, arch: jax.Array, x: jax.Array, config: NetworkConfig,
          train: bool = True) -> tuple[jax.Array, Variables]:
  """Logits `[B, num_classes]` and updated batch statistics.

  With `train=True`, BN normalizes with the batch's statistics (TE-NAS semantics) and returns the
  updated running statistics; with `train=False` it uses the stored running statistics.
  """
  if train:
    logits, updates = network(config).apply(variables, x, arch, train=True,
                                            mutable=["batch_stats"])
    return logits, updates["batch_stats"]
  return network(config).apply(variables, x, arch, train=False), variables["batch_stats"]


def relu_patterns(variables: Variables, arch: jax.Array, x: jax.Array, config: NetworkConfig,
                  train: bool = True) -> jax.Array:
  """Sign pattern of every ReLU in the network, `[B, num_units]` bool (inactive ops give False)."""
  _, state = network(config).apply(variables, x, arch, train=train,
                                   mutable=["batch_stats", "intermediates"])
  leaves = jax.tree_util.tree_leaves(state["intermediates"])
  return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) > 0 for leaf in leaves], axis=1)


def count_active_params(params, ops: np.ndarray) -> int:
  """Parameters of the standalone cell network `ops: [6]`: every weight except inactive ops'."""
  ops = space.validate_ops(ops)
  total = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    layer, _ = naming.layer_of(path)
    if layer.kind is LayerKind.EDGE and ops[layer.edge] != layer.op:
      continue
    total += int(np.prod(leaf.shape))
  return total


def partition_params(params, selected) -> tuple[dict, dict]:
  """Splits a params tree into (chosen, rest), flat {path tuple: array} dicts, where
  `selected(path)` chooses a leaf; the proxies differentiate with respect to the chosen leaves."""
  flat = flax.traverse_util.flatten_dict(params)
  chosen = {path: leaf for path, leaf in flat.items() if selected(path)}
  rest = {path: leaf for path, leaf in flat.items() if not selected(path)}
  return chosen, rest


def merge_params(chosen: dict, rest: dict):
  """Inverse of `partition_params`: the nested params tree."""
  return flax.traverse_util.unflatten_dict({**chosen, **rest})
