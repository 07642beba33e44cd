"""`search`: the best network for a board under hardware limits."""
from __future__ import annotations

import json
import pathlib

import click

from micronas_jax.commands import task as task_command
from micronas_jax.commands.common import (
  CLI_NAMES,
  SEED,
  Input,
  InputError,
  Output,
  check_paths,
  load_images,
  lut_errors,
  progress_bar,
  write_text,
)
from micronas_jax.hardware import latency, shapes
from micronas_jax.search import evolution
from micronas_jax.search import run as search_run


def _read_benchmark(path: str):
  """Accuracy `[15625]` of a benchmark table (`ground_truth.read_accuracy`), read before a search so
  that a bad file never costs a finished search its report."""
  from micronas_jax import ground_truth

  if not pathlib.Path(path).is_file():
    raise InputError(f"{path}: no such benchmark CSV")
  try:
    return ground_truth.read_accuracy(path)
  except ground_truth.BenchmarkError as error:
    raise InputError(error) from None


def _resolutions(text: str | None) -> tuple[int, ...] | None:
  """The input sides of `--resolution` ("32" or "32,24,16"), or None; a one-line error for
  anything else."""
  if text is None:
    return None
  try:
    values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True))
  except ValueError:
    raise InputError(f"--resolution: {text!r} is not a number or a comma list of numbers") \
        from None
  if not values:
    raise InputError("--resolution: give at least one input side")
  return values


# Options whose request field is named otherwise.
_FIELDS = {"batch_size": "ntk_batch"}


@click.command("search", epilog="""\b
Examples:
  micronas-jax search --board stm32f746 --max-latency-ms 200
  micronas-jax search --data my_images/ --board nucleo-f411re --max-latency-ms 100 --out r.json
  micronas-jax search --data cifar10-jpeg.zip --benchmark ../shared/data/nb201/cifar10.csv
  micronas-jax search --data my_images/ --channels 8 --cells 2 --max-latency-ms 100
  micronas-jax search --method prune --fast           # TE-NAS / MicroNAS pruning
  micronas-jax search --method prune --max-latency-ms 300 --w-latency 0.2 --out r.json
  micronas-jax search --method prune --fast --meco --max-latency-ms 200
  micronas-jax search --method table --scores space.sqlite --max-sram-kb 64 --plot pareto.png
  micronas-jax search --method exhaustive --fast --max-latency-ms 100 --scores s.sqlite
The default evolution takes about a minute on a 2-core CPU, compilation included; the exact
pruning search minutes (measure with --fast first), seconds on a GPU.
""")
@click.option("--board", default="stm32f746", show_default=True,
              help="Packaged LUT to use: " + ", ".join(latency.boards()) + ".")
@click.option("--lut", "lut_path", default=None, help="A LUT JSON file (overrides --board).")
@click.option("--max-latency-ms", type=float, default=None, help="Latency limit (ms).")
@click.option("--max-sram-kb", type=float, default=None,
              help="Peak SRAM limit (KB); the board's SRAM always applies.")
@click.option("--max-flash-kb", type=float, default=None,
              help="Flash limit (KB); the board's flash always applies.")
@click.option("--max-flops-m", type=float, default=None, help="FLOPs limit (M, NB201 rules).")
@click.option("--method", type=click.Choice(list(search_run.METHODS)), default="evolution",
              show_default=True,
              help="evolution: aging evolution (at a fixed network: random cells and a screen "
                   "by FLOPs and skip span first); fitness = log-rank sum of MeCo, NTK condition, linear regions, "
                   "FLOPs and skip span (beyond the paper); prune: the TE-NAS/MicroNAS pruning "
                   "search; table: the best cell of a score table; exhaustive: score every cell "
                   "meeting the limits into --scores, then search that (resumable).")
@click.option("--budget", type=int, default=evolution.EvolutionConfig.budget,
              show_default=True, help="Cells the evolution measures.")
@click.option("--population", type=int, default=evolution.EvolutionConfig.population,
              show_default=True, help="Evolution's population.")
@click.option("--tournament", type=int, default=evolution.EvolutionConfig.tournament,
              show_default=True, help="Evolution's tournament size.")
@click.option("--screened", type=int, default=evolution.EvolutionConfig.screened,
              show_default=True,
              help="Cells the evolution takes, after its random population, from the ranking by "
                   "FLOPs and skip span (0: none); cell searches at a fixed network (--channels "
                   "and --cells) only.")
@click.option("--w-flops", type=float, default=0.0, show_default=True,
              help="prune/table/exhaustive: weight of the FLOPs rank; NTK and LR share "
                   "1 - w_flops - w_latency.")
@click.option("--w-latency", type=float, default=0.0, show_default=True,
              help="prune/table/exhaustive: weight of the latency rank.")
@click.option("--scores", "scores_path", default=None,
              help="Score store from `micronas-jax score` or its CSV export, .csv or .csv.gz "
                   "(--method table); with --method exhaustive the SQLite store it fills (the "
                   "seeds a store holds are averaged).")
