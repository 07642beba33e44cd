"""Post-training int8 quantization of a network graph, as CMSIS-NN and TFLite Micro do it.

- BN is folded into the conv before it (`export.folded_weights`).
- Weights: int8, symmetric, one scale per output channel, s_w[c] = max|W[c]| / 127.
- Biases: int32 in accumulator units, b_q = round(b / (s_in s_w[c])).
- Activations: int8, symmetric (zero point 0), one scale per tensor, s = max|x| / 127 over the
  calibration images (a 3x3 or 2x2 mean keeps its input's scale: the kernel does not rescale).
- Requantization of a conv output channel: the real multiplier M = s_in s_w[c] / s_out as a Q31
  multiplier m in [2^30, 2^31) and a shift s, M = m 2^-(31 + s), applied with one rounding:
  (acc m + 2^(30 + s)) >> (31 + s) (`runtime.reference.requantize`, CMSIS-NN's
  single-rounding `arm_nn_requantize`).
- An add: out = (a m_a + b m_b + 2^(k-1)) >> k with m = round(s_in / s_out 2^k), k <= 23.
- The head: BN as an integer affine x A + B at 2^K times the output scale, then ReLU, the pool's
  sum (not its rounded mean) and a linear layer with per-tensor int8 weights; logits stay int32
  (scale s_bn s_fc / (h w)).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from micronas_jax.graph import IMAGE, LOGITS, Graph, Kind
from micronas_jax.naming import Layer, LayerKind
from micronas_jax.runtime import float_reference, reference

# Smallest calibrated range: a tensor that is zero on every calibration image still gets a scale.
RANGE_FLOOR = 1e-3
ZEROS_RANGE = 1.0  # a node with no inputs: its values are 0, any scale serves its readers
MULT_ONE = 1 << 30  # Q31 0.5: with shift K - 1 a requantization divides by 2^K
SHIFT_MIN, SHIFT_MAX = -7, 31  # beyond them every output saturates, or is 0 (see _multiplier)
ADD_MULT_LIMIT = 1 << 22  # |m_a|, |m_b| < 2^22 keep a m_a + b m_b in int32
ADD_SHIFT_MAX = 23
HEAD_SHIFT_MAX = 24


@dataclasses.dataclass(frozen=True)
class AddParams:
  """`out = sat8((a mult_a + b mult_b + 2^(shift-1)) >> shift)`."""
  mult_a: int
  mult_b: int
  shift: int


@dataclasses.dataclass(frozen=True)
class QuantizedNetwork:
  """The int8 network of one cell.

  Attributes:
    program: the kernel calls and tensor shapes.
    scales: float scale of every int8 tensor (zero points are all 0); LOGITS: of the int32 logits.
    params: per step output, its `reference.ConvParams`, `reference.HeadParams` or `AddParams`.
  """
  program: Graph
  scales: dict
  params: dict

  def quantize_images(self, images) -> np.ndarray:
    """Normalized float images `[..., r, r, c]` -> the int8 input, round(x / scale)."""
    return reference.saturate(np.round(np.asarray(images, np.float64) / self.scales[IMAGE]))


def calibrate(program: Graph, weights: dict, images: np.ndarray, batch_size: int = 64) -> dict:
  """max |x| of every tensor (and of the head's BN output after ReLU, "head/bn") over `images`,
  together with their float logits `[N, classes]`: ({name: float}, logits)."""
  ranges: dict[str, float] = {}

  def visit(name, tensor):
    ranges[name] = max(ranges.get(name, 0.0), float(np.max(np.abs(tensor), initial=0.0)))

  logits = [float_reference.float_forward(program, weights, images[i:i + batch_size], visit)
            for i in range(0, len(images), batch_size)]
  return ranges, np.concatenate(logits)


def _multiplier(real) -> tuple[np.ndarray, np.ndarray]:
  """Q31 multipliers m in [2^30, 2^31) and shifts s of positive reals, real = m 2^-(31 + s).

  Shifts are clamped to [SHIFT_MIN, SHIFT_MAX]: a multiplier of 2^7 or more saturates every
  nonzero accumulator either way, and below 2^-32 every accumulator of an int8 layer rounds to 0.
  """
  fraction, exponent = np.frexp(np.asarray(real, np.float64))
  mult = np.round(fraction * 2.0**31).astype(np.int64)
  carry = mult == 2**31
  mult, shift = np.where(carry, 2**30, mult), -exponent + np.where(carry, -1, 0)
  mult = np.where(shift < SHIFT_MIN, 2**31 - 1, mult)
  mult = np.where(shift > SHIFT_MAX, 2**30, mult)
  return mult.astype(np.int32), np.clip(shift, SHIFT_MIN, SHIFT_MAX).astype(np.int32)


def quantize_conv(kernel_oihw, bias, s_in: float, s_out: float) -> reference.ConvParams:
  """A float conv (BN folded) between int8 tensors of scales `s_in`, `s_out` -> its int8 params.

  The weight scale of a channel is raised where its bias would not fit int32 (|b_q| < 2^30).
  """
  kernel, bias = np.asarray(kernel_oihw, np.float64), np.asarray(bias, np.float64)
  largest = np.abs(kernel).reshape(len(kernel), -1).max(1)
  s_w = np.maximum(largest / 127, np.abs(bias) / (s_in * 2.0**30))
  s_w = np.where(s_w > 0, s_w, 1.0)
  weights = np.clip(np.round(kernel / s_w[:, None, None, None]), -127, 127).astype(np.int8)
  mult, shift = _multiplier(s_in * s_w / s_out)
  return reference.ConvParams(weights=weights.transpose(0, 2, 3, 1).copy(),
                              bias=np.round(bias / (s_in * s_w)).astype(np.int32),
                              mult=mult, shift=shift)


def quantize_add(s_a: float, s_b: float, s_out: float) -> AddParams:
  """The add of int8 tensors of scales `s_a`, `s_b` into scale `s_out` (>= max / 2^20)."""
  ratio = max(s_a, s_b) / s_out
  shift = min(ADD_SHIFT_MAX, int(np.floor(np.log2(ADD_MULT_LIMIT / ratio))))
  if shift < 1:
    raise ValueError(f"add: output scale {s_out:g} too small for inputs {s_a:g}, {s_b:g}")
  return AddParams(round(s_a / s_out * 2**shift), round(s_b / s_out * 2**shift), shift)


def quantize_head(scale, shift, kernel, bias, s_in: float, s_bn: float, pixels: int) -> tuple:
  """The head (BN affine `scale`, `shift`; linear `kernel [C, K]`, `bias [K]`) from an int8 input
  of scale `s_in` and `pixels` positions via a ReLU'd BN output of scale `s_bn` -> (HeadParams,
  scale of the logits). The kernel feeds the pool's sums, not its mean, to the linear layer, so
  the logits' scale carries the 1/pixels and the bias is in those units."""
  a = np.asarray(scale, np.float64) * s_in / s_bn
  b = np.asarray(shift, np.float64) / s_bn
  # x A + B with x in [-128, 127] must fit int32: 128 max|A| + max|B| < 2^30 at 2^K.
  largest = 128 * np.abs(a).max() + np.abs(b).max()
  k = int(min(HEAD_SHIFT_MAX, np.floor(np.log2(2.0**30 / max(largest, 1e-30)))))
  if k < 1:
    raise ValueError(f"head: BN output scale {s_bn:g} too small")
  kernel = np.asarray(kernel, np.float64)
  s_fc = max(np.abs(kernel).max() / 127, 1e-30)
  params = reference.HeadParams(
      bn_scale=np.round(a * 2**k).astype(np.int32), bn_bias=np.round(b * 2**k).astype(np.int32),
      mult=MULT_ONE, shift=k - 1,
      fc_weights=np.clip(np.round(kernel.T / s_fc), -127, 127).astype(np.int8),
      fc_bias=np.round(np.asarray(bias, np.float64) * pixels / (s_bn * s_fc)).astype(np.int32))
  return params, s_bn * s_fc / pixels


