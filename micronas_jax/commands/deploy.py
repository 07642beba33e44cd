"""`deploy`: the found cell as an int8 C library for a Cortex-M, built and checked."""
from __future__ import annotations

import json

import click

from micronas_jax.commands.common import (
    CLI_NAMES, FROM_REPORT_HELP, SEED, ArchParam, CellCommand, Input, InputError, Output,
    check_paths, reported_network)
DEPLOY_FORMATS = ("c", "tflite", "onnx-qdq")  # deploy.formats.FORMATS, without importing JAX
from micronas_jax.hardware import latency


@click.command("deploy", cls=CellCommand, epilog="""\b
Examples:
  micronas-jax deploy 13987 --out cell/ --verify
  micronas-jax deploy 13987 --checkpoint run/ --data cifar10-jpeg.zip --out cell/ --verify
  micronas-jax deploy 13987 --format tflite --out cell.tflite --verify
  micronas-jax deploy 13987 --format onnx-qdq --out cell.onnx --verify
  micronas-jax deploy --from-report r.json --checkpoint run/ --data my_images/ --out cell/ --verify
The folder gets the kernels, the weights as const arrays, one static arena, mnj_run(), a header,
a Makefile (cortex-m7; CPU=cortex-m4) and a README. Building and --verify need arm-none-eabi-gcc
(apt-get install gcc-arm-none-eabi) and pip install 'micronas-jax[emu]'.
--format tflite writes one full-integer int8 .tflite (TensorFlow's converter), run in TFLite
Micro for its arena; --verify checks it there and in LiteRT (pip install 'micronas-jax[tflite]').
--format onnx-qdq writes a static QDQ int8 .onnx for ST Edge AI Core, checked in onnxruntime.
""")
@click.argument("cell", type=ArchParam(), metavar="[ARCH_OR_INDEX]", required=False)
@click.option("--from-report", "from_report", type=click.Path(), default=None,
              help=FROM_REPORT_HELP + " With --checkpoint, the checkpoint must hold it.")
@click.option("--out", "out_dir", required=True,
              help="--format c: folder to write: missing, empty or a previous deploy, whose "
                   "files deploy wrote (listed with their sha256 in deploy.json) are replaced; "
                   "the files you added there are kept. tflite, onnx-qdq: the file to write.")
@click.option("--format", "deploy_format", type=click.Choice(DEPLOY_FORMATS),
              default="c", show_default=True,
              help="c: this package's C library; tflite: int8 TFLite for TFLite Micro; "
                   "onnx-qdq: QDQ int8 ONNX for ST Edge AI Core.")
@click.option("--checkpoint", "checkpoint_path", default=None,
              help="Run directory or checkpoint file from `micronas-jax train` (default: freshly "
                   "initialized, untrained weights).")
@click.option("--data", "data_path", default=None,
              help="Images that calibrate the int8 scales and check the agreement: an image "
                   "folder or .zip, a CIFAR-10 python directory or an .npz (default: random "
                   "normal).")
@click.option("--verify", is_flag=True,
              help="tflite: TFLite Micro vs float top-1 and vs LiteRT; onnx-qdq: onnxruntime vs "
                   "float top-1. c: run the built program in the emulated Cortex-M7: bit-exact against the numpy "
                   "int8 reference, int8 vs float top-1 agreement, instructions vs the LUT "
                   "(skipped, and reported so, where the LUT has no counts for the network).")
@click.option("--force", is_flag=True,
              help="Replace the files of a previous deploy that were edited since (and files "
                   "of yours where deploy writes), and write the code even when the network "
                   "does not fit the board's memory. Other files you added are kept.")
@click.option("--board", default="stm32f746-emu", show_default=True,
              help="Packaged LUT for the estimates and the board's memory: "
                   + ", ".join(latency.boards()) + ".")
@click.option("--lut", "lut_path", default=None, help="A LUT JSON file (overrides --board).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the initialized weights (without --checkpoint) and random inputs.")
@click.option("--channels", type=int, default=None,
              help="C without --checkpoint (default 16); a checkpoint records its own.")
@click.option("--cells", type=int, default=None, help="N without --checkpoint (default 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def deploy_command(cell, from_report, out_dir, deploy_format, checkpoint_path, data_path, verify, force, board, lut_path,
                   seed, channels, cells, as_json):
  """Quantizes a cell's network to int8 and writes it as a C library for a Cortex-M."""
  from micronas_jax import deploy, train

  from micronas_jax.deploy import formats

  cell, network = reported_network(cell, from_report, {"channels": channels, "cells": cells})
  if deploy_format != formats.C:
    check_paths([Output("--out", out_dir)],
                [Input("--checkpoint", checkpoint_path, train.RUN_FILES),
                 Input("--data", data_path)])
    try:
      report = formats.deploy_file(cell, out_dir, deploy_format, checkpoint_path, data_path,
                                   verify=verify, seed=seed, channels=channels, cells=cells,
                                   network=network, log=lambda line: click.echo(line, err=True))
    except deploy.DeployError as error:
      raise InputError(error) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary(CLI_NAMES))
    if not report.passed:
      raise click.ClickException(f"checks failed; the file is {out_dir}")
    return
  check_paths([Output("--out", out_dir, deploy.api.WRITTEN)],
              [Input("--checkpoint", checkpoint_path, train.RUN_FILES), Input("--data", data_path),
               Input("--lut", lut_path)])
  try:
    report = deploy.deploy(cell, out_dir, checkpoint_path, data_path, verify=verify, force=force,
                           board=board, lut=lut_path, seed=seed, channels=channels, cells=cells,
                           network=network, log=lambda line: click.echo(line, err=True))
  except deploy.DeployError as error:
    raise InputError(error) from None
  click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary(CLI_NAMES))
  if not report.passed:
    raise click.ClickException(f"checks failed; the code is in {out_dir} (see deploy.json)")
