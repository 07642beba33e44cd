"""`lut firmware`: the profiling C project, its builds for three cores, and its emulated run
round-tripping through `lut build` to the emulated LUT's own counts."""
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli
from micronas_jax.hardware import firmware, profile
from micronas_jax.hardware.emu import lut as emu_lut
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NetworkConfig

needs_toolchain = pytest.mark.skipif(emu_machine.missing() is not None,
                                     reason=f"emulator unavailable: {emu_machine.missing()}")
# Two stages of 4 and 8 channels at 8x8 and 4x4, one cell: every entry kind, in milliseconds.
TINY = NetworkConfig(channels=4, cells_per_stage=1, num_stages=2, resolution=8)


def test_generate_writes_the_project_and_refuses_bad_requests(tmp_path):
  files = {p.name for p in firmware.generate(tmp_path / "fw", "cortex-m33", config=TINY)}
  assert files == {"profile.c", "startup.c", "link.ld", "Makefile", "kernels.c", "kernels.h",
                   "network.c", "network.h", "README.md"}
  assert "MCPU ?= cortex-m33" in (tmp_path / "fw/Makefile").read_text()
  assert "#define MNJ_STAGE_CHANNELS {4, 8}" in (tmp_path / "fw/network.h").read_text()
  with pytest.raises(firmware.FirmwareError, match="not a known core"):
    firmware.generate(tmp_path / "other", "cortex-m0")
  with pytest.raises(firmware.FirmwareError, match="not an empty folder"):
    firmware.generate(tmp_path / "fw")


@needs_toolchain
@pytest.mark.parametrize("mcpu", firmware.MCPUS)
def test_project_builds_for_each_core(tmp_path, mcpu):
  firmware.generate(tmp_path, mcpu, config=TINY)
  elf = firmware.build(tmp_path)
  assert elf.stat().st_size > 0


@needs_toolchain
def test_emulated_firmware_prints_a_plan_that_lut_build_reads_as_the_emulated_counts(tmp_path):
  firmware.generate(tmp_path, config=TINY, repeats=3, warmup=1)
  text = firmware.emulate(firmware.build(tmp_path))
  assert text.startswith("op,stage,channels,height,width,latency\n")
  (tmp_path / "timings.csv").write_text(text)
  lut = profile.build(tmp_path / "timings.csv", "emulated", "cycles", 216, config=TINY)
  counts = emu_lut.measure(TINY)
  # The firmware times each kernel call from outside it: a call's argument set-up (about ten
  # instructions, up to 20) is in its time, not in the emulated LUT's; 5 calls at most per entry.
  np.testing.assert_allclose(lut.ops, counts["ops"], atol=100)
  np.testing.assert_allclose([lut.stem, *lut.reductions, lut.head],
                             [counts["stem"], *counts["reductions"], counts["head"]], atol=100)
  assert abs(lut.overhead - counts["overhead"]) < 250  # the whole network less 4 entries


def test_cli_lut_firmware_writes_the_project_and_names_a_bad_option(tmp_path, one_line_error):
  result = CliRunner().invoke(cli.cli, ["lut", "firmware", "--mcpu", "cortex-m4", "--out",
                                        str(tmp_path / "fw")])
  assert result.exit_code == 0, result.output
  assert "wrote 9 files for cortex-m4" in result.output
  one_line_error(CliRunner().invoke(cli.cli, ["lut", "firmware", "--mcpu", "m9", "--out",
                                              str(tmp_path / "x")]), "--mcpu 'm9'")
  one_line_error(CliRunner().invoke(cli.cli, ["lut", "firmware", "--out", str(tmp_path / "fw")]),
                 "--out")
  one_line_error(CliRunner().invoke(cli.cli, ["lut", "firmware", "--mcpu", "cortex-m4", "--out",
                                              str(tmp_path / "y"), "--emulate",
                                              str(tmp_path / "t.csv")]), "--emulate needs")
