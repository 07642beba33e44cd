import errno
import json
import os
import pathlib

import numpy as np
import pytest

from micronas_jax import paths, space
from micronas_jax.hardware import analytic, f746_analytic, latency, profile
from micronas_jax.model import NB201_CIFAR10, NetworkConfig

N, S, C1, C3, P = space.NONE, space.SKIP, space.CONV1X1, space.CONV3X3, space.POOL


def toy_lut(semantics="every-op", unit="ms", clock_mhz=None):
  """A LUT with distinct, easy numbers: lut[s][op] = 10 * (s + 1) + op."""
  ops = 10.0 * np.arange(1, 4)[:, None] + np.arange(5)[None, :]
  return latency.LUT(device="toy", unit=unit, semantics=semantics,
                     provenance={"method": "test", "measured": False}, config=NB201_CIFAR10,
                     ops=ops, stem=1.0, reductions=(2.0, 3.0), head=4.0, overhead=5.0,
                     clock_mhz=clock_mhz)


def test_estimate_equals_hand_sum():
  ops = np.array([C3, S, N, P, C1, C3])
  # fixed: 5 + 1 + 2 + 3 + 4 = 15; per cell, stage s: sum of 10(s+1) + op over the 6 edges
  # = 60(s+1) + (3+1+0+4+2+3) = 60(s+1) + 13; N=5 cells: 5 * (73 + 133 + 193) = 1995.
  assert latency.estimate(ops, toy_lut()) == pytest.approx(15 + 1995)


def test_estimate_loops_match_vectorized_for_all_cells():
  lut = toy_lut()
  archs = space.all_archs()
  fast = latency.estimate(archs, lut)
  for ops in archs[::997]:
    slow = lut.overhead + lut.stem + sum(lut.reductions) + lut.head
    for stage in range(3):
      for _ in range(5):
        slow += sum(lut.ops[stage, op] for op in ops)
    assert fast[space.index_of(ops)] == pytest.approx(slow)


def test_estimate_covers_all_cells_with_positive_latency():
  # Its speed (target < 500 ms) is measured by benchmarks/latency_fit.py, not asserted here.
  lut = latency.board("stm32f746")
  result = latency.estimate(space.all_archs(), lut)
  assert result.shape == (15625,) and (result > 0).all()


def test_cycles_convert_with_clock():
  cycles = toy_lut(unit="cycles", clock_mhz=200.0)
  # 2010 cycles at 200 MHz = 2010 / 200e3 ms
  assert latency.estimate(np.array([C3, S, N, P, C1, C3]), cycles) == pytest.approx(2010 / 2e5)


def test_dead_code_estimate_by_hand():
  lut = toy_lut("dead-code")
  ops = np.array([C3, N, C3, S, N, N])  # only 3<-0 skip runs
  # 15 fixed + 5 cells * (11 + 21 + 31) for the skip at each stage
  assert latency.estimate(ops, lut) == pytest.approx(15 + 5 * 63)
  assert latency.estimate(ops, lut, dead_code=False) == pytest.approx(
      15 + 5 * sum(6 * 10 * (s + 1) + 3 + 3 + 1 for s in range(3)))


def test_folded_network_costs_only_the_overhead():
  ops = np.array([C3, C3, C3, N, N, N])  # node 3 has no input: the network is a constant
  assert latency.estimate(ops, toy_lut("dead-code")) == 5.0


def test_json_round_trip(tmp_path):
  lut = toy_lut(unit="cycles", clock_mhz=216)
  path = tmp_path / "lut.json"
  latency.save(lut, path)
  again = latency.load(path)
  np.testing.assert_allclose(again.ops, lut.ops)
  assert (again.stem, again.reductions, again.head, again.overhead) == (1, (2, 3), 4, 5)
  assert again.clock_mhz == 216 and again.unit == "cycles"


def test_packaged_analytic_lut_equals_its_generator():
  packaged = latency.to_dict(latency.board("stm32f746-analytic"))
  assert packaged == json.loads(json.dumps(latency.to_dict(f746_analytic.lut())))


def test_default_lut_says_what_was_measured_and_what_modelled():
  lut = latency.board("stm32f746")
  assert lut.provenance["measured"] is False  # on no board: emulated instructions, modelled cycles
  assert lut.provenance["method"] == "emulated + cycle model"
  for key in ("measured_what", "modelled_what", "anchored_to", "not_modelled"):
    assert lut.provenance[key], key
  for name, number in lut.constants["pipeline"].items():
    assert "ARMScheduleM7.td" in number["source"], name
  assert lut.memory == latency.board("stm32f746-analytic").memory


def test_analytic_lut_cites_every_constant_and_says_not_measured():
  lut = latency.board("stm32f746-analytic")
  assert lut.provenance["measured"] is False and "NOT MEASURED" in lut.provenance["note"]
  for name, constant in lut.constants.items():
    assert constant["status"] in ("[V]", "[D]"), name
    assert "facts §" in constant["source"], name
  assert lut.memory.sram_bytes == 320 * 1024 and lut.memory.flash_bytes == 1024 * 1024


