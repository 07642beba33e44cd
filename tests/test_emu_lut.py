"""The shipped emulated-M7 LUT: complete, consistent with its instruction counts, reproducible."""
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, space
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import lut as emu_lut
from micronas_jax.hardware.emu import machine as emu_machine


@pytest.fixture(scope="module")
def shipped():
  return latency.board("stm32f746-emu")


def test_emu_lut_is_a_packaged_measured_board(shipped):
  assert "stm32f746-emu" in latency.boards()
  assert shipped.provenance["measured"] is True
  assert shipped.provenance["method"] == "emulated"
  assert "assumption" in shipped.provenance["cycles_per_instruction_source"].lower()


def test_emu_lut_ms_equal_instructions_times_cpi_over_clock(shipped):
  counts = shipped.constants["instructions"]
  cpi = shipped.provenance["cycles_per_instruction"]
  ms = lambda n: n * cpi / (216 * 1e3)
  expected_ops = [[ms(stage[name]) for name in space.OPS] for stage in counts["stages"]]
  np.testing.assert_allclose(shipped.ops, expected_ops, rtol=1e-5)
  np.testing.assert_allclose([shipped.stem, *shipped.reductions, shipped.head, shipped.overhead],
                             [ms(counts["stem"]), *map(ms, counts["reductions"]),
                              ms(counts["head"]), ms(counts["overhead"])], rtol=1e-5)
  assert (shipped.ops[:, space.NONE] == 0).all()
  # A 3x3 conv costs more than a 1x1, which costs more than the add alone, at every stage.
  assert (shipped.ops[:, space.CONV3X3] > shipped.ops[:, space.CONV1X1]).all()
  assert (shipped.ops[:, space.CONV1X1] > shipped.ops[:, space.SKIP]).all()


def test_lut_profile_rejects_an_unknown_target(tmp_path):
  result = CliRunner().invoke(cli.cli, ["lut", "profile", "--target", "m4", "--out",
                                        str(tmp_path / "x.json")])
  assert result.exit_code == 2
  assert "unknown value 'm4'" in result.output


@pytest.mark.skipif(emu_machine.missing() is not None,
                    reason=f"emulator unavailable: {emu_machine.missing()}")
def test_shipped_skip_entries_reproduce_with_this_toolchain(shipped):
  if emu_machine.compiler_version() != shipped.provenance["toolchain"]:
    pytest.skip(f"counts were made with {shipped.provenance['toolchain']}")
  m = emu_machine.Machine()
  rng = np.random.default_rng(0)
  counts = shipped.constants["instructions"]["stages"]
  cfg = shipped.config
  for stage, (c, r) in enumerate(zip(cfg.stage_channels, cfg.stage_resolutions)):
    # The add has no data-dependent branch: its count is exact.
    assert emu_lut._ops_entry(m, rng, space.SKIP, c, r) == counts[stage]["skip_connect"]


def test_lut_profile_says_how_to_install_a_missing_toolchain(tmp_path, monkeypatch):
  monkeypatch.setattr(emu_machine, "missing", lambda: "arm-none-eabi-gcc not found (apt-get ...)")
  result = CliRunner().invoke(cli.cli, ["lut", "profile", "--out", str(tmp_path / "x.json")])
  assert result.exit_code == 1
  assert "arm-none-eabi-gcc not found" in result.output
  assert not (tmp_path / "x.json").exists()
