"""The Cortex-M7 cycle model: instruction classes, the in-order dual-issue schedule, the default
LUT it makes and how that LUT agrees with the MicroNAS authors' F746 table."""
import numpy as np
import pytest
from scipy import stats

from micronas_jax import space
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import cycles, kernels
from micronas_jax.hardware.emu import machine as emu_machine

needs_capstone = pytest.mark.skipif(cycles.capstone_missing() is not None,
                                    reason=f"{cycles.capstone_missing()}")
needs_emulator = pytest.mark.skipif(
    emu_machine.missing() is not None or cycles.capstone_missing() is not None,
    reason=f"emulator unavailable: {emu_machine.missing() or cycles.capstone_missing()}")
AUTHORS = np.array([0, 1.43, 23.49, 80.26, 24.02])  # YeQiao/TG-NAS prune_tenas.py, per edge


def test_classify_sorts_mnemonics_into_classes():
  expected = {"ldrsb": "load", "ldr.w": "load", "pop": "load", "strb": "store", "push.w": "store",
              "smlad": "mac", "mla": "mac", "smlal": "mac", "sxtb16": "simd", "ssat": "simd",
              "bne": "branch", "cbz": "branch", "bx": "branch", "addge": "other",
              "movs": "other", "lsls": "other", "it": "other", "cmp.w": "other"}
  assert {m: cycles.classify(m) for m in expected} == expected


def _schedule(code: bytes) -> int:
  return cycles.schedule(list(cycles._decoder().disasm(code, 0x1000)))


@needs_capstone
def test_schedule_dual_issues_independent_ops_and_waits_for_results():
  adds_r0, adds_r1 = bytes.fromhex("0130"), bytes.fromhex("0131")  # adds r0, #1 / adds r1, #1
  ldr_r0 = bytes.fromhex("0868")  # ldr r0, [r1]
  ldrb_r0 = bytes.fromhex("0878")  # ldrb r0, [r1]
  # Two independent ALU ops issue together: 1 cycle. But adds set the flags, and the second
  # writes them too (no read): still one cycle.
  assert _schedule(adds_r0 + adds_r1) == 1
  assert _schedule(adds_r0 + adds_r0) == 2  # the second needs the first's r0: 1 cycle later
  assert _schedule(ldr_r0 + adds_r0) == 3  # load-use latency 2: issue at 0 and 2
  assert _schedule(ldrb_r0 + adds_r0) == 4  # a byte load is a cycle slower


@needs_emulator
def test_cycle_machine_prices_the_add_kernel_below_one_cycle_per_instruction_plus_stalls():
  m = cycles.CycleMachine()
  x = np.arange(-64, 64, dtype=np.int8).reshape(4, 4, 8)
  plain = emu_machine.Machine()
  _, instructions = kernels.add(plain, x, x)
  m.clear_classes()
  _, modelled = kernels.add(m, x, x)
  counted = m.classes()
  assert sum(counted.values()) == instructions
  # 128 elements, each: 2 byte loads, mul, mla, ssat, store, loop branch: every class is there.
  assert counted["load"] >= 256 and counted["mac"] >= 256 and counted["store"] >= 128
  assert counted["simd"] >= 128 and counted["branch"] >= 128
  # The byte loads feed a multiply chain: stalls outweigh dual issue in this loop.
  assert instructions / 2 < modelled < 2 * instructions


@needs_emulator
def test_default_lut_skip_entries_reproduce_with_this_toolchain():
  shipped = latency.board("stm32f746")
  if emu_machine.compiler_version() != shipped.provenance["toolchain"]:
    pytest.skip(f"cycles were modelled from {shipped.provenance['toolchain']}")
  from micronas_jax.hardware.emu import lut as emu_lut
  m = cycles.CycleMachine()
  rng = np.random.default_rng(0)
  cfg = shipped.config
  stages = shipped.constants["modelled_cycles"]["stages"]
  for stage, (c, r) in enumerate(zip(cfg.stage_channels, cfg.stage_resolutions)):
    assert emu_lut._ops_entry(m, rng, space.SKIP, c, r) == stages[stage]["skip_connect"]


def test_default_lut_ranks_cells_closer_to_the_authors_table_than_the_other_luts():
  archs = space.all_archs()
  authors = AUTHORS[archs].sum(-1)
  tau = {name: stats.kendalltau(latency.estimate(archs, latency.board(name)), authors)[0]
         for name in ("stm32f746", "stm32f746-analytic", "stm32f746-emu")}
  assert tau["stm32f746"] > max(tau["stm32f746-analytic"], tau["stm32f746-emu"])
  assert tau["stm32f746"] > 0.93
