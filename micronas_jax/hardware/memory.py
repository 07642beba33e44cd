"""Peak SRAM and flash of an NB201 network deployed with int8 tensors, batch 1.

Peak SRAM is the maximum, over the execution order, of the bytes of all live tensors (int8: one
byte per element), plus the runtime's own SRAM (the LUT states it). A tensor lives from the step
that produces it to its last consumer. The order is the one a runtime that runs one op at a time
follows (TFLite Micro; no op works in place):
  stem       conv (BN folded)
  cell       edges in benchmark order; a conv edge = ReLU then conv (the ReLU cannot be fused into
             the producer, since the node also feeds skip and pool edges), a pool edge = pool, a
             skip edge reuses its input; the node sum adds each edge's output to the running sum
             as soon as it exists (binary adds, as `a + b + c` exports). A node with no inputs is a
             zero tensor, made when first read. The cell's input lives until its last edge.
  reduction  ReLU, conv_a (ReLU fused), conv_b; then the shortcut: 2x2 avg pool and 1x1 conv of
             the block input, which therefore lives through conv_a and conv_b; then the add
  head       BN (a per-channel affine), ReLU, global average pool, linear
Every tensor inside one cell has the shape of that stage, so a cell's peak is (live tensors) x
(tensor bytes); cells of a stage are identical, so one cell per stage gives the peak.

Flash: int8 weights and int32 biases, BN folded into the conv before it (the 1x1 shortcut conv has
no BN, hence no bias; the head BN follows an add, so it stays a per-channel int8 scale and int32
shift), plus the runtime's flash (from the LUT).

With `dead_code=True` the edges a dead-code-removing runtime drops are left out (see
`latency.executed_ops`), and a network whose cell output is unreachable is one constant: the logits.

`plan` names the runtime whose code the estimate follows: PLAN_TFLM (above, the default) or
PLAN_C, the package's own int8 C library (`micronas_jax.deploy`, kernels in `hardware/emu/`). It
differs in three ways, each because its code does: a conv applies the ReLU while it reads its
input (im2col), so no ReLU tensor exists; the head (BN, ReLU, pool, linear) is one kernel whose
only tensor is the int32 logits; and every conv stores, besides its int8 weights, an int32 bias,
multiplier and shift per output channel (the 1x1 shortcut too: the kernel reads a bias), while
the head stores its BN as int32 scale and shift per channel plus one multiplier and shift.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from micronas_jax import space
from micronas_jax.cost import StageOpTable
from micronas_jax.hardware import latency
from micronas_jax.network import NB201_CIFAR10, NetworkConfig

BIAS_BYTES = 4  # int32
PLAN_TFLM, PLAN_C = "tflm", "micronas-c"
PLANS = (PLAN_TFLM, PLAN_C)
# Per output channel of a conv in the C library: int32 bias, Q31 multiplier and shift.
C_CHANNEL_BYTES = 3 * 4
# The C head's scalars: one int32 multiplier and shift for its BN output.
C_HEAD_SCALAR_BYTES = 2 * 4


def _check_plan(plan: str) -> None:
  if plan not in PLANS:
    raise ValueError(f"Unknown memory plan {plan!r}; known: {', '.join(PLANS)}")


@dataclasses.dataclass(frozen=True)
class Step:
  """One op of the execution order: writes tensor `output` of `size` bytes, reads `inputs`."""
  output: str
  size: int
  inputs: tuple[str, ...]


def peak_live_bytes(steps: list[Step], inputs: dict[str, int], outputs: tuple[str, ...]) -> int:
  """Max over steps of the bytes of live tensors; `inputs` exist before the first step."""
  sizes = dict(inputs)
  born = {name: -1 for name in inputs}
  for i, step in enumerate(steps):
    sizes[step.output], born[step.output] = step.size, i
  last = dict(born)
  for i, step in enumerate(steps):
    for name in step.inputs:
      last[name] = i
  for name in outputs:
    last[name] = max(len(steps) - 1, 0)
  if not steps:
    return sum(sizes[name] for name in outputs)
  return max(sum(size for name, size in sizes.items() if born[name] <= i <= last[name])
             for i in range(len(steps)))


def cell_steps(ops, plan: str = PLAN_TFLM) -> tuple[list[Step], str]:
  """The execution order of one cell `ops: [6]` (index 5 = dropped edge) with unit-size tensors.

  The cell input is the tensor "n0"; returns the steps and the name of the cell's output tensor.
  Step names say what runs: "zeros{node}", "relu{edge}" (PLAN_TFLM only), "conv{edge}",
  "pool{edge}", "sum{edge}" (the node's running sum after that edge).
  """
  _check_plan(plan)
  steps: list[Step] = []
  nodes: list[str | None] = ["n0"]

  def read(node: int) -> str:
    if nodes[node] is None:  # a node with no inputs: a zero tensor, made when first read
      nodes[node] = f"zeros{node}"
      steps.append(Step(nodes[node], 1, ()))
    return nodes[node]

  for node in range(1, space.NUM_NODES):
    total = None
    for edge, (target, source) in enumerate(space.EDGES):
      op = int(ops[edge])
      if target != node or op in (space.NONE, latency.DROPPED):
        continue
      value = read(source)
      if op in (space.CONV1X1, space.CONV3X3):
        if plan == PLAN_TFLM:
          steps.append(Step(f"relu{edge}", 1, (value,)))
          value = f"relu{edge}"
        steps.append(Step(f"conv{edge}", 1, (value,)))
        value = f"conv{edge}"
      elif op == space.POOL:
        steps.append(Step(f"pool{edge}", 1, (value,)))
        value = f"pool{edge}"
      if total is not None:
        steps.append(Step(f"sum{edge}", 1, (total, value)))
        value = f"sum{edge}"
      total = value
    nodes.append(total)
  return steps, read(space.NUM_NODES - 1)


@functools.lru_cache(maxsize=None)
def _cell_live_tensors(ops: tuple[int, ...], plan: str) -> int:
  steps, output = cell_steps(ops, plan)
  return peak_live_bytes(steps, {"n0": 1}, (output,))


def cell_live_tensors(ops, plan: str = PLAN_TFLM) -> np.ndarray:
  """Most tensors live at once inside one cell, for op indices `[..., 6]` -> `[...]` (int)."""
  ops = np.asarray(ops)
  flat = ops.reshape(-1, space.NUM_EDGES)
  counts = [_cell_live_tensors(tuple(int(op) for op in row), plan) for row in flat]
  return np.asarray(counts, np.int64).reshape(ops.shape[:-1])


def reduction_steps(c_in: int, c_out: int, size: int, plan: str = PLAN_TFLM) -> list[Step]:
  """The reduction block's execution order, input "x" `[2 size, 2 size, c_in]`, output "add"."""
  _check_plan(plan)
  out = c_out * size * size
  steps = [Step("relu", c_in * (2 * size)**2, ("x",))] if plan == PLAN_TFLM else []
  return steps + [Step("conv_a", out, ("relu" if plan == PLAN_TFLM else "x",)),
                  Step("conv_b", out, ("conv_a",)), Step("pool", c_in * size * size, ("x",)),
                  Step("shortcut", out, ("pool",)), Step("add", out, ("conv_b", "shortcut"))]


def head_steps(channels: int, size: int, classes: int, plan: str = PLAN_TFLM) -> list[Step]:
  """The head's execution order from input "x" `[size, size, channels]` to its last tensor."""
  _check_plan(plan)
  if plan == PLAN_C:
    return [Step("logits", BIAS_BYTES * classes, ("x",))]  # one kernel, int32 logits
  last = channels * size * size
  return [Step("bn", last, ("x",)), Step("relu", last, ("bn",)), Step("pool", channels, ("relu",)),
          Step("linear", classes, ("pool",))]


def fixed_peaks(config: NetworkConfig, plan: str = PLAN_TFLM) -> dict[str, int]:
  """Peak bytes of the stem, each reduction block and the head (0 for a missing stem)."""
  peaks = {}
  if config.stem:
    peaks["stem"] = peak_live_bytes(
        [Step("stem", config.channels * config.resolution**2, ("x",))],
        {"x": config.in_channels * config.resolution**2}, ("stem",))
  for stage in range(1, config.num_stages):
    c_in, c_out = config.stage_channels[stage - 1], config.stage_channels[stage]
    size = config.stage_resolutions[stage]
    peaks[f"reduction{stage}"] = peak_live_bytes(reduction_steps(c_in, c_out, size, plan),
                                                 {"x": c_in * (2 * size)**2}, ("add",))
  channels, size = config.stage_channels[-1], config.stage_resolutions[-1]
  steps = head_steps(channels, size, config.num_classes, plan)
  peaks["head"] = peak_live_bytes(steps, {"x": channels * size * size}, (steps[-1].output,))
  return peaks


def peak_sram(archs, config: NetworkConfig = NB201_CIFAR10, runtime_bytes: int = 0,
              dead_code: bool = False, plan: str = PLAN_TFLM) -> np.ndarray:
  """Peak SRAM in bytes of cells `archs: [..., 6]` -> `[...]` (int64), runtime included."""
  archs = np.asarray(archs)
  tensor_bytes = np.array([c * r * r for c, r in zip(config.stage_channels,
                                                      config.stage_resolutions)], np.int64)
  live = cell_live_tensors(latency.executed_ops(archs, dead_code), plan)
  cells = live[..., None] * tensor_bytes
  peak = np.maximum(cells.max(-1), max(fixed_peaks(config, plan).values()))
  if dead_code:
    peak = np.where(latency.output_reachable(archs), peak, config.num_classes)
  return peak + runtime_bytes


def flash_table(config: NetworkConfig = NB201_CIFAR10, plan: str = PLAN_TFLM) -> StageOpTable:
  """Flash bytes of the weights as a StageOpTable over op indices 0..5 (5 = dropped edge)."""
  _check_plan(plan)
  channel = C_CHANNEL_BYTES if plan == PLAN_C else BIAS_BYTES  # per conv output channel
  per_op = np.zeros((config.num_stages, space.NUM_OPS + 1), np.int64)
  fixed = 0
  for stage, channels in enumerate(config.stage_channels):
    for op, kernel in ((space.CONV1X1, 1), (space.CONV3X3, 3)):
      per_op[stage, op] = kernel * kernel * channels * channels + channel * channels
    if stage > 0:
      c_in = config.stage_channels[stage - 1]
      fixed += 9 * c_in * channels + 9 * channels * channels + 2 * channel * channels  # a, b
      # 1x1 shortcut: no BN, so no bias for TFLite; the C kernel reads one (zeros) and requantizes.
      fixed += c_in * channels + (channel * channels if plan == PLAN_C else 0)
  if config.stem:
    fixed += 9 * config.in_channels * config.channels + channel * config.channels
  last = config.stage_channels[-1]
  if plan == PLAN_C:
    fixed += 2 * BIAS_BYTES * last + C_HEAD_SCALAR_BYTES  # head BN: int32 scale and shift
  else:
    fixed += (1 + BIAS_BYTES) * last  # head BN: int8 scale, int32 shift
  fixed += last * config.num_classes + BIAS_BYTES * config.num_classes  # linear
  return StageOpTable(per_op, fixed, config.cells_per_stage)


def flash(archs, config: NetworkConfig = NB201_CIFAR10, runtime_bytes: int = 0,
          dead_code: bool = False, plan: str = PLAN_TFLM) -> np.ndarray:
  """Flash in bytes of cells `archs: [..., 6]` -> `[...]` (int64): weights, biases, runtime."""
  archs = np.asarray(archs)
  weights = flash_table(config, plan)(latency.executed_ops(archs, dead_code)).astype(np.int64)
  if dead_code:
    weights = np.where(latency.output_reachable(archs), weights, config.num_classes)
  return weights + runtime_bytes
