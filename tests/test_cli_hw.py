import csv
import io
import json

import pytest
from click.testing import CliRunner

from micronas_jax import cli, space
from micronas_jax.hardware import latency, profile, stm32f746


def invoke(*args):
  return CliRunner().invoke(cli.cli, [str(a) for a in args])


def filled_plan(tmp_path, value=lambda i, row: str(0.25 * (i + 1))):
  rows = list(csv.DictReader(io.StringIO(profile.plan_csv())))
  for i, row in enumerate(rows):
    row["latency"] = value(i, row)
  path = tmp_path / "plan.csv"
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, profile.PLAN_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  return path


def lut_file(tmp_path, mutate=None, text=None):
  path = tmp_path / "bad.json"
  data = latency.to_dict(stm32f746.lut())
  if mutate:
    mutate(data)
  path.write_text(text if text is not None else json.dumps(data))
  return path


def test_hw_reports_default_board(tmp_path):
  result = invoke("hw", "1462", "--json")
  assert result.exit_code == 0, result.output
  report = json.loads(result.output)
  assert report["measured"] is False and report["semantics"] == "every-op"
  assert report["method"] == "emulated + cycle model"
  assert report["peak_sram_bytes"] == 5 * 16 * 32 * 32 + round(3.1 * 1024)
  assert report["fits_sram"] and not report["fits_flash"]  # 1.5 M int8 weights > 1 MB
  assert round(report["flops_m"], 2) == 220.12


def test_hw_text_says_not_measured():
  result = invoke("hw", "0")
  assert result.exit_code == 0, result.output
  assert "NOT measured" in result.output and "fits" in result.output


def test_plan_build_hw_round_trip(tmp_path):
  plan = tmp_path / "plan.csv"
  assert invoke("lut", "plan", "--out", plan).exit_code == 0
  assert plan.read_text() == profile.plan_csv()
  filled = filled_plan(tmp_path)
  out = tmp_path / "my.json"
  result = invoke("lut", "build", filled, "--device", "my board", "--unit", "ms", "--out", out,
                  "--sram-kb", 64, "--flash-kb", 256)
  assert result.exit_code == 0, result.output
  lut = latency.load(out)
  assert lut.device == "my board" and lut.memory.sram_bytes == 64 * 1024
  report = json.loads(invoke("hw", "1462", "--lut", out, "--json").output)
  assert report["latency_ms"] == pytest.approx(float(latency.estimate([3] * 6, lut)), abs=1e-4)
  assert not report["fits_sram"]


def test_fit_from_timings_csv(tmp_path):
  truth = latency.board("stm32f746")
  timings = tmp_path / "t.csv"
  indices = range(0, 15625, 50)
  rows = [f"{i},{float(latency.estimate(space.arch_at(i), truth))}"
          for i in indices]
  timings.write_text("index,latency_ms\n" + "\n".join(rows) + "\n")
  out = tmp_path / "fitted.json"
  result = invoke("lut", "fit", timings, "--out", out)
  assert result.exit_code == 0, result.output
  fitted = latency.load(out)
  assert fitted.provenance["method"] == "fitted" and fitted.unit == "ms"
  # The fitted LUT's JSON keeps 6 significant figures per entry: agreement to that rounding.
  assert float(latency.estimate([3] * 6, fitted)) == pytest.approx(
      float(latency.estimate([3] * 6, truth)), rel=1e-5)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stages"][0]["ops"].pop("nor_conv_1x1"), "stages[0].ops: missing op 'nor_conv_1x1'"),
    (lambda d: d["stages"].pop(1), "stages: expected a list of 3 stages"),
    (lambda d: d.update(unit="fortnights"), "unit: unknown value 'fortnights'"),
    (lambda d: d.update(head=-2.0), "head: must be non-negative"),
    (lambda d: d["stages"][2]["ops"].update(avg_pool_3x3="n/a"), "avg_pool_3x3: must be a non-negative number"),
    # A cycle count off by 1e7: the all-conv3x3 network would take hours per inference.
    (lambda d: d["stages"][0]["ops"].update(nor_conv_3x3=1e13), "is the unit right"),
])
def test_hw_bad_lut_is_one_line(one_line_error, tmp_path, mutate, message):
  path = lut_file(tmp_path, mutate)
  one_line_error(invoke("hw", "1462", "--lut", path), f"{path}: ")
  one_line_error(invoke("hw", "1462", "--lut", path), message)


def test_hw_malformed_json_and_missing_file(one_line_error, tmp_path):
  path = lut_file(tmp_path, text="{not json")
  one_line_error(invoke("hw", "1", "--lut", path), f"{path}: not valid JSON")
  one_line_error(invoke("hw", "1", "--lut", tmp_path / "nope.json"), "file not found")


