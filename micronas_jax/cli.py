"""The `micronas-jax` command line: parse, call the library, print.

Exit codes: 0 success; 1 a failure while running (ClickException); 2 bad input (a malformed arch
string, an unknown op, an index out of range, a bad option), always as one line naming the problem.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import pathlib
import sys

import click
import numpy as np

from micronas_jax import cost, model, paths, space
from micronas_jax.hardware import latency, profile
from micronas_jax.hardware import costs as hw_costs
from micronas_jax.search import evolution
from micronas_jax.search import run as search_run


class InputError(click.ClickException):
  """Bad user input: printed as one `Error: ...` line, exit status 2 (like Click's usage errors)."""
  exit_code = 2


# Commands that take ARCH_OR_INDEX read "-5" as that argument (a one-line range error), not as an
# unknown option that needs `--` before it.
CELL_ARGUMENT = {"ignore_unknown_options": True}


class ArchParam(click.ParamType):
  """A cell given as a benchmark index ("1462") or an arch string; converts to op indices [6]."""
  name = "ARCH_OR_INDEX"

  def convert(self, value, param, ctx):
    if not isinstance(value, str):
      return value
    try:
      return space.resolve(value)
    except space.ArchError as error:
      raise InputError(str(error)) from None


def cell_summary(ops) -> dict:
  """The JSON-ready description of one full-size CIFAR-10 cell network: index, arch, ops, costs."""
  return {
      "index": space.index_of(ops),
      "arch": space.format_arch(ops),
      "ops": [space.OPS[op] for op in ops],
      "flops_m": round(float(cost.flops(ops)) / 1e6, 6),
      "params_m": round(float(cost.params(ops)) / 1e6, 6),
  }


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="micronas-jax")
def cli():
  """Zero-shot, hardware-aware NAS for microcontrollers on the NAS-Bench-201 space."""
  enable_compilation_cache()


def compilation_cache_dir() -> pathlib.Path | None:
  """Where compiled XLA programs persist between runs; None (the default) keeps them in memory.

  Opt-in: MICRONAS_JAX_CACHE=DIR, or MICRONAS_JAX_CACHE=on for $XDG_CACHE_HOME/micronas-jax/xla
  (~/.cache/...). Off by default since jaxlib 0.10.2 aborted while writing the zero-cost
  proxies' program to the cache in a long test process (later traced to that process exhausting
  vm.max_map_count, see tests/conftest.py; not re-verified with the cache on).
  """
  import os

  setting = os.environ.get("MICRONAS_JAX_CACHE", "")
  if setting.lower() in ("", "off", "0", "false", "no"):
    return None
  if setting.lower() in ("on", "1", "true", "yes"):
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "micronas-jax" / "xla"
  return pathlib.Path(setting)


def enable_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache, so a second search or score run with the same
  configuration skips XLA compilation (minutes for the exact NTK search on a CPU). A cache dir
  the user set for JAX (JAX_COMPILATION_CACHE_DIR) wins."""
  import os

  import jax

  folder = compilation_cache_dir()
  if folder is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    return  # a read-only home: run without the cache rather than fail
  jax.config.update("jax_compilation_cache_dir", str(folder))
  # Only programs worth keeping: the proxies' and the search's, not every tiny helper.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@cli.group("space")
def space_group():
  """The NAS-Bench-201 cell space: 5 ops on 6 edges, 15,625 cells in benchmark index order."""


@space_group.command("info", context_settings=CELL_ARGUMENT, epilog="""\b
Examples:
  micronas-jax space info 1462
  micronas-jax space info '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|' --json
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def space_info(cell, as_json):
  """Index, arch string, ops, FLOPs and params of one cell (full network: C=16, N=5, CIFAR-10)."""
  summary = cell_summary(cell)
  if as_json:
    click.echo(json.dumps(summary, indent=2))
    return
  edges = ", ".join(f"{t}<-{s}: {op}" for (t, s), op in zip(space.EDGES, summary["ops"]))
  click.echo(f"index   {summary['index']}\narch    {summary['arch']}\nops     {edges}\n"
             f"FLOPs   {summary['flops_m']:.2f} M\nparams  {summary['params_m']:.6f} M")


@space_group.command("list", epilog="""\b
Examples:
  micronas-jax space list > nb201.csv
  micronas-jax space list --out nb201.csv
""")
@click.option("--out", default=None,
              help="CSV file to write (default: standard output).")
def space_list(out):
  """All 15,625 cells as CSV: index, arch, FLOPs (M) and params (M) of the CIFAR-10 network."""
  archs = space.all_archs()
  flops_m, params_m = cost.flops(archs) / 1e6, cost.params(archs) / 1e6
  _check_output_path(out, "--out")

  def write_rows(stream):
    writer = csv.writer(stream)
    writer.writerow(["index", "arch", "flops_m", "params_m"])
    for index, ops in enumerate(archs):
      writer.writerow([index, space.format_arch(ops), f"{flops_m[index]:.6f}",
                       f"{params_m[index]:.6f}"])

  def write_file(tmp):
    with open(tmp, "w", newline="") as stream:
      write_rows(stream)

  if not out:
    write_rows(sys.stdout)
    return
  try:
    paths.write_atomically(out, write_file)
  except paths.PathError as error:
    raise InputError(str(error)) from None
  click.echo(f"wrote {len(archs)} cells to {out}", err=True)


