"""The default STM32F746 LUT: the package's int8 kernels on the emulated Cortex-M7, in cycles.

Measured: every LUT entry is run in the emulator exactly as for `stm32f746-emu` (`lut.measure`:
same kernels, shapes and entries), but each executed basic block is priced in cycles by the
pipeline model of `cycles.py` (dual issue, unit limits, latencies, branch prediction; every
number cited there) instead of one cycle per instruction.

Anchored: the model's absolute scale is set by the one whole-network measurement of a dense
3x3-conv network on this board at this clock: MLPerf Tiny's ResNet-8 (12,501,632 MACs), 15.440
inferences/s on a DISCO-F746NG at 216 MHz (Plumerai, v1.0; `f746_analytic.CONSTANTS`). ResNet-8's
layers are run through the same kernels and model (`resnet8_cycles`), and every entry is scaled
by measured / modelled. The scale moves all cells alike: it changes milliseconds, not ranks.

    ms = modelled cycles x scale / (216 MHz x 1000)

Regenerate: micronas-jax lut profile --target cortex-m7-cycles --out \
    micronas_jax/hardware/luts/stm32f746.json
"""
from __future__ import annotations

import numpy as np

from micronas_jax.hardware import f746_analytic, latency
from micronas_jax.hardware.emu import cycles, kernels
from micronas_jax.hardware.emu import lut as emu_lut
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NB201_CIFAR10, NetworkConfig
from micronas_jax.runtime import params as runtime_params

TARGET = "cortex-m7-cycles"
DEVICE = "STM32 NUCLEO-F746ZG (Cortex-M7 @ 216 MHz, 320 KB SRAM, 1 MB flash)"
RESNET8_MACS = f746_analytic.MLPERF_IC_MACS
ANCHOR_MS = 1e3 / f746_analytic.PLUMERAI_F746_INF_PER_S

# What the model leaves out, each with what it costs (numbers from the kernels' own counts).
NOT_MODELLED = {
    "flash_wait_states": (
        "Weights are read from zero-wait memory (SRAM/DTCM or D-cache hits). The F746 runs its "
        "flash at 7 wait states at 216 MHz (FLASH_LATENCY_7, facts §6 [V]) behind a 4 KB "
        "D-cache (facts §6 [R]); a conv whose weights exceed the cache re-streams them for "
        "every output pixel, about (7 + 1) cycles per 32-byte line, i.e. +0.25 cycle per MAC "
        "for the 3x3 convs of stages 2 and 3 (9 KB and 36 KB of weights). Not added: a "
        "deployment that copies weights to SRAM, or places them in ITCM flash behind the ART "
        "accelerator ('0-wait state execution from embedded Flash', facts §6 [V]), avoids it."),
    "dsp_simd": (
        "The convs use SMLAD on SXTB16-unpacked pairs as CMSIS-NN does, but compute one output "
        "pixel x 2 channels per pass (CMSIS-NN's s8 mat-mult kernel: 2 pixels x 2 channels, so "
        "each weight word is loaded and unpacked once for 2 pixels) and requantize with a "
        "64-bit product and a variable shift (~21 modelled cycles per output value; CMSIS-NN's "
        "doubling-high multiply needs about half). The add and the average pool are scalar, "
        "one int8 per iteration (add: 10 instructions, ~11 modelled cycles per element), where "
        "CMSIS-NN's s8 kernels work on 4 packed int8 with SIMD. So skip_connect, avg_pool_3x3 "
        "and the 1x1 conv (whose cost is mostly requantization and the node add at 16-64 "
        "channels) are overstated relative to the 3x3 conv; the table's op ratios show it."),
    "cross_block_stalls": (
        "Each basic block is scheduled from an idle pipeline: a dependency across a branch "
        "(e.g. a loop-carried load-use) is not charged."),
}


def resnet8_cycles(m: cycles.CycleMachine, seed: int = 0) -> int:
  """Modelled cycles of MLPerf Tiny's ResNet-8 (CIFAR-10, 16/32/64 channels) on `m`'s kernels.

  Layers (mlcommons/tiny image_classification keras_model.py, facts §3): conv 3x3 3->16; three
  residual blocks of two 3x3 convs (the 2nd and 3rd with stride 2 and a 1x1 stride-2 shortcut
  conv) and an add; global average pool and a dense layer (`head_s8`, which adds a BN).
  """
  rng = np.random.default_rng(seed)
  x = rng.integers(-128, 128, (32, 32, 3)).astype(np.int8)
  x, total = kernels.conv(m, x, runtime_params.random_conv(rng, 3, 16, 3))
  for c_in, c_out in ((16, 16), (16, 32), (32, 64)):
    stride = 1 if c_in == c_out else 2
    y, a = kernels.conv(m, x, runtime_params.random_conv(rng, c_in, c_out, 3), stride, relu_in=True)
    y, b = kernels.conv(m, y, runtime_params.random_conv(rng, c_out, c_out, 3), relu_in=True)
    shortcut, s = (x, 0) if stride == 1 else kernels.conv(
        m, x, runtime_params.random_conv(rng, c_in, c_out, 1), stride)
    x, add = kernels.add(m, y, shortcut)
    total += a + b + s + add
  return total + kernels.head(m, x, runtime_params.random_head(rng, 64, 10))[1]


