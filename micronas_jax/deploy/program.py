"""The network of one fixed cell as a straight list of kernel calls, its float forward, its arena.

The order is the memory plan's (`hardware.memory`, plan PLAN_C): the cell's steps come from
`memory.cell_steps` itself, so the C code, the arena and the SRAM estimate follow one order.

    stem       conv 3x3 (BN folded)
    reduction  conv_a (ReLU on its input, stride 2), conv_b (ReLU on its input), 2x2 avg pool of
               the block input, 1x1 shortcut conv, add
    cell       per memory.cell_steps: "zeros" (a node with no inputs, made when read), "conv"
               (ReLU on its input), "pool" (3x3), "sum" (node's running sum); a skip edge is the
               source tensor itself
    head       BN + ReLU + global average pool + linear, one kernel, int32 logits

Tensors are named; every tensor is NHWC of one image (`[h, w, c]`), int8 once quantized.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from micronas_jax import network, space
from micronas_jax.hardware import memory
from micronas_jax.network import NetworkConfig

KINDS = ("conv", "pool3", "pool2", "add", "zeros", "head")
IMAGE, LOGITS = "image", "logits"
ALIGN = 4  # arena offsets: word loads of the kernels stay aligned


@dataclasses.dataclass(frozen=True)
class Step:
  """One kernel call: `kind` (one of KINDS) reads `inputs` and writes tensor `output`.

  `weights` is the key of the step's float weights in `export.folded_weights` (conv, head).
  """
  kind: str
  output: str
  inputs: tuple[str, ...]
  weights: str | None = None
  stride: int = 1
  relu_in: bool = False


@dataclasses.dataclass(frozen=True)
class Program:
  """The network of one cell: `steps` in execution order and every tensor's `[h, w, c]`."""
  ops: tuple[int, ...]
  config: NetworkConfig
  steps: tuple[Step, ...]
  shapes: dict

  def size(self, name: str) -> int:
    """Bytes of int8 tensor `name` (int32 for the logits)."""
    return int(np.prod(self.shapes[name])) * (memory.BIAS_BYTES if name == LOGITS else 1)


def _cell(ops, prefix: str, cell_input: str, weights_prefix: str):
  steps_plan, output = memory.cell_steps(ops, memory.PLAN_C)
  names = {"n0": cell_input}
  steps = []
  for planned in steps_plan:
    kind, number = re.fullmatch(r"([a-z]+)(\d+)", planned.output).groups()
    name = names[planned.output] = f"{prefix}/{planned.output}"
    inputs = tuple(names[i] for i in planned.inputs)
    if kind == "zeros":
      steps.append(Step("zeros", name, ()))
    elif kind == "conv":
      target, source = space.EDGES[int(number)]
      steps.append(Step("conv", name, inputs, f"{weights_prefix}/edge_{target}_{source}",
                        relu_in=True))
    elif kind == "pool":
      steps.append(Step("pool3", name, inputs))
    else:
      steps.append(Step("add", name, inputs))
  return steps, names[output]


def build(ops, config: NetworkConfig) -> Program:
  """The program of cell `ops: [6]` in the network `config` (which must have a stem)."""
  ops = tuple(int(op) for op in space.validate_ops(ops))
  if not config.stem:
    raise ValueError("deployment needs a network with a stem")
  shapes = {IMAGE: config.input_shape}
  steps = [Step("conv", "stem", (IMAGE,), "stem")]
  shapes["stem"] = (config.resolution, config.resolution, config.channels)
  x = "stem"
  for stage, (channels, size) in enumerate(zip(config.stage_channels, config.stage_resolutions)):
    if stage > 0:
      name = f"reduction_{stage}"
      for planned in memory.reduction_steps(1, 1, 1, memory.PLAN_C):
        inputs = tuple(x if i == "x" else f"{name}/{i}" for i in planned.inputs)
        out = f"{name}/{planned.output}"
        if planned.output in ("conv_a", "conv_b"):
          steps.append(Step("conv", out, inputs, out, stride=2 if planned.output == "conv_a"
                            else 1, relu_in=True))
        elif planned.output == "shortcut":
          steps.append(Step("conv", out, inputs, out))
        elif planned.output == "pool":
          steps.append(Step("pool2", out, inputs))
        else:
          steps.append(Step("add", out, inputs))
        channels_out = config.stage_channels[stage - 1] if planned.output == "pool" else channels
        shapes[out] = (size, size, channels_out)
      x = f"{name}/add"
    for cell in range(config.cells_per_stage):
      name = f"stage{stage + 1}_cell{cell}"
      cell_steps, x_out = _cell(ops, name, x, name)
      for step in cell_steps:
        shapes[step.output] = (size, size, channels)
      steps += cell_steps
      x = x_out
  steps.append(Step("head", LOGITS, (x,), "head"))
  shapes[LOGITS] = (config.num_classes,)
  return Program(ops, config, tuple(steps), shapes)


