"""Deployment to C: the program, the int8 quantization, the arena, and the deploy entry point.

Tiny networks (C=4, N=1, 32x32): a float forward is milliseconds, an emulated run a few seconds.
Tests that build or emulate skip, with the reason, without arm-none-eabi-gcc or the `emu` extra.
"""
import json
import shutil
import subprocess

import jax
import numpy as np
import pytest

from micronas_jax import export, graph, model, space
from micronas_jax.deploy import DeployError, codegen, deploy, program
from micronas_jax.hardware import latency, memory
from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.network import NetworkConfig
from micronas_jax.runtime import float_reference, quantize

TINY = NetworkConfig(channels=4, cells_per_stage=1)
N, S, C1, C3, P = space.NONE, space.SKIP, space.CONV1X1, space.CONV3X3, space.POOL
CELLS = [
    space.arch_at(13987),       # the README's cell: skips and both convs
    np.array([S, S, N, S, P, C3]),
    np.array([N, N, C3, C1, S, P]),  # node 1 has no input: a zero tensor, read by two edges
    np.array([S, N, S, S, S, N]),    # node 3 = n0 + n1 + ... where n1 is n0 itself: add(x, x)
    np.full(6, N),
]
_MISSING = emu_machine.missing()
needs_emulator = pytest.mark.skipif(_MISSING is not None,
                                    reason=f"emulator unavailable: {_MISSING}")


@pytest.fixture(scope="module")
def variables():
  return jax.jit(model.init, static_argnums=1)(jax.random.PRNGKey(0), TINY)  # one program


def _inputs(count, seed=0):
  return np.random.default_rng(seed).standard_normal((count, *TINY.input_shape), np.float32)


@pytest.mark.parametrize("ops", CELLS[:3])
def test_float_program_equals_the_flax_network(variables, ops):
  x = _inputs(4)
  weights = export.folded_weights(variables, ops, TINY)
  logits = float_reference.float_forward(program.build(ops, TINY), weights, x)
  expected, _ = jax.jit(model.apply, static_argnums=(3, 4))(variables, ops, x, TINY, False)
  np.testing.assert_allclose(logits, np.asarray(expected), atol=1e-4)


# The arena of each of CELLS by hand. A stage-1 tensor of TINY is 4 x 32 x 32 = 4096 B; reduction
# 1 holds x (4096) + conv_a (2048) + conv_b (2048) = 8192 B, the peak where a cell holds fewer.
ARENA_BY_HAND = [
    4 * 4096,  # at node 2's sum: n0 (read again by 3<-0), conv 3x3 of n0, conv 1x1 of n1, the sum
    3 * 4096,  # node 3: n0 (read by the conv of n2 = n0), pool(n0) + n0, then the conv's output
    4 * 4096,  # at 3<-0's conv: n0, node 1's zeros (read again by 3<-1), node 2's conv, the conv
    8192,      # add(n0, n0): n0 and the sum, 2 x 4096 = reduction 1's 8192
    8192,      # one zero tensor: reduction 1's 8192
]


@pytest.mark.parametrize("ops, by_hand", zip(CELLS, ARENA_BY_HAND))
def test_arena_is_the_memory_estimate(ops, by_hand):
  # The greedy arena reaches the live-tensor peak, which is what hw's plan for the C code says.
  _, arena = program.plan_arena(program.build(ops, TINY))
  assert arena == by_hand
  assert memory.peak_sram(ops, TINY, plan=memory.PLAN_C) == by_hand


def test_arena_offsets_never_overlap_live_tensors():
  prog = program.build(CELLS[1], TINY)
  offsets, _ = program.plan_arena(prog)
  span = graph.lifetimes(prog.nodes, (graph.IMAGE,))
  names = list(offsets)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      if span[a][0] <= span[b][1] and span[b][0] <= span[a][1]:
        assert (offsets[a] + prog.size(a) <= offsets[b]
                or offsets[b] + prog.size(b) <= offsets[a]), (a, b)


