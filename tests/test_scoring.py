import dataclasses
import functools
import gzip
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, scoring, space, store

# Tiny proxies: NTK network C=2, N=1, 8x8 inputs, batch 4; LR on 2 batches of 50 samples.
TINY = scoring.ScoreConfig(proxies=("ntk", "lr", "flops"), repeats=2, ntk_channels=2,
                           ntk_resolution=8, ntk_batch=4, lr_batches=2, lr_batch=50)
TINY_ARGS = ["--batch-size", "4", "--ntk-channels", "2", "--ntk-resolution", "8",
             "--lr-samples", "2x50", "--no-progress", "--repeats", "2"]


@functools.cache
def _scorer(config, cells_per_step):
  """One scorer per (configuration, step) in this worker: each compiles its program once, and
  the exact NTK's program alone takes 15-25 s to compile on the 2-core CPU."""
  return scoring.Scorer(config, cells_per_step=cells_per_step)


def _score(indices, config=TINY, cells_per_step=1, seed=0):
  scorer = _scorer(config, cells_per_step)
  rows = []
  scoring.score_indices(np.asarray(indices), scorer, seed, rows.extend)
  return rows, scorer


def test_one_compilation_serves_a_whole_run():
  # 5 cells in steps of 2: chunks of 2, 2 and 1 padded to 2 -> one shape, one trace. The trace
  # count is the chunk shape's, whatever the proxies: the linear regions compile in seconds (the
  # exact NTK's vmapped program took ~35 s).
  config = dataclasses.replace(TINY, proxies=("lr", "flops"))
  rows, scorer = _score([0, 1, 2, 3, 1462], config, cells_per_step=2)
  assert [row["index"] for row in rows] == [0, 1, 2, 3, 1462]
  assert scorer.trace_count == 1


def test_vmapped_chunks_equal_one_cell_steps():
  config = dataclasses.replace(TINY, proxies=("ntk", "ntk_fast", "lr", "flops"))
  switch_rows, _ = _score([1, 1462], config, cells_per_step=1)
  vmap_rows, _ = _score([1, 1462], config, cells_per_step=2)
  for a, b in zip(switch_rows, vmap_rows):
    for name in config.proxies:
      assert a[name] == pytest.approx(b[name], rel=1e-4), (a["index"], name)


def test_scores_depend_on_seed_but_not_on_chunk_position():
  scorer = _scorer(TINY, 1)
  first, again, other = [], [], []
  scoring.score_indices(np.asarray([7]), scorer, 0, first.extend)
  scoring.score_indices(np.asarray([3, 7]), scorer, 0, again.extend)
  scoring.score_indices(np.asarray([7]), scorer, 1, other.extend)
  assert first[0]["ntk"] == pytest.approx(again[1]["ntk"], rel=1e-6)
  assert first[0]["ntk"] != pytest.approx(other[0]["ntk"], rel=1e-4)


def test_rows_carry_values_validity_and_analytic_costs():
  rows, _ = _score([1462])
  row = rows[0]
  assert row["arch"] == space.format_arch(space.arch_at(1462))
  assert row["flops"] == pytest.approx(220.11969) and row["flops_valid"]
  assert row["ntk"] > 1 and row["ntk_valid"] and row["lr"] >= 1


def test_config_rejects_unknown_proxy_and_bad_sizes():
  with pytest.raises(ValueError, match="Unknown proxy synflowz"):
    scoring.ScoreConfig(proxies=("ntk", "synflowz"))
  with pytest.raises(ValueError, match="ntk_batch must be at least 2"):
    scoring.ScoreConfig(ntk_batch=1)
  with pytest.raises(ValueError, match="divisible"):
    scoring.ScoreConfig(ntk_resolution=30)


def test_sharded_scoring_equals_single_device(tmp_path):
  # Two host devices must be forced before JAX starts, hence a fresh interpreter. The exact NTK
  # alone (the proxy the SPMD partitioner once got wrong, see scoring.Scorer); 4 cells in chunks
  # of 2, one cell per device (vmapping a chunk is test_vmapped_chunks_equal_one_cell_steps; 4
  # per chunk took 44 s to compile here, 2 took 26 s).
  script = f"""
import json, numpy as np, jax
from micronas_jax import scoring
config = scoring.ScoreConfig.from_dict(json.loads({json.dumps(json.dumps(dict(TINY.to_dict(), repeats=1, proxies=["ntk"])))}))
assert jax.local_device_count() == 2
out = {{}}
for step in (1, 2):
  rows = []
  scoring.score_indices(np.arange(4), scoring.Scorer(config, cells_per_step=step), 0, rows.extend)
  out[step] = [r["ntk"] for r in rows]
print(json.dumps(out))
"""
  # Keeps conftest's XLA flags (tiny networks compile faster unoptimized) beside the device count.
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                       " --xla_force_host_platform_device_count=2").strip()}
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose(out["2"], out["1"], rtol=1e-4)


