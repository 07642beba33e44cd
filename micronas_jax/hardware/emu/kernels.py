"""Python entry points to the C kernels on a `Machine`: each returns (outputs, instructions).

Also draws random int8 parameters (scaled so outputs span int8 rather than saturate) and lays
out a whole network for `nb201_forward`. Shapes and arithmetic follow `reference.py`.
"""
from __future__ import annotations

import math

import numpy as np

from micronas_jax.hardware.emu.machine import Buffer, Machine
from micronas_jax.hardware.emu.reference import ConvParams, HeadParams, NetworkParams

NODE_SHIFT = 16  # node sums: multipliers 2^16 and shift 16, a plain saturating add
C_VALUES_PER_LINE = {"int8_t": 20, "int32_t": 8}


def c_array(ctype: str, name: str, values) -> str:
  """C source of `static const ctype name[n] = {...};` holding `values` (any shape, flattened;
  an empty array holds one 0, since C has no empty arrays): weights in flash."""
  flat = [str(int(v)) for v in np.asarray(values).ravel()] or ["0"]
  per_line = C_VALUES_PER_LINE.get(ctype, 8)
  rows = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
  body = ",\n  ".join(rows)
  return f"static const {ctype} {name}[{len(flat)}] = {{\n  {body}\n}};\n"


def conv_c_source(name: str, p: ConvParams) -> tuple[str, str]:
  """(C arrays `name_w`, `name_b`, `name_m`, `name_s` of a conv, its `conv_params` initializer)."""
  arrays = "".join([c_array("int8_t", f"{name}_w", p.weights),
                    c_array("int32_t", f"{name}_b", p.bias),
                    c_array("int32_t", f"{name}_m", p.mult),
                    c_array("int32_t", f"{name}_s", p.shift)])
  return arrays, f"{{{name}_w, {name}_b, {name}_m, {name}_s}}"


def head_c_source(name: str, p: HeadParams) -> tuple[str, str]:
  """(C arrays `name_bn_scale`, `name_bn_bias`, `name_fc_w`, `name_fc_b` of the head, its
  `head_params` initializer)."""
  arrays = "".join([c_array("int32_t", f"{name}_bn_scale", p.bn_scale),
                    c_array("int32_t", f"{name}_bn_bias", p.bn_bias),
                    c_array("int8_t", f"{name}_fc_w", p.fc_weights),
                    c_array("int32_t", f"{name}_fc_b", p.fc_bias)])
  return arrays, (f"{{{name}_bn_scale, {name}_bn_bias, {p.mult}, {p.shift}, {name}_fc_w, "
                  f"{name}_fc_b}}")


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


def put_conv(machine: Machine, p: ConvParams) -> list[Buffer]:
  """The four arrays of a `conv_params` struct, placed in RAM (weights, bias, mult, shift)."""
  return [machine.put(a) for a in (p.weights, p.bias, p.mult, p.shift)]


def put_conv_structs(machine: Machine, convs) -> Buffer:
  """An array of `conv_params` structs (4 pointers each) for the convs, in order."""
  words = []
  for p in convs:
    words += [b.address for b in put_conv(machine, p)]
  return machine.put(np.array(words, np.uint32))


def _scratch(machine: Machine, c: int, k: int = 3) -> Buffer:
  # int16 im2col of k*k*c, also the pools' and head's int32 sums of c.
  return machine.alloc(np.int16, max(k * k * c, 2 * c))


def conv(machine: Machine, x, p: ConvParams, stride: int = 1, relu_in: bool = False):
  """`conv_s8`: `x [h, w, c_in]` -> (int8 `[oh, ow, c_out]`, instructions)."""
  machine.reset()
  h, w, c_in = x.shape
  c_out, k = p.weights.shape[:2]
  pad = k // 2
  oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
  inp, out = machine.put(np.asarray(x, np.int8)), machine.alloc(np.int8, (oh, ow, c_out))
  params = put_conv_structs(machine, [p])
  _, count = machine.call("conv_s8", inp, h, w, c_in, out, c_out, k, stride, int(relu_in),
                          params, _scratch(machine, c_in, k))
  return machine.get(out), count