def test_multiplier_represents_the_real_scale():
  real = np.array([0.75, 1e-3, 3.2, 0.5, 0.999999999])
  mult, shift = quantize._multiplier(real)
  assert ((mult >= 2**30) & (mult < 2**31)).all()
  np.testing.assert_allclose(mult * 2.0**(-31 - shift.astype(float)), real, rtol=2**-30)


def test_multiplier_clamps_where_every_output_saturates_or_vanishes():
  mult, shift = quantize._multiplier(np.array([1e6, 1e-20]))
  assert shift.tolist() == [quantize.SHIFT_MIN, quantize.SHIFT_MAX]
  # acc = 1 at the huge scale saturates to 127 either way; at the tiny one it is 0.
  from micronas_jax.runtime import reference
  assert reference.saturate(reference.requantize(1, mult[0], shift[0])) == 127
  assert reference.requantize(10**6, mult[1], shift[1]) == 0


def test_add_params_compute_the_rescaled_sum():
  p = quantize.quantize_add(0.02, 0.05, 0.04)
  a, b = np.arange(-100, 100, 7), np.arange(100, -100, -7)
  from micronas_jax.runtime import reference
  out = reference.add(a, b, p.mult_a, p.mult_b, p.shift).astype(float)
  np.testing.assert_array_less(np.abs(out - np.clip((0.02 * a + 0.05 * b) / 0.04, -128, 127)),
                               0.5 + 1e-6)


@pytest.mark.parametrize("ops", CELLS)
def test_int8_network_follows_the_float_one(variables, ops):
  x = _inputs(48)
  weights = export.folded_weights(variables, ops, TINY)
  prog = program.build(ops, TINY)
  ranges, floats = quantize.calibrate(prog, weights, x)
  net = quantize.quantize(prog, weights, ranges)
  logits = quantize.run(net, net.quantize_images(x)) * net.scales[graph.LOGITS]
  assert np.corrcoef(logits.ravel(), floats.ravel())[0, 1] > 0.99
  assert np.mean(logits.argmax(1) == floats.argmax(1)) >= 0.9


def test_batched_reference_equals_one_image_at_a_time(variables):
  ops = CELLS[1]
  x = _inputs(3)
  weights = export.folded_weights(variables, ops, TINY)
  prog = program.build(ops, TINY)
  net = quantize.quantize(prog, weights, quantize.calibrate(prog, weights, x)[0])
  images = net.quantize_images(x)
  np.testing.assert_array_equal(quantize.run(net, images),
                                np.concatenate([quantize.run(net, im[None]) for im in images]))


# --- deploy: bad input, refused before anything is written ---------------------------------------


def test_refuses_a_folder_that_is_not_a_previous_deploy(tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "notes.txt").write_text("mine")
  with pytest.raises(DeployError, match="not a previous deploy"):
    deploy(13987, tmp_path / "out", channels=4, cells=1, log=lambda _: None)
  assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_refuses_images_of_the_wrong_shape(tmp_path):
  with pytest.raises(DeployError, match=r"images of shape \[2, 16, 16, 3\]"):
    deploy(13987, tmp_path / "out", images=np.zeros((2, 16, 16, 3), np.float32), channels=4,
           cells=1, log=lambda _: None)
  assert not (tmp_path / "out").exists()


def test_refuses_verify_without_the_toolchain_and_says_how_to_install(tmp_path, monkeypatch):
  monkeypatch.setattr(emu_machine, "missing",
                      lambda: "arm-none-eabi-gcc not found (Debian/Ubuntu: apt-get install "
                              "gcc-arm-none-eabi)")
  with pytest.raises(DeployError, match="apt-get install gcc-arm-none-eabi"):
    deploy(13987, tmp_path / "out", verify=True, channels=4, cells=1, log=lambda _: None)