# ---------------------------------------------------------------------------------------------
# Hardware (issue 5): latency LUTs (plan, build, fit) and the `hw` report of one cell.


def _lut_errors(call, *args, **kwargs):
  """Runs a hardware library call, turning its bad-input errors into one-line exit-2 errors."""
  try:
    return call(*args, **kwargs)
  except latency.LUTError as error:
    raise InputError(str(error)) from None


def _check_choice(value: str, option: str, choices) -> str:
  if value not in choices:
    raise InputError(f"{option}: unknown value {value!r}; known: {', '.join(choices)}")
  return value


def _write_text(path: str, text: str) -> None:
  try:
    paths.write_atomically(path, lambda tmp: tmp.write_text(text, newline=""))
  except paths.PathError as error:
    raise InputError(str(error)) from None


def _check_output_path(path: str | None, option: str) -> None:
  """Refuses, before any work, an output path that cannot be written: a search of minutes must
  not end in a path error."""
  if path is not None:
    try:
      paths.check_writable(path)
    except paths.PathError as error:
      raise InputError(f"{option}: {error}") from None


def _save_lut(lut, path: str) -> None:
  _write_text(path, json.dumps(latency.to_dict(lut), indent=2) + "\n")


@cli.group("lut")
def lut_group():
  """Latency lookup tables: plan the entries to profile, build a LUT, or fit one from timings."""


@lut_group.command("plan", epilog="""\b
Examples:
  micronas-jax lut plan --out plan.csv
  (fill the latency column on your board, then: micronas-jax lut build plan.csv ...)
""")
@click.option("--out", default=None, help="CSV file to write (default: standard output).")
def lut_plan(out):
  """Every LUT entry to profile (op, stage, channels, height, width) with an empty latency."""
  text = profile.plan_csv()
  if not out:
    click.echo(text, nl=False)
    return
  _write_text(out, text)
  click.echo(f"wrote {text.count(chr(10)) - 1} entries to {out}", err=True)


@lut_group.command("build", epilog="""\b
Examples:
  micronas-jax lut build plan.csv --device 'my board' --unit ms --out my.json
  micronas-jax lut build plan.csv --device f746 --unit cycles --clock-mhz 216 \\
      --sram-kb 320 --flash-kb 1024 --out f746.json
""")
@click.argument("plan")
@click.option("--device", required=True, help="Name of the device the plan was profiled on.")
@click.option("--unit", required=True, help=f"Unit of the latency column: {', '.join(latency.UNITS)}.")
@click.option("--out", required=True, help="LUT JSON file to write.")
@click.option("--clock-mhz", type=float, default=None, help="Clock (required with --unit cycles).")
@click.option("--semantics", default="every-op", show_default=True,
              help=f"Runtime semantics: {', '.join(latency.SEMANTICS)}.")
@click.option("--sram-kb", type=float, default=None, help="Board SRAM (KB = 1024 bytes).")
@click.option("--flash-kb", type=float, default=None, help="Board flash (KB).")
@click.option("--runtime-sram-kb", type=float, default=0.0, show_default=True,
              help="SRAM the runtime needs besides tensors (KB).")
@click.option("--runtime-flash-kb", type=float, default=0.0, show_default=True,
              help="Flash of the runtime code (KB).")
def lut_build(plan, device, unit, out, clock_mhz, semantics, sram_kb, flash_kb, runtime_sram_kb,
              runtime_flash_kb):
  """Validates a filled plan CSV (every entry, once, non-negative) and writes the LUT."""
  _check_choice(unit, "--unit", latency.UNITS)
  _check_choice(semantics, "--semantics", latency.SEMANTICS)
  sizes = {"--sram-kb": sram_kb, "--flash-kb": flash_kb, "--runtime-sram-kb": runtime_sram_kb,
           "--runtime-flash-kb": runtime_flash_kb, "--clock-mhz": clock_mhz}
  for option, value in sizes.items():
    if value is not None and value < 0:
      raise InputError(f"{option}: must be non-negative, got {value}")
  if (sram_kb is None) != (flash_kb is None):
    raise InputError("--sram-kb and --flash-kb: give both (the board's memory) or neither")
  memory = None
  if sram_kb is not None:
    memory = latency.Memory(*(round(kb * 1024) for kb in (sram_kb, flash_kb, runtime_sram_kb,
                                                          runtime_flash_kb)))
  lut = _lut_errors(profile.build, plan, device, unit, clock_mhz, semantics, memory)
  _save_lut(lut, out)
  click.echo(f"wrote LUT for {device} ({unit}, {semantics}) to {out}", err=True)


@lut_group.command("fit", epilog="""\b
Examples:
  micronas-jax lut fit timings.csv --out fitted.json
  micronas-jax lut fit timings.csv --semantics dead-code --device 'Raspberry Pi 4' --out pi.json
timings.csv has a column index (benchmark index) or arch, and latency_ms.
""")
@click.argument("timings")
@click.option("--out", required=True, help="LUT JSON file to write (unit ms).")
@click.option("--device", default="fitted", show_default=True, help="Name of the timed device.")
@click.option("--semantics", default="every-op", show_default=True,
              help=f"Runtime semantics of the timings: {', '.join(latency.SEMANTICS)}.")