def avgpool3x3(machine: Machine, x):
  """`avgpool3x3_s8`: `[h, w, c]` -> (int8 `[h, w, c]`, instructions)."""
  machine.reset()
  h, w, c = x.shape
  inp, out = machine.put(np.asarray(x, np.int8)), machine.alloc(np.int8, x.shape)
  _, count = machine.call("avgpool3x3_s8", inp, h, w, c, out, _scratch(machine, c))
  return machine.get(out), count


def avgpool2x2(machine: Machine, x):
  """`avgpool2x2_s8`: `[h, w, c]` -> (int8 `[h/2, w/2, c]`, instructions)."""
  machine.reset()
  h, w, c = x.shape
  inp, out = machine.put(np.asarray(x, np.int8)), machine.alloc(np.int8, (h // 2, w // 2, c))
  _, count = machine.call("avgpool2x2_s8", inp, h, w, c, out)
  return machine.get(out), count


def add(machine: Machine, a, b, mult_a: int = 1 << NODE_SHIFT, mult_b: int = 1 << NODE_SHIFT,
        shift: int = NODE_SHIFT):
  """`add_s8`: two int8 tensors of one shape -> (int8 tensor, instructions)."""
  machine.reset()
  ba, bb = machine.put(np.asarray(a, np.int8)), machine.put(np.asarray(b, np.int8))
  out = machine.alloc(np.int8, np.shape(a))
  _, count = machine.call("add_s8", ba, bb, out, np.size(a), mult_a, mult_b, shift)
  return machine.get(out), count


def put_head(machine: Machine, p: HeadParams) -> Buffer:
  """A `head_params` struct in RAM."""
  scale, bias = machine.put(p.bn_scale), machine.put(p.bn_bias)
  fc_w, fc_b = machine.put(p.fc_weights), machine.put(p.fc_bias)
  words = [scale.address, bias.address, p.mult, p.shift, fc_w.address, fc_b.address]
  return machine.put(np.array(words, np.int64).astype(np.uint32))


def head(machine: Machine, x, p: HeadParams):
  """`head_s8`: `[h, w, c]` -> (int32 logits `[classes]`, instructions)."""
  machine.reset()
  h, w, c = x.shape
  classes = p.fc_weights.shape[0]
  inp, params = machine.put(np.asarray(x, np.int8)), put_head(machine, p)
  logits = machine.alloc(np.int32, classes)
  _, count = machine.call("head_s8", inp, h * w, c, params, classes, logits,
                          machine.alloc(np.int32, c))
  return machine.get(logits), count


class Network:
  """A network's parameters laid out once in a Machine's RAM; `forward` runs `nb201_forward`."""

  def __init__(self, machine: Machine, p: NetworkParams, resolution: int, in_channels: int = 3):
    machine.reset()
    self.machine, self.params = machine, p
    self.channels = p.stem.weights.shape[0]
    self.resolution, self.in_channels = resolution, in_channels
    stages, cells = len(p.cells), len(p.cells[0])
    self.classes = p.head.fc_weights.shape[0]
    stem = put_conv_structs(machine, [p.stem])
    cell_convs = put_conv_structs(
        machine, [conv for stage in p.cells for cell in stage for edge in cell for conv in edge])
    reductions = put_conv_structs(machine, [conv for block in p.reductions for conv in block])
    head_struct = put_head(machine, p.head)
    self._header = [self.channels, cells, stages, resolution, in_channels, self.classes,
                    stem.address, cell_convs.address, reductions.address, head_struct.address,
                    *p.residual, p.node_shift]
    self._net = machine.alloc(np.uint32, 6 + len(self._header))
    size = self.channels * resolution * resolution
    self._arena = machine.alloc(np.int8, 6 * size)
    widest = self.channels * 2**(stages - 1)
    self._col = machine.alloc(np.int16, max(9 * widest, 2 * widest))
    self._image = machine.alloc(np.int8, (resolution, resolution, in_channels))
    self._logits = machine.alloc(np.int32, self.classes)

  def forward(self, image, arch):
    """One image `[r, r, in_channels]` int8, cell `arch [6]` -> (int32 logits, instructions)."""
    m = self.machine
    words = np.array([*np.asarray(arch, np.int64), *self._header], np.int64).astype(np.uint32)
    m.write(self._net, words)
    m.write(self._image, np.asarray(image, np.int8))
    _, count = m.call("nb201_forward", self._net, self._image, self._arena, self._col,
                      self._logits)
    return m.get(self._logits), count
