"""The int8 network as a self-contained C library: the kernels, the weights as `const` arrays
(flash), one static arena for every activation (its offsets from `program.plan_arena`), and one
entry point that calls the kernels in the program's order.

Files (`FILES`): mnj_kernels.c/.h (the package's kernels, `hardware/emu/kernels.c`, compiled as a
library: weak memset/memcpy, no `nb201_forward`), mnj_model.c/.h (the network), Makefile, mnj.ld
(a linker script for a standalone ELF whose sizes are the ones measured) and README.md.
"""
from __future__ import annotations

import importlib.resources
import pathlib
import re

import numpy as np

from micronas_jax import data, space
from micronas_jax.deploy import program as program_module
from micronas_jax.deploy.program import IMAGE, LOGITS
from micronas_jax.deploy.quantize import QuantizedNetwork

CPUS = ("cortex-m7", "cortex-m4")
# The kernels' flags (hardware/emu/machine.FLAGS, which measured the LUT) plus sections for the
# linker's garbage collection; -mfloat-abi is the Makefile's FLOAT_ABI (the code has no floats).
CFLAGS = ("-mthumb", "-O2", "-ffreestanding", "-ffunction-sections", "-fdata-sections", "-Wall",
          "-Wextra")
LDFLAGS = ("-nostdlib", "-T", "mnj.ld", "-Wl,--gc-sections")
SOURCES = ("mnj_kernels.c", "mnj_model.c")
FILES = (*SOURCES, "mnj_kernels.h", "mnj_model.h", "Makefile", "mnj.ld", "README.md")
ENTRY = "mnj_run"


def _identifier(name: str) -> str:
  return re.sub(r"[^0-9A-Za-z]", "_", name)


def _array(ctype: str, name: str, values, per_line: int) -> str:
  flat = [str(int(v)) for v in np.asarray(values).ravel()]
  rows = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
  body = ",\n  ".join(rows)
  return f"static const {ctype} {name}[{len(flat)}] = {{\n  {body}\n}};\n"


def _conv_block(name: str, p) -> str:
  c = _identifier(name)
  return "".join([
      _array("int8_t", f"{c}_w", p.weights, 20), _array("int32_t", f"{c}_b", p.bias, 8),
      _array("int32_t", f"{c}_m", p.mult, 8), _array("int32_t", f"{c}_s", p.shift, 8),
      f"static const conv_params {c} = {{{c}_w, {c}_b, {c}_m, {c}_s}};\n"])


def _head_block(p) -> str:
  return "".join([
      _array("int32_t", "head_bn_scale", p.bn_scale, 8),
      _array("int32_t", "head_bn_bias", p.bn_bias, 8),
      _array("int8_t", "head_fc_w", p.fc_weights, 20), _array("int32_t", "head_fc_b", p.fc_bias, 8),
      (f"static const head_params head = {{head_bn_scale, head_bn_bias, {p.mult}, {p.shift}, "
       "head_fc_w, head_fc_b};\n")])


def scratch_int16(network: QuantizedNetwork) -> int:
  """int16 elements of the kernels' scratch: a conv's im2col (k k c_in), the pools' and the
  head's int32 sums (2 c)."""
  program = network.program
  sizes = [1]
  for step in program.steps:
    c_in = program.shapes[step.inputs[0]][-1] if step.inputs else 0
    if step.kind == "conv":
      k = network.params[step.output].weights.shape[1]
      sizes.append(k * k * c_in)
    elif step.kind in ("pool3", "head"):
      sizes.append(2 * c_in)
  return max(sizes)