def lut_fit(timings, out, device, semantics):
  """Fits per-op costs and the constant to whole-network timings (non-negative least squares)."""
  _check_choice(semantics, "--semantics", latency.SEMANTICS)
  archs, times = _lut_errors(profile.read_timings, timings)
  try:
    lut = latency.fit(archs, times, dead_code=semantics == "dead-code", device=device,
                      source=timings)
  except ValueError as error:
    raise InputError(f"{timings}: {error}") from None
  _save_lut(lut, out)
  click.echo(f"fitted {len(times)} timings ({semantics}) into {out}", err=True)


PROFILE_TARGETS = ("cortex-m7-emu",)


@lut_group.command("profile", epilog="""\b
Examples:
  micronas-jax lut profile --target cortex-m7-emu --out micronas_jax/hardware/luts/stm32f746-emu.json
Needs arm-none-eabi-gcc (apt-get install gcc-arm-none-eabi) and pip install 'micronas-jax[emu]'.
""")
@click.option("--target", default="cortex-m7-emu", show_default=True,
              help="What to measure on: " + ", ".join(PROFILE_TARGETS) + " (the package's int8 C "
                   "kernels on an emulated Cortex-M7, instruction counts at 216 MHz).")
@click.option("--out", required=True, help="LUT JSON file to write (unit ms).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random data.")
def lut_profile(target, out, seed):
  """Measures every LUT entry by running the package's kernels on a target and writes the LUT."""
  _check_choice(target, "--target", PROFILE_TARGETS)
  from micronas_jax.hardware.emu import lut as emu_lut
  from micronas_jax.hardware.emu import machine as emu_machine
  reason = emu_machine.missing()
  if reason:
    raise click.ClickException(f"--target {target}: {reason}")
  lut = emu_lut.profile(seed=seed)
  _save_lut(lut, out)
  click.echo(f"measured {target} ({lut.provenance['toolchain']}, "
             f"{lut.provenance['cycles_per_instruction']} cycles/instruction) into {out}",
             err=True)


def hw_report(ops, lut, dead_code: bool | None = None) -> dict:
  """The JSON-ready hardware report of one cell on the LUT's device."""
  dead_code = lut.semantics == "dead-code" if dead_code is None else dead_code
  costs = {name: float(value) for name, value in hw_costs.cell_costs(ops, lut, dead_code).items()}
  memory = lut.memory
  sram = round(costs["sram_kb"] * hw_costs.KB)
  flash = round(costs["flash_kb"] * hw_costs.KB)
  report = {
      "index": space.index_of(ops),
      "arch": space.format_arch(ops),
      "device": lut.device,
      "measured": lut.provenance.get("measured"),
      "semantics": "dead-code" if dead_code else "every-op",
      "latency_ms": round(costs["latency_ms"], 4),
      "peak_sram_bytes": sram,
      "flash_bytes": flash,
      "flops_m": round(costs["flops_m"], 6),
      "params_m": round(costs["params_m"], 6),
  }
  if memory:
    report.update(sram_capacity_bytes=memory.sram_bytes, flash_capacity_bytes=memory.flash_bytes,
                  fits_sram=sram <= memory.sram_bytes, fits_flash=flash <= memory.flash_bytes)
  return report


