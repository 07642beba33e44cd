"""The hardware report of one cell on a board: what `micronas-jax hw` prints."""
from __future__ import annotations

from micronas_jax import space
from micronas_jax.hardware import costs, latency


def cell_report(ops, lut: latency.LUT, dead_code: bool | None = None) -> dict:
  """The JSON-ready hardware report of one cell `ops: [6]` on the LUT's device: latency, peak
  SRAM, flash, FLOPs, params and, when the LUT knows the board's memory, whether it fits.
  `measured` is whether the LUT's timings were taken on a board, `source` the label saying
  where they come from (`latency.source`)."""
  dead_code = lut.semantics == "dead-code" if dead_code is None else dead_code
  values = {name: float(value) for name, value in costs.cell_costs(ops, lut, dead_code).items()}
  sram = round(values["sram_kb"] * costs.KB)
  flash = round(values["flash_kb"] * costs.KB)
  report = {
      "index": space.index_of(ops),
      "arch": space.format_arch(ops),
      "device": lut.device,
      "measured": latency.measured_on_board(lut.provenance),
      "source": latency.source(lut.provenance),
      "method": lut.provenance.get("method"),
      "semantics": "dead-code" if dead_code else "every-op",
      "latency_ms": round(values["latency_ms"], 4),
      "peak_sram_bytes": sram,
      "flash_bytes": flash,
      "flops_m": round(values["flops_m"], 6),
      "params_m": round(values["params_m"], 6),
  }
  if lut.memory:
    report.update(sram_capacity_bytes=lut.memory.sram_bytes,
                  flash_capacity_bytes=lut.memory.flash_bytes,
                  fits_sram=sram <= lut.memory.sram_bytes,
                  fits_flash=flash <= lut.memory.flash_bytes)
  return report


def format_report(report: dict) -> str:
  """`cell_report` as the lines a person reads."""
  def verdict(key):
    return "" if key not in report else (" (fits)" if report[key] else " (does NOT fit)")

  def capacity(key):
    return f" of {report[key] / 1024:.0f} KB" if key in report else ""

  return (f"device   {report['device']}  [{report['source']}]\n"
          f"index    {report['index']}\narch     {report['arch']}\n"
          f"latency  {report['latency_ms']:.3f} ms  ({report['semantics']})\n"
          f"SRAM     {report['peak_sram_bytes'] / 1024:.1f} KB peak"
          f"{capacity('sram_capacity_bytes')}{verdict('fits_sram')}\n"
          f"flash    {report['flash_bytes'] / 1024:.1f} KB"
          f"{capacity('flash_capacity_bytes')}{verdict('fits_flash')}\n"
          f"FLOPs    {report['flops_m']:.2f} M\nparams   {report['params_m']:.6f} M")
