"""Bring your own board: the worksheet of LUT entries to profile, the LUT built from it, timings
files.

A worksheet is a CSV with one row per LUT entry and the columns `op, stage, channels, height, width,
latency`; `latency` is empty until the user has profiled the entry on the device:
  stem                    stage 1, the stem's output shape
  <cell op> (5 of them)   stage s, the op's input = output shape; the op plus its node-sum add
  reduction               stage s >= 2, the block's output shape (input: half the channels, twice
                          the resolution)
  head                    the last stage, the head's input shape
  overhead                no stage or shape: the per-inference constant
"""
from __future__ import annotations

import csv
import io
import os

import numpy as np

from micronas_jax import space
from micronas_jax.errors import Param
from micronas_jax.hardware import latency
from micronas_jax.hardware.latency import LUT, LUTError, Memory
from micronas_jax.network import NB201_CIFAR10, NetworkConfig

WORKSHEET_COLUMNS = ("op", "stage", "channels", "height", "width", "latency")
TIMING_COLUMNS = ("index", "arch", "latency_ms")


def worksheet(config: NetworkConfig = NB201_CIFAR10) -> list[dict]:
  """The LUT entries to profile, as worksheet rows (dicts over WORKSHEET_COLUMNS, latency empty)."""
  def row(op, stage="", channels="", size=""):
    return {"op": op, "stage": stage, "channels": channels, "height": size, "width": size,
            "latency": ""}
  shapes = list(zip(config.stage_channels, config.stage_resolutions))
  rows = [row("stem", 1, config.channels, config.resolution)]
  for stage, (channels, size) in enumerate(shapes, start=1):
    if stage > 1:
      rows.append(row("reduction", stage, channels, size))
    rows += [row(name, stage, channels, size) for name in space.OPS]
  rows.append(row("head", config.num_stages, *shapes[-1]))
  rows.append(row("overhead"))
  return rows


