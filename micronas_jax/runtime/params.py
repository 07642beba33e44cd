"""The parameter types of the int8 runtime's kernels, and random draws of them.

Random parameters are scaled so that outputs span int8 rather than saturate; the LUT profiler
and the emulator's tests run the kernels on them.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

NODE_SHIFT = 16  # node sums: multipliers 2^16 and shift 16, a plain saturating add
# Flash per conv output channel (ConvParams' int32 bias, Q31 multiplier and shift) and the
# head's scalars (HeadParams' int32 multiplier and shift): the memory plan of this runtime reads
# them (`hardware.memory`, PLAN_C).
CONV_CHANNEL_BYTES = 3 * 4
HEAD_SCALAR_BYTES = 2 * 4


@dataclasses.dataclass(frozen=True)
class ConvParams:
  """One conv with BN folded in.

  Attributes:
    weights: `[c_out, k, k, c_in]` int8.
    bias: `[c_out]` int32, in accumulator units.
    mult: `[c_out]` int32 Q31 multipliers in [2^30, 2^31).
    shift: `[c_out]` int32 right shifts >= 0.
  """
  weights: np.ndarray
  bias: np.ndarray
  mult: np.ndarray
  shift: np.ndarray


@dataclasses.dataclass(frozen=True)
class HeadParams:
  """The head: BN as integer affine `x * bn_scale + bn_bias`, one requantization, then linear.

  Attributes:
    bn_scale, bn_bias: `[c]` int32.
    mult, shift: the BN output's requantization.
    fc_weights: `[classes, c]` int8; fc_bias: `[classes]` int32.
  """
  bn_scale: np.ndarray
  bn_bias: np.ndarray
  mult: int
  shift: int
  fc_weights: np.ndarray
  fc_bias: np.ndarray


@dataclasses.dataclass(frozen=True)
class NetworkParams:
  """An int8 NB201 network's parameters (one shared cell arch is applied at run time).

  Attributes:
    stem: the stem conv (3x3, in_channels -> C).
    cells: `[stage][cell][edge]` pairs (conv 1x1, conv 3x3) held by every edge.
    reductions: per reduction block (conv_a 3x3 stride 2, conv_b 3x3, shortcut 1x1).
    head: the head.
    residual: (mult_a, mult_b, shift) of the reduction block's add.
    node_shift: node sums add with both multipliers 2^node_shift.
  """
  stem: ConvParams
  cells: tuple
  reductions: tuple
  head: HeadParams
  residual: tuple[int, int, int]
  node_shift: int


def random_conv(rng: np.random.Generator, c_in: int, c_out: int, k: int) -> ConvParams:
  """Random int8 conv whose requantization maps a typical accumulator back to about +-40."""
  fan_in = k * k * c_in
  # Accumulator spread ~ sqrt(fan_in) * |w| * |x| ~ sqrt(fan_in) * 37 * 40; scale it to ~40.
  shift = max(0, int(math.log2(math.sqrt(fan_in) * 37)) - 1)
  return ConvParams(
      weights=rng.integers(-64, 65, (c_out, k, k, c_in)).astype(np.int8),
      bias=rng.integers(-2000, 2001, c_out).astype(np.int32),
      mult=rng.integers(2**30, 2**31, c_out).astype(np.int32),
      shift=np.full(c_out, shift, np.int32))


def random_head(rng: np.random.Generator, c: int, classes: int) -> HeadParams:
  """Random head parameters."""
  return HeadParams(
      bn_scale=rng.integers(1, 200, c).astype(np.int32),
      bn_bias=rng.integers(-3000, 3001, c).astype(np.int32),
      mult=int(rng.integers(2**30, 2**31)), shift=6,
      fc_weights=rng.integers(-127, 128, (classes, c)).astype(np.int8),
      fc_bias=rng.integers(-5000, 5001, classes).astype(np.int32))


def random_network(rng: np.random.Generator, channels: int, cells: int, stages: int,
                   in_channels: int = 3, classes: int = 10) -> NetworkParams:
  """Random int8 parameters of an NB201 network (every edge holds a 1x1 and a 3x3 conv)."""
  widths = [channels * 2**s for s in range(stages)]
  return NetworkParams(
      stem=random_conv(rng, in_channels, channels, 3),
      cells=tuple(tuple(tuple((random_conv(rng, c, c, 1), random_conv(rng, c, c, 3))
                              for _ in range(6)) for _ in range(cells)) for c in widths),
      reductions=tuple((random_conv(rng, c // 2, c, 3), random_conv(rng, c, c, 3),
                        random_conv(rng, c // 2, c, 1)) for c in widths[1:]),
      head=random_head(rng, widths[-1], classes),
      residual=(3 << 15, 5 << 14, 16), node_shift=NODE_SHIFT)
