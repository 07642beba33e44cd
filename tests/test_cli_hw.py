import csv
import errno
import io
import json
import os
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, paths, space
from micronas_jax.hardware import f746_analytic, latency, profile


def invoke(*args):
  return CliRunner().invoke(cli.cli, [str(a) for a in args])


def filled_plan(tmp_path, value=lambda i, row: str(0.25 * (i + 1))):
  rows = list(csv.DictReader(io.StringIO(profile.worksheet_csv())))
  for i, row in enumerate(rows):
    row["latency"] = value(i, row)
  path = tmp_path / "plan.csv"
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, profile.WORKSHEET_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  return path


def lut_file(tmp_path, mutate=None, text=None):
  path = tmp_path / "bad.json"
  data = latency.to_dict(f746_analytic.lut())
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
  # TFLM's arena on a Cortex-M (activations: at least five stage-1 tensors live at once; the
  # persistent tail), plus the LUT's runtime SRAM.
  arena = report["tflm_arena"]
  assert arena["head_bytes"] >= 5 * 16 * 32 * 32 and arena["tail_bytes"] > 0
  assert report["peak_sram_bytes"] == arena["head_bytes"] + arena["tail_bytes"] + round(3.1 * 1024)
  assert report["flash_bytes"] == arena["model_bytes"] + 22 * 1024
  assert report["fits_sram"] and not report["fits_flash"]  # 1.5 M int8 weights > 1 MB
  assert round(report["flops_m"], 2) == 220.12


def test_hw_text_says_not_measured():
  result = invoke("hw", "0")
  assert result.exit_code == 0, result.output
  assert "NOT measured" in result.output and "fits" in result.output


def test_worksheet_build_hw_round_trip(tmp_path):
  plan = tmp_path / "plan.csv"
  assert invoke("lut", "worksheet", "--out", plan).exit_code == 0
  assert plan.read_text() == profile.worksheet_csv()
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


def test_the_earlier_name_lut_plan_still_writes_the_worksheet(tmp_path):
  result = invoke("lut", "plan", "--out", tmp_path / "old.csv")
  assert result.exit_code == 0, result.output
  assert (tmp_path / "old.csv").read_text() == profile.worksheet_csv()
  assert "plan" not in invoke("lut", "--help").output.split("Commands:")[1]


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
    # One absurd entry of an op other than conv 3x3: every entry is bounded, not one cell.
    (lambda d: d["stages"][0]["ops"].update(nor_conv_1x1=1e300),
     "largest entry: nor_conv_1x1 stage 1 = 1e+300 cycles"),
    (lambda d: d.update(clock_mhz=216e6), "--clock-mhz: must be in (0, 10000] MHz"),
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
    ("arch,latency_ms\n|bogus~0|,1.0\n", "line 2, column 'arch': bad cell"),
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


# --- Nothing lost: plausibility where values enter, truthful labels, failed writes --------------


def snapshot(folder):
  """Every file under `folder` (hidden ones too) -> its bytes."""
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
          if p.is_file()}