def profile(config: NetworkConfig = NB201_CIFAR10, seed: int = 0,
            board: str = "stm32f746") -> latency.LUT:
  """The cycle-model LUT (unit ms, every-op) of `board` (`hardware.boards.BOARDS`; default the
  STM32F746): modelled cycles of its core, anchored to ResNet-8 measured on that core."""
  from micronas_jax.hardware import boards

  spec = boards.BOARDS[board]
  reason = cycles.capstone_missing()
  if reason:
    raise emu_machine.ToolchainMissing(reason)
  m = cycles.CycleMachine(core=spec.core)
  m.clear_classes()
  counts = emu_lut.measure(config, seed, m)
  classes = m.classes()
  resnet8 = resnet8_cycles(m, seed)
  model_ms = resnet8 / (spec.clock_mhz * 1e3)
  anchor_ms = spec.anchor_cycles / (spec.clock_mhz * 1e3)  # the anchor's cycles at our clock
  scale = anchor_ms / model_ms
  ms = lambda n: n * scale / (spec.clock_mhz * 1e3)
  pipeline = cycles.PIPELINES[spec.core]
  anchor_text = (f"MLPerf Tiny v1.0 ResNet-8 on a DISCO-F746NG at 216 MHz, Plumerai: "
                 f"{ANCHOR_MS:.2f} ms" if board == "stm32f746" else spec.sources["anchor"])
  provenance = {
      # Not measured on a board: instructions are measured in an emulator, cycles modelled.
      "method": "emulated + cycle model", "measured": False,
      "by": f"micronas-jax lut profile --target {spec.core}-cycles",
      "measured_what": "the executed instructions of the package's int8 C kernels "
                       "(micronas_jax/runtime/kernels.c) for every entry, block by block, "
                       f"on the emulated {cycles.CORE_NAMES[spec.core]} (Unicorn), and the "
                       "outcome of every branch",
      "modelled_what": ("their cycles: in-order dual issue with the Cortex-M7's unit limits, "
                        "latencies and a 2-bit branch predictor (micronas_jax/hardware/emu/"
                        "cycles.py, each number cited from LLVM's Cortex-M7 model); zero-wait "
                        "memory") if spec.core == "cortex-m7" else (
                       f"their cycles on the {spec.core} model of micronas_jax/hardware/emu/"
                       "cycles.py (single issue, blocking loads, no branch predictor: a taken "
                       "branch refills the pipeline; each number cited there); zero-wait memory"),
      "anchored_to": f"{anchor_text}; the same network through these kernels and model: "
                     f"{model_ms:.2f} ms; every entry x {scale:.4f}",
      "toolchain": emu_machine.compiler_version(),
      "flags": " ".join(emu_machine.FLAGS),
      "seed": seed,
      "not_modelled": NOT_MODELLED,
      "note": "Ranks cells better than the instruction count and the analytic model against the "
              "MicroNAS authors' F746 table (benchmarks/RESULTS.md, 'LUT agreement'); the "
              "absolute scale is that of an optimised engine (Plumerai) on ResNet-8: TFLite "
              "Micro with CMSIS-NN is slower (facts §2b). The former default is "
              "'stm32f746-analytic'. Profile your own board: micronas-jax lut firmware."
              if board == "stm32f746" else
              "The kernels are compiled for the Cortex-M7 (ARMv7E-M, the M4's instruction set; "
              "the M33's ARMv8-M Mainline with DSP runs the same instructions); the absolute "
              "scale is that of an optimised engine (Plumerai) on ResNet-8. Not validated on "
              "this board: no board here. Profile your own: micronas-jax lut firmware.",
  }
  board_constants = f746_analytic.CONSTANTS
  constants = {
      "modelled_cycles": emu_lut.counts_record(counts),
      "instructions_by_class": {"value": classes, "source": "all entries above together"},
      "resnet8": {"modelled_cycles": resnet8, "macs": RESNET8_MACS,
                  "measured_ms": round(anchor_ms, 3), "scale": scale,
                  "source": spec.sources["anchor"]},
      "pipeline": pipeline,
      "clock_mhz": ({"value": spec.clock_mhz, "status": "[V]",
                     "source": spec.sources["clock_mhz"]}),
      "sram_bytes": {"value": spec.sram_bytes, "status": "[V]",
                     "source": spec.sources["sram_bytes"]},
      "flash_bytes": {"value": spec.flash_bytes, "status": "[V]",
                      "source": spec.sources["flash_bytes"]},
      "runtime_sram_bytes": board_constants["runtime_sram_bytes"],
      "runtime_flash_bytes": board_constants["runtime_flash_bytes"],
  }
  if board == "stm32f746":  # the default table as it has always been written
    constants["clock_mhz"] = board_constants["clock_mhz"]
    constants["sram_bytes"] = board_constants["sram_bytes"]
    constants["flash_bytes"] = board_constants["flash_bytes"]
    constants["resnet8"]["source"] = board_constants["cycles_per_mac"]["source"]
    constants["resnet8"]["measured_ms"] = round(ANCHOR_MS, 3)
  else:
    constants["kernel_model"] = {"value": spec.kernel_model,
                                 "source": "hardware/shapes.py: prices other networks"}
  return latency.LUT(
      device=spec.device if board != "stm32f746" else DEVICE, unit="ms", semantics="every-op",
      provenance=provenance, config=config, **emu_lut.lut_entries(counts, ms),
      clock_mhz=spec.clock_mhz,
      memory=latency.Memory(spec.sram_bytes, spec.flash_bytes, spec.runtime_sram_bytes,
                            spec.runtime_flash_bytes),
      constants=constants)
