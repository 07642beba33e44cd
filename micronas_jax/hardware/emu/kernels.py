"""Python entry points to the runtime's C kernels on an emulated `Machine`: each returns
(outputs, instructions), and `Network` lays out a whole network for `nb201_forward`. Shapes and
arithmetic follow `micronas_jax.runtime.reference`.
"""
from __future__ import annotations

import numpy as np

from micronas_jax.hardware.emu.machine import Buffer, Machine
from micronas_jax.runtime.params import NODE_SHIFT, ConvParams, HeadParams, NetworkParams


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