def test_hw_unknown_board_and_semantics(one_line_error):
  one_line_error(invoke("hw", "1", "--board", "esp32"), "unknown board 'esp32'")
  one_line_error(invoke("hw", "1", "--semantics", "lazy"), "--semantics: unknown value")
  one_line_error(invoke("hw", "99999"), "out of range")


@pytest.mark.parametrize("value, message", [
    (lambda i, row: "" if row["op"] == "head" else "1", "(head, stage 3): latency is empty"),
    (lambda i, row: "-1" if row["op"] == "stem" else "1", "(stem, stage 1): latency must be a non-negative"),
    (lambda i, row: "fast" if i == 4 else "1", "latency must be a number, got 'fast'"),
])
def test_build_bad_values_are_one_line(one_line_error, tmp_path, value, message):
  plan = filled_plan(tmp_path, value)
  result = invoke("lut", "build", plan, "--device", "b", "--unit", "ms", "--out", tmp_path / "o.json")
  one_line_error(result, f"{plan}: line ")
  one_line_error(result, message)
  assert not (tmp_path / "o.json").exists()


def test_build_missing_entry_and_bad_shape(one_line_error, tmp_path):
  plan = filled_plan(tmp_path)
  lines = plan.read_text().splitlines()
  (tmp_path / "short.csv").write_text("\n".join(l for l in lines if not l.startswith("avg_pool_3x3,2")))
  result = invoke("lut", "build", tmp_path / "short.csv", "--device", "b", "--unit", "ms", "--out",
                  tmp_path / "o.json")
  one_line_error(result, "missing entries: avg_pool_3x3 stage 2")
  (tmp_path / "shape.csv").write_text("\n".join(l.replace("nor_conv_3x3,3,64", "nor_conv_3x3,3,60")
                                                for l in lines))
  result = invoke("lut", "build", tmp_path / "shape.csv", "--device", "b", "--unit", "ms", "--out",
                  tmp_path / "o.json")
  one_line_error(result, "channels must be 64, got '60'")


def test_build_bad_options(one_line_error, tmp_path):
  plan = filled_plan(tmp_path)
  base = ("lut", "build", plan, "--device", "b", "--out", tmp_path / "o.json")
  one_line_error(invoke(*base, "--unit", "sec"), "--unit: unknown value 'sec'")
  one_line_error(invoke(*base, "--unit", "cycles"), "--clock-mhz: a positive clock")
  one_line_error(invoke(*base, "--unit", "ms", "--sram-kb", 10), "give both")
  one_line_error(invoke(*base[:2], tmp_path / "none.csv", *base[3:], "--unit", "ms"),
                 "file not found")


def test_build_malformed_csv(one_line_error, tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("op,stage\nstem,1\n")
  result = invoke("lut", "build", bad, "--device", "b", "--unit", "ms", "--out", tmp_path / "o.json")
  one_line_error(result, f"{bad}: missing column 'channels'")
  bad.write_text("op,stage,channels,height,width,latency\nstem,1,16,32,32,1,extra\n")
  result = invoke("lut", "build", bad, "--device", "b", "--unit", "ms", "--out", tmp_path / "o.json")
  one_line_error(result, "line 2: expected 6 fields")


@pytest.mark.parametrize("text, message", [
    ("arch,latency_ms\n|bogus~0|,1.0\n", "line 2: bad cell"),
    ("index,latency_ms\n3,-1\n", "line 2: latency_ms: latency must be a non-negative"),
    ("index,latency_ms\n3,abc\n", "latency must be a number"),
    ("latency_ms\n1.0\n", "needs a column 'index' or 'arch'"),
    ("index,time\n3,1.0\n", "missing column 'latency_ms'"),
    ("index,latency_ms\n3,1.0\n", "a fit needs at least 5 timed cells"),
    # Index 1462 and its arch string name one cell: two timings of it are refused.
    ("index,arch,latency_ms\n1462,,4.0\n0,,1.0\n,|nor_conv_3x3~0|+|nor_conv_3x3~0|"
     "nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|,5.0\n",
     "line 4: cell 1462 was already timed on line 2 (4 ms, here 5 ms)"),
])
def test_fit_bad_timings_are_one_line(one_line_error, tmp_path, text, message):
  path = tmp_path / "t.csv"
  path.write_text(text)
  one_line_error(invoke("lut", "fit", path, "--out", tmp_path / "o.json"), message)


def test_fit_bad_semantics_and_missing_file(one_line_error, tmp_path):
  one_line_error(invoke("lut", "fit", tmp_path / "t.csv", "--out", "o.json",
                        "--semantics", "x"), "--semantics: unknown value 'x'")
  one_line_error(invoke("lut", "fit", tmp_path / "t.csv", "--out", "o.json"),
                 "file not found")
