"""int8 numpy reference of the runtime's C kernels: the same integer arithmetic, written independently.

Tensors are NHWC (`[..., h, w, c]`: one image, or a batch), int8, symmetric (zero point 0). A conv
accumulates in int32 (here int64, no overflow at these sizes) and requantizes per output channel:

    requantize(acc, m, s) = floor((acc * m + 2^(30 + s)) / 2^(31 + s)),   m in [2^30, 2^31), s >= 0

then saturates to [-128, 127]. Means (the pools) round half away from zero.
"""
from __future__ import annotations

import numpy as np

from micronas_jax.runtime.params import ConvParams, HeadParams, NetworkParams  # noqa: F401


def requantize(acc, mult, shift) -> np.ndarray:
  """`(acc * mult + 2^(30 + shift)) >> (31 + shift)` elementwise, in int64 (arithmetic shift)."""
  acc = np.asarray(acc, np.int64)
  total = 31 + np.asarray(shift, np.int64)
  return (acc * np.asarray(mult, np.int64) + (np.int64(1) << (total - 1))) >> total


def saturate(x) -> np.ndarray:
  """Clamp to int8."""
  return np.clip(x, -128, 127).astype(np.int8)


def mean_round(total, count) -> np.ndarray:
  """`total / count` rounded half away from zero (integers)."""
  total = np.asarray(total, np.int64)
  return np.sign(total) * ((np.abs(total) + count // 2) // count)


def conv(x, p: ConvParams, stride: int = 1, relu_in: bool = False) -> np.ndarray:
  """Conv k x k, padding k // 2: `x [..., h, w, c_in]` -> int8 `[..., oh, ow, c_out]`, by
  explicit taps."""
  x = np.asarray(x, np.int64)
  if relu_in:
    x = np.maximum(x, 0)
  c_out, k, _, c_in = p.weights.shape
  pad = k // 2
  *lead, h, w, _ = x.shape
  padded = np.zeros((*lead, h + 2 * pad, w + 2 * pad, c_in), np.int64)
  padded[..., pad:pad + h, pad:pad + w, :] = x
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  acc = np.broadcast_to(p.bias.astype(np.int64), (*lead, oh, ow, c_out)).copy()
  weights = p.weights.astype(np.int64)
  for ky in range(k):
    for kx in range(k):
      window = padded[..., ky:ky + stride * (oh - 1) + 1:stride,
                      kx:kx + stride * (ow - 1) + 1:stride, :]
      acc += window @ weights[:, ky, kx, :].T
  return saturate(requantize(acc, p.mult, p.shift))


def avgpool3x3(x) -> np.ndarray:
  """3x3 average pool, stride 1, padding 1 not counted: `[..., h, w, c]` -> int8, same shape."""
  x = np.asarray(x, np.int64)
  h, w, _ = x.shape[-3:]
  out = np.zeros(x.shape, np.int64)
  for i in range(h):
    for j in range(w):
      window = x[..., max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, :]
      out[..., i, j, :] = mean_round(window.sum((-3, -2)), window.shape[-3] * window.shape[-2])
  return out.astype(np.int8)


def avgpool2x2(x) -> np.ndarray:
  """2x2 average pool, stride 2: `[..., h, w, c]` -> int8 `[..., h/2, w/2, c]`."""
  x = np.asarray(x, np.int64)
  *lead, h, w, c = x.shape
  return mean_round(x.reshape(*lead, h // 2, 2, w // 2, 2, c).sum((-4, -2)), 4).astype(np.int8)


def add(a, b, mult_a: int, mult_b: int, shift: int) -> np.ndarray:
  """`sat8((a * mult_a + b * mult_b + 2^(shift - 1)) >> shift)` elementwise."""
  a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
  return saturate((a * mult_a + b * mult_b + (1 << (shift - 1))) >> shift)


def head(x, p: HeadParams) -> np.ndarray:
  """BN + ReLU, global sum pool, linear: `[..., h, w, c]` -> int32 logits `[..., classes]`.

  The pooled sums are not divided by h w: the mean's 1/(h w) belongs to the logits' scale, so
  the pool loses no precision to rounding (`fc_bias` is in those units)."""
  x = np.asarray(x, np.int64)
  y = saturate(requantize(x * p.bn_scale + p.bn_bias, p.mult, p.shift)).astype(np.int64)
  pooled = np.maximum(y, 0).sum((-3, -2))
  return (pooled @ p.fc_weights.astype(np.int64).T + p.fc_bias).astype(np.int32)


EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (target, source), as space.EDGES


def cell(x, arch, convs, node_shift: int) -> np.ndarray:
  """One NB201 cell (ops by index: none, skip, conv 1x1, conv 3x3, pool): `[h, w, c]` -> same."""
  one = 1 << node_shift
  nodes = [np.asarray(x, np.int8)] + [np.zeros_like(x, np.int8) for _ in range(3)]
  for e, ((target, source), op) in enumerate(zip(EDGES, arch)):
    if op == 0:
      continue
    x_in = nodes[source]
    if op == 1:
      y = x_in
    elif op in (2, 3):
      y = conv(x_in, convs[e][op - 2], relu_in=True)
    else:
      y = avgpool3x3(x_in)
    nodes[target] = add(nodes[target], y, one, one, node_shift)
  return nodes[3]


def network(image, arch, p: NetworkParams) -> np.ndarray:
  """The int8 NB201 forward of one image `[r, r, in_channels]` -> int32 logits `[classes]`."""
  x = conv(image, p.stem)
  for stage, stage_cells in enumerate(p.cells):
    if stage > 0:
      conv_a, conv_b, shortcut = p.reductions[stage - 1]
      y = conv(conv(x, conv_a, stride=2, relu_in=True), conv_b, relu_in=True)
      x = add(y, conv(avgpool2x2(x), shortcut), *p.residual)
    for convs in stage_cells:
      x = cell(x, arch, convs, p.node_shift)
  return head(x, p.head)