# --- float forward --------------------------------------------------------------------------------


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


def conv_weights(weights: dict, step: Step) -> tuple[np.ndarray, np.ndarray]:
  """(OIHW kernel, bias) of a conv step from `export.folded_weights` (zero bias for the shortcut,
  which has no BN)."""
  entry = weights[step.weights]
  if isinstance(entry, tuple):
    return entry
  return entry, np.zeros(entry.shape[0], np.float32)


def float_forward(program: Program, weights: dict, images: np.ndarray, visit=None) -> np.ndarray:
  """Float logits `[N, classes]` of normalized `images [N, r, r, c]` through the program with the
  folded float `weights`; `visit(name, tensor)` sees every tensor as it is made (calibration)."""
  tensors = {IMAGE: np.asarray(images, np.float32)}
  last_use = {}
  for i, step in enumerate(program.steps):
    for name in step.inputs:
      last_use[name] = i
  if visit:
    visit(IMAGE, tensors[IMAGE])
  for i, step in enumerate(program.steps):
    inputs = [tensors[name] for name in step.inputs]
    if step.kind == "conv":
      out = _conv_float(inputs[0], *conv_weights(weights, step), step.stride, step.relu_in)
    elif step.kind == "pool3":
      out = _pool3_float(inputs[0])
    elif step.kind == "pool2":
      n, h, w, c = inputs[0].shape
      out = inputs[0].reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    elif step.kind == "add":
      out = inputs[0] + inputs[1]
    elif step.kind == "zeros":
      out = np.zeros((len(images), *program.shapes[step.output]), np.float32)
    else:
      scale, shift = weights["head"]
      kernel, bias = weights["classifier"]
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


# --- the activation arena -------------------------------------------------------------------------


def lifetimes(program: Program) -> dict[str, tuple[int, int]]:
  """(first, last) step index during which each tensor must exist; the image exists from -1."""
  span = {IMAGE: (-1, -1)}
  for i, step in enumerate(program.steps):
    span[step.output] = (i, i)
    for name in step.inputs:
      span[name] = (span[name][0], i)
  return span


def _first_fit(program: Program, span: dict, order: list[str]) -> dict[str, int]:
  offsets: dict[str, int] = {}
  for name in order:
    first, last = span[name]
    busy = sorted((offsets[o], offsets[o] + program.size(o)) for o in offsets
                  if span[o][0] <= last and first <= span[o][1])
    offset = 0
    for start, end in busy:
      if offset + program.size(name) <= start:
        break
      offset = max(offset, -(-end // ALIGN) * ALIGN)
    offsets[name] = offset
  return offsets


def plan_arena(program: Program) -> tuple[dict[str, int], int]:
  """Offsets of every tensor in one arena and its size in bytes.

  Each tensor goes to the lowest aligned offset that overlaps no tensor already placed whose
  lifetime overlaps its own, in three orders: largest first (TFLite Micro's
  GreedyMemoryPlanner; ties by first use, or by last use, latest first) and by first use; the
  smallest arena wins. Either can leave gaps that the live-tensor peak does
  not count (`peak_live_bytes`, the estimate); the tests and the benchmark compare the two.
  """
  span = lifetimes(program)
  orders = (sorted(span, key=lambda name: (-program.size(name), span[name][0])),
            sorted(span, key=lambda name: (-program.size(name), -span[name][1])),
            sorted(span, key=lambda name: (span[name][0], -program.size(name))))
  plans = [_first_fit(program, span, order) for order in orders]
  sizes = [max(o[name] + program.size(name) for name in o) for o in plans]
  best = int(np.argmin(sizes))
  return plans[best], sizes[best]


def peak_live_bytes(program: Program) -> int:
  """The largest total of tensors live at once: the arena's lower bound."""
  span = lifetimes(program)
  return max(sum(program.size(name) for name, (first, last) in span.items() if first <= i <= last)
             for i in range(-1, len(program.steps)))