def _stored_indices(path):
  with sqlite3.connect(path) as db:
    return [row[0] for row in db.execute('SELECT "index" FROM scores')]


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
  # The linear regions alone: each run compiles in seconds (the exact NTK took ~25 s per process),
  # and 600 cells at ~6 ms leave seconds between the first committed row and the run's end.
  out = tmp_path / "s.sqlite"
  cells = 600
  command = [sys.executable, "-m", "micronas_jax.cli", "score", "--indices", f"0:{cells}",
             "--proxies", "lr", "--out", str(out), *TINY_ARGS]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline:
    if out.exists():
      try:
        if len(_stored_indices(out)) >= 1:
          break
      except sqlite3.OperationalError:
        pass  # table not created yet
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  partial = _stored_indices(out)
  assert 1 <= len(partial) < cells
  subprocess.run(command, check=True, capture_output=True, timeout=600)
  stored = _stored_indices(out)
  assert sorted(stored) == list(range(cells))
  table, config = store.read_table(out)
  assert config["lr_batch"] == 50
  expected, _ = _score([0, cells - 1], config=scoring.ScoreConfig.from_dict(config))
  assert table["lr"][0] == pytest.approx(expected[0]["lr"])
  assert table["lr"][cells - 1] == pytest.approx(expected[1]["lr"])


def test_score_command_refuses_a_store_of_another_configuration(tmp_path):
  out = tmp_path / "s.sqlite"
  runner = CliRunner()
  first = runner.invoke(cli.cli, ["score", "--indices", "0:2", "--proxies", "flops,lr",
                                  "--out", str(out), *TINY_ARGS])
  assert first.exit_code == 0, first.output
  second = runner.invoke(cli.cli, ["score", "--indices", "0:2", "--proxies", "flops,lr",
                                   "--out", str(out), *TINY_ARGS[:-2], "--repeats", "3"])
  assert second.exit_code == 2
  assert "another scoring configuration" in second.output and "repeats" in second.output


@pytest.mark.parametrize("args, message", [
    (["--proxies", "ntk,zen"], "Unknown proxy zen"),
    (["--indices", "5:99999"], "leaves [0, 15625)"),
    (["--lr-samples", "3by1000"], "expected BATCHESxSAMPLES"),
    (["--data", "/no/such/dir"], "no such file or directory"),
])
def test_score_command_bad_input_is_one_line_exit_2(tmp_path, args, message):
  result = CliRunner().invoke(cli.cli, ["score", "--out", str(tmp_path / "s.sqlite"), *args])
  assert result.exit_code == 2, result.output
  assert message in result.output and result.output.count("\n") == 1


def test_score_command_reads_npz_images(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
  np.savez(tmp_path / "images.npz", images=images)
  out = tmp_path / "s.sqlite"
  # The linear regions read the images too (crops), and compile in seconds.
  result = CliRunner().invoke(cli.cli, ["score", "--indices", "1462", "--proxies", "lr",
                                        "--data", str(tmp_path / "images.npz"),
                                        "--out", str(out), *TINY_ARGS])
  assert result.exit_code == 0, result.output
  table, config = store.read_table(out)
  assert config["data"] is not None and table["lr_valid"][0] == 1


def test_table_export_writes_csv(tmp_path):
  out = tmp_path / "s.sqlite"
  runner = CliRunner()
  assert runner.invoke(cli.cli, ["score", "--indices", "0:3", "--proxies", "flops,params",
                                 "--out", str(out), "--no-progress"]).exit_code == 0
  result = runner.invoke(cli.cli, ["table", "export", str(out), "--csv", str(tmp_path / "s.csv")])
  assert result.exit_code == 0
  lines = (tmp_path / "s.csv").read_text().splitlines()
  assert len(lines) == 4 and lines[0].startswith("index,arch,seed,config_hash,flops")
  (tmp_path / "s.txt").write_text("not a store")
  bad = runner.invoke(cli.cli, ["table", "export", str(tmp_path / "s.txt"), "--csv", "x.csv"])
  assert bad.exit_code == 2 and "not a micronas-jax score store" in bad.output


def test_read_table_reads_a_csv_export_plain_or_gzipped(tmp_path):
  out = tmp_path / "s.sqlite"
  assert CliRunner().invoke(cli.cli, ["score", "--indices", "7,3,5", "--proxies", "flops,params",
                                      "--out", str(out), "--no-progress"]).exit_code == 0
  store.export_csv(out, tmp_path / "s.csv")
  with open(tmp_path / "s.csv", "rb") as plain, gzip.open(tmp_path / "s.csv.gz", "wb") as packed:
    packed.write(plain.read())
  expected, _ = store.read_table(out)
  for path in (tmp_path / "s.csv", tmp_path / "s.csv.gz"):
    table, config = store.read_table(path)
    assert config == {"proxies": ["flops", "params"]}  # the columns with a _valid partner
    assert table["index"].tolist() == [3, 5, 7]
    np.testing.assert_allclose(table["flops"], expected["flops"].astype(float))
    assert table["arch"].tolist() == expected["arch"].tolist()
  (tmp_path / "bad.csv").write_text("index,flops\n1,2\n")
  with pytest.raises(store.StoreError, match="needs index, arch and seed"):
    store.read_table(tmp_path / "bad.csv")


@pytest.mark.parametrize("target, message", [
    ("s.sqlite", "would overwrite STORE"), (".", "is a directory"),
    ("s.sqlite/s.csv", "is not a directory"), ("", "give exactly one of --csv FILE")])
def test_table_export_refuses_a_target_that_would_lose_data(tmp_path, target, message):
  out = tmp_path / "s.sqlite"
  runner = CliRunner()
  assert runner.invoke(cli.cli, ["score", "--indices", "0:3", "--proxies", "flops,params",
                                 "--out", str(out), "--no-progress"]).exit_code == 0
  before = out.read_bytes()
  result = runner.invoke(cli.cli, ["table", "export", str(out), "--csv",
                                   str(tmp_path / target) if target else ""])
  assert result.exit_code == 2 and result.output.startswith("Error:"), result.output
  assert result.output.strip().count("\n") == 0 and message in result.output
  assert out.read_bytes() == before and store.read_table(out)[0]["index"].tolist() == [0, 1, 2]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]  # nothing half-written


