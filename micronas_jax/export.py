"""The network of one cell as ONNX, with BatchNorm folded, for STM32Cube.AI and similar tools.

jax2onnx cannot convert `model.Network` itself (its flax `avg_pool` hook rejects our call, and a
`lax.switch` over ops is no graph an MCU tool wants), so we export a function specialised to the
fixed cell instead: the cell is known at export time, so each edge becomes its one op, unused ops
disappear, and every Conv -> BN pair becomes one Conv with a bias (BN in inference mode is the
per-channel affine y = x * s + t, s = gamma / sqrt(var + eps), t = beta - mean * s, which folds
into the preceding conv's kernel and bias). The head's BN has no conv before it and stays a Mul
and an Add.

The exported graph is NCHW throughout (input `image: [batch, 3, 32, 32]`, float32, normalized with
the CIFAR-10 mean/std; output `logits: [batch, 10]`), so it holds plain Conv/Relu/Add ops without
layout transposes. Both average pools are depthwise Convs with constant weights (the 3x3 pool
excludes the padding from its count, as NB201's does, by a constant per-pixel Mul). ONNX opset 18.
"""
from __future__ import annotations

import dataclasses

import contextlib
import math
import os
from typing import Any, Callable

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from micronas_jax import graph, model, naming, network, paths, space
from micronas_jax.errors import Param, ParamError
from micronas_jax.graph import Kind
from micronas_jax.naming import Layer, LayerKind, Role

OPSET = 18
BN_EPSILON = 1e-5
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class ExportError(ParamError, RuntimeError):
  """An export that cannot run (a missing optional dependency) or whose file fails its check."""


class WeightsError(ParamError):
  """Bad input for the weights of a cell's network: a checkpoint of another cell or a bad size."""


def require_onnx():
  """(jax2onnx, onnx, onnxruntime), or ExportError with the install command where one is missing."""
  try:
    import jax2onnx
    import onnx
    import onnxruntime
  except ImportError as error:
    raise ExportError(f"ONNX export needs jax2onnx, onnx and onnxruntime ({error.name} is "
                      "missing): pip install 'micronas-jax[export]'") from None
  return jax2onnx, onnx, onnxruntime


# --- folding -----------------------------------------------------------------------------------


