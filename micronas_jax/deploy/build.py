"""Building the generated library with arm-none-eabi-gcc, measuring it, and running it emulated.

Measured memory of the standalone image (`codegen.LINKER_SCRIPT`):
  flash = .text + .rodata + .data
  SRAM  = .data + .bss + the stack's high-water mark of one `mnj_run` (painted stack, emulated)
"""
from __future__ import annotations

import dataclasses
import pathlib
import subprocess

import numpy as np

from micronas_jax.deploy import codegen
from micronas_jax.hardware.emu import machine as emu_machine

BUILD_DIR = "build"


class BuildError(RuntimeError):
  """The compiler rejected the generated code (a bug, not bad input): its message is gcc's."""


def elf_path(folder: pathlib.Path, cpu: str) -> pathlib.Path:
  """Where `compile_image` writes the standalone image for `cpu`."""
  return pathlib.Path(folder) / BUILD_DIR / f"mnj-{cpu}.elf"


def compile_image(folder: pathlib.Path, cpu: str = "cortex-m7") -> pathlib.Path:
  """Compiles the library in `folder` into a standalone ELF for `cpu` (the Makefile's `mnj.elf`
  flags, soft float) and returns its path."""
  reason = emu_machine.missing()
  if reason and emu_machine.GCC in reason:
    raise emu_machine.ToolchainMissing(reason)
  out = elf_path(folder, cpu)
  out.parent.mkdir(exist_ok=True)
  command = [emu_machine.GCC, f"-mcpu={cpu}", "-mfloat-abi=soft", *codegen.CFLAGS,
             *codegen.LDFLAGS, *codegen.SOURCES, "-lgcc", "-o", str(out.relative_to(folder))]
  result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
  if result.returncode:
    raise BuildError(f"{emu_machine.GCC} failed on {folder}:\n{result.stderr}")
  return out


@dataclasses.dataclass(frozen=True)
class Emulated:
  """What the emulated Cortex-M7 computed for a batch of images.

  Attributes:
    logits: `[N, classes]` int32; top1: `[N]` what `mnj_run` returned.
    instructions: `[N]` executed instructions of each `mnj_run`.
    stack_bytes: the largest stack high-water mark over the runs.
  """
  logits: np.ndarray
  top1: np.ndarray
  instructions: np.ndarray
  stack_bytes: int


def emulate(elf: pathlib.Path, images_q: np.ndarray, classes: int) -> Emulated:
  """Runs `mnj_run` of the image `elf` on int8 images `[N, r, r, c]` in the emulator."""
  machine = emu_machine.Machine(elf)
  image = machine.alloc(np.int8, images_q.shape[1:])
  logits_buffer = machine.alloc(np.int32, classes)
  logits, top1, counts, stack = [], [], [], 0
  for x in images_q:
    machine.write(image, x)
    best, count, used = machine.call_measuring_stack(codegen.ENTRY, image, logits_buffer)
    logits.append(machine.get(logits_buffer))
    top1.append(best)
    counts.append(count)
    stack = max(stack, used)
  return Emulated(np.array(logits), np.array(top1), np.array(counts), stack)
