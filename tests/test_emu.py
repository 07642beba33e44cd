"""The emulated Cortex-M7 kernels equal the int8 numpy reference (tiny tensors, one ELF per session).

Skipped, with the reason, when arm-none-eabi-gcc, unicorn or pyelftools is missing.
"""
import numpy as np
import pytest

from micronas_jax.hardware.emu import machine as emu_machine
from micronas_jax.runtime import params as runtime_params

_MISSING = emu_machine.missing()
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=f"emulator unavailable: {_MISSING}")

if _MISSING is None:
  from micronas_jax.hardware.emu import kernels
  from micronas_jax.runtime import reference


@pytest.fixture(scope="session")
def machine():
  return emu_machine.Machine()


def _int8(rng, shape):
  return rng.integers(-128, 128, shape).astype(np.int8)


@pytest.mark.parametrize("h, c_in, c_out, k, stride, relu_in", [
    (5, 4, 6, 3, 1, True),    # cell 3x3 conv, odd size: padding on every side
    (6, 8, 4, 3, 2, True),    # reduction conv_a (stride 2)
    (4, 3, 4, 3, 1, False),   # stem: 3 input channels take the scalar im2col path
    (5, 8, 8, 1, 1, True),    # cell 1x1 conv
    (4, 6, 2, 1, 1, False),   # shortcut 1x1 conv, channels not a multiple of 4
])
def test_conv_matches_reference(machine, h, c_in, c_out, k, stride, relu_in):
  rng = np.random.default_rng(h * 100 + c_in)
  x, p = _int8(rng, (h, h, c_in)), runtime_params.random_conv(rng, c_in, c_out, k)
  out, count = kernels.conv(machine, x, p, stride, relu_in)
  np.testing.assert_array_equal(out, reference.conv(x, p, stride, relu_in))
  assert count > 0


def test_conv_requantization_saturates_like_reference(machine):
  rng = np.random.default_rng(1)
  x, p = _int8(rng, (3, 3, 4)), runtime_params.random_conv(rng, 4, 4, 3)
  p = reference.ConvParams(p.weights, p.bias, p.mult, np.zeros(4, np.int32))  # scale ~0.5-1
  out, _ = kernels.conv(machine, x, p)
  expected = reference.conv(x, p)
  assert (np.abs(expected.astype(int)) >= 127).any()
  np.testing.assert_array_equal(out, expected)


def test_avgpool3x3_matches_reference(machine):
  x = _int8(np.random.default_rng(2), (5, 6, 8))
  out, _ = kernels.avgpool3x3(machine, x)
  np.testing.assert_array_equal(out, reference.avgpool3x3(x))


def test_avgpool2x2_matches_reference(machine):
  x = _int8(np.random.default_rng(3), (4, 6, 4))
  out, _ = kernels.avgpool2x2(machine, x)
  np.testing.assert_array_equal(out, reference.avgpool2x2(x))


@pytest.mark.parametrize("mult_a, mult_b, shift", [(1 << 16, 1 << 16, 16), (3 << 15, 5 << 14, 16)])
def test_add_matches_reference(machine, mult_a, mult_b, shift):
  rng = np.random.default_rng(4)
  a, b = _int8(rng, (3, 5, 4)), _int8(rng, (3, 5, 4))
  out, _ = kernels.add(machine, a, b, mult_a, mult_b, shift)
  np.testing.assert_array_equal(out, reference.add(a, b, mult_a, mult_b, shift))


def test_head_matches_reference(machine):
  rng = np.random.default_rng(5)
  x, p = _int8(rng, (2, 3, 8)), runtime_params.random_head(rng, 8, 10)
  out, _ = kernels.head(machine, x, p)
  np.testing.assert_array_equal(out, reference.head(x, p))


@pytest.mark.parametrize("arch", [(0, 0, 0, 0, 0, 0), (1, 2, 3, 4, 3, 2), (4, 1, 0, 2, 3, 4)])
def test_whole_network_matches_reference(machine, arch):
  # C=4, N=1, 3 stages at 8x8: stem, two reduction blocks, three cells, head.
  rng = np.random.default_rng(6)
  params = runtime_params.random_network(rng, channels=4, cells=1, stages=3)
  image = _int8(rng, (8, 8, 3))
  logits, _ = kernels.Network(machine, params, resolution=8).forward(image, arch)
  np.testing.assert_array_equal(logits, reference.network(image, arch, params))


def test_instruction_count_depends_on_shape_not_data(machine):
  rng = np.random.default_rng(7)
  p = runtime_params.random_conv(rng, 8, 8, 3)
  counts = [kernels.conv(machine, _int8(rng, (4, 4, 8)), p, relu_in=True)[1] for _ in range(3)]
  assert max(counts) - min(counts) <= 0.001 * max(counts)
  assert kernels.conv(machine, _int8(rng, (6, 6, 8)), p, relu_in=True)[1] > max(counts)


def test_build_is_cached_and_rebuilds_when_the_cache_is_empty(machine, tmp_path, monkeypatch):
  # Cached: a second build compiles nothing (only `gcc --version` runs, for the cache key).
  run = emu_machine.subprocess.run
  compiles = []

  def counting_run(args, *rest, **kwargs):
    if "-o" in args:
      compiles.append(args)
    return run(args, *rest, **kwargs)

  monkeypatch.setattr(emu_machine.subprocess, "run", counting_run)
  assert emu_machine.build() == machine.elf_path and compiles == []
  # An empty cache folder: one compilation, into that folder, and the same bytes as the cache's.
  monkeypatch.setenv("MICRONAS_EMU_CACHE", str(tmp_path))
  rebuilt = emu_machine.build()
  assert len(compiles) == 1 and rebuilt.parent == tmp_path and rebuilt.name == machine.elf_path.name
  assert rebuilt.stat().st_size > 0
