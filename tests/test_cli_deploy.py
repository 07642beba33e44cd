"""`micronas-jax deploy` through Click: exit codes, one-line errors, nothing written on refusal."""
import json

import numpy as np
from click.testing import CliRunner

from micronas_jax import cli
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import machine as emu_machine

TINY = ("--channels", "4", "--cells", "1")


def invoke(*args):
  return CliRunner().invoke(cli.cli, ["deploy", *[str(a) for a in args]])


def test_a_folder_that_is_not_a_previous_deploy_is_refused_untouched(one_line_error, tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "notes.txt").write_text("mine")
  one_line_error(invoke("13987", "--out", tmp_path / "out", *TINY), "not a previous deploy")
  assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_images_of_the_wrong_shape_are_refused(one_line_error, tmp_path):
  np.savez(tmp_path / "small.npz", images=np.zeros((4, 16, 16, 3), np.uint8))
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--data", tmp_path / "small.npz",
                        *TINY), "16, 16, 3")
  assert not (tmp_path / "out").exists()


def test_verify_without_the_toolchain_names_the_flag_and_the_install(one_line_error, tmp_path,
                                                                    monkeypatch):
  monkeypatch.setattr(emu_machine, "missing", lambda: "arm-none-eabi-gcc not found "
                      "(Debian/Ubuntu: apt-get install gcc-arm-none-eabi)")
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--verify", *TINY),
                 "--verify needs the emulator: arm-none-eabi-gcc not found")
  assert not (tmp_path / "out").exists()


def test_a_checkpoint_and_a_size_together_are_refused(one_line_error, tmp_path):
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--checkpoint", tmp_path, *TINY),
                 "come from the checkpoint")


def test_a_network_over_the_board_says_by_how_much_and_writes_only_when_forced(one_line_error,
                                                                                tmp_path):
  board = latency.to_dict(latency.board("stm32f746-emu"))
  board["memory"]["flash_bytes"] = 4096
  lut = tmp_path / "small.json"
  lut.write_text(json.dumps(board))
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--lut", lut, *TINY),
                 "KB > 4 KB (over by")
  result = invoke("13987", "--out", tmp_path / "out", "--lut", lut, *TINY)
  assert "--force writes the code anyway" in result.output
  assert not (tmp_path / "out").exists()
  forced = invoke("13987", "--out", tmp_path / "out", "--lut", lut, "--force", *TINY)
  assert forced.exit_code == 0, forced.output
  assert "does not fit" in forced.output and "NOT trained" in forced.output
  assert (tmp_path / "out" / "mnj_model.c").exists()
  report = json.loads((tmp_path / "out" / "deploy.json").read_text())
  assert report["index"] == 13987 and report["network"]["channels"] == 4
