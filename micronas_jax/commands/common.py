"""What every command shares: one-line input errors naming the options, the cell argument,
output-path checks, atomic writes and the progress bar."""
from __future__ import annotations

import contextlib
import json

import click

from micronas_jax import errors, paths, space
from micronas_jax.hardware import latency

# The library's parameter names and the options that set them: an error names what the user
# typed. Library messages mention parameters as data (`errors.Param`); CLI_NAMES spells them.
FLAGS = {"ntk_batch": "--batch-size", "lr_batches": "--lr-samples BATCHES",
         "lr_batch": "--lr-samples SAMPLES", "zc_batch": "--zc-batch", "repeats": "--repeats",
         "learning_rate": "--lr", "weight_decay": "--weight-decay", "batch_size": "--batch-size",
         "epochs": "--epochs", "momentum": "--momentum", "check_samples": "--check-samples",
         "channels": "--channels", "cells": "--cells", "tolerance": "--tolerance",
         "max_latency_ms": "--max-latency-ms", "max_sram_kb": "--max-sram-kb",
         "max_flash_kb": "--max-flash-kb", "max_flops_m": "--max-flops-m",
         "w_flops": "--w-flops", "w_latency": "--w-latency", "meco": "--meco", "fast": "--fast",
         "method": "--method", "scores_path": "--scores", "plot_path": "--plot",
         "data_path": "--data", "clock_mhz": "--clock-mhz", "sram_kb": "--sram-kb",
         "flash_kb": "--flash-kb", "runtime_sram_kb": "--runtime-sram-kb",
         "runtime_flash_kb": "--runtime-flash-kb", "population": "--population",
         "tournament": "--tournament", "budget": "--budget", "mcpu": "--mcpu",
         "warmup": "--warmup", "emulate_to": "--emulate", "out": "--out", "verify": "--verify",
         "force": "--force", "seed": "--seed", "cells_per_step": "--cells-per-step"}
CLI_NAMES = errors.Names(FLAGS)


def cli_text(message) -> str:
  """A library message (a str, or an error whose message mentions parameters) as the command
  line says it: parameters spelled as its options."""
  return errors.render(message, CLI_NAMES) if isinstance(message, errors.ParamError) else str(
      message)


class InputError(click.ClickException):
  """Bad user input: one `Error: ...` line naming the options (`cli_text`), exit status 2 (like
  Click's usage errors)."""
  exit_code = 2

  def __init__(self, message):
    super().__init__(cli_text(message))


# Seeds become numpy and jax.random seeds, which hold 32 bits unsigned.
SEED = click.IntRange(0, 2**32 - 1)


class CellCommand(click.Command):
  """A command whose ARCH_OR_INDEX argument may be a negative number ("-5", a one-line range
  error) while a mistyped option still gets Click's "No such option ... Did you mean"."""

  def parse_args(self, ctx, args):
    try:
      return super().parse_args(ctx, args)
    except click.NoSuchOption as error:
      if error.option_name[:1] == "-" and error.option_name[1:].isdigit():
        raise InputError(_arch_error(error.option_name)) from None
      raise


def _arch_error(text: str) -> str:
  try:
    space.resolve(text)
  except space.ArchError as error:
    return str(error)
  return f"{text}: not a cell"


class ArchParam(click.ParamType):
  """A cell given as a benchmark index ("1462") or an arch string; converts to op indices [6]."""
  name = "ARCH_OR_INDEX"

  def convert(self, value, param, ctx):
    if not isinstance(value, str):
      return value
    try:
      return space.resolve(value)
    except space.ArchError as error:
      raise InputError(error) from None


def write_csv_file(path, write_rows):
  """Writes a CSV file by `write_rows(stream)` and returns what it returned."""
  with open(path, "w", newline="") as stream:
    return write_rows(stream)


def input_errors(*errors):
  """`input_errors(LUTError)(call, *args)` runs a library call, turning the given bad-input
  errors into one-line exit-2 errors."""
  def run(call, *args, **kwargs):
    try:
      return call(*args, **kwargs)
    except errors as error:
      raise InputError(error) from None
  return run


lut_errors = input_errors(latency.LUTError)
path_errors = input_errors(paths.PathError)


def check_choice(value: str, option: str, choices) -> str:
  """`value` if it is one of `choices`, else a one-line error naming `option`."""
  if value not in choices:
    raise InputError(f"{option}: unknown value {value!r}; known: {', '.join(choices)}")
  return value


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically; a path that cannot be written is a one-line error."""
  path_errors(paths.write_atomically, path, lambda tmp: tmp.write_text(text, newline=""))


def check_paths(outputs=(), inputs=()) -> None:
  """The output guard every command calls before any work: `outputs` (`paths.Output`) must be
  writable and may not overwrite any of `inputs` (`paths.Input`) or each other; a clash is one
  line naming both options (`paths.check_outputs`)."""
  try:
    paths.check_outputs(outputs, inputs)
  except paths.PathError as error:
    raise InputError(error) from None


Output, Input = paths.Output, paths.Input


def save_lut(lut, path: str) -> None:
  """Writes a LUT as JSON (`latency.to_dict`) to `path`."""
  write_text(path, json.dumps(latency.to_dict(lut), indent=2) + "\n")


def load_images(data_path: str, shape: tuple[int, int, int] = (32, 32, 3)):
  """Normalized images `[N, *shape]` for the indicators; a bad path or file exits 2."""
  from micronas_jax import data as data_module

  try:
    return data_module.load_images(data_path, data_module.INDICATOR_IMAGES, shape)
  except data_module.DataError as error:
    raise InputError(error) from None


@contextlib.contextmanager
def progress_bar(enabled: bool, unit: str):
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


FROM_REPORT_HELP = ("A search report (`micronas-jax search --out`): its cell and network (width, "
                    "depth, input, classes), instead of ARCH_OR_INDEX.")


def reported_network(cell, from_report: str | None, sizes: dict):
  """(cell ops, network or None) from ARCH_OR_INDEX or `--from-report` (exactly one); `sizes`:
  the options (name -> value or None) a report fixes, refused beside one."""
  if (cell is None) == (from_report is None):
    raise InputError("give the cell as ARCH_OR_INDEX or --from-report, one of them")
  if from_report is None:
    return cell, None
  given = [f"--{name}" for name, value in sizes.items() if value not in (None, False)]
  if given:
    raise InputError(f"{', '.join(given)}: the network comes from --from-report; leave "
                     f"{'it' if len(given) == 1 else 'them'} out")
  from micronas_jax.search import run as search_run

  try:
    reported = search_run.read_report(from_report)
  except search_run.SearchError as error:
    raise InputError(error) from None
  return reported.ops, reported.network
