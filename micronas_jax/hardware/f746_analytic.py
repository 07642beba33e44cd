"""The analytic STM32F746 LUT (`stm32f746-analytic`): NUCLEO-F746ZG (Cortex-M7, 216 MHz), from
cited constants, not measured. It was formerly the default board; the default `stm32f746`
is now the emulated kernels priced by a Cortex-M7 cycle model (`hardware/emu/cycle_lut.py`).
This module also holds the board's cited constants that both use.

Every constant cites a fact from the project's research notes (shared/research/mcu-latency-facts.md,
section in brackets), marked [V] (read in the cited source) or [D] (arithmetic on [V] numbers).
Regenerate the packaged file with

    python3 -m micronas_jax.hardware.f746_analytic micronas_jax/hardware/luts/stm32f746-analytic.json

(a test checks that the packaged file equals what this module builds).
"""
from __future__ import annotations

import sys

from micronas_jax.hardware import analytic, latency
from micronas_jax.network import NB201_CIFAR10

# MLPerf Tiny v1.0 image classification (ResNet-8, 12,501,632 MACs, mostly dense 3x3 convs like
# NB201's), Plumerai on a DISCO-F746NG at 216 MHz: 15.440 inferences/s.
MLPERF_IC_MACS = 12_501_632
PLUMERAI_F746_INF_PER_S = 15.440
CLOCK_MHZ = 216

CONSTANTS = {
    "clock_mhz": {
        "value": CLOCK_MHZ, "status": "[V]",
        "source": "facts §6: Linux Documentation/arm/stm32/stm32f746-overview.rst 'Cortex-M7 core "
                  "running up to @216MHz'; TinyEngine's F746 main.cpp PLL setup (§2b)"},
    "cycles_per_mac": {
        "value": round(CLOCK_MHZ * 1e6 / PLUMERAI_F746_INF_PER_S / MLPERF_IC_MACS, 3),
        "status": "[D]",
        "source": "facts §3, §8(a) (K1): MLPerf Tiny v1.0 IC, Plumerai on DISCO-F746NG at 216 MHz, "
                  "15.440 inf/s (mlcommons/tiny_results_v1.0 @c7761cf8) -> 64.77 ms; "
                  "0.06477 s x 216e6 / 12,501,632 MACs = 1.119 cycles/MAC (whole network)"},
    "mac_equivalents": {
        "value": "conv/linear: MACs; pool: outputs x window; add: (terms - 1) x elements; "
                 "standalone ReLU and BN: 1 per element",
        "status": "[V]",
        "source": "facts §4: muNAS resource model, latency = MAC count summed over Conv2D, "
                  "DWConv2D, Pool, Dense and Add (eliberis/uNAS resource_models/models.py); "
                  "one-input elementwise ops counted like a two-term add"},
    "cycles_per_layer": {
        "value": 0, "status": "[V]",
        "source": "facts §8: 'Per-op fixed overheads: none verified' -> 0 until measured; the "
                  "cycles/MAC above is a whole-network figure that spreads ResNet-8's layer costs"},
    "overhead_cycles": {
        "value": 0, "status": "[V]",
        "source": "facts §8: no verified per-inference constant -> 0 until measured"},
    "sram_bytes": {
        "value": 320 * 1024, "status": "[V]",
        "source": "facts §6: stm32f746-overview.rst '320KBytes internal RAM'"},
    "flash_bytes": {
        "value": 1024 * 1024, "status": "[V]",
        "source": "facts §6: stm32f746-overview.rst '1MB internal flash'"},
    "runtime_flash_bytes": {
        "value": 22 * 1024, "status": "[V]",
        "source": "facts §7: TensorFlow Lite Micro docs: core runtime 16 KB on a Cortex-M3, 22 KB "
                  "with the ops of the speech keyword model; a lower bound (no op resolver, "
                  "no flatbuffer metadata)"},
    "runtime_sram_bytes": {
        "value": round(3.1 * 1024), "status": "[V]",
        "source": "facts §1a: CMSIS-NN CIFAR-10 example '3.1 KB for storing the im2col data' "
                  "(arm_nnexamples_cifar10.cpp); a lower bound: TFLite Micro's per-tensor arena "
                  "metadata is not verified and not included"},
}

DEVICE = "STM32 NUCLEO-F746ZG (Cortex-M7 @ 216 MHz, 320 KB SRAM, 1 MB flash)"
NOTE = ("NOT MEASURED: an analytic model, cycles = cycles_per_mac x MAC-equivalents + "
        "cycles_per_layer x layers, with the constants and sources in 'constants'. The cycles/MAC "
        "is that of an optimised int8 engine (the best MLPerf Tiny F746 results); TFLite Micro "
        "with CMSIS-NN is slower (facts §2b: 5.0-5.2 cycles/MAC on MBConv models; no dense-conv "
        "figure verified). Profile your board (micronas-jax lut worksheet / lut build) to replace it.")


def lut() -> latency.LUT:
  """The analytic STM32F746 LUT (unit cycles, every-op semantics) built from CONSTANTS."""
  value = lambda name: CONSTANTS[name]["value"]
  model = analytic.Model(value("cycles_per_mac"), value("cycles_per_layer"),
                         value("overhead_cycles"))
  cycles = analytic.entry_cycles(model, NB201_CIFAR10)
  return latency.LUT(
      device=DEVICE, unit="cycles", semantics="every-op",
      provenance={"method": "analytic", "measured": False,
                  "by": "micronas_jax.hardware.f746_analytic (cited constants)", "note": NOTE},
      config=NB201_CIFAR10, ops=cycles["ops"], stem=cycles["stem"],
      reductions=tuple(cycles["reductions"]), head=cycles["head"], overhead=cycles["overhead"],
      clock_mhz=value("clock_mhz"),
      memory=latency.Memory(value("sram_bytes"), value("flash_bytes"),
                            value("runtime_sram_bytes"), value("runtime_flash_bytes")),
      constants=CONSTANTS)


if __name__ == "__main__":
  latency.save(lut(), sys.argv[1])