def _call(step, network: QuantizedNetwork, offsets: dict) -> str:
  program = network.program
  at = lambda name: f"a + {offsets[name]}"
  out_shape = program.shapes[step.output]
  if step.inputs:
    h, w, c_in = program.shapes[step.inputs[0]]
  if step.kind == "conv":
    k = network.params[step.output].weights.shape[1]
    return (f"conv_s8({at(step.inputs[0])}, {h}, {w}, {c_in}, {at(step.output)}, {out_shape[-1]}, "
            f"{k}, {step.stride}, {int(step.relu_in)}, &{_identifier(step.output)}, scratch);")
  if step.kind == "pool3":
    return f"avgpool3x3_s8({at(step.inputs[0])}, {h}, {w}, {c_in}, {at(step.output)}, sums);"
  if step.kind == "pool2":
    return f"avgpool2x2_s8({at(step.inputs[0])}, {h}, {w}, {c_in}, {at(step.output)});"
  if step.kind == "add":
    p = network.params[step.output]
    return (f"add_s8({at(step.inputs[0])}, {at(step.inputs[1])}, {at(step.output)}, "
            f"{int(np.prod(out_shape))}, {p.mult_a}, {p.mult_b}, {p.shift});")
  if step.kind == "zeros":
    return f"zero({at(step.output)}, {int(np.prod(out_shape))});"
  return (f"head_s8({at(step.inputs[0])}, {h * w}, {c_in}, &head, {out_shape[0]}, logits, "
          "sums);")


def _describe(step, network: QuantizedNetwork) -> str:
  scales = network.scales
  inputs = ", ".join(f"{name} (scale {scales[name]:.6g})" for name in step.inputs)
  relu = "ReLU, " if step.relu_in else ""
  return f"/* {step.output} = {step.kind}({relu}{inputs}) -> scale {scales[step.output]:.6g} */"


def model_source(network: QuantizedNetwork, offsets: dict, arena_bytes: int,
                 source_note: str) -> str:
  """mnj_model.c: weights, arena and `mnj_run`."""
  program = network.program
  blocks = []
  for step in program.steps:
    if step.kind == "conv":
      blocks.append(_conv_block(step.output, network.params[step.output]))
    elif step.kind == "head":
      blocks.append(_head_block(network.params[step.output]))
  calls = []
  for step in program.steps:
    calls += ["  " + _describe(step, network), "  " + _call(step, network, offsets)]
  scratch = scratch_int16(network)
  return f"""/* The int8 network of NB201 cell {space.index_of(program.ops)}
   {space.format_arch(program.ops)}
   Generated by micronas-jax deploy; weights: {source_note}.
   Every activation lives in `arena` at the offset the memory plan gave it; see mnj_model.h. */
#include "mnj_model.h"
#include "mnj_kernels.h"

{"".join(blocks)}
static int8_t arena[MNJ_ARENA_BYTES] __attribute__((aligned(4)));
/* im2col (int16) of the convs; the int32 sums of the pools and the head share it. */
static int16_t scratch[{scratch}] __attribute__((aligned(4)));
#define sums ((int32_t *)scratch)

static void zero(int8_t *tensor, int32_t n) {{
  for (int32_t i = 0; i < n; ++i) tensor[i] = 0;
}}

int8_t *mnj_input(void) {{ return arena + {offsets[IMAGE]}; }}

int mnj_run(const int8_t *image, int32_t *logits) {{
  int8_t *const a = arena;
  if (image != a + {offsets[IMAGE]}) {{
    for (int32_t i = 0; i < MNJ_INPUT_BYTES; ++i) a[{offsets[IMAGE]} + i] = image[i];
  }}
{chr(10).join(calls)}
  int best = 0;
  for (int k = 1; k < MNJ_NUM_CLASSES; ++k) {{
    if (logits[k] > logits[best]) best = k;
  }}
  return best;
}}
"""


