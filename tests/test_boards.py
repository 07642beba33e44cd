"""Boards beside the F746: the Cortex-M4 and Cortex-M33 pipeline models, their tables and
kernel models, `micronas-jax boards`, and a search on the M4 board that meets its limits."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from micronas_jax import cli, space
from micronas_jax.hardware import boards, latency, shapes
from micronas_jax.hardware.emu import cycles
from micronas_jax.hardware.emu import machine as emu_machine

needs_capstone = pytest.mark.skipif(cycles.capstone_missing() is not None,
                                    reason=f"{cycles.capstone_missing()}")
needs_emulator = pytest.mark.skipif(
    emu_machine.missing() is not None or cycles.capstone_missing() is not None,
    reason=f"emulator unavailable: {emu_machine.missing() or cycles.capstone_missing()}")


def _schedule(code: bytes, core: str) -> int:
  return cycles.schedule(list(cycles._decoder().disasm(code, 0x1000)), cycles.PIPELINES[core])


@needs_capstone
def test_the_m4_issues_one_instruction_a_cycle_and_blocks_on_loads():
  adds_r0, adds_r1 = bytes.fromhex("0130"), bytes.fromhex("0131")  # adds r0/r1, #1
  ldr_r0, ldr_r2 = bytes.fromhex("0868"), bytes.fromhex("1a68")  # ldr r0, [r1] / ldr r2, [r3]
  assert _schedule(adds_r0 + adds_r1, "cortex-m7") == 1  # dual issue
  assert _schedule(adds_r0 + adds_r1, "cortex-m4") == 2  # single issue
  assert _schedule(ldr_r0, "cortex-m4") == 2  # a load takes 2 cycles
  assert _schedule(ldr_r0 + ldr_r2, "cortex-m4") == 3  # the next load is pipelined: 3, not 4
  assert _schedule(ldr_r0 + ldr_r2, "cortex-m33") == 2  # the M33 issues loads every cycle


def test_each_board_table_holds_its_cited_board_and_core():
  assert {"nucleo-f411re", "nucleo-u575zi-q"} <= set(latency.boards())
  for name in ("nucleo-f411re", "nucleo-u575zi-q"):
    spec, lut = boards.BOARDS[name], latency.board(name)
    assert lut.clock_mhz == spec.clock_mhz
    assert (lut.memory.sram_bytes, lut.memory.flash_bytes) == (spec.sram_bytes,
                                                               spec.flash_bytes)
    assert lut.constants["pipeline"] == cycles.PIPELINES[spec.core]
    assert lut.constants["kernel_model"]["value"] == spec.kernel_model
    assert all(spec.sources[key] for key in ("clock_mhz", "sram_bytes", "flash_bytes", "anchor"))
    # The table's scale makes the modelled ResNet-8 take the anchor's milliseconds.
    resnet8 = lut.constants["resnet8"]
    modelled_ms = resnet8["modelled_cycles"] * resnet8["scale"] / (spec.clock_mhz * 1e3)
    assert modelled_ms == pytest.approx(spec.anchor_cycles / (spec.clock_mhz * 1e3))
    # Its kernel model reproduces the table's own entries, so other shapes price consistently.
    model = shapes.lut_for(lut.config, lut)
    for (entry, ours), (_, theirs) in zip(latency.entries(model), latency.entries(lut)):
      assert ours == pytest.approx(theirs, rel=0.03, abs=1e-9), (name, entry)


def test_the_m4_takes_more_cycles_than_the_m7_for_the_same_network():
  arch = space.arch_at(13987)[None]
  cycles_of = {}
  for name in ("stm32f746", "nucleo-f411re"):
    lut = latency.board(name)
    ms = float(latency.estimate(arch, lut)[0])
    cycles_of[name] = ms * lut.clock_mhz * 1e3 / lut.constants["resnet8"]["scale"]
  assert cycles_of["nucleo-f411re"] > 1.5 * cycles_of["stm32f746"]


def test_the_boards_command_says_what_each_table_assumes():
  result = CliRunner().invoke(cli.cli, ["boards", "--json"])
  assert result.exit_code == 0, result.output
  rows = {row["board"]: row for row in json.loads(result.output)}
  assert rows["nucleo-f411re"]["clock_mhz"] == 100 and rows["nucleo-f411re"]["sram_kb"] == 128
  assert rows["nucleo-u575zi-q"]["core_model"] == "cortex-m33-kernels.json"
  assert rows["stm32f746-analytic"]["core_model"] is None  # prices only its own network
  text = CliRunner().invoke(cli.cli, ["boards"]).output
  assert "NUCLEO-F411RE" in text and "anchored to: MLPerf Tiny" in text


def test_a_search_on_the_m4_board_meets_its_limits(tmp_path, monkeypatch, toy):
  from micronas_jax import scoring
  from micronas_jax.search import run as search_run
  from tests.test_cli_search import ToyEvolutionScorer
  from tests.test_task import gray_folder

  monkeypatch.setattr(ToyEvolutionScorer, "toy", toy, raising=False)
  monkeypatch.setattr(scoring, "Scorer", ToyEvolutionScorer)
  monkeypatch.setattr(search_run, "_SESSIONS", {})
  out = tmp_path / "r.json"
  result = CliRunner().invoke(cli.cli, [
      "search", "--data", str(gray_folder(tmp_path / "digits")), "--board", "nucleo-f411re",
      "--max-latency-ms", "100", "--budget", "60", "--population", "20", "--out", str(out),
      "--no-progress"])
  assert result.exit_code == 0, result.output
  report = json.loads(out.read_text())
  assert report["latency_ms"] <= 100 and report["sram_kb"] <= 128 and report["flash_kb"] <= 512
  assert "NUCLEO-F411RE" in report["device"] and report["network"]["in_channels"] == 1
  assert np.isfinite(report["fitness"])


@needs_emulator
def test_a_reported_network_is_profiled_exactly_and_agrees_with_the_kernel_model(tmp_path):
  report = {"arch": space.format_arch(space.arch_at(1462)),
            "network": {"channels": 4, "cells_per_stage": 1, "num_stages": 3, "resolution": 12,
                        "in_channels": 1, "num_classes": 4}}
  (tmp_path / "r.json").write_text(json.dumps(report))
  out = tmp_path / "exact.json"
  result = CliRunner().invoke(cli.cli, ["lut", "profile", "--target", "cortex-m4-cycles",
                                        "--from-report", str(tmp_path / "r.json"), "--out",
                                        str(out)])
  assert result.exit_code == 0, result.output
  exact = latency.load(out)
  assert exact.config.resolution == 12 and exact.config.in_channels == 1
  modelled = shapes.lut_for(exact.config, latency.board("nucleo-f411re"))
  arch = space.arch_at(1462)[None]
  assert float(latency.estimate(arch, modelled)[0]) == pytest.approx(
      float(latency.estimate(arch, exact)[0]), rel=0.02)
