"""`task`: what a data set asks of the network (classes, input channels, resolution)."""
from __future__ import annotations

import json

import click

from micronas_jax.commands.common import Input, InputError, Output, check_paths, write_text

RESOLUTION_HELP = ("Network input side in pixels, a multiple of 4 (default: the images' median "
                   "shorter side, at most 224); every image is resized to it.")
GRAY_HELP = "Read the images as gray (1 channel) even when some are in colour."


def read_task(data_path: str, resolution: int | None, gray: bool):
  """The task of `data_path` (`data.infer_task`); a bad folder or resolution exits 2."""
  from micronas_jax import data

  try:
    return data.infer_task(data_path, resolution, 1 if gray else None)
  except data.DataError as error:
    raise InputError(error) from None


@click.command("task", epilog="""\b
Examples:
  micronas-jax task my_images/
  micronas-jax task cifar10-jpeg.zip --resolution 16 --gray --out task.json
Reads the header of every image (about 3 s for 60,000 JPEGs), so an unreadable file is named
before a search or a training run starts.
""")
@click.argument("data_path", metavar="DATA", type=click.Path())
@click.option("--resolution", type=int, default=None, help=RESOLUTION_HELP)
@click.option("--gray", is_flag=True, help=GRAY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--out", default=None, help="JSON file to write.")
def task_command(data_path, resolution, gray, as_json, out):
  """The classification task of an image folder, .zip, .npz or CIFAR-10 directory: its classes,
  input channels and resolution, as the search, training and deploy read it."""
  check_paths([Output("--out", out)], [Input("DATA", data_path)])
  task = read_task(data_path, resolution, gray)
  text = json.dumps(task.to_dict(), indent=2) + "\n"
  click.echo(text.rstrip() if as_json else task.describe())
  if out:
    write_text(out, text)
    click.echo(f"wrote    {out}", err=True)
