"""The float forward of a network graph with BN-folded weights, in numpy: the reference that
calibrates the int8 scales (`quantize.calibrate`) and that the int8 network is checked against.
Tensors are NHWC."""
from __future__ import annotations

import numpy as np

from micronas_jax import export, network
from micronas_jax.graph import IMAGE, LOGITS, Graph, Kind
from micronas_jax.naming import Layer, LayerKind


def _conv_float(x, kernel_oihw, bias, stride: int, relu_in: bool):
  if relu_in:
    x = np.maximum(x, 0)
  c_out, _, k, _ = kernel_oihw.shape
  pad = k // 2
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  out = np.broadcast_to(np.asarray(bias, np.float32), (n, oh, ow, c_out)).copy()
  for ky in range(k):
    for kx in range(k):
      window = padded[:, ky:ky + stride * (oh - 1) + 1:stride,
                      kx:kx + stride * (ow - 1) + 1:stride]
      out += window @ kernel_oihw[:, :, ky, kx].T
  return out


def _pool3_float(x):
  h, w = x.shape[1:3]
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  total = sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
  return total / network.pool_3x3_counts(h, w)[None, :, :, None]


def conv_weights(weights: dict, node) -> tuple[np.ndarray, np.ndarray]:
  """(OIHW kernel, bias) of a CONV node from `export.folded_weights`; a zero bias for the
  shortcut, which has no BN."""
  kernel, bias = export.conv_weights(weights, node)
  return kernel, np.zeros(kernel.shape[0], np.float32) if bias is None else bias


def float_forward(program: Graph, weights: dict, images: np.ndarray, visit=None) -> np.ndarray:
  """Float logits `[N, classes]` of normalized `images [N, r, r, c]` through the program with the
  folded float `weights`; `visit(name, tensor)` sees every tensor as it is made (calibration)."""
  tensors = {IMAGE: np.asarray(images, np.float32)}
  last_use = {}
  for i, step in enumerate(program.nodes):
    for name in step.inputs:
      last_use[name] = i
  if visit:
    visit(IMAGE, tensors[IMAGE])
  for i, step in enumerate(program.nodes):
    inputs = [tensors[name] for name in step.inputs]
    if step.kind is Kind.CONV:
      out = _conv_float(inputs[0], *conv_weights(weights, step), step.stride, step.relu_in)
    elif step.kind is Kind.POOL3:
      out = _pool3_float(inputs[0])
    elif step.kind is Kind.POOL2:
      n, h, w, c = inputs[0].shape
      out = inputs[0].reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    elif step.kind is Kind.ADD:
      out = inputs[0] + inputs[1]
    elif step.kind is Kind.ZEROS:
      out = np.zeros((len(images), *program.shapes[step.output]), np.float32)
    else:
      scale, shift = weights[Layer(LayerKind.HEAD_BN)]
      kernel, bias = weights[Layer(LayerKind.CLASSIFIER)]
      bn = inputs[0] * scale + shift
      if visit:
        visit("head/bn", np.maximum(bn, 0))
      out = np.maximum(bn, 0).mean((1, 2)) @ kernel + bias
    tensors[step.output] = out.astype(np.float32)
    if visit:
      visit(step.output, tensors[step.output])
    for name in set(step.inputs):
      if last_use[name] == i:
        del tensors[name]  # calibration batches of the full network would not fit otherwise
  return tensors[LOGITS]
