"""The one output guard (`paths.check_outputs`, called by every command through
`commands.common.check_paths`): no output may overwrite an input or another output, however it
is spelled; and the fault-injection suite: every writer meets a read-only target, a full disk and
a concurrent writer with one line and leaves every input byte-identical."""
import errno
import os
import pathlib
import sqlite3

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, paths, store

RUN = "run"  # a checkpoint run folder: checkpoint.msgpack and result.json


def invoke(*args):
  return CliRunner().invoke(cli.cli, [str(a) for a in args])


@pytest.fixture()
def inputs(tmp_path, monkeypatch):
  """A folder of inputs each command can be pointed at (contents never read: the guard runs
  first), with tmp_path as the working directory."""
  monkeypatch.chdir(tmp_path)
  for name in ("s.sqlite", "e.sqlite", "bench.csv", "tx.npz", "bx.json", "P.csv", "T.csv",
               "cells.txt"):
    (tmp_path / name).write_bytes(b"precious " + name.encode())
  (tmp_path / RUN).mkdir()
  for name in ("checkpoint.msgpack", "result.json"):
    (tmp_path / RUN / name).write_bytes(b"trained " + name.encode())
  (tmp_path / "cell").mkdir()
  (tmp_path / "cell" / "deploy.json").write_text('{"format": "micronas-jax-deploy/2"}')
  return tmp_path


def snapshot(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file()}


# (arguments, the output option, the input option it names): every (command, output, input) pair
# in which an output can name an input.
CLASHES = [
    (["search", "--method", "table", "--scores", "s.sqlite", "--fast", "--out", "s.sqlite"],
     "--out", "--scores"),
    (["search", "--method", "table", "--scores", "s.sqlite", "--plot", "s.sqlite"],
     "--plot", "--scores"),
    (["search", "--method", "exhaustive", "--scores", "e.sqlite", "--out", "e.sqlite"],
     "--scores", "--out"),
    (["search", "--method", "exhaustive", "--scores", "e.sqlite", "--plot", "e.sqlite"],
     "--scores", "--plot"),
    (["search", "--benchmark", "bench.csv", "--out", "bench.csv"], "--out", "--benchmark"),
    (["search", "--data", "tx.npz", "--out", "tx.npz"], "--out", "--data"),
    (["search", "--lut", "bx.json", "--out", "bx.json"], "--out", "--lut"),
    (["search", "--method", "table", "--scores", "s.sqlite", "--out", "r.png", "--plot", "r.png"],
     "--out", "--plot"),
    (["export", "1462", "--checkpoint", RUN, "--onnx", f"{RUN}/checkpoint.msgpack"],
     "--onnx", "--checkpoint"),
    (["export", "1462", "--checkpoint", RUN, "--onnx", f"{RUN}/result.json"],
     "--onnx", "--checkpoint"),
    (["export", "1462", "--checkpoint", f"{RUN}/checkpoint.msgpack", "--onnx",
      f"{RUN}/checkpoint.msgpack"], "--onnx", "--checkpoint"),
    (["train", "1462", "--data", f"{RUN}/checkpoint.msgpack", "--out", RUN], "--out", "--data"),
    (["lut", "build", "P.csv", "--device", "x", "--unit", "ms", "--out", "P.csv"],
     "--out", "WORKSHEET"),
    (["lut", "fit", "T.csv", "--out", "T.csv"], "--out", "TIMINGS"),
    (["score", "--archs", "cells.txt", "--out", "cells.txt"], "--out", "--archs"),
    (["score", "--data", "tx.npz", "--out", "tx.npz"], "--out", "--data"),
    (["table", "export", "s.sqlite", "--csv", "s.sqlite"], "--csv", "STORE"),
    (["table", "export", "s.sqlite", "--parquet", "s.sqlite"], "--parquet", "STORE"),
    (["deploy", "13987", "--data", "cell/deploy.json", "--out", "cell"], "--out", "--data"),
    (["deploy", "13987", "--lut", "cell/deploy.json", "--out", "cell"], "--out", "--lut"),
    (["deploy", "13987", "--checkpoint", "cell/deploy.json", "--out", "cell"],
     "--out", "--checkpoint"),
]