def fold_bn(kernel: np.ndarray, scale, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
  """Conv kernel `[k, k, C_in, C_out]` (HWIO) followed by inference BN -> OIHW kernel and bias
  `[C_out]` of the one conv computing both: W' = W * s, b' = beta - mean * s, s = gamma/sqrt(var+eps).
  """
  s = np.asarray(scale) / np.sqrt(np.asarray(var) + BN_EPSILON)
  folded = np.asarray(kernel) * s  # broadcasts over the last (output) axis
  return folded.transpose(3, 2, 0, 1).astype(np.float32), (np.asarray(bias) - np.asarray(mean)
                                                           * s).astype(np.float32)


def folded_weights(variables: model.Variables, ops, config: model.NetworkConfig) -> dict:
  """The weights the fixed cell's inference network uses, BN folded, kernels OIHW (NumPy), keyed
  by the `naming.Layer` of every layer the graph of `ops` reads: a conv with BN gives (kernel,
  bias), the shortcut its kernel alone, HEAD_BN (scale, shift), CLASSIFIER (kernel [C, K], bias
  [K]).
  """
  variables = jax.device_get(variables)
  weights = {}
  for node in graph.build(ops, config).nodes:
    for layer in node.layers:
      leaf = lambda role: np.asarray(layer.get(variables, role))
      if layer.kind is naming.LayerKind.SHORTCUT:
        weights[layer] = leaf(Role.KERNEL).transpose(3, 2, 0, 1)
      elif layer.kind is naming.LayerKind.CLASSIFIER:
        weights[layer] = (leaf(Role.KERNEL), leaf(Role.BIAS))
      elif layer.kind is naming.LayerKind.HEAD_BN:
        scale = leaf(Role.BN_SCALE) / np.sqrt(leaf(Role.BN_VAR) + BN_EPSILON)
        weights[layer] = (scale, leaf(Role.BN_BIAS) - leaf(Role.BN_MEAN) * scale)
      else:
        weights[layer] = fold_bn(*(leaf(role) for role in naming.CONV_BN_ROLES))
  return weights


# --- the static-cell inference network (NCHW) ----------------------------------------------------


def _conv(x, kernel, bias=None, stride: int = 1, groups: int = 1):
  pad = kernel.shape[-1] // 2
  y = jax.lax.conv_general_dilated(x, jnp.asarray(kernel), (stride, stride),
                                   ((pad, pad), (pad, pad)), feature_group_count=groups,
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"))
  return y if bias is None else y + jnp.asarray(bias)[None, :, None, None]


def _avg_pool_3x3(x):
  """NB201's 3x3 average pool (stride 1, padding 1 not counted) as a depthwise conv + Mul."""
  channels, height, width = x.shape[1:]
  ones = np.ones((channels, 1, 3, 3), np.float32)
  inverse_count = (1.0 / network.pool_3x3_counts(height, width)).astype(np.float32)[None, None]
  return _conv(x, ones, groups=channels) * jnp.asarray(inverse_count)


def _avg_pool_2x2(x):
  """2x2 average pool with stride 2 (the reduction block's shortcut) as a depthwise conv."""
  channels = x.shape[1]
  quarter = np.full((channels, 1, 2, 2), 0.25, np.float32)
  return jax.lax.conv_general_dilated(x, jnp.asarray(quarter), (2, 2), "VALID",
                                      feature_group_count=channels,
                                      dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _conv_nhwc(x, kernel, bias=None, stride: int = 1, pad: int | None = None):
  """Conv of NHWC `x` with an OIHW `kernel`, padded `pad` (default k // 2, as the model's) on
  every side: TFLite writes it as SAME for stride 1; a strided conv is given its input padded
  (a PAD), since TFLite's SAME pads a strided conv asymmetrically."""
  pad = kernel.shape[-1] // 2 if pad is None else pad
  y = jax.lax.conv_general_dilated(x, jnp.asarray(kernel.transpose(2, 3, 1, 0)), (stride, stride),
                                   ((pad, pad), (pad, pad)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y if bias is None else y + jnp.asarray(bias)


def _avg_pool_3x3_nhwc(x):
  """NB201's 3x3 average pool on NHWC as a window sum over the window sum of ones: the
  converter's pattern for TFLite's AVERAGE_POOL_2D (SAME), which counts only the pixels inside.
  (Counts given as a constant array are not matched, and the conversion fails.)"""
  window = ((1, 3, 3, 1), (1, 1, 1, 1), "SAME")
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, *window)
  counts = jax.lax.reduce_window(jnp.ones_like(x), 0.0, jax.lax.add, *window)
  return total / counts


def _avg_pool_2x2_nhwc(x):
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
  return total / 4.0


LAYOUTS = ("NCHW", "NHWC")


def inference_function(weights: dict, ops, config: model.NetworkConfig, layout: str = "NCHW",
                       dead_code: bool = False) -> Callable:
  """`f(x) -> logits [B, K]`: the network of cell `ops` with the folded `weights` (see
  `folded_weights`), in inference mode, a pass over its graph (`graph.build(ops, config,
  dead_code)`); `x` is `[B, C_in, H, W]` for layout NCHW (ONNX), `[B, H, W, C_in]` for NHWC
  (TFLite).

  Each op is written as the pattern its converter turns into the one native op: in NCHW the pools
  are depthwise convs (jax2onnx), in NHWC window sums over counts (AVERAGE_POOL_2D). A ReLU of a
  tensor is computed once however many convs read it, so the converted graph has one ReLU tensor.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout {layout!r}; known: {', '.join(LAYOUTS)}")
  network_graph = graph.build(ops, config, dead_code)
  channels_last = layout == "NHWC"
  conv = _conv_nhwc if channels_last else _conv
  pool3 = _avg_pool_3x3_nhwc if channels_last else _avg_pool_3x3
  pool2 = _avg_pool_2x2_nhwc if channels_last else _avg_pool_2x2
  spatial = (1, 2) if channels_last else (2, 3)
  per_channel = (lambda v: jnp.asarray(v)) if channels_last else (
      lambda v: jnp.asarray(v)[None, :, None, None])

  # In NHWC every op runs under the name of the tensor `hardware.memory`'s TFLM plan gives it
  # (a named scope, which the converter keeps in the tensor names): `deploy.tflite` finds each
  # converted op by it to run them in the graph's order, the order the arena estimate follows.
  scope = jax.named_scope if channels_last else (lambda name: contextlib.nullcontext())

  def forward(x):
    tensors = {graph.IMAGE: x}
    rectified = {}
    same_shape = {config.input_shape: x}  # the latest tensor of each shape
    for node in network_graph.nodes:
      inputs = [tensors[name] for name in node.inputs]
      if node.kind is Kind.CONV:
        source = inputs[0]
        if node.relu_in:
          if node.inputs[0] not in rectified:
            with scope(f"{node.inputs[0]}:relu"):
              rectified[node.inputs[0]] = jax.nn.relu(source)
          source = rectified[node.inputs[0]]
        kernel, bias = conv_weights(weights, node)
        if channels_last and node.stride > 1 and kernel.shape[-1] > 1:
          with scope(f"{node.output}:pad"):
            pad = kernel.shape[-1] // 2
            source = jnp.pad(source, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
          with scope(node.output):
            out = _conv_nhwc(source, kernel, bias, stride=node.stride, pad=0)
        else:
          with scope(node.output):
            out = conv(source, kernel, bias, stride=node.stride)
      elif node.kind is Kind.ZEROS:
        # 0 x a tensor of the same shape: no activation-sized constant enters the graph.
        with scope(node.output):
          out = same_shape[node.shape] * 0.0
      elif node.kind is Kind.HEAD:
        scale, shift = weights[Layer(LayerKind.HEAD_BN)]
        kernel, bias = weights[Layer(LayerKind.CLASSIFIER)]
        with scope(f"{node.output}:{Kind.BN.value}"):
          y = inputs[0] * per_channel(scale)
        with scope(f"{node.output}:{Kind.RELU.value}"):
          y = jax.nn.relu(y + per_channel(shift))
        with scope(f"{node.output}:{Kind.GLOBAL_POOL.value}"):
          y = jnp.mean(y, axis=spatial)
        with scope(node.output):
          out = y @ jnp.asarray(kernel) + jnp.asarray(bias)
      else:
        with scope(node.output):
          if node.kind is Kind.POOL3:
            out = pool3(inputs[0])
          elif node.kind is Kind.POOL2:
            out = pool2(inputs[0])
          else:
            out = inputs[0] + inputs[1]
      tensors[node.output] = same_shape[node.shape] = out
    return tensors[graph.LOGITS]

  return forward


def conv_weights(weights: dict, node) -> tuple[np.ndarray, np.ndarray | None]:
  """(OIHW kernel, bias or None) of a CONV node from `folded_weights` (the shortcut has no BN,
  so no bias)."""
  entry = weights[node.layers[0]]
  return entry if isinstance(entry, tuple) else (entry, None)


# --- variables from a checkpoint or from init ----------------------------------------------------


def checkpoint_variables(checkpoint: dict) -> tuple[model.Variables, model.NetworkConfig]:
  """Variables {"params", "batch_stats"} and network config of a `train.read_checkpoint` dict."""
  config = model.NetworkConfig(**checkpoint["meta"]["network"])
  target = jax.eval_shape(lambda key: model.init(key, config), jax.random.PRNGKey(0))
  target = jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), target)
  state = checkpoint["state"]
  variables = flax.serialization.from_state_dict(
      dict(target), {"params": state["params"], "batch_stats": state["batch_stats"]})
  return variables, config


def randomized_batch_norm(variables: model.Variables, seed: int = 0) -> model.Variables:
  """`variables` with every BN's statistics and affine parameters (the 1-D leaves) drawn at
  random, seeded: variances uniform in [0.5, 2], the rest shifted by N(0, 0.1). Freshly
  initialized BNs are identities, which the TFLite converter folds away (zero biases shared,
  the head's BN a scalar); these convert to the graph a trained network has, so its memory is
  what a trained one's will be."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    leaf = np.asarray(leaf)
    if leaf.ndim != 1:
      return leaf
    if jax.tree_util.keystr(path).endswith("var']"):
      return rng.uniform(0.5, 2.0, leaf.shape).astype(leaf.dtype)
    return (leaf + rng.normal(0.0, 0.1, leaf.shape)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, variables)


def sized_network(network: model.NetworkConfig | None, channels: int | None,
                  cells: int | None) -> model.NetworkConfig:
  """`network` (default NB201's) with C=`channels` and N=`cells` where given."""
  network = network or model.NB201_CIFAR10
  return dataclasses.replace(network, channels=network.channels if channels is None else channels,
                             cells_per_stage=network.cells_per_stage if cells is None else cells)


def cell_variables(ops, checkpoint: str | None = None, seed: int = 0, channels: int | None = None,
                   cells: int | None = None, network: model.NetworkConfig | None = None
                   ) -> tuple[model.Variables, model.NetworkConfig, str]:
  """(variables, network config, where the weights come from) of the network of cell `ops: [6]`:
  a `micronas-jax train` checkpoint (run folder or file) of that cell, or, without one, freshly
  initialized weights from `seed` of `network` (default NB201's) with C=`channels` and
  N=`cells` where given.

  Raises WeightsError for a checkpoint of another cell or a size given beside a checkpoint.
  """
  from micronas_jax import train

  if checkpoint:
    if channels is not None or cells is not None:
      raise WeightsError(Param("channels"), " and ", Param("cells"),
                         " come from the checkpoint; leave them out")
    try:
      stored = train.read_checkpoint(checkpoint)
    except train.TrainError as error:
      raise WeightsError(error) from None
    arch = stored["meta"]["arch"]
    if arch != space.format_arch(ops):
      raise WeightsError(f"{checkpoint} holds a network of arch {arch}, not "
                         f"{space.format_arch(ops)}")
    variables, config = checkpoint_variables(stored)
    return variables, config, (f"checkpoint {train.checkpoint_path(checkpoint)} after epoch "
                               f"{stored['epoch']} of {stored['meta']['training']['epochs']}")
  try:
    config = sized_network(network, channels, cells)
  except ValueError as error:
    raise WeightsError(error) from None
  variables = jax.jit(model.init, static_argnums=1)(train.init_key(seed), config)
  return variables, config, f"initialized weights (seed {seed}), NOT trained: no checkpoint given"


# --- ONNX ----------------------------------------------------------------------------------------


def to_onnx(variables: model.Variables, ops, config: model.NetworkConfig, path: str | os.PathLike,
            batch_size: int = 1) -> Any:
  """Writes the network of cell `ops` as ONNX (opset OPSET, NCHW, BN folded, fixed batch size)
  to `path` and returns the checked `onnx.ModelProto`."""
  jax2onnx, onnx, _ = require_onnx()
  forward = inference_function(folded_weights(variables, ops, config), ops, config)
  shape = (batch_size, config.in_channels, config.resolution, config.resolution)
  proto = jax2onnx.to_onnx(forward, [shape], model_name=f"nb201_cell_{space.index_of(ops)}",
                           opset=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
  proto.doc_string = (f"NAS-Bench-201 cell {space.format_arch(ops)} (index "
                      f"{space.index_of(ops)}), C={config.channels}, N={config.cells_per_stage}; "
                      "input NCHW float32 normalized by the CIFAR-10 mean/std; BN folded")
  onnx.checker.check_model(proto)
  onnx.save(proto, os.fspath(path))
  return proto


def max_abs_difference(path: str | os.PathLike, variables: model.Variables, ops,
                       config: model.NetworkConfig, key: jax.Array, count: int = 8) -> float:
  """Largest |ONNX Runtime - JAX| over the logits of `count` standard-normal inputs, the JAX side
  being `model.apply` (the lax.switch network, inference mode, NHWC) on the same inputs."""
  _, _, onnxruntime = require_onnx()
  session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
  batch_size = session.get_inputs()[0].shape[0]
  count = -(-count // batch_size) * batch_size
  x = np.asarray(jax.random.normal(key, (count, *config.input_shape)), np.float32)
  expected, _ = model.apply(variables, jnp.asarray(ops), x, config, train=False)
  outputs = [session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + batch_size].transpose(0, 3, 1, 2)})[0]
             for i in range(0, count, batch_size)]
  return float(np.max(np.abs(np.concatenate(outputs) - np.asarray(expected))))


def export_cell(ops, onnx_path: str, checkpoint: str | None = None, batch_size: int = 1,
                seed: int = 0, channels: int | None = None, cells: int | None = None,
                check_samples: int = 8, tolerance: float = 1e-4) -> dict:
  """Writes the network of cell `ops: [6]` as ONNX to `onnx_path`, checked with ONNX Runtime
  against JAX on `check_samples` random inputs -> {"difference", "source", "config", ...}.

  The file is checked under a temporary name and renamed only when the largest logit difference
  is within `tolerance`, so a failed check never leaves a broken .onnx where the user expects a
  good one. Raises WeightsError or paths.PathError for bad input, ExportError when a dependency
  is missing or the check fails.
  """
  if batch_size < 1 or check_samples < 1:
    raise WeightsError(Param("batch_size"), " and ", Param("check_samples"), " must be positive")
  if not (math.isfinite(tolerance) and tolerance >= 0):  # NaN fails every comparison
    raise WeightsError(Param("tolerance"), f" must be a finite non-negative number, got {tolerance}")
  paths.check_writable(onnx_path, create_parents=True)
  variables, config, source = cell_variables(ops, checkpoint, seed, channels, cells)
  checked = {}

  def write_checked(tmp):
    to_onnx(variables, ops, config, tmp, batch_size)
    checked["difference"] = max_abs_difference(tmp, variables, ops, config,
                                               jax.random.PRNGKey(seed), check_samples)
    if not checked["difference"] <= tolerance:
      raise ExportError(f"onnxruntime vs JAX: max abs difference {checked['difference']:.3g} "
                        "exceeds ", Param("tolerance", f"{tolerance:g}"),
                        f"; {onnx_path} not written")

  paths.write_atomically(onnx_path, write_checked)
  return {"difference": checked["difference"], "source": source, "config": config,
          "input_shape": [batch_size, config.in_channels, config.resolution, config.resolution],
          "output_shape": [batch_size, config.num_classes]}