def quantize(program: Graph, weights: dict, ranges: dict) -> QuantizedNetwork:
  """The int8 network from folded float `weights` and calibrated `ranges` (see `calibrate`)."""
  scales = {IMAGE: max(ranges[IMAGE], RANGE_FLOOR) / 127}
  params = {}
  for step in program.nodes:
    out = step.output
    if step.kind is Kind.ZEROS:
      scales[out] = ZEROS_RANGE / 127
    elif step.kind in (Kind.POOL3, Kind.POOL2):
      scales[out] = scales[step.inputs[0]]
    elif step.kind is Kind.CONV:
      scales[out] = max(ranges[out], RANGE_FLOOR) / 127
      params[out] = quantize_conv(*float_reference.conv_weights(weights, step),
                                  scales[step.inputs[0]], scales[out])
    elif step.kind is Kind.ADD:
      s_a, s_b = (scales[name] for name in step.inputs)
      scales[out] = max(ranges[out] / 127, RANGE_FLOOR / 127, max(s_a, s_b) / 2**20)
      params[out] = quantize_add(s_a, s_b, scales[out])
    else:
      s_bn = max(ranges["head/bn"], RANGE_FLOOR) / 127
      height, width = program.shapes[step.inputs[0]][:2]
      params[out], scales[LOGITS] = quantize_head(*weights[Layer(LayerKind.HEAD_BN)],
                                                  *weights[Layer(LayerKind.CLASSIFIER)],
                                                  scales[step.inputs[0]], s_bn, height * width)
      scales["head/bn"] = s_bn
  return QuantizedNetwork(program, scales, params)


def run(network: QuantizedNetwork, images_q: np.ndarray, batch_size: int = 32) -> np.ndarray:
  """The int8 reference: int8 images `[N, r, r, c]` -> int32 logits `[N, classes]`, in integer
  arithmetic only (`runtime/reference.py`'s kernels, the C kernels' independent twins)."""
  return np.concatenate([_run_batch(network, images_q[i:i + batch_size])
                         for i in range(0, len(images_q), batch_size)])


def _run_batch(network: QuantizedNetwork, images_q: np.ndarray) -> np.ndarray:
  program = network.program
  tensors = {IMAGE: np.asarray(images_q, np.int8)}
  last_use = {name: i for i, step in enumerate(program.nodes) for name in step.inputs}
  for i, step in enumerate(program.nodes):
    inputs = [tensors[name] for name in step.inputs]
    p = network.params.get(step.output)
    if step.kind is Kind.CONV:
      out = reference.conv(inputs[0], p, step.stride, step.relu_in)
    elif step.kind is Kind.POOL3:
      out = reference.avgpool3x3(inputs[0])
    elif step.kind is Kind.POOL2:
      out = reference.avgpool2x2(inputs[0])
    elif step.kind is Kind.ADD:
      out = reference.add(*inputs, p.mult_a, p.mult_b, p.shift)
    elif step.kind is Kind.ZEROS:
      out = np.zeros((len(images_q), *program.shapes[step.output]), np.int8)
    else:
      out = reference.head(inputs[0], p)
    tensors[step.output] = out
    for name in set(step.inputs):
      if last_use[name] == i:
        del tensors[name]
  return tensors[LOGITS]