def test_a_network_over_the_board_is_refused_unless_forced(tmp_path):
  board = latency.to_dict(latency.board("stm32f746-emu"))
  board["memory"]["flash_bytes"] = 4096
  lut = tmp_path / "small.json"
  lut.write_text(json.dumps(board))
  with pytest.raises(DeployError, match=r"flash .* KB > 4 KB \(over by"):
    deploy(13987, tmp_path / "out", lut=lut, channels=4, cells=1, log=lambda _: None)
  assert not (tmp_path / "out").exists()
  report = deploy(13987, tmp_path / "out", lut=lut, force=True, channels=4, cells=1,
                  calibration_images=8, agreement_images=0, log=lambda _: None)
  assert (tmp_path / "out" / "mnj_model.c").exists()
  assert "does not fit" in report.summary()


# --- deploy: the built library --------------------------------------------------------------------


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
  if _MISSING is not None:
    pytest.skip(f"emulator unavailable: {_MISSING}")
  out = tmp_path_factory.mktemp("deploy") / "cell"
  return out, deploy(CELLS[2], out, verify=True, channels=4, cells=1, calibration_images=32,
                     agreement_images=32, emulated_images=2, log=lambda _: None)


@needs_emulator
def test_emulated_program_is_bit_exact_and_agrees_with_float(verified):
  _, report = verified
  v = report.verification
  assert v["bit_exact"] and v["emulated_images"] == 2
  assert v["agreement"] >= 0.9 and report.passed
  # The LUT counts C=16, N=5: the instruction check is skipped, and says so.
  assert report.checks["bit-exact"]["status"] == "passed"
  assert report.checks["instructions"] == {
      "status": "skipped",
      "detail": "the LUT counts another network: C=4 (LUT: 16), N=1 (LUT: 5)"}


@needs_emulator
def test_built_memory_is_within_five_percent_of_the_estimate(verified):
  _, report = verified
  built = report.built["cortex-m7"]
  assert built["stack_bytes"] > 0
  # C=4 needs less im2col scratch than the LUT's C=16 runtime: compare the arena exactly.
  assert report.planned["arena_bytes"] == memory.peak_sram(CELLS[2], TINY, plan=memory.PLAN_C)
  flash = memory.flash(CELLS[2], TINY, plan=memory.PLAN_C)
  assert built["rodata"] - flash >= 0 and built["rodata"] <= 1.05 * flash


@needs_emulator
def test_folder_holds_the_library_and_a_rerun_keeps_the_users_files(verified, tmp_path):
  out, report = verified
  for name in ("mnj_model.c", "mnj_model.h", "mnj_kernels.c", "Makefile", "README.md",
               "deploy.json"):
    assert (out / name).is_file(), name
  manifest = json.loads((out / "deploy.json").read_text())
  assert manifest["index"] == report.index and manifest["format"] == "micronas-jax-deploy/2"
  # The manifest hashes every file deploy wrote (library and ELFs), and nothing else.
  assert sorted(manifest["sha256"]) == sorted(
      p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
      and p.name != "deploy.json")
  assert {"build/mnj-cortex-m7.elf", "mnj_model.c"} <= set(manifest["sha256"])
  assert report.files == sorted(codegen.FILES)  # what a redeploy checks before the work
  copy = tmp_path / "cell"
  shutil.copytree(out, copy)
  (copy / "main.c").write_text("int main(void) { return 0; }\n")
  again = deploy(CELLS[2], copy, channels=4, cells=1, calibration_images=8, agreement_images=0,
                 log=lambda _: None)
  assert (copy / "main.c").read_text() == "int main(void) { return 0; }\n"
  assert again.kept == ["main.c"] and "main.c" not in again.sha256
  assert again.checks == {} and "checks: none run" in again.summary()


def test_a_seed_beyond_32_bits_is_refused(tmp_path):
  with pytest.raises(DeployError, match=r"seed=99999999999999999999: a seed lies in 0\.\."):
    deploy(13987, tmp_path / "out", seed=99999999999999999999, channels=4, cells=1,
           log=lambda _: None)
  assert not (tmp_path / "out").exists()