@pytest.mark.parametrize("args, output, source", CLASHES,
                         ids=[" ".join(case[0][:2]) + f" {case[1]}={case[2]}" for case in CLASHES])
def test_an_output_naming_an_input_is_refused_before_any_work(inputs, one_line_error, args,
                                                              output, source):
  before = snapshot(inputs)
  result = invoke(*args)
  one_line_error(result, output)
  assert source in result.output and ("would overwrite" in result.output
                                      or "name the same file" in result.output)
  assert snapshot(inputs) == before


@pytest.mark.parametrize("spelling", ["relative", "dotdot", "absolute", "symlink", "hardlink"])
def test_every_spelling_of_an_input_is_the_same_file(inputs, one_line_error, spelling):
  (inputs / "sub").mkdir()
  target = {"relative": "./bench.csv", "dotdot": "sub/../bench.csv",
            "absolute": str(inputs / "bench.csv"), "symlink": "link.csv",
            "hardlink": "sub/hard.csv"}[spelling]
  if spelling == "symlink":
    os.symlink(inputs / "bench.csv", inputs / "link.csv")
  if spelling == "hardlink":
    os.link(inputs / "bench.csv", inputs / "sub" / "hard.csv")
  before = snapshot(inputs)
  one_line_error(invoke("search", "--benchmark", "bench.csv", "--out", target),
                 "would overwrite --benchmark bench.csv")
  assert snapshot(inputs) == before


def test_a_hard_link_to_a_file_inside_an_input_folder_is_refused(inputs, one_line_error):
  os.link(inputs / RUN / "checkpoint.msgpack", inputs / "elsewhere.onnx")
  one_line_error(invoke("export", "1462", "--checkpoint", RUN, "--onnx", "elsewhere.onnx"),
                 "would overwrite --checkpoint run")


def test_a_new_file_beside_an_input_is_not_a_clash(tmp_path):
  # Re-exporting into the run folder is fine: only the run's own files are its inputs.
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "checkpoint.msgpack").write_bytes(b"x")
  (tmp_path / "run" / "cell.onnx").write_bytes(b"old export")
  paths.check_outputs([paths.Output("--onnx", tmp_path / "run" / "cell.onnx")],
                      [paths.Input("--checkpoint", tmp_path / "run", ("checkpoint.msgpack",))])


def test_an_existing_file_inside_an_input_folder_is_a_clash(tmp_path):
  (tmp_path / "images" / "cat").mkdir(parents=True)
  (tmp_path / "images" / "cat" / "1.png").write_bytes(b"png")
  with pytest.raises(paths.PathError, match="would overwrite --data"):
    paths.check_outputs([paths.Output("--out", tmp_path / "images" / "cat" / "1.png")],
                        [paths.Input("--data", tmp_path / "images")])


def test_every_command_that_writes_calls_the_guard():
  # One mechanism: each command module's writers go through check_paths (this test fails when a
  # new command writes without declaring its paths).
  import inspect

  from micronas_jax.commands import deploy, hardware, scores, search, training
  writers = [cli.space_list, hardware.lut_worksheet, hardware.lut_build, hardware.lut_fit,
             hardware.lut_profile, hardware.lut_firmware, scores.score, scores.table_export,
             search.search, training.train_command, training.export_command,
             deploy.deploy_command]
  for command in writers:
    assert "check_paths(" in inspect.getsource(command.callback), command.name


# --- fault injection -------------------------------------------------------------------------


def _fail_fsync(code):
  def fsync(fd):
    raise OSError(code, os.strerror(code))
  return fsync


WRITERS = {  # a command and the output it writes, run in `inputs`
    "space list": (["space", "list", "--out", "cells.csv"], "cells.csv"),
    "lut worksheet": (["lut", "worksheet", "--out", "plan.csv"], "plan.csv"),
}


