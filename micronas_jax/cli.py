"""The `micronas-jax` command line: parse, call the library, print.

Exit codes: 0 success; 1 a failure while running (ClickException); 2 bad input (a malformed arch
string, an unknown op, an index out of range, a bad option), always as one line naming the problem.
"""
from __future__ import annotations

import json
import sys

import click

from micronas_jax import compilation_cache, complexity, interrupt, paths, space
from micronas_jax.commands import deploy, hardware, scores, search, task, training
from micronas_jax.commands.common import (
  ArchParam,
  CellCommand,
  Output,
  check_paths,
  path_errors,
  write_csv_file,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="micronas-jax")
@click.option("--no-xla-cache", is_flag=True,
              help="Compile every XLA program again instead of reading it from the persistent "
                   "cache (default: on, in ~/.cache/micronas-jax/xla; MICRONAS_JAX_CACHE=DIR "
                   "moves it, MICRONAS_JAX_CACHE=off turns it off).")
def cli(no_xla_cache):
  """Zero-shot, hardware-aware NAS for microcontrollers on the NAS-Bench-201 space."""
  compilation_cache.enable(on=not no_xla_cache)


@cli.group("space")
def space_group():
  """The NAS-Bench-201 cell space: 5 ops on 6 edges, 15,625 cells in benchmark index order."""


@space_group.command("info", cls=CellCommand, epilog="""\b
Examples:
  micronas-jax space info 1462
  micronas-jax space info '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|' --json
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def space_info(cell, as_json):
  """Index, arch string, ops, FLOPs and params of one cell (full network: C=16, N=5, CIFAR-10)."""
  summary = complexity.cell_summary(cell)
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
  check_paths([Output("--out", out)])
  if not out:
    complexity.write_space_csv(sys.stdout)
    return
  count = path_errors(paths.write_atomically, out,
                      lambda tmp: write_csv_file(tmp, complexity.write_space_csv))
  click.echo(f"wrote {count} cells to {out}", err=True)


for command in (task.task_command, hardware.lut_group, hardware.hw, hardware.boards_command,
                scores.score, scores.table_group, search.search, training.train_command,
                training.export_command, deploy.deploy_command):
  cli.add_command(command)


def main():
  """Console-script entry point."""
  interrupt.exit_promptly_on_interrupt()
  try:
    cli(prog_name="micronas-jax")
  except interrupt.Interrupted:
    click.echo("\ninterrupted", err=True)
    interrupt.exit_now()


if __name__ == "__main__":
  main()