def test_analytic_conv3x3_entry_by_hand():
  model = analytic.Model(cycles_per_mac=2.0, cycles_per_layer=100.0, overhead_cycles=7.0)
  cycles = analytic.entry_cycles(model, NB201_CIFAR10)
  # stage 1: E = 16*32*32 = 16384; ReLU E + conv 9*16*E + add E; 3 layers
  assert cycles["ops"][0, C3] == 2.0 * (16384 + 9 * 16 * 16384 + 16384) + 300
  assert cycles["ops"][0, P] == 2.0 * 10 * 16384 + 200
  assert cycles["ops"][2, N] == 0 and cycles["overhead"] == 7.0


def _shaped_lut(config):
  """A LUT whose stage split matches the fit's prior, so the fit can recover it exactly."""
  shares, fixed = latency._stage_shares(config)
  totals = np.array([0.0, 0.4, 2.5, 9.0, 1.7])
  return latency.LUT(device="synthetic", unit="ms", semantics="every-op",
                     provenance={"method": "test", "measured": False}, config=config,
                     ops=totals * shares / config.cells_per_stage, stem=3.0 * fixed[0],
                     reductions=tuple(3.0 * fixed[1:-1]), head=3.0 * fixed[-1], overhead=0.0)


@pytest.mark.parametrize("dead_code", [False, True])
def test_fit_recovers_synthetic_lut_from_noiseless_timings(dead_code):
  truth = _shaped_lut(NB201_CIFAR10)
  if dead_code:
    truth = latency.LUT(**{**truth.__dict__, "overhead": 0.05, "semantics": "dead-code"})
  archs = space.all_archs()[np.random.default_rng(0).permutation(15625)[:300]]
  fitted = latency.fit(archs, latency.estimate(archs, truth), dead_code=dead_code)
  np.testing.assert_allclose(fitted.ops, truth.ops, atol=1e-9)
  assert fitted.stem == pytest.approx(truth.stem) and fitted.head == pytest.approx(truth.head)
  assert fitted.overhead == pytest.approx(truth.overhead, abs=1e-9)
  np.testing.assert_allclose(latency.estimate(space.all_archs(), fitted),
                             latency.estimate(space.all_archs(), truth), rtol=1e-9)


def test_fit_with_any_stage_split_predicts_whole_networks():
  truth = toy_lut()  # stage split unlike the prior: only whole-network sums are identified
  truth = latency.LUT(**{**truth.__dict__, "ops": truth.ops * (np.arange(5) > 0)})
  archs = space.all_archs()[:200]
  fitted = latency.fit(archs, latency.estimate(archs, truth))
  np.testing.assert_allclose(latency.estimate(space.all_archs(), fitted),
                             latency.estimate(space.all_archs(), truth), rtol=1e-9)


def test_plan_then_build_round_trip(tmp_path):
  rows = profile.worksheet()
  # 1 stem + 3 stages x 5 ops + 2 reductions + head + overhead
  assert len(rows) == 20
  for i, row in enumerate(rows):
    row["latency"] = str(0.5 * i)
  path = tmp_path / "plan.csv"
  header = ",".join(profile.WORKSHEET_COLUMNS)
  path.write_text(header + "\n" + "\n".join(",".join(str(r[c]) for c in profile.WORKSHEET_COLUMNS)
                                            for r in rows) + "\n")
  lut = profile.build(path, "board", "ms")
  by_key = {(r["op"], str(r["stage"])): float(r["latency"]) for r in rows}
  assert lut.stem == by_key[("stem", "1")] and lut.overhead == by_key[("overhead", "")]
  assert lut.ops[1, C3] == by_key[("nor_conv_3x3", "2")]
  assert lut.reductions == (by_key[("reduction", "2")], by_key[("reduction", "3")])
  assert lut.head == by_key[("head", "3")]
  saved = tmp_path / "lut.json"
  latency.save(lut, saved)
  assert latency.to_dict(latency.load(saved)) == latency.to_dict(lut)


def test_plan_for_a_small_network_follows_its_shape():
  config = NetworkConfig(channels=2, cells_per_stage=1, resolution=8)
  rows = profile.worksheet(config)
  conv = [r for r in rows if r["op"] == "nor_conv_3x3"]
  assert [(r["channels"], r["height"]) for r in conv] == [(2, 8), (4, 4), (8, 2)]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stages"][1]["ops"].pop("avg_pool_3x3"), "stages[1].ops: missing op 'avg_pool_3x3'"),
    (lambda d: d["stages"].pop(), "stages: expected a list of 3 stages"),
    (lambda d: d.update(unit="seconds"), "unit: unknown value 'seconds'"),
    (lambda d: d.update(stem=-1), "stem: must be non-negative"),
    (lambda d: d["stages"][0]["ops"].update(nor_conv_3x3="fast"), "nor_conv_3x3: must be a non-negative number"),
    (lambda d: d.pop("overhead"), "missing field 'overhead'"),
    (lambda d: d.update(reductions=[1.0]), "reductions: expected a list of 2"),
    (lambda d: d["stages"][2].update(channels=32), "stages[2].channels: stage 3"),
    (lambda d: d.update(clock_mhz=None, unit="cycles"), "clock_mhz: a positive clock is required"),
    (lambda d: d.update(semantics="lazy"), "semantics: unknown value 'lazy'"),
    (lambda d: d.update(stagez=[]), "unknown field 'stagez'"),
    (lambda d: d["memory"].update(sram_bytes=True), "memory.sram_bytes: must be a non-negative"),
])
def test_schema_check_names_the_field(mutate, message):
  data = latency.to_dict(f746_analytic.lut())
  mutate(data)
  with pytest.raises(latency.LUTError, match=None) as error:
    latency.from_dict(data, "my.json")
  assert str(error.value).startswith("my.json: ") and message in str(error.value)