@pytest.mark.parametrize("name", list(WRITERS))
@pytest.mark.parametrize("code, message", [
    (errno.ENOSPC, "no space left on the device"), (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied")])
def test_a_failed_write_is_one_line_and_keeps_the_old_file(inputs, one_line_error, monkeypatch,
                                                           name, code, message):
  args, out = WRITERS[name]
  (inputs / out).write_bytes(b"the old output")
  before = snapshot(inputs)
  monkeypatch.setattr(paths.os, "fsync", _fail_fsync(code))
  one_line_error(invoke(*args), f"{out}: cannot write: {message}; nothing was written there")
  assert snapshot(inputs) == before  # no temporary or lock file left, the old one whole


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_concurrent_writer_is_one_line(inputs, one_line_error, name):
  args, out = WRITERS[name]
  with paths.exclusive(inputs / out):
    one_line_error(invoke(*args), f"{out}: cannot write: another process is writing it")
  assert not (inputs / out).exists()


def test_a_read_only_folder_is_refused_before_any_work(read_only_folder, one_line_error):
  one_line_error(invoke("space", "list", "--out", read_only_folder / "x.csv"), "not writable")


def _score(out, indices):
  return invoke("score", "--indices", indices, "--proxies", "flops,params", "--out", out,
                "--no-progress")


def test_a_full_disk_while_scoring_is_one_line_and_keeps_the_committed_rows(
    tmp_path, one_line_error, monkeypatch):
  out = tmp_path / "s.sqlite"
  assert _score(out, "0:3").exit_code == 0
  opened = store.ScoreStore._open

  def open_on_a_full_disk(self, config):
    opened(self, config)
    # SQLite's own limit on the file's pages: the next write fails with SQLITE_FULL, as on a
    # full disk.
    pages = self._db.execute("PRAGMA page_count").fetchone()[0]
    self._db.execute(f"PRAGMA max_page_count = {pages}")

  monkeypatch.setattr(store.ScoreStore, "_open", open_on_a_full_disk)
  result = _score(out, "0:2000")
  assert result.exit_code == 2, result.output
  last = result.output.strip().splitlines()[-1]
  assert last.startswith("Error:") and "cannot write" in last and "full" in last, last
  assert "Traceback" not in result.output
  stored = store.read_table(out)[0]["index"].tolist()
  # The rows of before, and every chunk committed before the disk filled, are kept.
  assert 3 <= len(stored) < 2000 and stored == list(range(len(stored)))


def test_an_interrupted_first_score_leaves_no_store(tmp_path, monkeypatch):
  from micronas_jax import scoring

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(scoring, "score_indices", interrupted)
  out = tmp_path / "s.sqlite"
  with pytest.raises(KeyboardInterrupt):
    scoring.score_into_store(scoring.ScoreConfig(proxies=("flops",)), np.arange(3), 0, str(out))
  assert list(tmp_path.iterdir()) == []
  # A store that already held rows keeps them.
  monkeypatch.undo()
  scoring.score_into_store(scoring.ScoreConfig(proxies=("flops",)), np.arange(3), 0, str(out))
  monkeypatch.setattr(scoring, "score_indices", interrupted)
  with pytest.raises(KeyboardInterrupt):
    scoring.score_into_store(scoring.ScoreConfig(proxies=("flops",)), np.arange(9), 0, str(out))
  assert store.read_table(out)[0]["index"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("damage, message", [
    ("directory", "is a directory, not a score store"),
    ("truncated", "damaged or truncated"), ("text", "not a micronas-jax score store")])
def test_table_export_names_what_is_wrong_with_the_store(tmp_path, one_line_error, damage,
                                                         message):
  source = tmp_path / "s.sqlite"
  if damage == "directory":
    source.mkdir()
  elif damage == "text":
    source.write_text("index,arch\n")
  else:
    assert _score(source, "0:200").exit_code == 0
    with sqlite3.connect(source) as db:
      db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = source.read_bytes()
    source.write_bytes(data[:len(data) // 2])
  one_line_error(invoke("table", "export", source, "--csv", tmp_path / "s.csv"), message)
  assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("args, made", [
    (["score", "--indices", "0:2", "--proxies", "flops", "--no-progress", "--out",
      "new/a/s.sqlite"], "new/a/s.sqlite"),
    (["space", "list", "--out", "new/b/cells.csv"], "new/b/cells.csv"),
    (["lut", "worksheet", "--out", "new/c/plan.csv"], "new/c/plan.csv"),
])
def test_missing_output_folders_are_made_by_every_command(tmp_path, monkeypatch, args, made):
  # The one rule for missing output folders: made when the output is written.
  monkeypatch.chdir(tmp_path)
  result = invoke(*args)
  assert result.exit_code == 0, result.output
  assert (tmp_path / made).is_file()
