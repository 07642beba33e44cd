"""Values checked where they enter: each bad value is one line (exit 2) before any work, an
option of another search method is refused by name, a mistyped option gets Click's "Did you
mean", and reports say what they did not check."""
import json

import flax.serialization
import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, data, graph, space, train
from micronas_jax.search import run as search_run


def invoke(*args):
  return CliRunner().invoke(cli.cli, [str(a) for a in args])


def _npz(path, count=8, names=("images", "labels")):
  images = np.random.default_rng(0).integers(0, 255, (count, 32, 32, 3)).astype(np.uint8)
  np.savez(path, **{names[0]: images, names[1]: np.arange(count) % 2})
  return path


@pytest.mark.parametrize("args, message", [
    (["train", "1462", "--momentum", "5"], "--momentum must lie in [0, 1), got 5.0"),
    (["train", "1462", "--momentum", "1"], "--momentum must lie in [0, 1)"),
    (["train", "1462", "--lr", "nan"], "--lr must be a non-negative number"),
    (["score", "--indices", "0:2", "--proxies", "flops", "--cells-per-step", "0"],
     "--cells-per-step must be positive, got 0"),
    (["search", "--budget", "99999999999"], "exceeds the 15625 cells of the space"),
    (["export", "1462", "--tolerance", "-1"], "--tolerance must be a finite non-negative"),
    (["export", "1462", "--tolerance", "nan"], "--tolerance must be a finite non-negative"),
])
def test_a_bad_value_is_one_line_before_any_work(tmp_path, one_line_error, args, message):
  extra = {"train": lambda: ["--data", _npz(tmp_path / "d.npz"), "--out", tmp_path / "run"],
           "score": lambda: ["--out", tmp_path / "s.sqlite", "--no-progress"],
           "export": lambda: ["--onnx", tmp_path / "c.onnx"],
           "search": lambda: ["--no-progress"]}[args[0]]()
  one_line_error(invoke(*args, *extra), message)
  assert sorted(p.name for p in tmp_path.iterdir()) == (["d.npz"] if args[0] == "train" else [])


@pytest.mark.parametrize("command", [
    ["score", "--indices", "0:2", "--proxies", "flops"], ["search"],
    ["train", "1462", "--data", "d.npz", "--out", "run"], ["export", "1462", "--onnx", "c.onnx"],
    ["deploy", "13987", "--out", "cell"], ["lut", "profile", "--out", "x.json"]])
def test_a_seed_beyond_32_bits_is_a_usage_error_not_a_traceback(tmp_path, monkeypatch, command):
  monkeypatch.chdir(tmp_path)
  result = invoke(*command, "--seed", "99999999999999999999")
  assert result.exit_code == 2 and "Traceback" not in result.output
  assert "Invalid value for '--seed'" in result.output.strip().splitlines()[-1], result.output


@pytest.mark.parametrize("args, message", [
    (["--method", "table", "--scores", "s.sqlite", "--repeats", "5"],
     "--repeats does not apply to --method table: only to --method prune or --method exhaustive"),
    (["--method", "table", "--scores", "s.sqlite", "--seed", "3"],
     "--seed does not apply to --method table"),
    (["--method", "prune", "--budget", "10"], "--budget does not apply to --method prune"),
    (["--method", "prune", "--population", "10"], "--population does not apply"),
    (["--batch-size", "64"], "--batch-size does not apply to --method evolution"),
    (["--w-latency", "0.2"], "--w-latency does not apply to --method evolution"),
    (["--method", "table", "--scores", "s.sqlite", "--data", "d.npz"],
     "--data does not apply to --method table"),
    (["--plot", "p.png"], "--plot does not apply to --method evolution"),
])
def test_an_option_of_another_search_method_is_refused_by_name(tmp_path, monkeypatch,
                                                               one_line_error, args, message):
  monkeypatch.chdir(tmp_path)
  one_line_error(invoke("search", *args, "--no-progress"), message)
  assert list(tmp_path.iterdir()) == []


def test_every_search_option_belongs_to_some_method():
  import dataclasses
  fields = set(search_run.OPTIONAL_FIELDS)
  option_fields = {f.name for kind in search_run.METHOD_TYPES.values()
                   for f in dataclasses.fields(kind)}
  assert fields <= (option_fields - {"weights"}) | {"seed", "data_path", "w_flops", "w_latency",
                                                    "meco"}
  for method, kind in search_run.METHOD_TYPES.items():
    assert search_run.method_name(search_run.method_options(method, scores_path="s")) == method
  for method in search_run.METHODS:
    search_run.check_method_options(method, search_run.METHOD_FIELDS[method])


@pytest.mark.parametrize("command", [
    ["hw", "1462", "--boards", "x"], ["train", "1462", "--epoch", "3"],
    ["export", "1462", "--onnx-path", "x"], ["deploy", "1462", "--outdir", "x"],
    ["space", "info", "--jsn", "1462"], ["search", "--budgt", "3"], ["score", "--prox", "lr"]])
def test_a_mistyped_option_gets_did_you_mean_in_every_command(command):
  result = invoke(*command)
  assert result.exit_code == 2
  last = result.output.strip().splitlines()[-1]
  assert last.startswith("Error: No such option '--"), result.output
  assert next(a for a in command if a.startswith("--")) in last


