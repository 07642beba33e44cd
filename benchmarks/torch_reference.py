"""An independent PyTorch reference for the NTK condition number and linear regions, and timing.

The NB201 TinyNetwork is written here again in PyTorch from the NAS-Bench-201 definition (NCHW;
ReLU -> Conv -> BN ops; 3x3 average pool with the padding not counted; ResNet reduction block;
BN + ReLU head, global average pool, linear) and, as TE-NAS does, builds and runs only the active
ops of a cell ('none' edges are skipped). Its weights are copied from the JAX variables and it is
fed the same batches, so the two implementations must give the same numbers:

  ntk       TE-NAS's get_ntk_n: one training-mode forward of the batch, then per sample i
            `logits[i:i+1].backward(ones, retain_graph=True)`; the gradients of every parameter
            named "weight" that has one, stacked into J; NTK = J J^T; kappa = max/min of eigvalsh.
  ntk-fast  BN statistics of the batch frozen (eval mode, running stats set to the batch's mean
            and biased variance), then the same per-sample backward passes.
  lr        TE-NAS's LinearRegionCount: forward hooks on every ReLU module, the sign of their
            outputs over the 3 x 1000 samples (each batch through the network on its own, train
            mode), number of distinct patterns as sum_i 1 / #{j : pattern_j == pattern_i}.

For each of the cells, both sides are timed on the same inputs (JAX jitted once for all cells,
compile time reported apart; torch with its default threads, network construction and weight copy
not timed) and the values compared: the relative difference of the NTK matrices (max abs
difference over max abs entry), of kappa, and the number of cells whose region counts differ.

Run (about 2 minutes for 101 cells on a 2-core CPU):
    python3 -m benchmarks torch-reference                # table; rewrites its RESULTS.md section
    python3 -m benchmarks torch-reference --cells 10 --no-write
    python3 -m benchmarks torch-reference --device cuda  # torch on the GPU (JAX: its default)
    python3 -m benchmarks torch-reference --float64      # both in float64: definitions only
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import pathlib
import platform
import sys
import time

import jax
import numpy as np
from flax import traverse_util

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results
from micronas_jax import model, space
from micronas_jax.proxies import linear_regions, ntk

REPO = pathlib.Path(__file__).resolve().parents[1]
SECTION = "Torch reference"
SECTION_FLOAT64 = "Torch reference in float64"
PROXIES = ("ntk", "ntk-fast", "lr")
TOLERANCE = 1e-4  # relative agreement asked of the NTK and its condition number
EXTRA_INDICES = (1462,)  # a cell with every op kind, checked on top of the first --cells indices
# torch BatchNorm2d attribute -> the JAX leaf name it comes from.
BN_LEAVES = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
             ("running_var", "var"))


def import_torch():
  """Imports torch lazily (an optional dependency) with a message that says how to get it."""
  try:
    import torch
  except ImportError as error:
    raise SystemExit("benchmarks/torch_reference.py needs PyTorch: pip install -e '.[bench]' "
                     "(the CPU build is enough)") from error
  return torch


def torch_network(ops: np.ndarray, config: model.NetworkConfig):
  """The standalone NB201 network of cell `ops: [6]` as a torch module: `[B, C, H, W]` -> logits.

  Written from NAS-Bench-201's TinyNetwork (Dong & Yang, ICLR 2020); only the active ops are
  built, so a parameter that does not reach the output gets no gradient at all.
  """
  torch = import_torch()
  nn = torch.nn

  class ReLUConvBN(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride):
      super().__init__()
      self.op = nn.Sequential(
          nn.ReLU(inplace=False),
          nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
          nn.BatchNorm2d(c_out, affine=True, track_running_stats=True))

    def forward(self, x):
      return self.op(x)

  def make_op(op: int, channels: int):
    if op == space.SKIP:
      return nn.Identity()
    if op == space.CONV1X1:
      return ReLUConvBN(channels, channels, 1, 1)
    if op == space.CONV3X3:
      return ReLUConvBN(channels, channels, 3, 1)
    if op == space.POOL:
      return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"Unknown op {op}")

  class Cell(nn.Module):
    def __init__(self, channels):
      super().__init__()
      self.edges = nn.ModuleDict({f"{target}<-{source}": make_op(int(op), channels)
                                  for (target, source), op in zip(space.EDGES, ops)
                                  if op != space.NONE})

    def forward(self, x):
      nodes = [x]
      for target in range(1, space.NUM_NODES):
        inputs = [self.edges[f"{target}<-{source}"](nodes[source]) for source in range(target)
                  if f"{target}<-{source}" in self.edges]
        nodes.append(sum(inputs) if inputs else torch.zeros_like(x))
      return nodes[-1]

  class ResNetBasicBlock(nn.Module):
    def __init__(self, c_in, c_out):
      super().__init__()
      self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
      self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
      self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
      return self.downsample(x) + self.conv_b(self.conv_a(x))

  class TinyNetwork(nn.Module):
    def __init__(self):
      super().__init__()
      c = config.channels
      self.stem = (nn.Sequential(nn.Conv2d(config.in_channels, c, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(c)) if config.stem else nn.Identity())
      layers = []
      for stage, channels in enumerate(config.stage_channels):
        if stage > 0:
          layers.append(ResNetBasicBlock(channels // 2, channels))
        layers.extend(Cell(channels) for _ in range(config.cells_per_stage))
      self.cells = nn.ModuleList(layers)
      last = config.stage_channels[-1]
      self.lastact = nn.Sequential(nn.BatchNorm2d(last), nn.ReLU(inplace=True))
      self.global_pooling = nn.AdaptiveAvgPool2d(1)
      self.classifier = nn.Linear(last, config.num_classes)

    def forward(self, x):
      x = self.stem(x)
      for layer in self.cells:
        x = layer(x)
      x = self.global_pooling(self.lastact(x))
      return self.classifier(x.flatten(1))

  return TinyNetwork()


def jax_names(ops: np.ndarray, config: model.NetworkConfig) -> dict[str, str]:
  """Map from the state-dict keys of `torch_network(ops, config)` to the JAX variable paths."""
  names = {}

  def conv_bn(torch_prefix: str, jax_kernel: str, jax_bn: str, separator: str = "/"):
    # jax_bn + separator + scale|bias|mean|var: "a/bn" + "/" + "scale", "e/conv1x1" + "_bn_" + ...
    names[f"{torch_prefix}.1.weight"] = jax_kernel
    for attribute, leaf in BN_LEAVES:
      names[f"{torch_prefix}.2.{attribute}"] = f"{jax_bn}{separator}{leaf}"

  if config.stem:
    names["stem.0.weight"] = "stem/conv/kernel"
    for attribute, leaf in BN_LEAVES:
      names[f"stem.1.{attribute}"] = f"stem/bn/{leaf}"
  layer = 0
  for stage in range(config.num_stages):
    if stage > 0:
      for block in ("conv_a", "conv_b"):
        prefix = f"reduction_{stage}/{block}"
        conv_bn(f"cells.{layer}.{block}.op", f"{prefix}/conv/kernel", f"{prefix}/bn")
      names[f"cells.{layer}.downsample.1.weight"] = f"reduction_{stage}/shortcut/kernel"
      layer += 1
    for cell in range(config.cells_per_stage):
      for (target, source), op in zip(space.EDGES, ops):
        if op in (space.CONV1X1, space.CONV3X3):
          prefix = f"stage{stage + 1}_cell{cell}/edge_{target}_{source}/"
          prefix += "conv1x1" if op == space.CONV1X1 else "conv3x3"
          conv_bn(f"cells.{layer}.edges.{target}<-{source}.op", f"{prefix}_kernel", prefix, "_bn_")
      layer += 1
  for attribute, leaf in BN_LEAVES:
    names[f"lastact.0.{attribute}"] = f"head_bn/{leaf}"
  names["classifier.weight"] = "classifier/kernel"
  names["classifier.bias"] = "classifier/bias"
  return names


def load_jax_variables(net, ops: np.ndarray, variables, config: model.NetworkConfig) -> None:
  """Copies JAX `variables` {"params", "batch_stats"} into `net = torch_network(ops, config)`.

  Conv kernels HWIO -> OIHW, the classifier kernel [in, out] -> weight [out, in]. Every tensor of
  the torch network must be set (checked), so nothing of PyTorch's own initialization survives.
  """
  torch = import_torch()
  flat = {"/".join(path): np.asarray(leaf) for collection in ("params", "batch_stats")
          for path, leaf in traverse_util.flatten_dict(variables[collection]).items()}
  names = jax_names(ops, config)
  state = {key: value for key, value in net.state_dict().items()
           if not key.endswith("num_batches_tracked")}
  if set(state) != set(names):
    raise ValueError(f"torch keys without a JAX source: {sorted(set(state) - set(names))}; "
                     f"JAX sources without a torch key: {sorted(set(names) - set(state))}")
  for key, target in state.items():
    value = flat[names[key]]
    if value.ndim == 4:
      value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    elif key == "classifier.weight":
      value = value.T
    if tuple(value.shape) != tuple(target.shape):
      raise ValueError(f"{key}: JAX {names[key]} has shape {value.shape}, torch "
                       f"{tuple(target.shape)}")
    state[key] = torch.from_numpy(np.array(value, np.float32))
  net.load_state_dict({**net.state_dict(), **state})


def per_sample_gram(net, x):
  """J J^T `[B, B]` (torch, float32) for one forward of `x: [B, C, H, W]` in `net`'s mode.

  Row i of J is d logits[i].sum() / d w, by `logits[i:i+1].backward(ones, retain_graph=True)`
  through the whole batch's graph, over every parameter named "weight" that receives a gradient
  (TE-NAS's get_ntk_n).
  """
  torch = import_torch()
  net.zero_grad()
  logits = net(x)
  rows = []
  for i in range(x.shape[0]):
    logits[i:i + 1].backward(torch.ones_like(logits[i:i + 1]), retain_graph=True)
    rows.append(torch.cat([w.grad.reshape(-1) for name, w in net.named_parameters()
                           if "weight" in name and w.grad is not None]))
    net.zero_grad()
  jacobian = torch.stack(rows)
  return jacobian @ jacobian.T


def torch_ntk(net, x):
  """TE-NAS's NTK `[B, B]` of `net` on `x: [B, C, H, W]`, BN in training mode (samples couple)."""
  net.train()
  return per_sample_gram(net, x)


def freeze_batch_statistics(net, x) -> None:
  """Sets every BN's running mean and (biased) variance to those of batch `x`, then eval mode."""
  torch = import_torch()
  inputs, hooks = {}, []
  for module in net.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      hooks.append(module.register_forward_hook(
          lambda mod, args, out: inputs.__setitem__(mod, args[0].detach())))
  net.train()
  with torch.no_grad():
    net(x)
  for hook in hooks:
    hook.remove()
  for module, value in inputs.items():
    module.running_mean.copy_(value.mean(dim=(0, 2, 3)))
    module.running_var.copy_(value.var(dim=(0, 2, 3), unbiased=False))
  net.eval()


def torch_ntk_fast(net, x):
  """NTK `[B, B]` with BN statistics of `x: [B, C, H, W]` frozen (eval mode)."""
  freeze_batch_statistics(net, x)
  return per_sample_gram(net, x)


def torch_condition_number(kernel) -> tuple[float, bool]:
  """(kappa, valid): lambda_max / lambda_min by torch's eigvalsh (ascending), kernel's dtype.

  Valid when the kernel is finite, lambda_min > 0 and kappa is finite (the JAX rule); the
  reference code itself returned whatever ratio came out (NaN for an all-zero kernel).
  """
  torch = import_torch()
  finite = bool(torch.isfinite(kernel).all())
  if not finite:
    return float("nan"), False
  eigenvalues = torch.linalg.eigvalsh(kernel)
  kappa = float(eigenvalues[-1] / eigenvalues[0])
  return kappa, bool(eigenvalues[0] > 0) and np.isfinite(kappa)


def condition_number_float64(kernel: np.ndarray) -> float:
  """kappa of a kernel by numpy's float64 eigvalsh (NaN unless lambda_min > 0)."""
  eigenvalues = np.linalg.eigvalsh(np.asarray(kernel, np.float64))
  return float(eigenvalues[-1] / eigenvalues[0]) if eigenvalues[0] > 0 else float("nan")


def torch_linear_regions(net, x) -> int:
  """TE-NAS's region count for `x: [num_batches, batch, C, H, W]`: distinct ReLU sign patterns.

  Each batch goes through `net` in training mode on its own; forward hooks record the sign of
  every ReLU module's output; with patterns P in {0, 1}^[N, U], pattern i's duplicates are the j
  with P_i (1 - P_j) + P_j (1 - P_i) = 0 (the reference's matmul), and the count is
  sum_i 1 / #duplicates_i, rounded to the nearest integer.
  """
  torch = import_torch()
  features = []
  hooks = [module.register_forward_hook(lambda mod, args, out: features.append(out.detach()))
           for module in net.modules() if isinstance(module, torch.nn.ReLU)]
  net.train()
  patterns = []
  with torch.no_grad():
    for batch in x:
      features.clear()
      net(batch)
      patterns.append(torch.cat([torch.sign(f).reshape(batch.shape[0], -1) for f in features], 1))
  for hook in hooks:
    hook.remove()
  signs = torch.cat(patterns).double()
  differences = signs @ (1 - signs).T
  differences = differences + differences.T
  duplicates = (differences == 0).sum(dim=1).double()
  return int(round(float((1.0 / duplicates).sum())))


@dataclasses.dataclass
class ProxyComparison:
  """Per-proxy results over the cells: values from each side and seconds per cell.

  Attributes:
    torch_values, jax_values: `[cells]` kappa or region counts.
    torch_valid, jax_valid: `[cells]` whether each side's kappa is valid (always True for lr).
    kernel_rel_diff: `[cells]` max |K_jax - K_torch| / max |K_torch| (0 when both kernels are
      zero; NaN for lr).
    torch_kappa64, jax_kappa64: `[cells]` kappa of each side's float32 kernel by a float64
      eigensolver, which separates the kernels' disagreement from the float32 eigensolvers'.
    torch_seconds, jax_seconds: `[cells]` wall time of each cell's proxy on each side.
    compile_seconds: JAX compilation, once for all cells.
  """
  torch_values: list = dataclasses.field(default_factory=list)
  jax_values: list = dataclasses.field(default_factory=list)
  torch_valid: list = dataclasses.field(default_factory=list)
  jax_valid: list = dataclasses.field(default_factory=list)
  kernel_rel_diff: list = dataclasses.field(default_factory=list)
  torch_kappa64: list = dataclasses.field(default_factory=list)
  jax_kappa64: list = dataclasses.field(default_factory=list)
  torch_seconds: list = dataclasses.field(default_factory=list)
  jax_seconds: list = dataclasses.field(default_factory=list)
  compile_seconds: float = 0.0

  @property
  def both_valid(self) -> np.ndarray:
    return np.asarray(self.torch_valid) & np.asarray(self.jax_valid)

  @property
  def value_rel_diff(self) -> np.ndarray:
    """`[cells]` |v_jax - v_torch| / |v_torch| where both sides are valid, else NaN."""
    torch_values, jax_values = np.asarray(self.torch_values), np.asarray(self.jax_values)
    with np.errstate(divide="ignore", invalid="ignore"):
      diff = np.abs(jax_values - torch_values) / np.abs(torch_values)
    return np.where(self.both_valid, diff, np.nan)

  @property
  def mismatches(self) -> int:
    """Cells valid on one side only, or (lr) whose counts differ."""
    differ = np.asarray(self.torch_valid) != np.asarray(self.jax_valid)
    if all(np.isnan(self.kernel_rel_diff)):  # lr: counts must be equal
      differ |= np.asarray(self.torch_values) != np.asarray(self.jax_values)
    return int(np.sum(differ))


def _jax_ntk_fn(mode: str, config: model.NetworkConfig):
  kernel_fn = {"ntk": ntk.ntk_exact, "ntk-fast": ntk.ntk_fast}[mode]

  def fn(variables, arch, x):
    kernel = kernel_fn(variables, arch, x, config)
    return kernel, *ntk.condition_number(kernel)
  return jax.jit(fn)


def _timed(fn, *args):
  start = time.perf_counter()
  result = jax.block_until_ready(fn(*args))
  return result, time.perf_counter() - start


def compare(indices, seed: int = 0, device: str = "cpu", ntk_batch: int = 32,
            lr_batches: int = 3, lr_batch: int = 1000,
            ntk_config: model.NetworkConfig = model.NTK_NETWORK,
            lr_config: model.NetworkConfig = model.LR_NETWORK,
            proxies=PROXIES, float64: bool = False) -> dict[str, ProxyComparison]:
  """Runs every proxy on both sides for the cells at benchmark `indices` -> {proxy: results}.

  One draw of weights (`model.init` with `seed`) and inputs (standard normal; NTK `[ntk_batch,
  H, W, 3]`, LR `[lr_batches, lr_batch, H, W, 1]`) serves every cell and both sides. With
  `float64` (needs `jax_enable_x64`), the same float32 draws are widened and both sides compute
  in float64, kappa by float64 eigensolvers on both sides: what is left is a difference of
  definitions, not of rounding.
  """
  if float64 and not jax.config.jax_enable_x64:
    raise ValueError("float64 comparison needs jax.config.update('jax_enable_x64', True) first")
  dtype = np.float64 if float64 else np.float32
  torch = import_torch()
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.deterministic = True
  keys = jax.random.split(jax.random.key(seed), 4)
  ntk_vars = model.init(keys[0], ntk_config)
  lr_vars = model.init(keys[1], lr_config)
  ntk_x = jax.random.normal(keys[2], (ntk_batch, *ntk_config.input_shape), np.float32)
  lr_x = jax.random.normal(keys[3], (lr_batches, lr_batch, *lr_config.input_shape), np.float32)
  # Through float32 first: under jax_enable_x64 some initializers draw in float64, and the torch
  # side is loaded through float32.
  ntk_vars, lr_vars, ntk_x, lr_x = jax.tree.map(lambda a: a.astype(np.float32).astype(dtype),
                                                (ntk_vars, lr_vars, ntk_x, lr_x))
  ntk_x_torch = torch.from_numpy(np.asarray(ntk_x).transpose(0, 3, 1, 2).copy()).to(device)
  lr_x_torch = torch.from_numpy(np.asarray(lr_x).transpose(0, 1, 4, 2, 3).copy()).to(device)
  archs = space.all_archs()

  results = {}
  for proxy in proxies:
    config, variables = (lr_config, lr_vars) if proxy == "lr" else (ntk_config, ntk_vars)
    x, x_torch = (lr_x, lr_x_torch) if proxy == "lr" else (ntk_x, ntk_x_torch)
    if proxy == "lr":
      jitted = jax.jit(lambda v, a, batches: linear_regions.linear_regions(v, a, batches, config))
    else:
      jitted = _jax_ntk_fn(proxy, config)
    start = time.perf_counter()
    compiled = jitted.lower(variables, np.zeros(space.NUM_EDGES, np.int32), x).compile()
    comparison = ProxyComparison(compile_seconds=time.perf_counter() - start)
    for position, index in enumerate(indices):
      ops = archs[index]
      net = torch_network(ops, config)
      load_jax_variables(net, ops, variables, config)
      net = net.to(device, torch.float64 if float64 else torch.float32)
      if position == 0:  # warm up both sides (allocators, oneDNN/cuDNN kernels) untimed
        jax.block_until_ready(compiled(variables, ops, x))
        if proxy == "lr":
          torch_linear_regions(net, x_torch)
        else:
          (torch_ntk if proxy == "ntk" else torch_ntk_fast)(net, x_torch)
      if proxy == "lr":
        (count, _), seconds = _timed(compiled, variables, ops, x)
        comparison.jax_values.append(float(count))
        start = time.perf_counter()
        comparison.torch_values.append(torch_linear_regions(net, x_torch))
        comparison.torch_seconds.append(time.perf_counter() - start)
        comparison.torch_valid.append(True)
        comparison.jax_valid.append(True)
        for values in (comparison.kernel_rel_diff, comparison.torch_kappa64,
                       comparison.jax_kappa64):
          values.append(float("nan"))
      else:
        (kernel, kappa, valid), seconds = _timed(compiled, variables, ops, x)
        torch_fn = torch_ntk if proxy == "ntk" else torch_ntk_fast
        start = time.perf_counter()
        torch_kernel = torch_fn(net, x_torch)
        torch_kappa, torch_valid = torch_condition_number(torch_kernel)
        if device != "cpu":
          torch.cuda.synchronize()
        comparison.torch_seconds.append(time.perf_counter() - start)
        torch_kernel = torch_kernel.detach().cpu().double().numpy()
        kernel = np.asarray(kernel, np.float64)
        difference, scale = np.abs(kernel - torch_kernel).max(), np.abs(torch_kernel).max()
        comparison.kernel_rel_diff.append(
            difference / scale if scale > 0 else (0.0 if difference == 0 else float("inf")))
        if float64:  # the jitted kappa's eigensolver runs in float32
          kappa = condition_number_float64(kernel)
          valid = np.isfinite(kappa)
          kappa = kappa if valid else ntk.SINGULAR_SENTINEL
        comparison.jax_values.append(float(kappa))
        comparison.torch_values.append(torch_kappa)
        comparison.jax_valid.append(bool(valid))
        comparison.torch_valid.append(torch_valid)
        comparison.jax_kappa64.append(condition_number_float64(kernel))
        comparison.torch_kappa64.append(condition_number_float64(torch_kernel))
      comparison.jax_seconds.append(seconds)
    results[proxy] = comparison
  return results


def table(results: dict[str, ProxyComparison]) -> str:
  """The comparison as a Markdown table (one row per proxy)."""
  lines = ["| proxy | cells | invalid (jax/torch) | mismatches | max rel diff NTK | "
           "max rel diff value | cells > 1e-4 | torch s/cell | jax s/cell | speedup | "
           "jax compile s |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for proxy, r in results.items():
    cells = len(r.jax_values)
    invalid = f"{cells - sum(r.jax_valid)}/{cells - sum(r.torch_valid)}"
    torch_s, jax_s = np.mean(r.torch_seconds), np.mean(r.jax_seconds)
    kernel = "-" if proxy == "lr" else f"{np.nanmax(r.kernel_rel_diff):.1e}"
    diffs = r.value_rel_diff
    value = f"{np.nanmax(diffs):.1e}" if np.any(np.isfinite(diffs)) else "-"
    lines.append(f"| {proxy} | {cells} | {invalid} | {r.mismatches} | {kernel} | {value} | "
                 f"{int(np.sum(diffs > TOLERANCE))} | {torch_s:.4f} | {jax_s:.4f} | "
                 f"{torch_s / jax_s:.1f}x | {r.compile_seconds:.1f} |")
  return "\n".join(lines)


def disagreements(results: dict[str, ProxyComparison], indices) -> str:
  """A line for each cell whose value differs by more than TOLERANCE or whose validity differs.

  For kappa it adds the kernels' relative difference and both kernels' kappa by a float64
  eigensolver (if those agree, the float32 eigensolvers, not the kernels, disagree).
  """
  lines = []
  for proxy, r in results.items():
    for i, index in enumerate(indices):
      diff = r.value_rel_diff[i]
      if not (diff > TOLERANCE or r.torch_valid[i] != r.jax_valid[i]
              or (proxy == "lr" and r.torch_values[i] != r.jax_values[i])):
        continue
      line = (f"{proxy} cell {index}: torch {r.torch_values[i]:.6g} (valid {r.torch_valid[i]}), "
              f"jax {r.jax_values[i]:.6g} (valid {r.jax_valid[i]}), rel diff {diff:.1e}")
      if proxy != "lr":
        kappa64 = (r.torch_kappa64[i], r.jax_kappa64[i])
        line += (f"; NTK rel diff {r.kernel_rel_diff[i]:.1e}; float64 kappa torch {kappa64[0]:.6g}"
                 f", jax {kappa64[1]:.6g} (rel diff {abs(kappa64[1] / kappa64[0] - 1):.1e})")
      lines.append(line)
  return "\n".join(lines)


def machine(device: str) -> str:
  """CPU model, cores, and the GPU when torch runs on one."""
  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  text = f"{cpu}, {os.cpu_count()} cores, {platform.system()}"
  if device != "cpu":
    torch = import_torch()
    text += f"; torch on {torch.cuda.get_device_name()}"
  return text + f"; JAX backend {jax.default_backend()}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cells", type=int, default=100,
                      help="compare the first N benchmark indices, plus index 1462")
  parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch's device")
  parser.add_argument("--seed", type=int, default=0, help="weights and inputs")
  parser.add_argument("--ntk-batch", type=int, default=32, help="NTK batch (MicroNAS: 32)")
  parser.add_argument("--proxies", default=",".join(PROXIES), help="comma-separated subset")
  parser.add_argument("--float64", action="store_true",
                      help="both sides in float64 (same draws): checks the definitions without "
                           "float32 rounding; its own RESULTS.md section")
  parser.add_argument("--no-write", action="store_true", help="only print the table")
  args = parser.parse_args()
  if args.float64:
    jax.config.update("jax_enable_x64", True)
  proxies = args.proxies.split(",")
  for proxy in proxies:
    if proxy not in PROXIES:
      parser.error(f"Unknown proxy {proxy!r}; known: {', '.join(PROXIES)}")
  torch = import_torch()
  indices = list(range(args.cells)) + [i for i in EXTRA_INDICES if i >= args.cells]
  load = os.getloadavg()  # other work on the machine skews the timings; recorded with them
  with jax.default_matmul_precision("highest"):
    results = compare(indices, seed=args.seed, device=args.device, ntk_batch=args.ntk_batch,
                      proxies=proxies, float64=args.float64)
  rendered = table(results)
  notes = disagreements(results, indices)
  print(rendered)
  if notes:
    print(f"\ncells that differ by more than {TOLERANCE:g} or in validity:\n{notes}")
  if args.no_write:
    return
  command = "python3 benchmarks/torch_reference.py " + " ".join(sys.argv[1:])
  precision = "float64" if args.float64 else "float32"
  section = SECTION_FLOAT64 if args.float64 else SECTION
  body = "\n".join([
      f"Command: `{command.strip()}` ({datetime.date.today().isoformat()}; {machine(args.device)}; "
      f"Python {platform.python_version()}, jax {jax.__version__}, torch {torch.__version__}, "
      f"torch threads {torch.get_num_threads()}; load average before the run "
      f"{load[0]:.1f}).",
      "",
      f"An independent PyTorch NB201 network (active ops only, as TE-NAS) fed the JAX weights "
      f"(`model.init`, seed {args.seed}) and the same standard-normal inputs (NTK: batch "
      f"{args.ntk_batch} of 32x32x3 through `NTK_NETWORK`; LR: 3 x 1000 of 3x3x1 through "
      f"`LR_NETWORK`), {precision} on both sides"
      f"{' (float32 draws widened; kappa by float64 eigvalsh on both sides)' if args.float64 else ''}"
      f", no TF32, JAX matmul precision highest; "
      f"{len(indices)} cells (benchmark indices 0..{args.cells - 1} and 1462). `max rel diff NTK`:"
      f" max over cells of max|K_jax - K_torch| / max|K_torch|; `value`: kappa or the region "
      f"count. Seconds per cell after JAX's one compilation (listed apart); torch's network "
      f"construction and weight copy are not timed.",
      "", rendered, ""])
  if notes:
    body += "\n".join(["", f"Cells that differ by more than {TOLERANCE:g} or in validity:", "",
                       *(f"- {line}" for line in notes.splitlines()), ""])
  _results.write_section(section, body)
  print(f"\nwrote the section to {REPO / 'benchmarks/RESULTS.md'}", file=sys.stderr)


if __name__ == "__main__":
  main()