def worksheet_csv(config: NetworkConfig = NB201_CIFAR10) -> str:
  """The worksheet as CSV text (header WORKSHEET_COLUMNS, one row per entry, latency empty)."""
  stream = io.StringIO()
  writer = csv.DictWriter(stream, WORKSHEET_COLUMNS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(worksheet(config))
  return stream.getvalue()


def _read_csv(path, required: tuple[str, ...], any_of: tuple[str, ...] = ()) -> list[dict]:
  try:
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      columns = reader.fieldnames or []
      rows = list(reader)
  except FileNotFoundError:
    raise LUTError(f"{path}: file not found") from None
  except (OSError, UnicodeDecodeError, csv.Error) as error:
    raise LUTError(f"{path}: cannot read as CSV: {error}") from None
  for column in required:
    if column not in columns:
      raise LUTError(f"{path}: missing column '{column}' (columns: {', '.join(columns) or 'none'})")
  if any_of and not any(c in columns for c in any_of):
    raise LUTError(f"{path}: needs a column {' or '.join(repr(c) for c in any_of)}")
  for line, row in enumerate(rows, start=2):
    if None in row or None in row.values():
      raise LUTError(f"{path}: line {line}: expected {len(columns)} fields")
  if not rows:
    raise LUTError(f"{path}: no data rows")
  return rows


def _latency(text: str, where: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise LUTError(f"{where}: latency must be a number, got {text!r}") from None
  if not np.isfinite(value) or value < 0:
    raise LUTError(f"{where}: latency must be a non-negative number, got {text!r}")
  return value


def build(path: str | os.PathLike, device: str, unit: str, clock_mhz: float | None = None,
          semantics: str = "every-op", memory: Memory | None = None,
          config: NetworkConfig = NB201_CIFAR10) -> LUT:
  """The LUT from a filled worksheet CSV; checks every entry is there once, with its shape and value,
  and that the whole is plausible in `unit` (`latency.check_plausible`, as on load)."""
  if unit not in latency.UNITS:
    raise LUTError(f"unit: unknown unit {unit!r}; known: {', '.join(latency.UNITS)}")
  if clock_mhz is not None and not clock_mhz > 0:
    raise LUTError(Param("clock_mhz"), f" must be positive, got {clock_mhz}")
  if unit == "cycles" and not clock_mhz:
    raise LUTError(Param("clock_mhz"), ": a positive clock is required when unit is 'cycles'")
  rows = _read_csv(path, WORKSHEET_COLUMNS)
  expected = {(r["op"], str(r["stage"])): r for r in worksheet(config)}
  values = {}
  for line, row in enumerate(rows, start=2):
    key = (row["op"].strip(), row["stage"].strip())
    where = f"{path}: line {line} ({key[0]}, stage {key[1] or '-'})"
    if key not in expected:
      raise LUTError(f"{where}: not an entry of this network's worksheet")
    if key in values:
      raise LUTError(f"{where}: entry appears twice")
    for column in ("channels", "height", "width"):
      if row[column].strip() != str(expected[key][column]):
        raise LUTError(f"{where}: {column} must be {expected[key][column] or 'empty'}, "
                       f"got {row[column]!r}")
    if not row["latency"].strip():
      raise LUTError(f"{where}: latency is empty (profile this entry on the device)")
    values[key] = _latency(row["latency"].strip(), where)
  missing = [f"{op} stage {stage}" if stage else op for op, stage in expected if
             (op, stage) not in values]
  if missing:
    raise LUTError(f"{path}: missing entries: {', '.join(missing)}")
  ops = np.array([[values[(name, str(s + 1))] for name in space.OPS]
                  for s in range(config.num_stages)])
  lut = LUT(
      device=device, unit=unit, semantics=semantics,
      provenance={"method": "profiled", "measured": True,
                  "by": f"micronas-jax lut build from {os.path.basename(path)}",
                  "note": "user-supplied timings: where they were taken (a board, the emulator "
                          "of lut firmware --emulate, or elsewhere) is not recorded"},
      config=config, ops=ops, stem=values[("stem", "1")],
      reductions=tuple(values[("reduction", str(s))] for s in range(2, config.num_stages + 1)),
      head=values[("head", str(config.num_stages))], overhead=values[("overhead", "")],
      clock_mhz=clock_mhz, memory=memory)
  return latency.check_plausible(lut, str(path))


def _cell_at(text: str, where: str) -> np.ndarray:
  """The cell of benchmark index `text`; a one-line LUTError saying what was expected."""
  expected = f"expected a benchmark index, a whole number in [0, {space.NUM_CELLS})"
  if text.startswith("|"):
    raise LUTError(f"{where}: {expected}, got the arch string {text!r} (arch strings go in a "
                   "column 'arch')")
  try:
    index = int(text)
  except ValueError:
    raise LUTError(f"{where}: {expected}, got {text!r}") from None
  if not 0 <= index < space.NUM_CELLS:
    raise LUTError(f"{where}: {expected}, got {index}")
  return space.arch_at(index)


def read_timings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Cells `[n, 6]` and latencies `[n]` (ms) from a CSV with `index` or `arch`, and `latency_ms`."""
  rows = _read_csv(path, ("latency_ms",), any_of=("index", "arch"))
  archs, times, first_line = [], [], {}
  for line, row in enumerate(rows, start=2):
    where = f"{path}: line {line}"
    index, arch = (row.get("index") or "").strip(), (row.get("arch") or "").strip()
    if index:
      archs.append(_cell_at(index, f"{where}, column 'index'"))
    elif arch:
      try:
        archs.append(space.parse_arch(arch))
      except space.ArchError as error:
        raise LUTError(f"{where}, column 'arch': bad cell: {error}") from None
    else:
      raise LUTError(f"{where}: needs an index or an arch")
    times.append(_latency(row["latency_ms"].strip(), f"{where}: latency_ms"))
    if times[-1] > latency.MAX_PLAUSIBLE_MS:
      raise LUTError(f"{where}: latency_ms: {times[-1]:g} ms is more than an hour per inference, "
                     "which no MCU network takes: is it in milliseconds?")
    cell = space.index_of(archs[-1])
    if cell in first_line:
      # Two timings of one cell: a fit would average them silently; the user should choose.
      earlier, earlier_ms = first_line[cell]
      raise LUTError(f"{where}: cell {cell} was already timed on line {earlier} "
                     f"({earlier_ms:g} ms, here {times[-1]:g} ms); keep one timing per cell "
                     "(e.g. their median)")
    first_line[cell] = (line, times[-1])
  return np.stack(archs), np.asarray(times)
