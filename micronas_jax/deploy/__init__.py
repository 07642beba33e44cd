"""Deploying a cell to a Cortex-M: int8 post-training quantization, a C library, its checks.

`deploy(ops, out_dir, ...)` is the one entry point (the CLI's `deploy` calls it):
  quantize.py  int8 PTQ (BN folded, per-channel weights, per-tensor activations) and the integer
               numpy reference of the quantized network
  program.py   the fixed cell's network as a list of kernel calls in the memory plan's order, its
               float forward and its activation arena
  codegen.py   the self-contained C library (kernels, const weights, arena, `mnj_run`, Makefile)
  build.py     arm-none-eabi-gcc builds, section sizes, emulated runs with the stack measured
"""
from micronas_jax.deploy.api import DeployError, DeployReport, deploy

__all__ = ["DeployError", "DeployReport", "deploy"]
