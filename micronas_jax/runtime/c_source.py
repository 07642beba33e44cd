"""C source of the int8 runtime: its kernels (`kernels.c`, `kernels.h`, package data) and the
writers of parameter arrays that generated code and the profiling firmware compile."""
from __future__ import annotations

import importlib.resources

import numpy as np

from micronas_jax.runtime.params import ConvParams, HeadParams

C_VALUES_PER_LINE = {"int8_t": 20, "int32_t": 8}
KERNEL_FILES = ("kernels.c", "kernels.h")


def kernel_file(name: str) -> str:
  """The text of one of KERNEL_FILES."""
  return importlib.resources.files("micronas_jax.runtime").joinpath(name).read_text()


def c_array(ctype: str, name: str, values) -> str:
  """C source of `static const ctype name[n] = {...};` holding `values` (any shape, flattened;
  an empty array holds one 0, since C has no empty arrays): weights in flash."""
  flat = [str(int(v)) for v in np.asarray(values).ravel()] or ["0"]
  per_line = C_VALUES_PER_LINE.get(ctype, 8)
  rows = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
  body = ",\n  ".join(rows)
  return f"static const {ctype} {name}[{len(flat)}] = {{\n  {body}\n}};\n"


def conv_c_source(name: str, p: ConvParams) -> tuple[str, str]:
  """(C arrays `name_w`, `name_b`, `name_m`, `name_s` of a conv, its `conv_params` initializer)."""
  arrays = "".join([c_array("int8_t", f"{name}_w", p.weights),
                    c_array("int32_t", f"{name}_b", p.bias),
                    c_array("int32_t", f"{name}_m", p.mult),
                    c_array("int32_t", f"{name}_s", p.shift)])
  return arrays, f"{{{name}_w, {name}_b, {name}_m, {name}_s}}"


def head_c_source(name: str, p: HeadParams) -> tuple[str, str]:
  """(C arrays `name_bn_scale`, `name_bn_bias`, `name_fc_w`, `name_fc_b` of the head, its
  `head_params` initializer)."""
  arrays = "".join([c_array("int32_t", f"{name}_bn_scale", p.bn_scale),
                    c_array("int32_t", f"{name}_bn_bias", p.bn_bias),
                    c_array("int8_t", f"{name}_fc_w", p.fc_weights),
                    c_array("int32_t", f"{name}_fc_b", p.fc_bias)])
  return arrays, (f"{{{name}_bn_scale, {name}_bn_bias, {p.mult}, {p.shift}, {name}_fc_w, "
                  f"{name}_fc_b}}")