@cli.command("hw", context_settings=CELL_ARGUMENT, epilog="""\b
Examples:
  micronas-jax hw 1462
  micronas-jax hw 1462 --board stm32f746 --json
  micronas-jax hw '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|' --lut my.json
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--board", default="stm32f746", show_default=True,
              help="Packaged LUT to use: " + ", ".join(latency.boards()) + ".")
@click.option("--lut", "lut_path", default=None, help="A LUT JSON file (overrides --board).")
@click.option("--semantics", default=None,
              help="Override the LUT's runtime semantics: every-op or dead-code.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def hw(cell, board, lut_path, semantics, as_json):
  """Latency, peak SRAM, flash, FLOPs and params of one cell, and whether it fits the board."""
  if semantics is not None:
    _check_choice(semantics, "--semantics", latency.SEMANTICS)
  lut = _lut_errors(latency.load, lut_path) if lut_path else _lut_errors(latency.board, board)
  report = hw_report(cell, lut, None if semantics is None else semantics == "dead-code")
  if as_json:
    click.echo(json.dumps(report, indent=2))
    return
  source = "measured" if report["measured"] else "NOT measured (analytic estimate)"
  verdict = lambda key: "" if key not in report else (" (fits)" if report[key] else
                                                      " (does NOT fit)")
  capacity = lambda key: f" of {report[key] / 1024:.0f} KB" if key in report else ""
  click.echo(f"device   {report['device']}  [{source}]\n"
             f"index    {report['index']}\narch     {report['arch']}\n"
             f"latency  {report['latency_ms']:.3f} ms  ({report['semantics']})\n"
             f"SRAM     {report['peak_sram_bytes'] / 1024:.1f} KB peak"
             f"{capacity('sram_capacity_bytes')}{verdict('fits_sram')}\n"
             f"flash    {report['flash_bytes'] / 1024:.1f} KB"
             f"{capacity('flash_capacity_bytes')}{verdict('fits_flash')}\n"
             f"FLOPs    {report['flops_m']:.2f} M\nparams   {report['params_m']:.6f} M")


# --- scoring: training-free proxies over many cells ------------------------------------------


def _read_arch_file(path: str) -> np.ndarray:
  """Benchmark indices from a file of indices or arch strings, one per line ('#' comments)."""
  indices = []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      text = line.split("#", 1)[0].strip()
      if not text:
        continue
      try:
        indices.append(space.index_of(space.resolve(text)))
      except space.ArchError as error:
        raise InputError(f"{path}:{number}: {error}") from None
  if not indices:
    raise InputError(f"{path}: no cells listed")
  return np.asarray(indices, np.int32)


def _load_images(data_path: str) -> np.ndarray:
  """Normalized images `[N, 32, 32, 3]` for the indicators; a bad path or file exits 2."""
  from micronas_jax import data as data_module

  try:
    return data_module.load_images(data_path, max_images=data_module.INDICATOR_IMAGES)
  except data_module.DataError as error:
    raise InputError(str(error)) from None


# ScoreConfig fields and the options that set them, so that an error names what the user typed.
_CONFIG_FLAGS = {"ntk_batch": "--batch-size", "lr_batches": "--lr-samples BATCHES",
                 "lr_batch": "--lr-samples SAMPLES", "zc_batch": "--zc-batch",
                 "repeats": "--repeats", "learning_rate": "--lr", "weight_decay": "--weight-decay",
                 "batch_size": "--batch-size", "epochs": "--epochs", "momentum": "--momentum"}


def _config_error(error: ValueError) -> InputError:
  """A scoring-configuration error as one line naming the command-line option."""
  message = str(error)
  for field, flag in _CONFIG_FLAGS.items():
    if message.startswith(f"{field} "):
      message = flag + message[len(field):]
  return InputError(message)


def _parse_lr_samples(text: str) -> tuple[int, int]:
  batches, sep, batch = text.lower().partition("x")
  if not (sep and batches.isdigit() and batch.isdigit()):
    raise InputError(f"--lr-samples {text!r}: expected BATCHESxSAMPLES, e.g. 3x1000")
  return int(batches), int(batch)


@cli.command("score", epilog="""\b
Examples:
  micronas-jax score --indices 0:64 --proxies ntk,lr,flops,params --out s.sqlite
  micronas-jax score --indices 0:15625 --proxies ntk_fast,lr --repeats 3 --out space.sqlite
  micronas-jax score --archs cells.txt --data ~/cifar-10-batches-py --out real.sqlite
  micronas-jax score --indices 0:64 --proxies synflow,naswot,grad_norm,snip,zico,meco --out zc.sqlite
Rerunning a command resumes it: cells already in --out are skipped.
""")
@click.option("--indices", default="0:15625", show_default=True,
              help="Benchmark indices: START:STOP or a comma-separated list.")
@click.option("--archs", "archs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of indices or arch strings, one per line (instead of --indices).")
@click.option("--proxies", "proxy_names", default="ntk,lr,flops,params", show_default=True,
              help="Comma-separated: ntk (exact), ntk_fast, lr, synflow, naswot, grad_norm, snip, "
                   "zico, meco, flops, params.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Draws of weights and inputs averaged per proxy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", default="scores.sqlite", show_default=True, help="SQLite store to fill.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="NTK batch (TE-NAS: 72).")
@click.option("--ntk-channels", type=int, default=3, show_default=True, help="NTK network's C.")
@click.option("--ntk-cells", type=int, default=1, show_default=True, help="NTK network's N.")
@click.option("--ntk-resolution", type=int, default=32, show_default=True,
              help="NTK input size (random inputs; real images are resized).")
@click.option("--lr-samples", default="3x1000", show_default=True,
              help="Linear-region inputs: BATCHESxSAMPLES of 3x3.")
@click.option("--zc-channels", type=int, default=16, show_default=True,
              help="Zero-cost network's C (synflow, naswot, grad_norm, snip, zico, meco).")
@click.option("--zc-cells", type=int, default=5, show_default=True, help="Zero-cost network's N.")
@click.option("--zc-resolution", type=int, default=32, show_default=True,
              help="Zero-cost input size (random inputs; real images are resized).")
@click.option("--zc-batch", type=int, default=64, show_default=True,
              help="Zero-cost batch (zico uses two such batches, meco its first image; labels "
                   "are random).")
@click.option("--init", type=click.Choice(model.INITS), default="torch-default", show_default=True)
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="Images: an image folder or .zip of <split>/<class>/<image>, a CIFAR-10 python "
                   "directory or an .npz of [N,32,32,3] (default: random normal).")
@click.option("--cells-per-step", type=int, default=None,
              help="Cells per jitted step (default: 1 on CPU, 128 per device on GPU/TPU).")
@click.option("--distributed", is_flag=True,
              help="Call jax.distributed.initialize(); each process scores its share of the cells "
                   "into OUT with a .processKofN suffix.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def score(indices, archs_file, proxy_names, repeats, seed, out, batch_size, ntk_channels,
          ntk_cells, ntk_resolution, lr_samples, zc_channels, zc_cells, zc_resolution, zc_batch,
          init, data_path, cells_per_step, distributed, progress):
  """Scores cells with training-free proxies into a resumable SQLite store."""
  import jax

  from micronas_jax import data as data_module
  from micronas_jax import scoring, store

  try:
    selected = _read_arch_file(archs_file) if archs_file else space.parse_index_range(indices)
  except space.ArchError as error:
    raise InputError(f"--indices: {error}") from None
  lr_batches, lr_batch = _parse_lr_samples(lr_samples)
  images = _load_images(data_path) if data_path else None
  try:
    config = scoring.ScoreConfig(
        proxies=tuple(p.strip() for p in proxy_names.split(",") if p.strip()), repeats=repeats,
        init=init, ntk_batch=batch_size, ntk_channels=ntk_channels, ntk_cells=ntk_cells,
        ntk_resolution=ntk_resolution, lr_batches=lr_batches, lr_batch=lr_batch,
        zc_channels=zc_channels, zc_cells=zc_cells, zc_resolution=zc_resolution,
        zc_batch=zc_batch, data=None if images is None else data_module.fingerprint(images))
  except ValueError as error:
    raise _config_error(error) from None
  if distributed:
    jax.distributed.initialize()
  if jax.process_count() > 1:
    out_path = pathlib.Path(out)
    out = str(out_path.with_name(f"{out_path.stem}.process{jax.process_index()}of"
                                 f"{jax.process_count()}{out_path.suffix}"))
    selected = selected[jax.process_index()::jax.process_count()]
  step = cells_per_step or scoring.default_cells_per_step()
  try:
    scorer = scoring.Scorer(config, cells_per_step=step, images=images)
    results = store.ScoreStore(out, config.to_dict(), config.hash(), config.proxies)
  except (ValueError, store.StoreError) as error:
    raise InputError(str(error)) from None
  with _progress_bar(progress, "cell") as update:
    scored = scoring.fill_store(results, scorer, selected, seed, out, update,
                                lambda line: click.echo(line, err=True))
  click.echo(f"{out}: {scored} cells scored (config {config.hash()}, seed {seed})", err=True)


@contextlib.contextmanager
def _progress_bar(enabled: bool, unit: str):
  """A tqdm bar on stderr as a `progress(done, total)` callback for the library; the bar appears
  at the first report, so an input error before any work prints only its one line."""
  from tqdm import tqdm

  bars = []

  def update(done: int, total: int) -> None:
    if not bars:
      bars.append(tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True))
    bars[0].total = total
    bars[0].update(done - bars[0].n)

  try:
    yield update
  finally:
    for bar in bars:
      bar.close()


@cli.group("table")
def table_group():
  """Score tables written by `micronas-jax score`."""


@table_group.command("export", epilog="""\b
Examples:
  micronas-jax table export scores.sqlite --csv scores.csv
  micronas-jax table export scores.sqlite --parquet scores.parquet
""")
@click.argument("store_path", metavar="STORE")
@click.option("--csv", "csv_out", default=None, help="CSV file to write.")
@click.option("--parquet", "parquet_out", default=None, help="Parquet file to write (needs pyarrow).")
def table_export(store_path, csv_out, parquet_out):
  """Exports every row of a score store to CSV or Parquet."""
  from micronas_jax import store

  if bool(csv_out) == bool(parquet_out):
    raise InputError("give exactly one of --csv FILE or --parquet FILE")
  try:
    count = (store.export_csv(store_path, csv_out) if csv_out
             else store.export_parquet(store_path, parquet_out))
  except store.StoreError as error:
    raise InputError(str(error)) from None
  click.echo(f"wrote {count} rows to {csv_out or parquet_out}", err=True)


# --- search (issue 6): pruning or score-table search under hardware limits ---------------------


def _read_benchmark(path: str) -> np.ndarray:
  """Accuracy `[15625]` of a benchmark table (`benchmark.read_accuracy`), read before a search so
  that a bad file never costs a finished search its report."""
  from micronas_jax import benchmark

  if not pathlib.Path(path).is_file():
    raise InputError(f"{path}: no such benchmark CSV")
  try:
    return benchmark.read_accuracy(path)
  except benchmark.BenchmarkError as error:
    raise InputError(str(error)) from None


@cli.command("search", epilog="""\b
Examples:
  micronas-jax search --board stm32f746 --max-latency-ms 200
  micronas-jax search --data cifar10-jpeg.zip --benchmark ../shared/data/nb201/cifar10.csv
  micronas-jax search --method prune --fast           # TE-NAS / MicroNAS pruning
  micronas-jax search --method prune --max-latency-ms 300 --w-latency 0.2 --out r.json
  micronas-jax search --method prune --fast --meco --max-latency-ms 200
  micronas-jax search --method table --scores space.sqlite --max-sram-kb 64 --plot pareto.png
  micronas-jax search --method exhaustive --fast --max-latency-ms 100 --scores s.sqlite
The default evolution takes about a minute on a 2-core CPU, compilation included; the exact
pruning search minutes (measure with --fast first), seconds on a GPU.
""")
@click.option("--board", default="stm32f746", show_default=True,
              help="Packaged LUT to use: " + ", ".join(latency.boards()) + ".")
@click.option("--lut", "lut_path", default=None, help="A LUT JSON file (overrides --board).")
@click.option("--max-latency-ms", type=float, default=None, help="Latency limit (ms).")
@click.option("--max-sram-kb", type=float, default=None,
              help="Peak SRAM limit (KB); the board's SRAM always applies.")
@click.option("--max-flash-kb", type=float, default=None,
              help="Flash limit (KB); the board's flash always applies.")
@click.option("--max-flops-m", type=float, default=None, help="FLOPs limit (M, NB201 rules).")
@click.option("--method", type=click.Choice(list(search_run.METHODS)), default="evolution",
              show_default=True,
              help="evolution: aging evolution, fitness = log-rank sum of MeCo, linear regions, "
                   "FLOPs and skip span (beyond the paper); prune: the TE-NAS/MicroNAS pruning "
                   "search; table: the best cell of a score table; exhaustive: score every cell "
                   "meeting the limits into --scores, then search that (resumable).")
@click.option("--budget", type=int, default=evolution.EvolutionConfig.budget,
              show_default=True, help="Cells the evolution measures.")
@click.option("--population", type=int, default=evolution.EvolutionConfig.population,
              show_default=True, help="Evolution's population.")
@click.option("--tournament", type=int, default=evolution.EvolutionConfig.tournament,
              show_default=True, help="Evolution's tournament size.")
@click.option("--w-flops", type=float, default=0.0, show_default=True,
              help="prune/table/exhaustive: weight of the FLOPs rank; NTK and LR share "
                   "1 - w_flops - w_latency.")
@click.option("--w-latency", type=float, default=0.0, show_default=True,
              help="prune/table/exhaustive: weight of the latency rank.")
@click.option("--scores", "scores_path", default=None,
              help="Score store from `micronas-jax score` or its CSV export, .csv or .csv.gz "
                   "(--method table); with --method exhaustive the SQLite store it fills (the "
                   "seeds a store holds are averaged).")
@click.option("--fast", is_flag=True,
              help="prune/table/exhaustive: NTK with frozen BN statistics (ntk_fast), about 10x "
                   "quicker than exact.")
@click.option("--meco", is_flag=True,
              help="prune/table/exhaustive: add MeCo (Jiang et al. 2023) beside NTK and LR; the "
                   "three share 1 - w_flops - w_latency.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True,
              help="prune/exhaustive: draws averaged per candidate.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="prune/exhaustive: NTK batch (MicroNAS: 32, TE-NAS: 72).")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="Images for the indicators (not --method table), as TE-NAS uses CIFAR-10: an "
                   "image folder or .zip of <split>/<class>/<image>, a CIFAR-10 python directory "
                   "or an .npz of [N,32,32,3] (default: random normal).")
@click.option("--out", default=None, help="JSON report to write.")
@click.option("--plot", "plot_path", default=None,
              help="Pareto plot PNG, objective vs latency (--method table or exhaustive; needs "
                   "matplotlib).")
@click.option("--benchmark", "benchmark_path", default=None,
              help="CSV with index,test_acc: also report the chosen cell's accuracy.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def search(board, lut_path, max_latency_ms, max_sram_kb, max_flash_kb, max_flops_m, method,
           budget, population, tournament, w_flops, w_latency, scores_path, fast, meco, seed,
           repeats, batch_size, data_path, out, plot_path, benchmark_path, progress):
  """Finds the best cell for a board under hardware limits, and reports it with its evidence."""
  from micronas_jax.search import objective

  lut = _lut_errors(latency.load, lut_path) if lut_path else _lut_errors(latency.board, board)
  accuracy = _read_benchmark(benchmark_path) if benchmark_path else None
  _check_output_path(out, "--out")
  _check_output_path(plot_path, "--plot")
  try:
    request = search_run.SearchRequest(
        lut, objective.Limits(max_latency_ms, max_sram_kb, max_flash_kb, max_flops_m), method,
        seed, objective.Weights.micronas(w_flops, w_latency, meco), fast, repeats, batch_size,
        evolution.EvolutionConfig(population, tournament, budget),
        _load_images(data_path) if data_path else None, data_path, scores_path, plot_path)
  except ValueError as error:  # SearchError, ObjectiveError, bad evolution sizes
    raise _config_error(error) from None
  try:
    with _progress_bar(progress, "cell" if method != "prune" else "supernet") as update:
      report = search_run.run(request, update, lambda line: click.echo(line, err=True))
  except search_run.SearchError as error:  # limits no cell meets, a bad score table or config
    raise _config_error(error) from None
  if accuracy is not None:
    value = float(accuracy[report["index"]])
    report["test_acc"] = value if np.isfinite(value) else None  # a table without this cell
  click.echo(_format_report(report, benchmark_path))
  if out:
    _write_text(out, json.dumps(report, indent=2) + "\n")
    click.echo(f"wrote    {out}")


def _format_report(report: dict, benchmark_path: str | None) -> str:
  ind = report["indicators"]
  names = {"ntk": "NTK", "lr": "LR", "meco": "MeCo", "flops": "FLOPs", "skip_span": "skip span"}
  shown = "   ".join(f"{names[k]} {v:.4g}" + (f" ({ind['ntk_proxy']})" if k == "ntk" else "")
                     for k, v in ind.items() if k in names)
  lines = [f"device   {report['device']}   method {report['method']}   limits: "
           f"{', '.join(report['limits']) or 'none'}",
           f"index    {report['index']}", f"arch     {report['arch']}", f"indicators {shown}",
           f"latency  {report['latency_ms']:.3f} ms", f"SRAM     {report['sram_kb']:.1f} KB peak",
           f"flash    {report['flash_kb']:.1f} KB", f"FLOPs    {report['flops_m']:.2f} M",
           f"params   {report['params_m']:.6f} M", f"time     {report['search_seconds']:.1f} s"]
  if benchmark_path:
    lines.append(f"accuracy {report['test_acc']:.2f} % (from {benchmark_path})"
                 if report["test_acc"] is not None
                 else f"accuracy  none: {benchmark_path} has no value for this cell")
  return "\n".join(lines)


# --- train and export (issue 9): the found cell, trained with NB201's recipe, as ONNX ----------


def _load_training_data(data_path: str):
  from micronas_jax import data as data_module

  try:
    train_set = data_module.load_split(data_path, "train")
    test_set = data_module.load_split(data_path, "test", required=False)
  except data_module.DataError as error:
    raise InputError(str(error)) from None
  return train_set, test_set


@cli.command("train", context_settings=CELL_ARGUMENT, epilog="""\b
Examples:
  micronas-jax train 1462 --data ~/cifar-10-batches-py --out run/
  micronas-jax train 1462 --data tiny.npz --out tiny/ --channels 4 --cells 1 --epochs 3 \\
      --batch-size 32
Rerunning the same command resumes from run/checkpoint.msgpack (written after every epoch) with
the result of an uninterrupted run; a checkpoint of another cell or setting is refused.
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--data", "data_path", required=True,
              help="An image folder or .zip of train|test/<class>/<image> (labels by sorted class "
                   "name), a CIFAR-10 python directory (data_batch_1..5, test_batch) or an .npz "
                   "with images+labels [and test_images+test_labels]; [N,32,32,3] uint8 or 0-1 "
                   "float.")
