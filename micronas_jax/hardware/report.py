"""The hardware report of one cell on a board: what `micronas-jax hw` prints."""
from __future__ import annotations

from micronas_jax import space
from micronas_jax.hardware import costs, latency, tflm


def cell_report(ops, lut: latency.LUT, dead_code: bool | None = None) -> dict:
  """The JSON-ready hardware report of one cell `ops: [6]` on the LUT's device: latency, peak
  SRAM, flash, FLOPs, params and, when the LUT knows the board's memory, whether it fits. Under
  TFLite Micro's memory plan, SRAM and flash are TFLM's arena and the `.tflite` as
  `hardware.tflm.arena` models them for this cell (`tflm_arena`), plus the LUT's runtime.
  `measured` is whether the LUT's timings were taken on a board, `source` the label saying
  where they come from (`latency.source`)."""
  dead_code = lut.semantics == "dead-code" if dead_code is None else dead_code
  values = {name: float(value) for name, value in costs.cell_costs(ops, lut, dead_code).items()}
  # One cell: TFLM's plan exactly (the search's vectorized estimate can miss its gaps).
  sram, flash, arena = costs.exact_memory(ops, lut, dead_code)
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
  if arena:
    report["tflm_arena"] = {"head_bytes": arena.head, "tail_bytes": arena.tail,
                            "model_bytes": arena.file_bytes, "target": tflm.CORTEX_M}
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

  arena = report.get("tflm_arena")
  arena_note = model_note = ""
  if arena:
    arena_note = (f"  (TFLM arena: {arena['head_bytes'] / 1024:.1f} KB activations + "
                  f"{arena['tail_bytes'] / 1024:.1f} KB persistent, {arena['target']})")
    model_note = f"  (.tflite {arena['model_bytes'] / 1024:.1f} KB)"
  return (f"device   {report['device']}  [{report['source']}]\n"
          f"index    {report['index']}\narch     {report['arch']}\n"
          f"latency  {report['latency_ms']:.3f} ms  ({report['semantics']})\n"
          f"SRAM     {report['peak_sram_bytes'] / 1024:.1f} KB peak"
          f"{capacity('sram_capacity_bytes')}{verdict('fits_sram')}{arena_note}\n"
          f"flash    {report['flash_bytes'] / 1024:.1f} KB"
          f"{capacity('flash_capacity_bytes')}{verdict('fits_flash')}{model_note}\n"
          f"FLOPs    {report['flops_m']:.2f} M\nparams   {report['params_m']:.6f} M")
