"""`micronas-jax deploy` through Click: exit codes, one-line errors, nothing written on refusal,
nothing of the user's lost on a redeploy."""
import errno
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, export, paths
from micronas_jax.deploy import api, deploy
from micronas_jax.hardware import latency
from micronas_jax.hardware.emu import machine as emu_machine

TINY = ("--channels", "4", "--cells", "1")
TINY2 = ("--channels", "2", "--cells", "1")
_MISSING = emu_machine.missing()


def invoke(*args):
  return CliRunner().invoke(cli.cli, ["deploy", *[str(a) for a in args]])


def test_a_folder_that_is_not_a_previous_deploy_is_refused_untouched(one_line_error, tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "notes.txt").write_text("mine")
  one_line_error(invoke("13987", "--out", tmp_path / "out", *TINY), "not a previous deploy")
  assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_images_of_the_wrong_shape_are_refused(one_line_error, tmp_path):
  # Other sizes and 1 or 3 channels are resized to the network's input (data's one rule);
  # two channels are no image.
  np.savez(tmp_path / "small.npz", images=np.zeros((4, 16, 16, 2), np.uint8))
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--data", tmp_path / "small.npz",
                        *TINY), "(4, 16, 16, 2), expected [N, H, W, 3]")
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


# --- redeploys: nothing the user made is lost ----------------------------------------------------


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
  """A previous deploy of cell 13987 at C=2, N=1 as the CLI makes it (seed 0, 256 + 256 inputs)."""
  out = tmp_path_factory.mktemp("previous") / "cell"
  deploy(13987, out, channels=2, cells=1, log=lambda _: None)
  return out


@pytest.fixture
def previous(deployed, tmp_path):
  """A copy of the previous deploy, in a folder of its own, to deploy into again."""
  out = tmp_path / "cell"
  shutil.copytree(deployed, out)
  return out


def files_of(folder):
  """Every file under `folder` and its bytes."""
  return {p.relative_to(folder).as_posix(): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file()}


def late_error(result, message):
  """A failure found once the work started: exit 2, and after the progress lines one `Error:`
  line, the last, containing `message`."""
  assert result.exit_code == 2 and "Traceback" not in result.output, result.output
  lines = result.output.strip().splitlines()
  assert lines[-1].startswith("Error:") and message in lines[-1], result.output
  assert sum(line.startswith("Error:") for line in lines) == 1, result.output


def leftovers(folder):
  """What a deploy into `folder` may leave beside it: staging, old folders, the lock."""
  return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_a_redeploy_replaces_deploys_files_and_keeps_the_users(previous):
  (previous / "main.c").write_text("int main(void) { return mnj_run(0, 0); }\n")
  (previous / "app").mkdir()
  (previous / "app" / "notes.txt").write_text("mine")
  before = files_of(previous)
  result = invoke("13987", "--out", previous, "--seed", 1, *TINY2)
  assert result.exit_code == 0, result.output
  assert "kept 2 file(s) deploy did not write: app/notes.txt, main.c" in result.output
  after = files_of(previous)
  assert after["main.c"] == before["main.c"] and after["app/notes.txt"] == b"mine"
  assert after["mnj_model.c"] != before["mnj_model.c"]  # seed 1: other weights
  manifest = json.loads(after["deploy.json"])
  assert manifest["kept"] == ["app/notes.txt", "main.c"]
  assert manifest["sha256"] == {name: hashlib.sha256(data).hexdigest()
                                for name, data in after.items()
                                if name not in ("deploy.json", "main.c", "app/notes.txt")}
  assert leftovers(previous) == []


def test_an_edited_file_of_deploys_is_refused_by_name_until_forced(one_line_error, previous):
  (previous / "README.md").write_text("my notes on this network\n")
  (previous / "main.c").write_text("int main(void) { return 0; }\n")
  before = files_of(previous)
  one_line_error(invoke("13987", "--out", previous, "--seed", 1, *TINY2),
                 "would replace README.md (edited since the last deploy); move them away or "
                 "pass --force")
  assert files_of(previous) == before and leftovers(previous) == []
  forced = invoke("13987", "--out", previous, "--seed", 1, "--force", *TINY2)
  assert forced.exit_code == 0, forced.output
  assert "replaced README.md (edited since the last deploy) (forced)" in forced.output
  after = files_of(previous)
  assert after["main.c"] == before["main.c"] and after["README.md"] != before["README.md"]


def test_a_users_file_where_deploy_now_writes_is_refused(one_line_error, previous):
  manifest = json.loads((previous / "deploy.json").read_text())
  del manifest["sha256"]["Makefile"]  # as if the user had made it and deploy had not
  (previous / "deploy.json").write_text(json.dumps(manifest))
  before = files_of(previous)
  one_line_error(invoke("13987", "--out", previous, *TINY2),
                 "would replace Makefile (not written by deploy)")
  assert files_of(previous) == before and leftovers(previous) == []


def test_an_older_deploy_without_hashes_keeps_other_files_and_refuses_differing_ones(previous):
  # Format 1 recorded only its library's names: a file it wrote is replaced only where this
  # deploy writes it byte for byte the same, since an edit cannot be told apart.
  manifest = json.loads((previous / "deploy.json").read_text())
  manifest["format"] = "micronas-jax-deploy/1"
  del manifest["sha256"]
  (previous / "deploy.json").write_text(json.dumps(manifest))
  (previous / "main.c").write_text("mine")
  result = invoke("13987", "--out", previous, *TINY2)  # the same deploy again: same files
  assert result.exit_code == 0, result.output
  assert (previous / "main.c").read_text() == "mine"
  assert json.loads((previous / "deploy.json").read_text())["format"] == "micronas-jax-deploy/2"
  manifest = json.loads((previous / "deploy.json").read_text())
  manifest["format"] = "micronas-jax-deploy/1"
  del manifest["sha256"]
  (previous / "deploy.json").write_text(json.dumps(manifest))
  before = files_of(previous)
  # Known only once the new files are made: the error follows the progress lines.
  late_error(invoke("13987", "--out", previous, "--seed", 1, *TINY2),
             f"{previous}: this deploy would replace README.md, mnj_model.c, mnj_model.h (not "
             "what deploy writes now, and the older deploy recorded no hash); move them away or "
             "pass --force to replace them")
  assert files_of(previous) == before and leftovers(previous) == []


