"""Latency lookup tables (worksheet, build, fit, profile) and the `hw` report of one cell."""
from __future__ import annotations

import json

import click

from micronas_jax.commands.common import (
    SEED, ArchParam, CellCommand, Input, InputError, Output, check_choice, check_paths, cli_text,
    lut_errors, reported_network, save_lut, write_text)
from micronas_jax.hardware import latency, profile
from micronas_jax.hardware import report as hw_report


@click.group("lut")
def lut_group():
  """Latency lookup tables: the worksheet of entries to profile, a LUT built from it, or one fitted
  from timings."""


WORKSHEET_EPILOG = """\b
Examples:
  micronas-jax lut worksheet --out worksheet.csv
  (fill the latency column on your board, then: micronas-jax lut build worksheet.csv ...)
"""


@lut_group.command("worksheet", epilog=WORKSHEET_EPILOG)
@click.option("--out", default=None, help="CSV file to write (default: standard output).")
def lut_worksheet(out):
  """Every LUT entry to profile (op, stage, channels, height, width) with an empty latency."""
  check_paths([Output("--out", out)])
  text = profile.worksheet_csv()
  if not out:
    click.echo(text, nl=False)
    return
  write_text(out, text)
  click.echo(f"wrote {text.count(chr(10)) - 1} entries to {out}", err=True)


# The command's earlier name, kept so that scripts that call it keep working.
lut_group.add_command(click.Command("plan", callback=lut_worksheet.callback,
                                    params=lut_worksheet.params, help=lut_worksheet.help,
                                    epilog=WORKSHEET_EPILOG, hidden=True))


@lut_group.command("build", epilog="""\b
Examples:
  micronas-jax lut build worksheet.csv --device 'my board' --unit ms --out my.json
  micronas-jax lut build worksheet.csv --device f746 --unit cycles --clock-mhz 216 \\
      --sram-kb 320 --flash-kb 1024 --out f746.json
""")
@click.argument("worksheet")
@click.option("--device", required=True, help="Name of the device the worksheet was profiled on.")
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
def lut_build(worksheet, device, unit, out, clock_mhz, semantics, sram_kb, flash_kb, runtime_sram_kb,
              runtime_flash_kb):
  """Validates a filled worksheet CSV (every entry, once, non-negative) and writes the LUT."""
  check_paths([Output("--out", out)], [Input("WORKSHEET", worksheet)])
  check_choice(unit, "--unit", latency.UNITS)
  check_choice(semantics, "--semantics", latency.SEMANTICS)
  memory = lut_errors(latency.Memory.from_kb, sram_kb, flash_kb, runtime_sram_kb,
                       runtime_flash_kb)
  lut = lut_errors(profile.build, worksheet, device, unit, clock_mhz, semantics, memory)
  save_lut(lut, out)
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
  check_paths([Output("--out", out)], [Input("TIMINGS", timings)])
  check_choice(semantics, "--semantics", latency.SEMANTICS)
  archs, times = lut_errors(profile.read_timings, timings)
  try:
    lut = latency.fit(archs, times, dead_code=semantics == "dead-code", device=device,
                      source=timings)
  except latency.LUTError as error:  # an implausible fitted LUT: its message names the timings
    raise InputError(error) from None
  except ValueError as error:
    raise InputError(f"{timings}: {cli_text(error)}") from None
  save_lut(lut, out)
  click.echo(f"fitted {len(times)} timings ({semantics}) into {out}", err=True)


# Cycle-model targets and the board whose clock, memory and anchor each table takes.
CYCLE_TARGETS = {"cortex-m7-cycles": "stm32f746", "cortex-m4-cycles": "nucleo-f411re",
                 "cortex-m33-cycles": "nucleo-u575zi-q"}
PROFILE_TARGETS = ("cortex-m7-emu", *CYCLE_TARGETS)


@lut_group.command("profile", epilog="""\b
Examples:
  micronas-jax lut profile --target cortex-m7-emu --out micronas_jax/hardware/luts/stm32f746-emu.json
  micronas-jax lut profile --target cortex-m7-cycles --out micronas_jax/hardware/luts/stm32f746.json
  micronas-jax lut profile --target cortex-m4-cycles --out micronas_jax/hardware/luts/nucleo-f411re.json
Needs arm-none-eabi-gcc (apt-get install gcc-arm-none-eabi) and pip install 'micronas-jax[emu]'.
""")
@click.option("--target", default="cortex-m7-emu", show_default=True,
              help="What to measure on: " + ", ".join(PROFILE_TARGETS) + " (the package's int8 C "
                   "kernels in the emulator: instruction counts at 216 MHz, or cycles of the "
                   "core's pipeline model anchored to ResNet-8 measured on that core: "
                   "cortex-m7 for the STM32F746, cortex-m4 for the NUCLEO-F411RE, cortex-m33 "
                   "for the NUCLEO-U575ZI-Q).")
@click.option("--out", required=True, help="LUT JSON file to write (unit ms).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the random data.")
@click.option("--from-report", "from_report", type=click.Path(), default=None,
              help="Profile the network of a search report (`search --out`) exactly, instead of "
                   "NAS-Bench-201's C=16, N=5, 32x32x3 network; use the LUT with --lut.")
