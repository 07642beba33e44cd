"""The boards with a cycle-model table: core, clock, memory and the measured anchor of each.

Each table (`hardware/luts/<board>.json`) is made the same way (`emu/cycle_lut.profile`): the
package's int8 kernels run in the emulator, every executed block priced by the board core's
pipeline model (`emu/cycles.PIPELINES`), then scaled so that MLPerf Tiny's ResNet-8 through the
same kernels and model takes what one optimised engine (Plumerai's, the same for every board)
measured on that core. The scale moves all networks of a board alike: it changes milliseconds,
not ranks. Every number below carries its source.
"""
from __future__ import annotations

import dataclasses

from micronas_jax.hardware import f746_analytic

_MLPERF = "mlcommons/tiny_results_{}, closed/{}/results/{}/ic/performance/results.txt"
# The TFLite Micro runtime's SRAM and flash beside the network, as for the F746 (the same code).
_RUNTIME = {"sram": f746_analytic.CONSTANTS["runtime_sram_bytes"],
            "flash": f746_analytic.CONSTANTS["runtime_flash_bytes"]}


@dataclasses.dataclass(frozen=True)
class Board:
  """A board of a cycle-model table.

  Attributes:
    name: the table's name (`--board`); device: what it is, in words.
    core: the core's pipeline model (`emu.cycles.PIPELINES`) and kernel model file.
    clock_mhz, sram_bytes, flash_bytes: the board's, each with its source in `sources`.
    anchor_ms, anchor_clock_mhz: ResNet-8's measured latency and the clock it was measured at
      (on the same core; the cycles carry over to this board's clock).
    sources: {field: source}.
  """
  name: str
  device: str
  core: str
  clock_mhz: float
  sram_bytes: int
  flash_bytes: int
  anchor_ms: float
  anchor_clock_mhz: float
  sources: dict

  @property
  def anchor_cycles(self) -> float:
    """ResNet-8's measured cycles on the core."""
    return self.anchor_ms * self.anchor_clock_mhz * 1e3

  @property
  def kernel_model(self) -> str:
    """The file of the core's kernel models in `hardware/luts/` (`hardware.shapes`)."""
    return f"{self.core}-kernels.json"

  @property
  def runtime_sram_bytes(self) -> int:
    return _RUNTIME["sram"]["value"]

  @property
  def runtime_flash_bytes(self) -> int:
    return _RUNTIME["flash"]["value"]


BOARDS = {board.name: board for board in (
    Board("stm32f746", f746_analytic.DEVICE,
          "cortex-m7", f746_analytic.CLOCK_MHZ, f746_analytic.CONSTANTS["sram_bytes"]["value"],
          f746_analytic.CONSTANTS["flash_bytes"]["value"],
          1e3 / f746_analytic.PLUMERAI_F746_INF_PER_S, f746_analytic.CLOCK_MHZ,
          {"clock_mhz": f746_analytic.CONSTANTS["clock_mhz"]["source"],
           "sram_bytes": f746_analytic.CONSTANTS["sram_bytes"]["source"],
           "flash_bytes": f746_analytic.CONSTANTS["flash_bytes"]["source"],
           "anchor": f746_analytic.CONSTANTS["cycles_per_mac"]["source"]}),
    Board("nucleo-f411re", "ST NUCLEO-F411RE (Cortex-M4F @ 100 MHz, 128 KB SRAM, 512 KB flash)",
          "cortex-m4", 100.0, 128 * 1024, 512 * 1024, 1e3 / 5.775, 120.0,
          {"clock_mhz": "Zephyr docs boards/st/nucleo_f411re: 'ARM Cortex-M4 ... 100 MHz'; "
                        "STM32CubeF4 Projects/STM32F411RE-Nucleo/Templates/Src/main.c @2f3b26f1 "
                        "(SYSCLK 100 MHz, FLASH_LATENCY_3)",
           "sram_bytes": "Zephyr docs boards/st/nucleo_f411re: 512 KB flash, 128 KB SRAM",
           "flash_bytes": "Zephyr docs boards/st/nucleo_f411re: 512 KB flash, 128 KB SRAM",
           "anchor": "MLPerf Tiny v1.0 IC, Plumerai Inference Engine on NUCLEO-L4R5ZI "
                     "(Cortex-M4F, 120 MHz): 5.775 inf/s = 173.2 ms, " +
                     _MLPERF.format("v1.0 @c7761cf8", "plumerai", "NUCLEO_L4R5ZI") +
                     ". No F411 result exists in MLPerf Tiny v0.5-v1.3; the cycles carry over "
                     "to 100 MHz (the L4R5 runs its flash at 5 wait states behind the ART "
                     "accelerator, the F411 at 3: not modelled)"}),
    Board("nucleo-u575zi-q",
          "ST NUCLEO-U575ZI-Q (Cortex-M33 @ 160 MHz, 786 KB SRAM, 2 MB flash)", "cortex-m33",
          160.0, 786 * 1024, 2048 * 1024, 1e3 / 9.589, 160.0,
          {"clock_mhz": "Zephyr docs boards/st/nucleo_u575zi_q 3.1.0: Cortex-M33 up to 160 MHz; "
                        "STM32CubeU5 Projects/NUCLEO-U575ZI-Q/Templates/TrustZoneDisabled/Src/"
                        "main.c @0eedae3d (SYSCLK 160 MHz, FLASH_LATENCY_4, ICACHE on)",
           "sram_bytes": "RT-Thread bsp/stm32/stm32u575-st-nucleo/README.md @6368e7ef (ST's "
                         "datasheet text): 2 MB flash, 786 KB SRAM",
           "flash_bytes": "RT-Thread bsp/stm32/stm32u575-st-nucleo/README.md @6368e7ef: 2 MB",
           "anchor": "MLPerf Tiny v1.1 IC, Plumerai Inference Engine 2023.05 on "
                     "NUCLEO-U575ZI-Q (160 MHz): 9.589 inf/s = 104.3 ms, " +
                     _MLPERF.format("v1.1 @c32ef94d", "plumerai", "NUCLEO-U575ZI-Q")}),
)}


def board_names() -> tuple[str, ...]:
  """The boards of BOARDS, the default first."""
  return tuple(BOARDS)


def summary(name: str) -> dict:
  """What the packaged table `name` assumes: device, clock, memory, how its latencies were made,
  what anchors them, and whether it prices networks other than its own (a cycle-model table
  with a kernel model, `hardware.shapes`)."""
  from micronas_jax.hardware import latency

  lut = latency.board(name)
  constants = lut.constants or {}
  anchor = lut.provenance.get("anchored_to") or constants.get("cycles_per_mac", {}).get("source")
  return {"board": name, "device": lut.device, "clock_mhz": lut.clock_mhz,
          "sram_kb": lut.memory.sram_bytes / 1024 if lut.memory else None,
          "flash_kb": lut.memory.flash_bytes / 1024 if lut.memory else None,
          "latency_source": latency.source(lut.provenance), "anchor": anchor,
          "core_model": constants.get("kernel_model", {}).get("value", "cortex-m7-kernels.json")
          if "resnet8" in constants and "scale" in constants["resnet8"] else None,
          "network": f"C={lut.config.channels}, N={lut.config.cells_per_stage}, "
                     f"{lut.config.resolution}x{lut.config.resolution}x{lut.config.in_channels}"}
