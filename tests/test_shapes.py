"""hardware.shapes: latency of any skeleton from the shipped kernel models, without the emulator;
checked against the default table and, where the emulator is installed (CI), against an emulated
whole network at a skeleton the fit never ran."""
import dataclasses

import numpy as np
import pytest

from micronas_jax import space
from micronas_jax.hardware import latency, shapes
from micronas_jax.hardware.emu import cycles
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NB201_CIFAR10, NetworkConfig

needs_emulator = pytest.mark.skipif(
    emu_machine.missing() is not None or cycles.capstone_missing() is not None,
    reason=f"emulator unavailable: {emu_machine.missing() or cycles.capstone_missing()}")


def test_the_model_at_the_default_network_reproduces_the_default_tables_entries():
  board = latency.board("stm32f746")
  model = shapes.lut_for(NB201_CIFAR10, board)
  for (name, ours), (_, theirs) in zip(latency.entries(model), latency.entries(board)):
    assert ours == pytest.approx(theirs, rel=0.02, abs=1e-9), name


def test_other_skeletons_get_their_own_table_that_grows_with_width_depth_and_input():
  board = latency.board("stm32f746")
  arch = space.arch_at(1462)[None]
  small = NetworkConfig(channels=8, cells_per_stage=2, resolution=24, in_channels=1,
                        num_classes=4)
  lut = shapes.lut_for(small, board)
  assert lut.config == small and lut.memory == board.memory and lut.unit == "ms"
  assert "C=8, N=2, 24x24x1, 4 classes" in lut.provenance["shapes"]
  base = float(latency.estimate(arch, lut)[0])
  for bigger in (dict(channels=16), dict(cells_per_stage=3), dict(resolution=32)):
    grown = shapes.lut_for(dataclasses.replace(small, **bigger), board)
    assert float(latency.estimate(arch, grown)[0]) > base, bigger


def test_a_table_without_a_cycle_scale_is_refused_and_a_bad_model_file_named():
  with pytest.raises(latency.LUTError, match="not a cycle-model table"):
    shapes.lut_for(NB201_CIFAR10, latency.board("stm32f746-analytic"))
  with pytest.raises(latency.LUTError, match="not a kernel model"):
    shapes.KernelModel.from_dict({"format": "x"})
  fields = shapes.packaged().to_dict()
  del fields["coefficients"]["head"]
  with pytest.raises(latency.LUTError, match="lacks head"):
    shapes.KernelModel.from_dict(fields)
  assert shapes.KernelModel.from_dict(shapes.packaged().to_dict()).core == "cortex-m7"


@needs_emulator
def test_the_model_predicts_an_emulated_network_at_an_unseen_skeleton():
  from micronas_jax.hardware.emu import kernels
  from micronas_jax.runtime import params as runtime_params

  # Width 12, 20x20 gray input and 5 classes: none of them on the fit's grid.
  config = NetworkConfig(channels=12, cells_per_stage=1, resolution=20, in_channels=1,
                         num_classes=5)
  arch = space.arch_at(1462)
  rng = np.random.default_rng(0)
  params = runtime_params.random_network(rng, 12, 1, 3, 1, 5)
  network = kernels.Network(cycles.CycleMachine(), params, 20, 1)
  _, emulated = network.forward(rng.integers(-128, 128, (20, 20, 1)).astype(np.int8), arch)
  board = latency.board("stm32f746")
  ms = float(latency.estimate(arch[None], shapes.lut_for(config, board))[0])
  modelled = ms * board.clock_mhz * 1e3 / board.constants["resnet8"]["scale"]
  assert modelled == pytest.approx(emulated, rel=0.05)


def test_the_search_prices_the_tasks_network_and_refuses_one_a_table_cannot_price(tmp_path):
  from click.testing import CliRunner

  from micronas_jax import data
  from micronas_jax.cli import cli
  from micronas_jax.search import run as search_run
  from tests.test_task import gray_folder

  task = data.infer_task(gray_folder(tmp_path / "digits"))
  network = search_run.searched_network(NB201_CIFAR10, task, channels=8, cells=2)
  assert search_run.network_fields(network) == {
      "channels": 8, "cells_per_stage": 2, "num_stages": 3, "resolution": 28, "in_channels": 1,
      "num_classes": 3}
  assert search_run.searched_network(NB201_CIFAR10) == NB201_CIFAR10
  board = latency.board("stm32f746")
  assert shapes.at_network(board, NB201_CIFAR10) is board
  result = CliRunner().invoke(cli, ["search", "--board", "stm32f746-analytic", "--data",
                                    str(tmp_path / "digits"), "--no-progress"])
  assert result.exit_code == 2
  assert "its table prices only C=16, N=5, 32x32x3" in result.output
  result = CliRunner().invoke(cli, ["search", "--resolution", "30", "--no-progress"])
  assert result.exit_code == 2 and "resolution 30 must be divisible by 4" in result.output