@click.option("--fast", is_flag=True,
              help="prune/table/exhaustive: NTK with frozen BN statistics (ntk_fast), about 10x "
                   "quicker than exact.")
@click.option("--meco", is_flag=True,
              help="prune/table/exhaustive: add MeCo (Jiang et al. 2023) beside NTK and LR; the "
                   "three share 1 - w_flops - w_latency.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--repeats", type=int, default=3, show_default=True,
              help="prune/exhaustive: draws averaged per candidate.")
@click.option("--batch-size", type=int, default=32, show_default=True,
              help="prune/exhaustive: NTK batch (MicroNAS: 32, TE-NAS: 72).")
@click.option("--data", "data_path", type=click.Path(), default=None,
              help="Your task (not --method table): an image folder or .zip of "
                   "<split>/<class>/<image>, a CIFAR-10 python directory or an .npz. Its "
                   "classes, channels and resolution set the network (`micronas-jax task`); its "
                   "images feed the indicators (default: NB201's CIFAR-10 network, random "
                   "normal inputs).")
@click.option("--channels", type=int, default=None,
              help="Fix the width C of stage 1 (default: the evolution searches C in "
                   "4-64 with the cell; the other methods use the board table's, 16).")
@click.option("--cells", type=int, default=None,
              help="Fix the depth N, cells per stage (default: the evolution searches 1-5; "
                   "the other methods use the board table's, 5). --channels 16 --cells 5 is "
                   "NB201's network.")
@click.option("--resolution", "resolution_text", default=None,
              help=task_command.RESOLUTION_HELP + " A comma list (e.g. 32,24,16) lets the "
                   "evolution search the input size with the skeleton.")
@click.option("--gray", is_flag=True, help=task_command.GRAY_HELP)
@click.option("--out", default=None, help="JSON report to write.")
@click.option("--plot", "plot_path", default=None,
              help="Pareto plot PNG, objective vs latency (--method table or exhaustive; needs "
                   "matplotlib).")
@click.option("--benchmark", "benchmark_path", default=None,
              help="CSV with index,test_acc: also report the chosen cell's accuracy.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def search(board, lut_path, max_latency_ms, max_sram_kb, max_flash_kb, max_flops_m, method,
           budget, population, tournament, screened, w_flops, w_latency, scores_path, fast, meco, seed,
           repeats, batch_size, data_path, channels, cells, resolution_text, gray, out, plot_path,
           benchmark_path, progress):
  """Finds the best network (width, depth and cell; your task's input with --data) for a board
  under hardware limits, and reports it with its evidence."""
  from micronas_jax.search import objective

  given = {_FIELDS.get(name, name) for name, value in click.get_current_context().params.items()
           if click.get_current_context().get_parameter_source(name)
           is click.core.ParameterSource.COMMANDLINE}
  try:
    search_run.check_method_options(method, given)
  except search_run.SearchError as error:
    raise InputError(error) from None
  filled_store = method == "exhaustive"  # exhaustive writes --scores; table reads it
  check_paths([Output("--out", out), Output("--plot", plot_path)]
              + ([Output("--scores", scores_path)] if filled_store else []),
              [Input("--lut", lut_path), Input("--data", data_path),
               Input("--benchmark", benchmark_path)]
              + ([] if filled_store else [Input("--scores", scores_path)]))
  lut = lut_errors(latency.load, lut_path) if lut_path else lut_errors(latency.board, board)
  accuracy = _read_benchmark(benchmark_path) if benchmark_path else None
  resolutions = _resolutions(resolution_text)
  resolution = max(resolutions) if resolutions else None
  task = task_command.read_task(data_path, resolution, gray) if data_path else None
  try:
    network = search_run.searched_network(lut.config, task, channels, cells, resolution,
                                          1 if gray else None)
    skeletons = search_run.default_skeletons(method, network, channels, cells, resolutions)
  except ValueError as error:
    raise InputError(error) from None
  lut = lut_errors(shapes.at_network, lut, network)
  try:
    options = search_run.method_options(
        method, weights=objective.Weights.micronas(w_flops, w_latency, meco), fast=fast,
        repeats=repeats, ntk_batch=batch_size, scores_path=scores_path, plot_path=plot_path,
        population=population, tournament=tournament, budget=budget, screened=screened)
    request = search_run.SearchRequest(
        lut, objective.Limits(max_latency_ms, max_sram_kb, max_flash_kb, max_flops_m), options,
        seed, load_images(data_path, network.input_shape) if data_path else None, data_path,
        accuracy, benchmark_path, task, skeletons)
  except ValueError as error:  # SearchError, ObjectiveError, bad evolution sizes
    raise InputError(error) from None
  try:
    with progress_bar(progress, "cell" if method != "prune" else "supernet") as update:
      report = search_run.run(request, update, lambda line: click.echo(line, err=True),
                              names=CLI_NAMES)
  except search_run.SearchError as error:  # limits no cell meets, a bad score table or config
    raise InputError(error) from None
  click.echo(search_run.format_report(report))
  if out:
    write_text(out, json.dumps(report, indent=2) + "\n")
    click.echo(f"wrote    {out}")