def full_disk(monkeypatch, when=lambda path: True):
  """`Path.write_text` on the paths `when` selects writes half its text, then raises ENOSPC: a disk
  that fills midway through a write."""
  real = pathlib.Path.write_text

  def write_text(self, data, *args, **kwargs):
    if not when(self):
      return real(self, data, *args, **kwargs)
    real(self, data[:len(data) // 2], *args, **kwargs)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
  monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def entry_plan(tmp_path, values: dict):
  """A plan filled from `values` (entry name as `latency.entries` -> latency text)."""
  def value(i, row):
    op, stage = row["op"], row["stage"]
    return values[op if op in ("stem", "head", "overhead") else f"{op} stage {stage}"]
  return filled_plan(tmp_path, value)


def emu_cycles():
  """The emulated F746 LUT's entries in cycles (ms x 216 MHz): what its firmware prints."""
  lut = latency.board("stm32f746-emu")
  return {name: repr(value * lut.ms_per_unit * lut.clock_mhz * 1e3)
          for name, value in latency.entries(lut)}


@pytest.mark.parametrize("values, options, message", [
    # The firmware's cycle counts declared ms: the all-conv-3x3 network would take 155 h.
    (emu_cycles(), ("--unit", "ms"), "the slowest cell (all nor_conv_3x3) would take 155 h"),
    # One absurd conv 1x1 entry: before, only the all-conv-3x3 cell was priced, and it passed.
    ({name: "1e300" if name == "nor_conv_1x1 stage 1" else "0.5"
      for name, _ in latency.entries(latency.board("stm32f746"))},
     ("--unit", "ms"), "largest entry: nor_conv_1x1 stage 1 = 1e+300 ms"),
    # A clock given in Hz: no clock reaches 10 GHz.
    (emu_cycles(), ("--unit", "cycles", "--clock-mhz", "216e6"),
     "--clock-mhz: must be in (0, 10000] MHz, got 216000000.0"),
])
def test_build_refuses_implausible_values_before_writing(one_line_error, tmp_path, values,
                                                         options, message):
  plan = entry_plan(tmp_path, values)
  before = snapshot(tmp_path)
  result = invoke("lut", "build", plan, "--device", "b", *options, "--out", tmp_path / "o.json")
  one_line_error(result, f"{plan}: ")
  one_line_error(result, message)
  assert snapshot(tmp_path) == before  # the plan unchanged, no LUT, no temporary file


def test_build_accepts_the_same_counts_in_cycles(tmp_path):
  result = invoke("lut", "build", entry_plan(tmp_path, emu_cycles()), "--device", "b", "--unit",
                  "cycles", "--clock-mhz", 216, "--out", tmp_path / "o.json")
  assert result.exit_code == 0, result.output
  np.testing.assert_allclose(latency.load(tmp_path / "o.json").ops,
                             latency.board("stm32f746-emu").ops * 216e3, rtol=1e-5)


def test_fit_refuses_implausible_timings_before_writing(one_line_error, tmp_path):
  timings = tmp_path / "t.csv"
  timings.write_text("index,latency_ms\n0,1.0\n1,5e6\n")
  before = snapshot(tmp_path)
  one_line_error(invoke("lut", "fit", timings, "--out", tmp_path / "o.json"),
                 f"{timings}: line 3: latency_ms: 5e+06 ms is more than an hour per inference")
  assert snapshot(tmp_path) == before


def test_fit_refuses_a_fitted_lut_whose_slowest_cell_takes_hours(one_line_error, tmp_path):
  # The emulated LUT scaled so that its slowest cell takes 2 h; only cells under an hour timed:
  # each timing is plausible, the fit recovers the LUT, and its slowest cell is not.
  emu = latency.board("stm32f746-emu")
  scale = 7.2e6 / float(latency.estimate([space.CONV3X3] * 6, emu))
  truth = latency.LUT(**{**emu.__dict__, "ops": emu.ops * scale, "stem": emu.stem * scale,
                         "reductions": tuple(r * scale for r in emu.reductions),
                         "head": emu.head * scale, "overhead": 0.0})
  times = latency.estimate(space.all_archs(), truth)
  indices = [i for i in range(0, 15625, 7) if times[i] < 3e6][:400]
  timings = tmp_path / "t.csv"
  timings.write_text("index,latency_ms\n" + "".join(f"{i},{float(times[i])!r}\n"
                                                    for i in indices))
  before = snapshot(tmp_path)
  one_line_error(invoke("lut", "fit", timings, "--out", tmp_path / "o.json"),
                 f"{timings}: fitted LUT: the slowest cell (all nor_conv_3x3) would take 2 h")
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize("index, message", [
    (space.format_arch([space.CONV3X3] * 6), "got the arch string '|nor_conv_3x3~0|+"),
    ("1.5", "got '1.5'"),
    ("15625", "got 15625"),
])
def test_fit_index_column_names_file_line_column_and_what_was_expected(one_line_error, tmp_path,
                                                                      index, message):
  timings = tmp_path / "t.csv"
  timings.write_text(f"index,latency_ms\n0,1.0\n{index},2.0\n")
  before = snapshot(tmp_path)
  result = invoke("lut", "fit", timings, "--out", tmp_path / "o.json")
  one_line_error(result, f"{timings}: line 3, column 'index': expected a benchmark index, a "
                         "whole number in [0, 15625), ")
  one_line_error(result, message)
  assert "invalid literal" not in result.output and snapshot(tmp_path) == before


@pytest.mark.parametrize("board, label", [
    ("stm32f746", "NOT measured on a board: cycle model over emulated kernels"),
    ("stm32f746-emu", "NOT measured on a board: instruction counts on an emulated core"),
    ("stm32f746-analytic", "NOT measured: analytic model"),
])
def test_packaged_boards_are_not_labelled_measured(board, label):
  text = invoke("hw", "1462", "--board", board)
  assert text.exit_code == 0, text.output
  assert f"[{label}]" in text.output and "[measured" not in text.output
  report = json.loads(invoke("hw", "1462", "--board", board, "--json").output)
  # stm32f746-emu's provenance says measured (its instructions were, in the emulator): the
  # report's `measured` says whether a board timed it.
  assert report["measured"] is False and report["source"] == label


def test_user_luts_are_labelled_user_supplied_or_fitted(tmp_path):
  built, fitted = tmp_path / "built.json", tmp_path / "fitted.json"
  assert invoke("lut", "build", filled_plan(tmp_path), "--device", "b", "--unit", "ms", "--out",
                built).exit_code == 0
  truth = latency.board("stm32f746")
  timings = tmp_path / "t.csv"
  timings.write_text("index,latency_ms\n" + "".join(
      f"{i},{float(latency.estimate(space.arch_at(i), truth))}\n" for i in range(0, 15625, 500)))
  assert invoke("lut", "fit", timings, "--out", fitted).exit_code == 0
  for path, label in ((built, "[user-supplied timings (lut build): not known to be from a board]"),
                      (fitted, ("[fitted to user-supplied timings (lut fit): not known to "
                                "be from a board]"))):
    result = invoke("hw", "1462", "--lut", path)
    assert result.exit_code == 0 and label in result.output, result.output
    assert json.loads(invoke("hw", "1462", "--lut", path, "--json").output)["measured"] is False
  # A file from before the label, without the build's note, reads the same.
  old = json.loads(built.read_text())
  old["provenance"] = {"method": "profiled", "measured": True, "by": "micronas-jax lut build"}
  built.write_text(json.dumps(old))
  assert "[user-supplied timings (lut build)" in invoke("hw", "1462", "--lut", built).output


def test_a_lut_declaring_board_timings_is_labelled_measured(tmp_path):
  path = lut_file(tmp_path, lambda d: d.update(provenance={
      "method": "DWT timings on a NUCLEO-F746ZG", "measured": True}))
  result = invoke("hw", "1462", "--lut", path)
  assert result.exit_code == 0, result.output
  assert "[measured on a board (DWT timings on a NUCLEO-F746ZG), as the LUT declares]" in \
      result.output
  assert json.loads(invoke("hw", "1462", "--lut", path, "--json").output)["measured"] is True


def _fit_args(tmp_path):
  timings = tmp_path / "t.csv"
  truth = latency.board("stm32f746")
  timings.write_text("index,latency_ms\n" + "".join(
      f"{i},{float(latency.estimate(space.arch_at(i), truth))}\n" for i in range(0, 15625, 500)))
  return ("lut", "fit", timings)


WRITERS = {
    "worksheet": lambda tmp_path: ("lut", "worksheet"),
    "build": lambda tmp_path: ("lut", "build", filled_plan(tmp_path), "--device", "b", "--unit",
                               "ms"),
    "fit": _fit_args,
}


@pytest.mark.parametrize("command", WRITERS)
def test_lut_writers_on_a_full_disk_keep_the_old_file(one_line_error, tmp_path, monkeypatch,
                                                      command):
  args = WRITERS[command](tmp_path)
  out = tmp_path / "o.out"
  out.write_text("the old file\n")
  before = snapshot(tmp_path)
  full_disk(monkeypatch)
  one_line_error(invoke(*args, "--out", out),
                 f"{out}: cannot write: no space left on the device; nothing was written there")
  assert snapshot(tmp_path) == before  # old output and inputs intact, no temporary, no lock


@pytest.mark.parametrize("command", WRITERS)
def test_lut_writers_refuse_a_concurrent_writer(one_line_error, tmp_path, command):
  args = WRITERS[command](tmp_path)
  out = tmp_path / "o.out"
  out.write_text("the old file\n")
  with paths.exclusive(out):
    before = snapshot(tmp_path)
    one_line_error(invoke(*args, "--out", out), "another process is writing it")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", WRITERS)
def test_lut_writers_refuse_a_read_only_folder(one_line_error, tmp_path, read_only_folder,
                                               command):
  args = WRITERS[command](tmp_path)
  one_line_error(invoke(*args, "--out", read_only_folder / "o.out"),
                 str(read_only_folder / "o.out"))
  assert not any(read_only_folder.iterdir())
