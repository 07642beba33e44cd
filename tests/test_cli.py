import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from micronas_jax import cli, compilation_cache

ALL_CONV3X3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
               "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")


def invoke(*args):
  return CliRunner().invoke(cli.cli, list(args))


def test_space_info_json_reports_index_1462():
  result = invoke("space", "info", "1462", "--json")
  assert result.exit_code == 0, result.output
  info = json.loads(result.output)
  assert info["arch"] == ALL_CONV3X3
  assert info["params_m"] == 1.531546
  assert round(info["flops_m"], 2) == 220.12
  assert info["ops"] == ["nor_conv_3x3"] * 6


def test_space_info_accepts_arch_string():
  result = invoke("space", "info", ALL_CONV3X3)
  assert result.exit_code == 0
  assert "index   1462" in result.output and "220.12 M" in result.output


@pytest.mark.parametrize("bad, message", [
    ("|nor_conv_3x3~0|", "1 nodes, expected 3"),
    (ALL_CONV3X3.replace("nor_conv_3x3~2", "sep_conv_3x3~2"), "unknown op 'sep_conv_3x3'"),
    (ALL_CONV3X3.replace("|nor_conv_3x3~2|", "|"), "2 input edges, expected 3"),
    ("15625", "out of range"),
    ("-5", "benchmark index -5 out of range"),  # an argument, not an unknown option needing --
    ("hello", "neither a benchmark index nor an arch string"),
])
def test_space_info_bad_input_is_one_line_and_exit_2(bad, message):
  result = invoke("space", "info", bad)
  assert result.exit_code == 2
  assert message in result.output
  assert result.output.strip().count("\n") == 0 and result.output.startswith("Error:")
  assert "Traceback" not in result.output


def test_space_list_writes_all_cells(tmp_path):
  out = tmp_path / "space.csv"
  result = invoke("space", "list", "--out", str(out))
  assert result.exit_code == 0
  rows = list(csv.DictReader(io.StringIO(out.read_text())))
  assert len(rows) == 15625
  assert rows[1462]["arch"] == ALL_CONV3X3 and rows[1462]["params_m"] == "1.531546"