def header_source(network: QuantizedNetwork, arena_bytes: int) -> str:
  """mnj_model.h: the API, input layout, scales and zero points."""
  program = network.program
  h, w, c = program.shapes[IMAGE]
  mean = ", ".join(f"{v:g}f" for v in data.CIFAR10_MEAN)
  std = ", ".join(f"{v:g}f" for v in data.CIFAR10_STD)
  return f"""/* int8 NB201 network of cell {space.index_of(program.ops)} (micronas-jax deploy).

   Input: int8 [{h}][{w}][{c}] (height, width, channel; channels R, G, B), zero point 0:
     x = (pixel / 255 - mean[ch]) / std[ch]          (mean, std: MNJ_MEAN, MNJ_STD)
     q = clamp(round(x / MNJ_INPUT_SCALE), -128, 127)
   Output: int32 logits [MNJ_NUM_CLASSES], zero point 0; logit ~ logits[k] * MNJ_LOGITS_SCALE.
   Memory: every activation lives in one static arena of MNJ_ARENA_BYTES (.bss); weights are
   const (flash). Not reentrant: one inference at a time. */
#ifndef MNJ_MODEL_H
#define MNJ_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define MNJ_CELL_INDEX {space.index_of(program.ops)}
#define MNJ_CELL_ARCH "{space.format_arch(program.ops)}"
#define MNJ_INPUT_HEIGHT {h}
#define MNJ_INPUT_WIDTH {w}
#define MNJ_INPUT_CHANNELS {c}
#define MNJ_INPUT_BYTES {h * w * c}
#define MNJ_INPUT_SCALE {network.scales[IMAGE]:.9g}f
#define MNJ_INPUT_ZERO_POINT 0
#define MNJ_NUM_CLASSES {program.shapes[LOGITS][0]}
#define MNJ_LOGITS_SCALE {network.scales[LOGITS]:.9g}f
#define MNJ_ARENA_BYTES {arena_bytes}
#define MNJ_MEAN {{{mean}}}
#define MNJ_STD {{{std}}}

/* The input buffer inside the arena: write the quantized image here and pass it to mnj_run to
   save a copy. */
int8_t *mnj_input(void);

/* Runs the network on `image` (copied into the arena unless it is mnj_input()), writes the
   logits and returns the top-1 class. */
int mnj_run(const int8_t *image, int32_t *logits);

#ifdef __cplusplus
}}
#endif

#endif /* MNJ_MODEL_H */
"""


def kernel_sources() -> dict[str, str]:
  """mnj_kernels.c and mnj_kernels.h: the package's kernels built as a library."""
  folder = importlib.resources.files("micronas_jax.hardware.emu")
  source = folder.joinpath("kernels.c").read_text().replace('#include "kernels.h"',
                                                            '#include "mnj_kernels.h"')
  return {"mnj_kernels.c": "#define MNJ_LIBRARY 1 /* weak memset/memcpy, no nb201_forward */\n"
                           + source,
          "mnj_kernels.h": folder.joinpath("kernels.h").read_text()}


LINKER_SCRIPT = """/* A standalone image of the library, for measuring it:
   flash = .text + .rodata + .data, SRAM = .data + .bss (+ the stack). The regions are larger
   than any board's so that an oversized network still links and can be measured. */
ENTRY(mnj_run)
MEMORY
{
  FLASH (rx) : ORIGIN = 0x08000000, LENGTH = 64M
  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 16M
}
SECTIONS
{
  .text : { KEEP(*(.text.mnj_run)) *(.text*) } > FLASH
  .rodata : { *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM AT > FLASH
  .bss (NOLOAD) : { *(.bss*) *(COMMON) } > RAM
  /DISCARD/ : { *(.ARM.exidx*) *(.comment) }
}
"""


def makefile() -> str:
  """The Makefile: `make` builds libmnj.a for a Cortex-M7, `make CPU=cortex-m4` for an M4."""
  return f"""# Builds the network as a static library for a firmware project (arm-none-eabi-gcc).
#   make                      libmnj.a for a Cortex-M7
#   make CPU=cortex-m4        for a Cortex-M4
#   make FLOAT_ABI=hard       match your project's float ABI (the code itself has no floats)
#   make size                 a standalone ELF (mnj.ld) and its section sizes
CPU ?= cortex-m7
FLOAT_ABI ?= soft
CROSS ?= arm-none-eabi-
CC = $(CROSS)gcc
AR = $(CROSS)ar
SIZE = $(CROSS)size
CFLAGS = -mcpu=$(CPU) -mfloat-abi=$(FLOAT_ABI) {" ".join(CFLAGS)}
OBJECTS = {" ".join(s.replace(".c", ".o") for s in SOURCES)}

all: libmnj.a

%.o: %.c mnj_model.h mnj_kernels.h
\t$(CC) $(CFLAGS) -c $< -o $@

libmnj.a: $(OBJECTS)
\t$(AR) rcs $@ $^

mnj.elf: {" ".join(SOURCES)} mnj_model.h mnj_kernels.h mnj.ld
\t$(CC) $(CFLAGS) {" ".join(LDFLAGS)} {" ".join(SOURCES)} -lgcc -o $@

size: mnj.elf
\t$(SIZE) -A mnj.elf

clean:
\trm -f $(OBJECTS) libmnj.a mnj.elf

.PHONY: all size clean
"""


