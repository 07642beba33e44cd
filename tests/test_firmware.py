"""`lut firmware`: the profiling C project, its builds for three cores, and its emulated run
round-tripping through `lut build` to the emulated LUT's own counts."""
import errno
import os
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, paths
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


# --- Nothing lost: the project appears whole or not at all -------------------------------------

NOTHING = "cannot write: no space left on the device; nothing was written there"


def firmware_cli(*args):
  return CliRunner().invoke(cli.cli, ["lut", "firmware", *map(str, args)])


def listing(folder):
  """Every path under `folder`, hidden ones too (a staging folder, a lock file)."""
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def disk_full_after(monkeypatch, files: int):
  """`Path.write_text` writes `files` files, then half of the next one and raises ENOSPC."""
  real, written = pathlib.Path.write_text, []

  def write_text(self, data, *args, **kwargs):
    if len(written) < files:
      written.append(self)
      return real(self, data, *args, **kwargs)
    real(self, data[:len(data) // 2], *args, **kwargs)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
  monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def test_full_disk_leaves_no_folder_and_a_rerun_writes_it(tmp_path, monkeypatch, one_line_error):
  disk_full_after(monkeypatch, 3)
  one_line_error(firmware_cli("--out", tmp_path / "fw"), f"{tmp_path / 'fw'}: {NOTHING}")
  assert listing(tmp_path) == []  # no folder, no staging folder, no lock
  monkeypatch.undo()
  result = firmware_cli("--out", tmp_path / "fw")  # not refused as "not an empty folder"
  assert result.exit_code == 0 and "wrote 9 files" in result.output, result.output
  assert len(listing(tmp_path)) == 1 + 9  # the folder and its files


def test_full_disk_leaves_an_empty_folder_empty(tmp_path, monkeypatch, one_line_error):
  (tmp_path / "fw").mkdir()
  disk_full_after(monkeypatch, 8)  # the last file fails
  one_line_error(firmware_cli("--out", tmp_path / "fw"), NOTHING)
  assert listing(tmp_path) == ["fw"]


def test_a_failed_move_into_an_empty_folder_takes_back_the_moved_files(tmp_path, monkeypatch,
                                                                       one_line_error):
  (tmp_path / "fw").mkdir()
  real, moves = os.replace, []

  def replace(source, target):
    moves.append(target)
    if len(moves) > 3:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    real(source, target)
  monkeypatch.setattr(os, "replace", replace)
  one_line_error(firmware_cli("--out", tmp_path / "fw"), NOTHING)
  assert listing(tmp_path) == ["fw"]


def test_a_concurrent_writer_of_the_same_folder_is_one_line(tmp_path, one_line_error):
  with paths.exclusive(tmp_path / "fw"):
    one_line_error(firmware_cli("--out", tmp_path / "fw"),
                   f"{tmp_path / 'fw'}: cannot write: another process is writing it")
    assert not (tmp_path / "fw").exists()


def test_a_read_only_folder_is_one_line(read_only_folder, one_line_error):
  one_line_error(firmware_cli("--out", read_only_folder / "fw"), str(read_only_folder / "fw"))
  with pytest.raises(paths.PathError, match="fw: cannot write: permission denied; nothing was"):
    firmware.generate(read_only_folder / "fw")  # past any check of the command line
  assert listing(read_only_folder) == []


def test_emulated_csv_on_a_full_disk_is_one_line(tmp_path, monkeypatch, one_line_error):
  # No toolchain needed: the build and the emulated run are stand-ins; the CSV write is real.
  monkeypatch.setattr(firmware, "build", lambda project, defines=(): f"{project}/profile.elf")
  monkeypatch.setattr(firmware, "emulate", lambda elf: profile.worksheet_csv())
  csv = tmp_path / "t.csv"
  csv.write_text("the old timings\n")
  disk_full_after(monkeypatch, 9)  # the project's 9 files, then the CSV
  one_line_error(firmware_cli("--out", tmp_path / "fw", "--emulate", csv), f"{csv}: {NOTHING}")
  assert csv.read_text() == "the old timings\n"
  assert sorted(p for p in listing(tmp_path) if not p.startswith("fw")) == ["t.csv"]