def lut_profile(target, out, seed, from_report):
  """Measures every LUT entry by running the package's kernels on a target and writes the LUT."""
  check_paths([Output("--out", out)], [Input("--from-report", from_report)])
  check_choice(target, "--target", PROFILE_TARGETS)
  from micronas_jax.network import NB201_CIFAR10
  config = NB201_CIFAR10
  if from_report:
    config = reported_network(None, from_report, {})[1]
  from micronas_jax.hardware.emu import cycle_lut
  from micronas_jax.hardware.emu import lut as emu_lut
  from micronas_jax.hardware.emu import machine as emu_machine
  reason = emu_machine.missing()
  if reason:
    raise click.ClickException(f"--target {target}: {reason}")
  try:
    lut = (cycle_lut.profile(config, seed, CYCLE_TARGETS[target]) if target in CYCLE_TARGETS
           else emu_lut.profile(config, seed))
  except emu_machine.ToolchainMissing as error:
    raise click.ClickException(f"--target {target}: {error}") from None
  save_lut(lut, out)
  click.echo(f"profiled {target} ({lut.provenance['toolchain']}, "
             f"{lut.provenance['method']}) into {out}", err=True)


@lut_group.command("firmware", epilog="""\b
Examples:
  micronas-jax lut firmware --mcpu cortex-m7 --out f746-profile
  (make in that folder, flash profile.elf, capture its output as timings.csv, then:
   micronas-jax lut build timings.csv --device 'my board' --unit cycles --clock-mhz 216 ...)
  micronas-jax lut firmware --out fw --emulate timings.csv   # run it on the emulated M7
""")
@click.option("--mcpu", default="cortex-m7", show_default=True,
              help="Core to build for: cortex-m4, cortex-m7, cortex-m33.")
@click.option("--out", required=True, help="Folder to write the C project into (new or empty).")
@click.option("--repeats", type=int, default=5, show_default=True,
              help="Timed runs per entry (the median is printed).")
@click.option("--warmup", type=int, default=1, show_default=True,
              help="Untimed runs per entry first.")
@click.option("--emulate", "emulate_to", default=None,
              help="Also build it and write what it prints on the emulated Cortex-M7 (the "
                   "counter reads instructions) to this CSV (needs the emu extra).")
def lut_firmware(mcpu, out, repeats, warmup, emulate_to):
  """Writes a C project that times every `lut worksheet` entry on your board (DWT cycle counter) and
  prints the worksheet's CSV with latency in cycles, ready for `lut build`."""
  from micronas_jax import paths
  from micronas_jax.hardware import firmware
  from micronas_jax.hardware.emu import machine as emu_machine
  # The folder itself must be new or empty (firmware.make), so only the CSV can overwrite.
  check_paths([Output("--emulate", emulate_to)])
  try:
    result = firmware.make(out, mcpu, repeats, warmup, emulate_to)
  except (firmware.FirmwareError, paths.PathError) as error:  # a path error: nothing was written
    raise InputError(error) from None
  except emu_machine.ToolchainMissing as error:
    raise click.ClickException(f"--emulate: {error}") from None
  click.echo(f"wrote {len(result['files'])} files for {mcpu} to {out}", err=True)
  if result["csv"]:
    click.echo(f"emulated {result['elf']}: its CSV (cycles = instructions) in {result['csv']}",
               err=True)


@click.command("hw", cls=CellCommand, epilog="""\b
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
    check_choice(semantics, "--semantics", latency.SEMANTICS)
  lut = lut_errors(latency.load, lut_path) if lut_path else lut_errors(latency.board, board)
  report = hw_report.cell_report(cell, lut, None if semantics is None else
                                 semantics == "dead-code")
  click.echo(json.dumps(report, indent=2) if as_json else hw_report.format_report(report))


@click.command("boards", epilog="""\b
Examples:
  micronas-jax boards
  micronas-jax boards --json
""")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
def boards_command(as_json):
  """The packaged boards (--board) and what each table assumes: clock, memory, where its
  latencies come from and what anchors them, and whether it prices any network shape."""
  import json

  from micronas_jax.hardware import boards

  rows = [boards.summary(name) for name in latency.boards()]
  if as_json:
    click.echo(json.dumps(rows, indent=2))
    return
  for row in rows:
    memory = (f"{row['sram_kb']:.0f} KB SRAM, {row['flash_kb']:.0f} KB flash"
              if row["sram_kb"] is not None else "memory unknown")
    clock = f"{row['clock_mhz']:g} MHz" if row["clock_mhz"] else "clock unknown"
    shapes = (f"any network (kernel model {row['core_model']})" if row["core_model"]
              else f"only its own network ({row['network']})")
    click.echo(f"{row['board']}\n  {row['device']}\n  {clock}; {memory}\n"
               f"  latency: {row['latency_source']}\n  prices: {shapes}"
               + (f"\n  anchored to: {row['anchor']}" if row["anchor"] else ""))