def test_checks_line_counts_skipped_checks_apart_from_passed_ones():
  from micronas_jax.deploy import api
  checks = {"bit-exact": {"status": "passed", "detail": ""},
            "agreement": {"status": "passed", "detail": ""},
            "instructions": {"status": "skipped", "detail": "no counts"}}
  assert api.checks_line(checks) == "checks: 2 passed, 1 skipped (instructions: no counts)"
  checks["agreement"]["status"] = "failed"
  assert api.checks_line(checks) == ("CHECKS FAILED: 1 failed (agreement), 1 passed, "
                                     "1 skipped (instructions: no counts)")
  assert api.checks_line({}) == "checks: none run (verify=True runs them)"


@needs_emulator
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_makefile_builds_the_library_for_cortex_m4(verified, tmp_path):
  out, _ = verified
  copy = tmp_path / "cell"
  shutil.copytree(out, copy)
  result = subprocess.run(["make", "CPU=cortex-m4", "libmnj.a", "size"], cwd=copy,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  assert (copy / "libmnj.a").stat().st_size > 0 and ".rodata" in result.stdout


def test_c_plan_drops_the_relu_tensor_by_hand():
  # 2<-0 conv 3x3 while n0 lives on for 3<-0 skip: the C code holds n0 and the conv output (2);
  # TFLite Micro's plan also holds ReLU(n0) (3).
  ops = np.array([N, C3, N, S, N, N])
  assert memory.cell_live_tensors(ops, memory.PLAN_C) == 2
  assert memory.cell_live_tensors(ops) == 3
  # Reduction 1 of TINY: x 128 B, conv_a 64, conv_b 64 live at once = 256 (TFLite: + ReLU 128).
  tiny = NetworkConfig(channels=2, cells_per_stage=1, resolution=8)
  assert memory.fixed_peaks(tiny, memory.PLAN_C)["reduction1"] == 256


def test_c_plan_flash_counts_bias_multiplier_and_shift_per_channel():
  tiny = NetworkConfig(channels=2, cells_per_stage=1, resolution=8)
  one_conv = np.array([C1, N, N, N, N, N])
  # A 1x1 conv at stage s of C_s channels: C_s^2 int8 weights + 12 bytes per output channel.
  added = (memory.flash(one_conv, tiny, plan=memory.PLAN_C)
           - memory.flash(np.full(6, N), tiny, plan=memory.PLAN_C))
  assert added == sum(c * c + 12 * c for c in tiny.stage_channels)


def test_hw_on_the_emulated_board_counts_what_deploy_builds():
  # Not against deploy's estimate (it and hw both read hardware.memory): SRAM is the arena deploy
  # generates for the LUT's network (C=16, N=5), flash the C library's weights by hand; each
  # with the LUT's runtime.
  from micronas_jax.hardware import costs
  lut = latency.board("stm32f746-emu")
  ops = space.arch_at(13987)  # conv 3x3 on 2<-0, conv 1x1 on 2<-1 and on 3<-2
  hw = costs.cell_costs(ops, lut)
  _, arena = program.plan_arena(program.build(ops, lut.config))
  assert round(hw["sram_kb"] * 1024) == arena + lut.memory.runtime_sram_bytes
  # A conv: int8 kernel, and per output channel an int32 bias, multiplier and shift (12 B).
  conv = lambda k, c_in, c_out: k * k * c_in * c_out + 12 * c_out
  c1, c2, c3 = lut.config.stage_channels
  weights = (conv(3, 3, c1)  # stem
             + sum(lut.config.cells_per_stage * (conv(3, c, c) + 2 * conv(1, c, c))
                   for c in (c1, c2, c3))
             + sum(conv(3, a, b) + conv(3, b, b) + conv(1, a, b)  # reduction: a, b, shortcut
                   for a, b in ((c1, c2), (c2, c3)))
             + 2 * 4 * c3 + 2 * 4  # head BN: int32 scale and shift per channel, two scalars
             + c3 * 10 + 4 * 10)  # classifier: int8 kernel, int32 bias
  assert round(hw["flash_kb"] * 1024) == weights + lut.memory.runtime_flash_bytes
