"""`train` the found cell with NB201's recipe and `export` it as ONNX."""
from __future__ import annotations

import pathlib

import click

from micronas_jax import model, paths
from micronas_jax.commands import task as task_command
from micronas_jax.commands.common import (
    FROM_REPORT_HELP, SEED, ArchParam, CellCommand, Input, InputError, Output, check_paths,
    cli_text, reported_network)


@click.command("train", cls=CellCommand, epilog="""\b
Examples:
  micronas-jax train 1462 --data ~/cifar-10-batches-py --out run/
  micronas-jax train 1462 --data tiny.npz --out tiny/ --channels 4 --cells 1 --epochs 3 \\
      --batch-size 32
  micronas-jax train --from-report r.json --data my_images/ --out run/
Rerunning the same command resumes from run/checkpoint.msgpack (written after every epoch) with
the result of an uninterrupted run; a checkpoint of another cell or setting is refused.
""")
@click.argument("cell", type=ArchParam(), metavar="[ARCH_OR_INDEX]", required=False)
@click.option("--from-report", "from_report", type=click.Path(), default=None,
              help=FROM_REPORT_HELP)
@click.option("--data", "data_path", required=True,
              help="An image folder or .zip of train|test/<class>/<image> (labels by sorted class "
                   "name), a CIFAR-10 python directory (data_batch_1..5, test_batch) or an .npz "
                   "with images+labels [and test_images+test_labels]; [N,H,W,3], [N,H,W,1] or "
                   "[N,H,W], uint8 or 0-1 float.")
@click.option("--out", required=True, help="Run directory: checkpoint.msgpack and result.json.")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True,
              help="Peak learning rate (cosine decay to 0 over all steps).")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=True, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random crop (4-pixel zero padding) and horizontal flip.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--channels", type=int, default=None, help="C of stage 1 (default 16).")
@click.option("--cells", type=int, default=None, help="N, cells per stage (default 5).")
@click.option("--resolution", type=int, default=None, help=task_command.RESOLUTION_HELP)
@click.option("--gray", is_flag=True, help=task_command.GRAY_HELP)
@click.option("--stop-after", type=int, default=None,
              help="Stop after this many epochs in total (rerun to continue).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train_command(cell, from_report, data_path, out, epochs, batch_size, lr, momentum, nesterov,
                  weight_decay, augment, seed, channels, cells, resolution, gray, stop_after,
                  progress):
  """Trains the NB201 network of a cell (NB201's recipe) on the data's task (its classes,
  channels and resolution: `micronas-jax task`), resumable; reports test accuracy."""
  from micronas_jax import train

  check_paths([Output("--out", out, train.RUN_FILES)],
              [Input("--data", data_path), Input("--from-report", from_report)])
  cell, reported = reported_network(
      cell, from_report, {"channels": channels, "cells": cells, "resolution": resolution,
                          "gray": gray})
  if reported is not None:
    resolution, gray = reported.resolution, reported.in_channels == 1
  try:
    net_config = reported or model.NetworkConfig(
        channels=16 if channels is None else channels,
        cells_per_stage=5 if cells is None else cells)
    config = train.TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=lr,
                               momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                               augment=augment, seed=seed)
    task = task_command.read_task(data_path, resolution, gray)
    if reported is not None and task.num_classes not in (None, reported.num_classes):
      raise InputError(f"--data has {task.num_classes} classes, the reported network "
                       f"{reported.num_classes}")
    result = train.train_from_path(cell, data_path, out, net_config, config, stop_after,
                                   progress, lambda message: click.echo(message, err=True), task)
  except ValueError as error:  # a bad setting or data set, a run directory of another run
    raise InputError(error) from None
  last = result.history[-1] if result.history else None
  if last:
    click.echo(f"epoch {last['epoch']}/{epochs}: train loss {last['train_loss']:.4f}, "
               f"train accuracy {100 * last['train_accuracy']:.2f} %")
  if result.epochs_done < epochs:
    click.echo(f"stopped after epoch {result.epochs_done} of {epochs}; rerun to continue")
  elif result.test_accuracy is not None:
    click.echo(f"test loss {result.test_loss:.4f}, test accuracy "
               f"{100 * result.test_accuracy:.2f} % ({result.test_images} images); "
               f"wrote {pathlib.Path(out) / train.RESULT_NAME}")


@click.command("export", cls=CellCommand, epilog="""\b
Examples:
  micronas-jax export 1462 --checkpoint run/ --onnx cell.onnx
  micronas-jax export 1462 --onnx untrained.onnx          (initialized weights, seed 0)
The ONNX graph is NCHW: input 'image' [batch, 3, 32, 32] float32 normalized by the CIFAR-10
mean/std, output 'logits' [batch, 10]; opset 18; BatchNorm folded into the convs.
Needs pip install 'micronas-jax[export]' (jax2onnx, onnx, onnxruntime).
""")
@click.argument("cell", type=ArchParam(), metavar="ARCH_OR_INDEX")
@click.option("--checkpoint", "checkpoint_path", default=None,
              help="Run directory or checkpoint file from `micronas-jax train` (default: export "
                   "freshly initialized, untrained weights).")
@click.option("--onnx", "onnx_path", required=True, help="ONNX file to write.")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="Fixed batch size of the graph (MCU tools want 1).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the initialized weights (without --checkpoint) and the check inputs.")
@click.option("--channels", type=int, default=None,
              help="C without --checkpoint (default 16); a checkpoint records its own.")
@click.option("--cells", type=int, default=None, help="N without --checkpoint (default 5).")
@click.option("--check-samples", type=int, default=8, show_default=True,
              help="Random inputs on which onnxruntime is compared with the JAX model.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest accepted |onnxruntime - JAX| of a logit (exit 1 beyond it).")
def export_command(cell, checkpoint_path, onnx_path, batch_size, seed, channels, cells,
                   check_samples, tolerance):
  """Exports the network of a cell as ONNX (BN folded) and checks it with onnxruntime."""
  from micronas_jax import export, train

  check_paths([Output("--onnx", onnx_path)],
              [Input("--checkpoint", checkpoint_path, train.RUN_FILES)])
  try:
    result = export.export_cell(cell, onnx_path, checkpoint_path, batch_size, seed, channels,
                                cells, check_samples, tolerance)
  except (export.WeightsError, paths.PathError) as error:
    raise InputError(error) from None
  except export.ExportError as error:  # a missing dependency or a failed check: exit 1
    raise click.ClickException(cli_text(error)) from None
  click.echo(f"wrote {onnx_path}: opset {export.OPSET}, NCHW input '{export.INPUT_NAME}' "
             f"{result['input_shape']} float32 (CIFAR-10 normalized), output "
             f"'{export.OUTPUT_NAME}' {result['output_shape']}, BN folded\n"
             f"weights: {result['source']}\nonnxruntime vs JAX on {check_samples} random inputs: "
             f"max abs difference {result['difference']:.3g}")
