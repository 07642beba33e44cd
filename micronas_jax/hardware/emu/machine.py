"""Build the C kernels with arm-none-eabi-gcc and run them on an emulated Cortex-M7 (Unicorn).

The runtime's kernels (`micronas_jax/runtime/kernels.c`, package data) are compiled once per source/flags/compiler into a cache
directory (`$MICRONAS_EMU_CACHE`, else `~/.cache/micronas-jax/emu`), the ELF is loaded with
pyelftools, and `Machine.call` runs one function with the AAPCS and returns its result and the
number of instructions it executed.

Counting: a block hook fires once per executed basic block; each distinct block is decoded once
(Thumb-2: a halfword whose top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit
instruction) and its instruction count cached, so the hook only adds. Instructions inside an IT
block whose condition fails are counted too: the count is of instructions issued.

The CPU: Unicorn 2.1's UC_MODE_MCLASS silently runs a Cortex-M33 whatever model is set, so the
engine is created in plain Thumb mode and set to the Cortex-M7 model
(`ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M7)`) before any mapping; found by the project's feasibility
check (shared/research/cortex-m7-emulation-notes.md).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import os
import pathlib
import shutil
import subprocess

import numpy as np

GCC = "arm-none-eabi-gcc"
# The kernels' flags for any core; FLAGS built the emulated LUTs' kernels.
CORE_FLAGS = ("-mthumb", "-O2", "-mfloat-abi=soft", "-ffreestanding", "-nostdlib", "-Wall",
              "-Wextra")
FLAGS = ("-mcpu=cortex-m7", *CORE_FLAGS)
CODE_BASE = 0x0800_0000
RAM_BASE, RAM_SIZE = 0x2000_0000, 64 << 20
STACK_BYTES = 64 << 10  # the top of RAM
STACK_PAINT = 0xA5  # what an unused stack byte holds while `call_measuring_stack` runs
# Package data that build() compiles: the runtime's kernels and the emulator's linker script.
SOURCES = ("kernels.c", "kernels.h", "link.ld")


class ToolchainMissing(RuntimeError):
  """arm-none-eabi-gcc, unicorn or pyelftools is not installed: the message says how to get it."""


def missing() -> str | None:
  """Why the emulator cannot run here (the missing tool and how to install it), or None."""
  if shutil.which(GCC) is None:
    return f"{GCC} not found (Debian/Ubuntu: apt-get install gcc-arm-none-eabi)"
  for module, package in (("unicorn", "unicorn"), ("elftools", "pyelftools")):
    try:
      __import__(module)
    except ImportError:
      return f"Python package {package} not installed (pip install 'micronas-jax[emu]')"
  return None


def _source(name: str) -> bytes:
  package = "micronas_jax.hardware.emu" if name == "link.ld" else "micronas_jax.runtime"
  return importlib.resources.files(package).joinpath(name).read_bytes()


def compiler_version() -> str:
  """First line of `arm-none-eabi-gcc --version`."""
  out = subprocess.run([GCC, "--version"], capture_output=True, text=True, check=True).stdout
  return out.splitlines()[0]


def cache_dir() -> pathlib.Path:
  """Where built ELFs are kept."""
  default = pathlib.Path.home() / ".cache" / "micronas-jax" / "emu"
  return pathlib.Path(os.environ.get("MICRONAS_EMU_CACHE", default))


def build() -> pathlib.Path:
  """Compiles kernels.c (if not cached) and returns the ELF's path.

  The cache key hashes the source, linker script, flags and compiler version, so an edit or a new
  compiler rebuilds.
  """
  reason = missing()
  if reason:
    raise ToolchainMissing(reason)
  sources = {name: _source(name) for name in SOURCES}
  key = hashlib.sha256(b"\0".join([*sources.values(), " ".join(FLAGS).encode(),
                                   compiler_version().encode()])).hexdigest()[:16]
  elf = cache_dir() / f"kernels-{key}.elf"
  if elf.exists():
    return elf
  elf.parent.mkdir(parents=True, exist_ok=True)
  work = elf.parent / f"build-{key}-{os.getpid()}"
  work.mkdir(exist_ok=True)
  for name, data in sources.items():
    (work / name).write_bytes(data)
  partial = work / "kernels.elf"
  result = subprocess.run([GCC, *FLAGS, "-T", "link.ld", "kernels.c", "-lgcc", "-o", partial.name],
                          cwd=work, capture_output=True, text=True, check=False)
  if result.returncode:
    raise RuntimeError(f"{GCC} failed:\n{result.stderr}")
  os.replace(partial, elf)  # atomic: parallel test sessions never see half an ELF
  shutil.rmtree(work, ignore_errors=True)
  return elf


@dataclasses.dataclass(frozen=True)
class Sections:
  """Section sizes in bytes of a built image."""
  text: int
  rodata: int
  data: int
  bss: int

  @property
  def flash(self) -> int:
    return self.text + self.rodata + self.data

  @property
  def static_ram(self) -> int:
    return self.data + self.bss


def sections(elf: pathlib.Path) -> Sections:
  """Sizes of .text, .rodata, .data and .bss of an ELF (pyelftools; 0 for a missing one)."""
  from elftools.elf.elffile import ELFFile
  with open(elf, "rb") as f:
    found = {s.name: s["sh_size"] for s in ELFFile(f).iter_sections()}
  return Sections(*(found.get(name, 0) for name in (".text", ".rodata", ".data", ".bss")))


def _thumb_count(code: bytes) -> int:
  """Instructions in a block of Thumb-2 code."""
  count, i = 0, 0
  while i < len(code):
    top = code[i + 1] >> 3  # little-endian halfword: its top five bits are in the second byte
    i += 4 if top in (0x1D, 0x1E, 0x1F) else 2
    count += 1
  return count


@dataclasses.dataclass
class Buffer:
  """A tensor placed in emulated RAM: its address, dtype and shape."""
  address: int
  dtype: np.dtype
  shape: tuple[int, ...]


class Machine:
  """One emulated Cortex-M7 with the kernels loaded; RAM is handed out by `alloc` until `reset`.

  Usage: `m = Machine(); x = m.put(array); y = m.alloc(np.int8, shape); m.call("fn", x, ...)`
  then `m.get(y)`.
  """

  def __init__(self, elf: pathlib.Path | None = None):
    from elftools.elf.elffile import ELFFile
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_THUMB, Uc, arm_const

    self.elf_path = elf or build()
    self._uc = uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB)
    uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M7)
    self._regs = arm_const
    self.symbols = {}
    with open(self.elf_path, "rb") as f:
      elf_file = ELFFile(f)
      segments = [(s["p_vaddr"], s.data() + bytes(s["p_memsz"] - s["p_filesz"]))
                  for s in elf_file.iter_segments() if s["p_type"] == "PT_LOAD"]
      for symbol in elf_file.get_section_by_name(".symtab").iter_symbols():
        if symbol["st_info"]["type"] == "STT_FUNC":
          self.symbols[symbol.name] = symbol["st_value"]  # bit 0 set: Thumb
    # Flash: 1 MB, or whole MBs past the program's end (a deployed network's weights), with the
    # return address in the last MB, which holds no code.
    code_end = max([a + len(d) for a, d in segments if a < RAM_BASE] + [CODE_BASE])
    flash_bytes = max(1 << 20, ((code_end - CODE_BASE + 0x100) + (1 << 20) - 1) >> 20 << 20)
    self.return_address = CODE_BASE + flash_bytes - 0x100
    uc.mem_map(CODE_BASE, flash_bytes)
    uc.mem_map(RAM_BASE, RAM_SIZE)
    self._image = bytearray(flash_bytes)
    for address, data in segments:
      uc.mem_write(address, data)
      if CODE_BASE <= address < CODE_BASE + flash_bytes:
        self._image[address - CODE_BASE:address - CODE_BASE + len(data)] = data
    # Buffers go above the program's own RAM (.data, .bss), 8-byte aligned.
    ram_end = max([a + len(d) for a, d in segments if a >= RAM_BASE] + [RAM_BASE])
    self._ram_start = (ram_end + 7) & ~7
    self._block_sizes: dict[int, int] = {}
    self._executed = 0
    uc.hook_add(UC_HOOK_BLOCK, self._on_block)
    self.reset()

  def _on_block(self, uc, address, size, _):
    count = self._block_sizes.get(address)
    if count is None:
      start = address - CODE_BASE
      count = self._block_sizes[address] = _thumb_count(bytes(self._image[start:start + size]))
    self._executed += count

  def reset(self) -> None:
    """Frees every buffer (the next `alloc` starts at the bottom of free RAM)."""
    self._next = self._ram_start

  def alloc(self, dtype, shape) -> Buffer:
    """An uninitialised buffer of `shape` and `dtype` (8-byte aligned)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in np.atleast_1d(shape))
    size = int(np.prod(shape)) * dtype.itemsize
    address = self._next
    self._next = (address + size + 7) & ~7
    if self._next > RAM_BASE + RAM_SIZE - STACK_BYTES:
      raise MemoryError(f"emulated RAM exhausted allocating {size} bytes")
    return Buffer(address, dtype, shape)

  def put(self, array) -> Buffer:
    """Copies `array` into a new buffer."""
    array = np.ascontiguousarray(array)
    buffer = self.alloc(array.dtype, array.shape)
    self._uc.mem_write(buffer.address, array.tobytes())
    return buffer

  def write(self, buffer: Buffer, array) -> None:
    """Overwrites `buffer` with `array` (same dtype and size)."""
    array = np.ascontiguousarray(array, buffer.dtype)
    assert array.size == int(np.prod(buffer.shape)), (array.shape, buffer.shape)
    self._uc.mem_write(buffer.address, array.tobytes())

  def get(self, buffer: Buffer) -> np.ndarray:
    """The buffer's current contents as an array."""
    size = int(np.prod(buffer.shape)) * buffer.dtype.itemsize
    data = self._uc.mem_read(buffer.address, size)
    return np.frombuffer(bytes(data), buffer.dtype).reshape(buffer.shape).copy()

  def _enter(self, args) -> int:
    """Sets up the AAPCS call of `args` (first four in r0-r3, the rest stacked) -> entry SP."""
    regs = self._regs
    words = [(a.address if isinstance(a, Buffer) else int(a)) & 0xFFFF_FFFF for a in args]
    sp = RAM_BASE + RAM_SIZE - 16
    stacked = words[4:]
    sp -= 4 * len(stacked)
    sp &= ~7
    if stacked:
      self._uc.mem_write(sp, np.array(stacked, np.uint32).tobytes())
    for reg, word in zip((regs.UC_ARM_REG_R0, regs.UC_ARM_REG_R1, regs.UC_ARM_REG_R2,
                          regs.UC_ARM_REG_R3), words[:4]):
      self._uc.reg_write(reg, word)
    self._uc.reg_write(regs.UC_ARM_REG_SP, sp)
    self._uc.reg_write(regs.UC_ARM_REG_LR, self.return_address | 1)
    return sp

  def _run(self, name: str) -> tuple[int, int]:
    self._executed = 0
    self._uc.emu_start(self.symbols[name], self.return_address)
    result = int(np.uint32(self._uc.reg_read(self._regs.UC_ARM_REG_R0)).astype(np.int32))
    return result, self._executed

  def call(self, name: str, *args) -> tuple[int, int]:
    """Runs C function `name(*args)` (ints or Buffers, 32-bit each) -> (r0 as int32, instructions).

    AAPCS: the first four arguments in r0-r3, the rest on the stack; LR points at a mapped address
    that holds no code, where the run stops.
    """
    self._enter(args)
    return self._run(name)

  def call_measuring_stack(self, name: str, *args) -> tuple[int, int, int]:
    """`call`, also returning the stack bytes the function used below its entry SP.

    The stack is painted with STACK_PAINT first; the lowest byte that no longer holds it is the
    high-water mark (a pushed byte that happens to equal the paint is missed, as on a board)."""
    sp = self._enter(args)
    bottom = RAM_BASE + RAM_SIZE - STACK_BYTES
    self._uc.mem_write(bottom, bytes([STACK_PAINT]) * (sp - bottom))
    result, count = self._run(name)
    painted = np.frombuffer(bytes(self._uc.mem_read(bottom, sp - bottom)), np.uint8)
    touched = np.flatnonzero(painted != STACK_PAINT)
    used = 0 if len(touched) == 0 else sp - (bottom + int(touched[0]))
    return result, count, used
