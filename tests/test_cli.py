import csv
import io
import json

import pytest
from click.testing import CliRunner

from micronas_jax import cli

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


def test_compilation_cache_folder_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("MICRONAS_JAX_CACHE", "off")
  assert cli.compilation_cache_dir() is None
  monkeypatch.setenv("MICRONAS_JAX_CACHE", str(tmp_path / "xla"))
  assert cli.compilation_cache_dir() == tmp_path / "xla"
  monkeypatch.delenv("MICRONAS_JAX_CACHE")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cli.compilation_cache_dir() == tmp_path / "micronas-jax" / "xla"