def test_a_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
  out = tmp_path / "s.sqlite"
  assert CliRunner().invoke(cli.cli, ["score", "--indices", "0:3", "--proxies", "flops,params",
                                      "--out", str(out), "--no-progress"]).exit_code == 0
  (tmp_path / "s.csv").write_text("the old export\n")

  def failing_writer(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(store.csv, "writer", failing_writer)
  result = CliRunner().invoke(cli.cli, ["table", "export", str(out), "--csv",
                                        str(tmp_path / "s.csv")])
  assert result.exit_code == 2 and "cannot write: no space left on the device" in result.output
  assert (tmp_path / "s.csv").read_text() == "the old export\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.sqlite"]


def test_score_out_that_is_not_a_usable_store_is_one_line_and_left_as_it_was(tmp_path):
  import sqlite3
  corrupt = tmp_path / "corrupt.sqlite"
  corrupt.write_bytes(b"this is not a database, but someone's file" * 100)
  other_app = tmp_path / "app.sqlite"
  with sqlite3.connect(other_app) as db:
    db.execute("CREATE TABLE customers (name TEXT)")
    db.execute("INSERT INTO customers VALUES ('ada')")
  db.close()
  snapshots = {path: path.read_bytes() for path in (corrupt, other_app)}
  for out, message in ((corrupt, "not a micronas-jax score store (not an SQLite database)"),
                       (other_app, "not a micronas-jax score store (it holds tables customers)"),
                       (tmp_path, "is a directory"),
                       (corrupt / "s.sqlite", "is not a directory"),
                       ("", "empty output path")):
    result = CliRunner().invoke(cli.cli, ["score", "--indices", "0:2", "--proxies", "flops",
                                          "--out", str(out), "--no-progress"])
    assert result.exit_code == 2 and result.output.startswith("Error:"), (out, result.output)
    assert result.output.strip().count("\n") == 0 and message in result.output, result.output
  for path, content in snapshots.items():
    assert path.read_bytes() == content
  assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite", "corrupt.sqlite"]


def test_reordered_proxies_resume_the_same_store(tmp_path):
  out = tmp_path / "s.sqlite"
  runner = CliRunner()
  first = runner.invoke(cli.cli, ["score", "--indices", "0:2", "--proxies", "flops,params",
                                  "--out", str(out), "--no-progress"])
  assert first.exit_code == 0, first.output
  again = runner.invoke(cli.cli, ["score", "--indices", "0:3", "--proxies", "params,flops",
                                  "--out", str(out), "--no-progress"])
  assert again.exit_code == 0, again.output
  assert "3 cells selected, 2 already in" in again.output
  table, _ = store.read_table(out)
  assert table["index"].tolist() == [0, 1, 2] and len(set(table["config_hash"])) == 1


def test_a_cell_listed_twice_is_one_cell(tmp_path):
  result = CliRunner().invoke(cli.cli, ["score", "--indices", "1,1,1", "--proxies", "flops",
                                        "--out", str(tmp_path / "s.sqlite"), "--no-progress"])
  assert result.exit_code == 0 and "1 cells selected, 0 already in" in result.output
  assert store.read_table(tmp_path / "s.sqlite")[0]["index"].tolist() == [1]


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--repeats", "0"], "--repeats must be positive"),
    (["--zc-batch", "0"], "--zc-batch must be positive")])
def test_configuration_errors_name_the_option(tmp_path, args, message):
  result = CliRunner().invoke(cli.cli, ["score", "--indices", "0", "--out",
                                        str(tmp_path / "s.sqlite"), *args])
  assert result.exit_code == 2 and result.output.count("\n") == 1
  assert result.output.startswith(f"Error: {message}"), result.output