@click.option("--out", required=True, help="Run directory: checkpoint.msgpack and result.json.")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True,
              help="Peak learning rate (cosine decay to 0 over all steps).")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=True, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random crop (4-pixel zero padding) and horizontal flip.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--channels", type=int, default=16, show_default=True, help="C of stage 1.")
@click.option("--cells", type=int, default=5, show_default=True, help="N, cells per stage.")
@click.option("--stop-after", type=int, default=None,
              help="Stop after this many epochs in total (rerun to continue).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train_command(cell, data_path, out, epochs, batch_size, lr, momentum, nesterov, weight_decay,
                  augment, seed, channels, cells, stop_after, progress):
  """Trains the NB201 network of a cell (NB201's recipe), resumable; reports test accuracy."""
  import jax

  from micronas_jax import train

  try:
    net_config = model.NetworkConfig(channels=channels, cells_per_stage=cells)
    config = train.TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=lr,
                               momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                               augment=augment, seed=seed)
  except ValueError as error:
    raise _config_error(error) from None
  train_set, test_set = _load_training_data(data_path)
  try:
    # Checked before any output, so that a checkpoint of another run is a one-line error.
    train.open_run(out, train.run_metadata(cell, net_config, config,
                                           train.fingerprint(*train_set)))
  except train.TrainError as error:
    raise InputError(str(error)) from None
  click.echo(f"training {space.format_arch(cell)} (C={channels}, N={cells}) on "
             f"{len(train_set[0])} images, {epochs} epochs of {len(train_set[0]) // batch_size} "
             f"steps, on {jax.default_backend()}; compiling the step first", err=True)
  if test_set is None:
    click.echo(f"{data_path}: no test split; test accuracy will not be measured", err=True)
  try:
    result = train.train(cell, train_set, test_set, out, net_config, config, stop_after=stop_after,
                         progress=progress, log=lambda message: click.echo(message, err=True))
  except train.TrainError as error:
    raise InputError(str(error)) from None
  last = result.history[-1] if result.history else None
  if last:
    click.echo(f"epoch {last['epoch']}/{epochs}: train loss {last['train_loss']:.4f}, "
               f"train accuracy {100 * last['train_accuracy']:.2f} %")
  if result.epochs_done < epochs:
    click.echo(f"stopped after epoch {result.epochs_done} of {epochs}; rerun to continue")
  elif result.test_accuracy is not None:
    click.echo(f"test loss {result.test_loss:.4f}, test accuracy "
               f"{100 * result.test_accuracy:.2f} % ({len(test_set[0])} images); "
               f"wrote {pathlib.Path(out) / train.RESULT_NAME}")