def test_a_negative_index_is_still_a_range_error(one_line_error):
  one_line_error(invoke("hw", "-5"), "benchmark index -5 out of range")


def test_a_batch_larger_than_the_data_is_refused_before_compiling(tmp_path, one_line_error):
  result = invoke("train", "1462", "--data", _npz(tmp_path / "d.npz", 64), "--out",
                  tmp_path / "run", "--batch-size", "1000", "--no-progress")
  one_line_error(result, "--batch-size 1000 exceeds the 64 training images")
  assert not (tmp_path / "run").exists()


def _nan_checkpoint(folder):
  folder.mkdir()
  meta = {"format": train.FORMAT, "arch": space.format_arch(space.arch_at(1462)), "index": 1462,
          "network": {"channels": 2, "cells_per_stage": 1}}
  payload = {"meta": json.dumps(meta), "epoch": 1, "history": "[]",
             "state": {"params": {"conv": np.array([1.0, np.nan], np.float32)}}}
  (folder / train.CHECKPOINT_NAME).write_bytes(flax.serialization.msgpack_serialize(payload))
  return folder


def test_a_checkpoint_with_nan_weights_is_refused_on_load(tmp_path, one_line_error):
  run = _nan_checkpoint(tmp_path / "run")
  with pytest.raises(train.TrainError, match="NaN or infinite values in 1 arrays"):
    train.read_checkpoint(run)
  one_line_error(invoke("export", "1462", "--checkpoint", run, "--onnx", tmp_path / "c.onnx"),
                 "holds NaN or infinite values in 1 arrays (params/conv)")
  assert not (tmp_path / "c.onnx").exists()


def test_one_npz_convention_for_every_command(tmp_path):
  # x_train/y_train, as Keras saves them, is read by the indicators as it is by train.
  path = _npz(tmp_path / "keras.npz", names=("x_train", "y_train"))
  images, _ = data.load_split(path, "train")
  np.testing.assert_allclose(data.load_images(path), data.normalize(images))


def test_a_constant_network_pick_is_reported_with_a_warning(tmp_path, write_store):
  constant = [i for i in range(space.NUM_CELLS)
              if not graph.reachability(space.arch_at(i)).output][:3]
  scores = write_store(tmp_path / "s.sqlite", constant, [1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
  from micronas_jax.hardware import latency
  report = search_run.run(search_run.SearchRequest(latency.board("stm32f746"),
                                                   method=search_run.Table(str(scores))))
  assert report["index"] in constant and "does not depend on its input" in report["warnings"][0]
  assert "WARNING  the cell's output does not depend" in search_run.format_report(report)


def _examples(text: str):
  """The `micronas-jax ...` command lines of a help epilog or a README code block (continued
  lines joined)."""
  import re
  joined = re.sub(r"\\\n\s*", " ", text)
  for line in joined.splitlines():
    line = line.strip().split("#")[0].split("  (")[0].split(" > ")[0].split(" | ")[0]
    if "micronas-jax " in line and "[" not in line and "..." not in line:
      yield line[line.index("micronas-jax "):].strip()


def _parse(line: str) -> None:
  """Parses an example as Click would, without running it: unknown options and commands fail."""
  import shlex

  import click
  args = shlex.split(line)[1:]
  command = cli.cli
  while isinstance(command, click.Group):
    name, args = args[0], args[1:]
    assert name in command.commands, f"{line}: no command {name!r}"
    command = command.commands[name]
  ctx = click.Context(command, info_name=command.name)
  parser = command.make_parser(ctx)
  _, positional, _ = parser.parse_args(list(args))
  assert len(positional) <= len([p for p in command.params if isinstance(p, click.Argument)]), line


def _all_commands(group, prefix=""):
  import click
  for name, command in group.commands.items():
    if isinstance(command, click.Group):
      yield from _all_commands(command, f"{prefix}{name} ")
    else:
      yield f"{prefix}{name}", command


def test_every_example_in_the_help_and_the_readme_parses():
  import pathlib
  lines = [line for _, command in _all_commands(cli.cli) for line in _examples(command.epilog or "")]
  readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
  blocks = readme.split("```")[1::2]
  lines += [line for block in blocks for line in _examples(block)]
  assert len(lines) > 30
  for line in lines:
    _parse(line)


@pytest.mark.parametrize("extra, message", [
    (["--runtime-sram-kb", "inf"], "--runtime-sram-kb must lie in [0, 4194304] KB, got inf"),
    (["--sram-kb", "320", "--flash-kb", "1e30"], "--flash-kb must lie in [0, 4194304] KB"),
    (["--runtime-flash-kb", "8"], "need the board's --sram-kb and --flash-kb")])
def test_lut_build_refuses_memory_no_board_has(tmp_path, monkeypatch, one_line_error, extra,
                                               message):
  monkeypatch.chdir(tmp_path)
  assert invoke("lut", "plan", "--out", "plan.csv").exit_code == 0
  lines = (tmp_path / "plan.csv").read_text().splitlines()
  (tmp_path / "plan.csv").write_text("\n".join([lines[0]] + [f"{l}1.0" for l in lines[1:]]))
  one_line_error(invoke("lut", "build", "plan.csv", "--device", "x", "--unit", "ms", "--out",
                        "o.json", *extra), message)
  assert not (tmp_path / "o.json").exists()