def test_compilation_cache_is_on_by_default_and_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.delenv("MICRONAS_JAX_CACHE", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.cache_dir() == tmp_path / "micronas-jax" / "xla"
  monkeypatch.setenv("MICRONAS_JAX_CACHE", "off")
  assert compilation_cache.cache_dir() is None
  monkeypatch.setenv("MICRONAS_JAX_CACHE", str(tmp_path / "xla"))
  assert compilation_cache.cache_dir() == tmp_path / "xla"
  monkeypatch.setenv("MICRONAS_JAX_CACHE", "on")
  assert compilation_cache.cache_dir() == tmp_path / "micronas-jax" / "xla"


# A process that compiles one program with the cache in `sys.argv[1]` (every program kept) and
# prints its result's bits and the cache's use.
CACHED_PROGRAM = """
import json, os, sys
os.environ.update(MICRONAS_JAX_CACHE=sys.argv[1], MICRONAS_JAX_CACHE_MIN_SECONDS="0")
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
import jax, jax.numpy as jnp
from micronas_jax import compilation_cache
compilation_cache.enable(on=sys.argv[2] == "on")
x = jnp.linspace(0.0, 1.0, 4096).reshape(64, 64)
y = jax.jit(lambda a: jnp.tanh(a @ a.T).sum(axis=0))(x)
print(json.dumps({"bits": y.tobytes().hex(), "usage": compilation_cache.usage()}))
"""


def _cached_run(folder, on="on") -> dict:
  done = subprocess.run([sys.executable, "-c", CACHED_PROGRAM, str(folder), on],
                        capture_output=True, text=True, check=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_reads_the_compiled_program_back(tmp_path):
  cold, warm = _cached_run(tmp_path / "xla"), _cached_run(tmp_path / "xla")
  assert cold["usage"]["read"] == 0 and cold["usage"]["compiled"] >= 1
  assert warm["usage"]["read"] >= 1 and warm["usage"]["compiled"] < cold["usage"]["compiled"]
  assert warm["bits"] == cold["bits"]  # the program read back computes the same bits
  assert any((tmp_path / "xla").iterdir())
  off = _cached_run(tmp_path / "xla", on="off")
  assert off["usage"] is None and off["bits"] == cold["bits"]


# --- train (issue 9) ---------------------------------------------------------------------------

TINY_TRAIN = ("--channels", "2", "--cells", "1", "--epochs", "3", "--batch-size", "8", "--lr",
              "0.05", "--no-progress")


def _tiny_npz(path, count=32):
  """Two separable classes (dark 0, bright 1) as an .npz with a train and a test split."""
  import numpy as np

  rng = np.random.default_rng(0)
  labels = np.arange(count, dtype=np.int32) % 2
  base = np.where(labels == 1, 180, 50)[:, None, None, None]
  images = (base + rng.integers(-40, 40, (count, 32, 32, 3))).clip(0, 255).astype(np.uint8)
  np.savez(path, images=images, labels=labels, test_images=images[:16], test_labels=labels[:16])
  return path


def test_train_then_rerun_resumes_and_reports_test_accuracy(tmp_path):
  npz, out = _tiny_npz(tmp_path / "tiny.npz"), tmp_path / "run"
  first = invoke("train", "1462", "--data", str(npz), "--out", str(out), "--stop-after", "1",
                 *TINY_TRAIN)
  assert first.exit_code == 0, first.output
  assert "stopped after epoch 1 of 3" in first.output
  second = invoke("train", "1462", "--data", str(npz), "--out", str(out), *TINY_TRAIN)
  assert second.exit_code == 0, second.output
  assert "resuming from" in second.output and "after epoch 1 of 3" in second.output
  assert "test accuracy" in second.output and (out / "result.json").exists()
  other = invoke("train", "0", "--data", str(npz), "--out", str(out), *TINY_TRAIN)
  assert other.exit_code == 2
  assert other.output.startswith("Error:") and "another run (arch: checkpoint" in other.output
  assert other.output.strip().count("\n") == 0


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent", "no such file or directory"),
    (lambda tmp: tmp, "not a CIFAR-10 python directory (missing data_batch_1"),
    (lambda tmp: (tmp / "x.npz").write_bytes(b"not a zip") and tmp / "x.npz",
     "not a readable .npz"),
])
def test_train_bad_data_is_one_line_and_exit_2(tmp_path, make, message):
  result = invoke("train", "1462", "--data", str(make(tmp_path)), "--out", str(tmp_path / "r"),
                  *TINY_TRAIN)
  assert result.exit_code == 2, result.output
  assert message in result.output and result.output.startswith("Error:")
  assert result.output.strip().count("\n") == 0


def test_train_malformed_cifar_batch_is_exit_2(tmp_path):
  for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"):
    (tmp_path / name).write_bytes(b"garbage")
  result = invoke("train", "1462", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                  *TINY_TRAIN)
  assert result.exit_code == 2 and "not a CIFAR-10 python batch" in result.output
  assert result.output.strip().count("\n") == 0


@pytest.mark.parametrize("target, message", [
    ("file/x.csv", "is not a directory"), (".", "is a directory"), ("", "empty output path")])
def test_space_list_to_a_path_it_cannot_write_is_one_line(tmp_path, target, message):
  (tmp_path / "file").write_text("kept")
  result = invoke("space", "list", "--out", str(tmp_path / target) if target else "")
  assert result.exit_code == 2 and result.output.startswith("Error: --out")
  assert result.output.strip().count("\n") == 0 and message in result.output, result.output
  assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_space_list_makes_the_missing_folders_of_its_output(tmp_path):
  # The one rule for missing output folders: made when the output is written.
  result = invoke("space", "list", "--out", str(tmp_path / "new" / "dir" / "cells.csv"))
  assert result.exit_code == 0, result.output
  assert (tmp_path / "new" / "dir" / "cells.csv").read_text().count("\n") == 15626