@cli.command("export", context_settings=CELL_ARGUMENT, epilog="""\b
Examples:
  micronas-jax export 1462 --checkpoint run/ --onnx cell.onnx
  micronas-jax export 1462 --onnx untrained.onnx          (initialized weights, seed 0)
The ONNX graph is NCHW: input 'image' [batch, 3, 32, 32] float32 normalized by the CIFAR-10
mean/std, output 'logits' [batch, 10]; opset 18; BatchNorm folded into the convs.
Needs pip install 'micronas-jax[export]' (jax2onnx, onnx, onnxruntime).
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--checkpoint", "checkpoint_path", default=None,
              help="Run directory or checkpoint file from `micronas-jax train` (default: export "
                   "freshly initialized, untrained weights).")
@click.option("--onnx", "onnx_path", required=True, help="ONNX file to write.")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="Fixed batch size of the graph (MCU tools want 1).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initialized weights (without --checkpoint) and the check inputs.")
@click.option("--channels", type=int, default=None,
              help="C without --checkpoint (default 16); a checkpoint records its own.")
@click.option("--cells", type=int, default=None, help="N without --checkpoint (default 5).")
@click.option("--check-samples", type=int, default=8, show_default=True,
              help="Random inputs on which onnxruntime is compared with the JAX model.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest accepted |onnxruntime - JAX| of a logit (exit 1 beyond it).")
def export_command(cell, checkpoint_path, onnx_path, batch_size, seed, channels, cells,
                   check_samples, tolerance):
  """Exports the network of a cell as ONNX (BN folded) and checks it with onnxruntime."""
  import jax

  from micronas_jax import export, train

  if batch_size < 1 or check_samples < 1:
    raise InputError("--batch-size and --check-samples must be positive")
  _check_output_path(onnx_path, "--onnx")
  if checkpoint_path:
    if channels is not None or cells is not None:
      raise InputError("--channels and --cells come from the checkpoint; leave them out")
    try:
      checkpoint = train.read_checkpoint(checkpoint_path)
    except train.TrainError as error:
      raise InputError(str(error)) from None
    stored = checkpoint["meta"]["arch"]
    if stored != space.format_arch(cell):
      raise InputError(f"{checkpoint_path} holds a network of arch {stored}, not "
                       f"{space.format_arch(cell)}")
    variables, net_config = export.checkpoint_variables(checkpoint)
    source = (f"checkpoint {train.checkpoint_path(checkpoint_path)} after epoch "
              f"{checkpoint['epoch']} of {checkpoint['meta']['training']['epochs']}")
  else:
    try:
      net_config = model.NetworkConfig(channels=16 if channels is None else channels,
                                       cells_per_stage=5 if cells is None else cells)
    except ValueError as error:
      raise InputError(str(error)) from None
    variables = jax.jit(model.init, static_argnums=1)(train.init_key(seed), net_config)
    source = f"initialized weights (seed {seed}), NOT trained: no --checkpoint given"
  checked = {}

  def write_checked(tmp):
    # The file is checked under a temporary name and renamed only when it passes, so a failed
    # check never leaves a broken .onnx where the user expects a good one.
    export.to_onnx(variables, cell, net_config, tmp, batch_size)
    checked["difference"] = export.max_abs_difference(tmp, variables, cell, net_config,
                                                      jax.random.PRNGKey(seed), check_samples)
    if not checked["difference"] <= tolerance:
      raise click.ClickException(f"onnxruntime vs JAX: max abs difference "
                                 f"{checked['difference']:.3g} exceeds --tolerance {tolerance:g}; "
                                 f"{onnx_path} not written")

  try:
    paths.write_atomically(onnx_path, write_checked)
  except export.ExportError as error:
    raise click.ClickException(str(error)) from None
  except paths.PathError as error:
    raise InputError(str(error)) from None
  difference = checked["difference"]
  shape = [batch_size, net_config.in_channels, net_config.resolution, net_config.resolution]
  click.echo(f"wrote {onnx_path}: opset {export.OPSET}, NCHW input '{export.INPUT_NAME}' {shape} "
             f"float32 (CIFAR-10 normalized), output '{export.OUTPUT_NAME}' "
             f"[{batch_size}, {net_config.num_classes}], BN folded\nweights: {source}\n"
             f"onnxruntime vs JAX on {check_samples} random inputs: max abs difference "
             f"{difference:.3g}")


class Interrupted(BaseException):
  """Ctrl-C: a BaseException, so that Click does not turn it into "Aborted!" with exit 1."""


# Seconds the main thread gets to unwind after Ctrl-C (closing stores, removing temporary files)
# before the process exits anyway: XLA compiles in C++ and only returns to Python when done.
INTERRUPT_GRACE_S = 2.0


def _exit_promptly_on_interrupt() -> None:
  """Ctrl-C ends any command with exit status 130 within INTERRUPT_GRACE_S seconds.

  Python runs its SIGINT handler only between bytecodes, so during an XLA compilation (tens of
  seconds) it would wait, and exiting the interpreter while compiler threads run crashed
  (segfaults were seen). The C-level handler also writes the signal to a wakeup pipe; a watcher
  thread reading it ends the process with os._exit(130) if the main thread has not done so in
  time. Writes are atomic (temporary file + rename, SQLite transactions), so exiting never leaves
  half a file.
  """
  import signal
  import threading
  import time

  def on_sigint(signum, frame):
    raise Interrupted()

  read_end, write_end = os.pipe()
  os.set_blocking(write_end, False)
  signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
  signal.signal(signal.SIGINT, on_sigint)

  def watch():
    os.read(read_end, 1)
    time.sleep(INTERRUPT_GRACE_S)
    os.write(2, b"\ninterrupted\n")
    os._exit(130)

  threading.Thread(target=watch, daemon=True, name="interrupt-watch").start()


def main():
  """Console-script entry point."""
  _exit_promptly_on_interrupt()
  try:
    cli(prog_name="micronas-jax")
  except Interrupted:
    click.echo("\ninterrupted", err=True)
    os._exit(130)  # skips interpreter teardown, which crashed with compiler threads running


if __name__ == "__main__":
  main()
