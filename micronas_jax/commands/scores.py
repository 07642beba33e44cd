"""`score`: training-free proxies of many cells into a resumable store; `table`: its exports."""
from __future__ import annotations

import click

from micronas_jax import model, space
from micronas_jax.commands.common import (
    SEED, Input, InputError, Output, check_paths, cli_text, load_images, progress_bar)


def _parse_lr_samples(text: str) -> tuple[int, int]:
  batches, sep, batch = text.lower().partition("x")
  if not (sep and batches.isdigit() and batch.isdigit()):
    raise InputError(f"--lr-samples {text!r}: expected BATCHESxSAMPLES, e.g. 3x1000")
  return int(batches), int(batch)


@click.command("score", epilog="""\b
Examples:
  micronas-jax score --indices 0:64 --proxies ntk,lr,flops,params --out s.sqlite
  micronas-jax score --indices 0:15625 --proxies ntk_fast,lr --repeats 3 --out space.sqlite
  micronas-jax score --archs cells.txt --data ~/cifar-10-batches-py --out real.sqlite
  micronas-jax score --indices 0:64 --proxies synflow,naswot,grad_norm,snip,zico,meco --out zc.sqlite
Rerunning a command resumes it: cells already in --out are skipped.
""")
@click.option("--indices", default="0:15625", show_default=True,
              help="Benchmark indices: START:STOP or a comma-separated list.")
@click.option("--archs", "archs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of indices or arch strings, one per line (instead of --indices).")
@click.option("--proxies", "proxy_names", default="ntk,lr,flops,params", show_default=True,
              help="Comma-separated: ntk (exact), ntk_fast, lr, synflow, naswot, grad_norm, snip, "
                   "zico, meco, flops, params.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Draws of weights and inputs averaged per proxy.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--out", default="scores.sqlite", show_default=True, help="SQLite store to fill.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="NTK batch (TE-NAS: 72).")
@click.option("--ntk-channels", type=int, default=3, show_default=True, help="NTK network's C.")
@click.option("--ntk-cells", type=int, default=1, show_default=True, help="NTK network's N.")
@click.option("--ntk-resolution", type=int, default=32, show_default=True,
              help="NTK input size (random inputs; real images are resized).")
@click.option("--lr-samples", default="3x1000", show_default=True,
              help="Linear-region inputs: BATCHESxSAMPLES of 3x3.")
@click.option("--zc-channels", type=int, default=16, show_default=True,
              help="Zero-cost network's C (synflow, naswot, grad_norm, snip, zico, meco).")
@click.option("--zc-cells", type=int, default=5, show_default=True, help="Zero-cost network's N.")
@click.option("--zc-resolution", type=int, default=32, show_default=True,
              help="Zero-cost input size (random inputs; real images are resized).")
@click.option("--zc-batch", type=int, default=64, show_default=True,
              help="Zero-cost batch (zico uses two such batches, meco its first image; labels "
                   "are random).")
@click.option("--init", type=click.Choice(model.INITS), default="torch-default", show_default=True)
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="Images: an image folder or .zip of <split>/<class>/<image>, a CIFAR-10 python "
                   "directory or an .npz of [N,32,32,3] (default: random normal).")
@click.option("--cells-per-step", type=int, default=None,
              help="Cells per jitted step (default: 1 on CPU, 128 per device on GPU/TPU).")
@click.option("--distributed", is_flag=True,
              help="Call jax.distributed.initialize(); each process scores its share of the cells "
                   "into OUT with a .processKofN suffix.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def score(indices, archs_file, proxy_names, repeats, seed, out, batch_size, ntk_channels,
          ntk_cells, ntk_resolution, lr_samples, zc_channels, zc_cells, zc_resolution, zc_batch,
          init, data_path, cells_per_step, distributed, progress):
  """Scores cells with training-free proxies into a resumable SQLite store."""
  from micronas_jax import data as data_module
  from micronas_jax import scoring
  from micronas_jax.proxies import draws

  # The store is read and extended in place (resumption): it is this command's output.
  check_paths([Output("--out", out)], [Input("--archs", archs_file), Input("--data", data_path)])
  try:
    selected = (space.read_arch_file(archs_file) if archs_file
                else space.parse_index_range(indices))
  except space.ArchError as error:
    raise InputError(error if archs_file else f"--indices: {cli_text(error)}") from None
  lr_batches, lr_batch = _parse_lr_samples(lr_samples)
  images = load_images(data_path) if data_path else None
  try:
    config = scoring.ScoreConfig(
        proxies=tuple(p.strip() for p in proxy_names.split(",") if p.strip()), repeats=repeats,
        init=init, ntk_batch=batch_size, ntk_channels=ntk_channels, ntk_cells=ntk_cells,
        ntk_resolution=ntk_resolution, lr_batches=lr_batches, lr_batch=lr_batch,
        zc_channels=zc_channels, zc_cells=zc_cells, zc_resolution=zc_resolution,
        zc_batch=zc_batch, data=None if images is None else data_module.fingerprint(images),
        in_channels=draws.image_channels(images))
  except ValueError as error:
    raise InputError(error) from None
  if distributed:
    import jax
    jax.distributed.initialize()
  try:
    with progress_bar(progress, "cell") as update:
      out, scored = scoring.score_into_store(config, selected, seed, out, images, cells_per_step,
                                             update, lambda line: click.echo(line, err=True))
  except scoring.ScoringError as error:
    raise InputError(error) from None
  click.echo(f"{out}: {scored} cells scored (config {config.hash()}, seed {seed})", err=True)



@click.group("table")
def table_group():
  """Score tables written by `micronas-jax score`."""


@table_group.command("export", epilog="""\b
Examples:
  micronas-jax table export scores.sqlite --csv scores.csv
  micronas-jax table export scores.sqlite --parquet scores.parquet
""")
@click.argument("store_path", metavar="STORE")
@click.option("--csv", "csv_out", default=None, help="CSV file to write.")
@click.option("--parquet", "parquet_out", default=None, help="Parquet file to write (needs pyarrow).")
def table_export(store_path, csv_out, parquet_out):
  """Exports every row of a score store to CSV or Parquet."""
  from micronas_jax import store

  if bool(csv_out) == bool(parquet_out):
    raise InputError("give exactly one of --csv FILE or --parquet FILE")
  check_paths([Output("--csv", csv_out), Output("--parquet", parquet_out)],
              [Input("STORE", store_path)])
  try:
    count = (store.export_csv(store_path, csv_out) if csv_out
             else store.export_parquet(store_path, parquet_out))
  except store.StoreError as error:
    raise InputError(error) from None
  click.echo(f"wrote {count} rows to {csv_out or parquet_out}", err=True)