def test_plausibility_is_one_check_run_by_build_fit_and_load(tmp_path, monkeypatch):
  calls = []
  real = latency.check_plausible
  monkeypatch.setattr(latency, "check_plausible",
                      lambda lut, origin: calls.append(origin) or real(lut, origin))
  rows = profile.worksheet()
  for row in rows:
    row["latency"] = "1"
  plan = tmp_path / "plan.csv"
  plan.write_text(",".join(profile.WORKSHEET_COLUMNS) + "\n" + "".join(
      ",".join(str(r[c]) for c in profile.WORKSHEET_COLUMNS) + "\n" for r in rows))
  latency.save(profile.build(plan, "b", "ms"), tmp_path / "lut.json")
  latency.load(tmp_path / "lut.json")
  archs = space.all_archs()[:20]
  latency.fit(archs, latency.estimate(archs, toy_lut()), source="t.csv")
  assert calls == [str(plan), str(tmp_path / "lut.json"), "t.csv: fitted LUT"]


@pytest.mark.parametrize("board", latency.boards())
def test_packaged_luts_are_plausible(board):
  assert latency.check_plausible(latency.board(board), board) is latency.board(board)


def _with_entry(lut, name, value):
  """`lut` with its entry `name` (as `latency.entries` names it) set to `value`."""
  ops, reductions = lut.ops.copy(), list(lut.reductions)
  fixed = {"stem": lut.stem, "head": lut.head, "overhead": lut.overhead}
  if name in fixed:
    fixed[name] = value
  elif name.startswith("reduction"):
    reductions[int(name[-1]) - 2] = value
  else:
    op, stage = name.split(" stage ")
    ops[int(stage) - 1, space.OPS.index(op)] = value
  return latency.LUT(**{**lut.__dict__, **fixed, "ops": ops, "reductions": tuple(reductions)})


def test_plausibility_bounds_every_entry_not_one_cell():
  lut = toy_lut()
  for name, _ in latency.entries(lut):
    # Every entry counts at least once in the slowest network (a cell op 5 cells x 6 edges
    # times), so 4e6 ms in any one entry puts it over the hour (3.6e6 ms).
    with pytest.raises(latency.LUTError, match=f"largest entry: {name} = 4e\\+06 ms"):
      latency.check_plausible(_with_entry(lut, name, 4e6), "x.json")
    for bad in (float("inf"), float("nan"), -1.0):
      with pytest.raises(latency.LUTError, match=f"x.json: {name}: must be a finite non-negative"):
        latency.check_plausible(_with_entry(lut, name, bad), "x.json")


def test_plausibility_checks_the_clock_in_mhz():
  with pytest.raises(latency.LUTError, match="clock_mhz: must be in \\(0, 10000\\] MHz"):
    latency.check_plausible(toy_lut(unit="cycles", clock_mhz=216e6), "x.json")
  # 2010 cycles at 216 MHz: plausible; the same LUT in ms with a clock is plausible too.
  assert latency.check_plausible(toy_lut(unit="cycles", clock_mhz=216), "x.json")
  assert latency.check_plausible(toy_lut(clock_mhz=216), "x.json")


def test_labels_follow_the_provenance_method():
  for method, measured, label in [
      ("analytic", False, "NOT measured: analytic model"),
      ("emulated", True, "NOT measured on a board: instruction counts on an emulated core"),
      ("profiled", True, "user-supplied timings (lut build): not known to be from a board"),
      ("fitted", True, "fitted to user-supplied timings (lut fit): not known to be from a board"),
      ("guess", False, "NOT measured (guess)"),
      ("DWT on my board", True, "measured on a board (DWT on my board), as the LUT declares")]:
    provenance = {"method": method, "measured": measured}
    assert latency.source(provenance) == label
    assert latency.measured_on_board(provenance) is label.startswith("measured on a board")


def test_save_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "lut.json"
  path.write_text("the old LUT\n")

  def full(self, data, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(pathlib.Path, "write_text", full)
  with pytest.raises(paths.PathError, match="lut.json: cannot write: no space left on the device"):
    latency.save(toy_lut(), path)
  monkeypatch.undo()
  assert path.read_text() == "the old LUT\n" and sorted(os.listdir(tmp_path)) == ["lut.json"]
