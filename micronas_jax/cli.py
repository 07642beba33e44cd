"""The `micronas-jax` command line: parse, call the library, print.

Exit codes: 0 success; 1 a failure while running (ClickException); 2 bad input (a malformed arch
string, an unknown op, an index out of range, a bad option), always as one line naming the problem.
"""
from __future__ import annotations

import csv
import json
import sys

import click

from micronas_jax import cost, space


class InputError(click.ClickException):
  """Bad user input: printed as one `Error: ...` line, exit status 2 (like Click's usage errors)."""
  exit_code = 2


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


@cli.group("space")
def space_group():
  """The NAS-Bench-201 cell space: 5 ops on 6 edges, 15,625 cells in benchmark index order."""


@space_group.command("info", epilog="""\b
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
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="CSV file to write (default: standard output).")
def space_list(out):
  """All 15,625 cells as CSV: index, arch, FLOPs (M) and params (M) of the CIFAR-10 network."""
  archs = space.all_archs()
  flops_m, params_m = cost.flops(archs) / 1e6, cost.params(archs) / 1e6
  stream = open(out, "w", newline="") if out else sys.stdout
  try:
    writer = csv.writer(stream)
    writer.writerow(["index", "arch", "flops_m", "params_m"])
    for index, ops in enumerate(archs):
      writer.writerow([index, space.format_arch(ops), f"{flops_m[index]:.6f}",
                       f"{params_m[index]:.6f}"])
  finally:
    if out:
      stream.close()
  if out:
    click.echo(f"wrote {len(archs)} cells to {out}", err=True)


def main():
  """Console-script entry point."""
  cli(prog_name="micronas-jax")


if __name__ == "__main__":
  main()