def test_train_refuses_a_nan_learning_rate_and_stops_on_divergence(tmp_path):
  npz, out = _tiny_npz(tmp_path / "tiny.npz"), tmp_path / "run"
  # TINY_TRAIN sets --lr 0.05; the later --lr wins.
  nan = invoke("train", "1462", "--data", str(npz), "--out", str(out), *TINY_TRAIN, "--lr", "nan")
  assert nan.exit_code == 2 and nan.output.startswith("Error: --lr must be a non-negative number")
  assert nan.output.strip().count("\n") == 0 and not out.exists()
  # A learning rate that overflows the weights in the first epoch.
  diverged = invoke("train", "1462", "--data", str(npz), "--out", str(out), *TINY_TRAIN,
                    "--lr", "1e30")
  assert diverged.exit_code == 2 and "training diverged in epoch 1" in diverged.output
  assert diverged.output.strip().splitlines()[-1].startswith("Error:")
  assert not (out / "checkpoint.msgpack").exists()  # no NaN checkpoint written


def test_train_out_that_is_a_file_or_empty_is_one_line(tmp_path):
  npz = _tiny_npz(tmp_path / "tiny.npz")
  (tmp_path / "file").write_text("mine")
  for out, message in ((tmp_path / "file", "is a file, not a folder"),
                       ("", "empty output path")):
    result = invoke("train", "1462", "--data", str(npz), "--out", str(out), *TINY_TRAIN)
    assert result.exit_code == 2 and result.output.startswith("Error:"), result.output
    assert message in result.output and result.output.strip().count("\n") == 0
  assert (tmp_path / "file").read_text() == "mine"


def test_ctrl_c_ends_a_search_promptly_with_status_130(tmp_path):
  import signal
  import subprocess
  import sys
  import time
  out = tmp_path / "r.json"
  process = subprocess.Popen(
      [sys.executable, "-m", "micronas_jax.cli", "search", "--no-progress", "--budget", "60",
       "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  # The search's first line says it is compiling; a loaded machine may take seconds to get there.
  first = process.stderr.readline()
  assert b"compiling" in first, first
  time.sleep(3)  # inside the search: tracing or compiling the indicators
  sent = time.monotonic()
  process.send_signal(signal.SIGINT)
  _, err = process.communicate(timeout=60)
  waited = time.monotonic() - sent
  err = first + err
  assert process.returncode == 130, err.decode()
  assert err.decode().strip().endswith("interrupted") and "Traceback" not in err.decode()
  assert waited < 30, waited  # the grace period is 2 s; a compile would otherwise run on
  assert not out.exists() and list(tmp_path.iterdir()) == []


def test_library_messages_name_the_options_the_user_typed():
  # The library's errors carry the parameters they mention; the CLI spells each as its option
  # and reads no message back.
  from micronas_jax.commands.common import CLI_NAMES, cli_text
  from micronas_jax.errors import Param, ParamError
  from micronas_jax.search import objective
  error = ParamError(Param("method", "table"), " needs ", Param("scores_path"))
  assert str(error) == "method=table needs scores_path"
  assert cli_text(error) == "--method table needs --scores" and error.params == (
      "method", "scores_path")
  assert CLI_NAMES(Param("fast", True)) == "--fast"
  assert CLI_NAMES(Param("ntk_batch")) == "--batch-size"
  assert CLI_NAMES(Param("cells_per_stage")) == "cells_per_stage"  # no option: the library's
  # Words that happen to be option names are text, not mentions: they stay as written.
  assert cli_text(ParamError("a cell with 5 cells per stage")) == "a cell with 5 cells per stage"
  with pytest.raises(objective.ObjectiveError) as caught:
    objective.Limits(max_latency_ms=-1.0)
  assert str(caught.value) == "max_latency_ms must be a positive number, got -1.0"
  assert cli_text(caught.value) == "--max-latency-ms must be a positive number, got -1.0"
  wrapped = objective.ObjectiveError("among 3 cells: ", caught.value)
  assert cli_text(wrapped) == "among 3 cells: --max-latency-ms must be a positive number, got -1.0"