def readme(network: QuantizedNetwork, arena_bytes: int, source_note: str) -> str:
  """README.md of the library: what it is and how to drop it into a vendor project."""
  program = network.program
  h, w, c = program.shapes[IMAGE]
  return f"""# int8 NB201 cell {space.index_of(program.ops)} for Cortex-M

`{space.format_arch(program.ops)}`, C={program.config.channels}, N={program.config.cells_per_stage},
generated by `micronas-jax deploy`. Weights: {source_note}.

| file | what |
| --- | --- |
| `mnj_model.h` | the API: `mnj_run`, `mnj_input`, input layout, scales, zero points |
| `mnj_model.c` | weights (`const`: flash), the arena ({arena_bytes} bytes, `.bss`), `mnj_run` |
| `mnj_kernels.c`, `.h` | int8 kernels (CMSIS-NN style: C with ACLE DSP intrinsics) |
| `Makefile` | `make` (Cortex-M7), `make CPU=cortex-m4`, `make size` |
| `mnj.ld` | linker script of the standalone image that `make size` measures |
| `deploy.json` | how it was made, estimated and measured memory, checks |

## Into a vendor project (STM32CubeIDE, Keil, a Makefile)

1. Copy `mnj_model.c`, `mnj_model.h`, `mnj_kernels.c`, `mnj_kernels.h` into the project (or
   link `libmnj.a` from `make CPU=cortex-m7 FLOAT_ABI=hard` to match a hard-float project).
2. Compile with optimisation (`-O2`) for a core with the DSP extension (Cortex-M4, M7, M33):
   the kernels use `__smlad`, `__sxtb16` and `__ssat` from `<arm_acle.h>`.
3. Quantize the image into `mnj_input()` and run it:

```c
#include "mnj_model.h"

int classify(const uint8_t *rgb /* [{h}][{w}][{c}] */) {{
  static const float mean[] = MNJ_MEAN, std[] = MNJ_STD;
  int8_t *in = mnj_input();
  for (int i = 0; i < MNJ_INPUT_BYTES; ++i) {{
    float x = (rgb[i] / 255.0f - mean[i % 3]) / std[i % 3];
    int q = (int)(x / MNJ_INPUT_SCALE + (x >= 0 ? 0.5f : -0.5f));
    in[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
  }}
  int32_t logits[MNJ_NUM_CLASSES];
  return mnj_run(in, logits);  /* top-1 class; logits[k] * MNJ_LOGITS_SCALE ~ float logit */
}}
```

The arena is a static array: the code allocates nothing, has no globals besides it and the
kernels' scratch, and is not reentrant. Place `.bss` in DTCM on an F7 for speed if it fits.
`mnj_kernels.c` defines weak `memset`/`memcpy` for builds without a C library; a C library's
own win at link time.
"""


def write(folder: pathlib.Path, network: QuantizedNetwork, source_note: str) -> dict:
  """Writes the library into `folder` -> {"arena_bytes", "scratch_bytes", "files"}."""
  offsets, arena_bytes = program_module.plan_arena(network.program)
  texts = {**kernel_sources(),
           "mnj_model.c": model_source(network, offsets, arena_bytes, source_note),
           "mnj_model.h": header_source(network, arena_bytes),
           "Makefile": makefile(), "mnj.ld": LINKER_SCRIPT,
           "README.md": readme(network, arena_bytes, source_note)}
  for name, text in texts.items():
    (folder / name).write_text(text)
  return {"arena_bytes": arena_bytes, "scratch_bytes": 2 * scratch_int16(network),
          "files": sorted(texts)}