def test_a_second_deploy_into_a_folder_being_deployed_is_one_line(one_line_error, previous):
  before = files_of(previous)
  with paths.exclusive(previous.resolve()):  # another process's deploy, as far as flock knows
    one_line_error(invoke("13987", "--out", previous, *TINY2),
                   "another process is deploying there")
  assert files_of(previous) == before


def test_a_full_disk_leaves_the_previous_deploy_and_no_staging_folder(previous, monkeypatch):
  write = api.codegen.write

  def write_then_fill_the_disk(folder, *args):
    write(folder, *args)
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(api.codegen, "write", write_then_fill_the_disk)
  before = files_of(previous)
  late_error(invoke("13987", "--out", previous, "--seed", 1, *TINY2),
             f"{previous}: cannot write: no space left on the device")
  assert files_of(previous) == before and leftovers(previous) == []


def test_a_failed_final_rename_puts_the_previous_deploy_back(previous, monkeypatch):
  replace = os.replace

  def refuse_the_staging_folder(source, target):
    if ".deploy-" in str(source):
      raise OSError(errno.EROFS, "Read-only file system")
    replace(source, target)

  monkeypatch.setattr(api.os, "replace", refuse_the_staging_folder)
  before = files_of(previous)
  late_error(invoke("13987", "--out", previous, "--seed", 1, *TINY2),
             "cannot write: read-only file system")
  assert files_of(previous) == before and leftovers(previous) == []


def test_a_killed_deploy_is_cleaned_up_by_the_next(previous):
  # Killed between its two renames: the previous deploy waits beside, its staging folder too.
  old = previous.parent / ".cell.old-1"
  os.replace(previous, old)
  (previous.parent / ".cell.deploy-1").mkdir()
  (old / "main.c").write_text("mine")
  result = invoke("13987", "--out", previous, *TINY2)
  assert result.exit_code == 0, result.output
  assert "restored" in result.output and (previous / "main.c").read_text() == "mine"
  assert leftovers(previous) == []


# --- refusals before the work, and honest reports -----------------------------------------------


def test_a_network_over_the_board_is_refused_before_its_weights_are_made(one_line_error,
                                                                         tmp_path, monkeypatch):
  board = latency.to_dict(latency.board("stm32f746-emu"))
  board["memory"]["flash_bytes"] = 4096
  lut = tmp_path / "small.json"
  lut.write_text(json.dumps(board))

  def no_weights(*args):
    raise AssertionError("weights made before the fit check")

  monkeypatch.setattr(export, "cell_variables", no_weights)
  one_line_error(invoke("1462", "--out", tmp_path / "out", "--lut", lut), "does not fit")
  assert not (tmp_path / "out").exists()


def test_a_seed_beyond_32_bits_is_a_usage_error(tmp_path):
  result = invoke("13987", "--out", tmp_path / "out", "--seed", 99999999999999999999, *TINY2)
  assert result.exit_code == 2 and "Traceback" not in result.output
  assert result.output.strip().splitlines()[-1].startswith("Error: Invalid value for '--seed'")
  assert not (tmp_path / "out").exists()


def test_a_checkpoint_with_nan_weights_is_one_line(one_line_error, tmp_path):
  import jax

  from micronas_jax import model, space, train
  from micronas_jax.network import NetworkConfig

  config = NetworkConfig(channels=2, cells_per_stage=1)
  shapes = jax.eval_shape(lambda key: model.init(key, config), jax.random.PRNGKey(0))
  variables = jax.tree_util.tree_map(lambda leaf: np.full(leaf.shape, np.nan, leaf.dtype), shapes)
  meta = train.run_metadata(space.arch_at(13987), config, train.TrainConfig(epochs=1), "none")
  run = tmp_path / "run"
  run.mkdir()
  train.save_checkpoint(run / train.CHECKPOINT_NAME,
                        train.TrainState(variables["params"], variables["batch_stats"], {}), 1,
                        meta, [])
  one_line_error(invoke("13987", "--out", tmp_path / "out", "--checkpoint", run),
                 "NaN or infinite")
  assert not (tmp_path / "out").exists()


def test_without_verify_the_report_claims_no_checks(previous):
  result = invoke("13987", "--out", previous, *TINY2)
  assert result.exit_code == 0, result.output
  assert result.output.strip().splitlines()[-1] == "checks: none run (--verify runs them)"
  assert "passed" not in result.output


@pytest.mark.skipif(_MISSING is not None, reason=f"emulator unavailable: {_MISSING}")
def test_verify_lists_a_skipped_check_as_skipped_with_the_reason(previous):
  result = invoke("13987", "--out", previous, "--verify", *TINY2)
  assert result.exit_code == 0, result.output
  assert result.output.strip().splitlines()[-1] == (
      "checks: 2 passed, 1 skipped (instructions: the LUT counts another network: C=2 "
      "(LUT: 16), N=1 (LUT: 5))")
  assert "checks passed" not in result.output
  checks = json.loads((previous / "deploy.json").read_text())["checks"]
  assert [checks[name]["status"] for name in ("bit-exact", "agreement", "instructions")] == [
      "passed", "passed", "skipped"]
