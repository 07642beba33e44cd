"""Rank correlation of every proxy in a score table with NAS-Bench-201 accuracy (Table I).

    python3 -m benchmarks correlation SCORES [--truth ../shared/data/nb201/cifar10.csv]
    python3 -m benchmarks correlation SCORES --sample 512 --seed 0 --no-write   # seconds
    python3 -m benchmarks correlation SCORES --aggregate ntk_fast,lr,flops

SCORES is a `micronas-jax score` store (.sqlite) or its CSV export (optionally .csv.gz); the
first seed's rows are used. Every numeric column is a score: registered proxies are oriented by
their registry direction (`proxies.get(name).higher_is_better`, so the NTK condition number is
negated), the analytic costs (flops, params) are taken as they are (bigger networks tend to be
more accurate), and any other column raw. Rows flagged invalid keep their sentinel, as a search
sees them; cells without ground truth are left out.

Prints, over all cells of the table (or a random `--sample` of them): Kendall tau-b and Spearman
rho with accuracy per score, and the accuracy of the cells it ranks best (top-1, top-10 mean);
rank-sum aggregates (TE-NAS's ntk+lr, each `--aggregate`, and every score with rho >= 0.85
together); the same within FLOPs quartiles; literature anchors. Draws a scatter plot per score
(needs matplotlib: the `bench` extra) and replaces its section of benchmarks/RESULTS.md (unless
--no-write).
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

try:
  from benchmarks import _results
except ImportError:  # run as a file (python3 benchmarks/correlation.py): its folder is on the path
  import _results
from micronas_jax import complexity, ground_truth, proxies, scoring, space, store
from micronas_jax.proxies import draws

METADATA = ("index", "arch", "seed", "config_hash")
TE_NAS = ("ntk", "lr")
HIGH_RHO = 0.85
TOP_K = 10
FIGURE = _results.REPO / "benchmarks/figures/correlation.png"
ANCHORS = """\
Anchors (NAS-Bench-201, as the papers report them; not measured here): TE-NAS
(arXiv 2102.11535) Kendall tau about -0.42 for the NTK condition number (0.42 once oriented)
and about 0.5 for linear regions; zero-cost proxies (Abdelfattah et al., arXiv 2101.08134)
Spearman rho 0.737 for synflow and 0.817 for their 3-proxy vote; AZ-NAS (arXiv 2403.19232)
Spearman rho 0.913 for its aggregate; MeCo (NeurIPS 2023) about 0.89 on CIFAR-10."""


def read_scores(path: pathlib.Path) -> dict[str, np.ndarray]:
  """Columns `{name: [rows]}` of a score store or its CSV export, first seed only."""
  try:
    table, _ = store.read_table(path)
  except store.StoreError as error:
    raise SystemExit(str(error)) from None
  if not len(table["index"]):
    raise SystemExit(f"{path}: no rows")
  if "seed" in table:
    first_seed = table["seed"] == table["seed"][0]
    table = {name: column[first_seed] for name, column in table.items()}
  return table


def direction(name: str) -> bool | None:
  """True/False: higher/lower is better as an indicator of accuracy (the proxies' registry; the
  analytic columns' `draws.ANALYTIC_HIGHER_IS_BETTER`); None: unregistered."""
  if name in draws.ANALYTIC_HIGHER_IS_BETTER:
    return draws.ANALYTIC_HIGHER_IS_BETTER[name]
  if name in proxies.names():
    return proxies.get(name).higher_is_better
  return None


def score_columns(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Every numeric score column of `table` (not metadata, not `*_valid`) oriented higher-better."""
  oriented = {}
  for name, column in table.items():
    if name in METADATA or name.endswith("_valid"):
      continue
    try:
      values = column.astype(np.float64)
    except ValueError:
      continue  # text column: not a score
    oriented[name] = ground_truth.orient(values, direction(name) is not False)
  return oriented


def direction_label(name: str) -> str:
  """How a score was oriented, for the table."""
  if name in scoring.ANALYTIC:
    return "cost, raw value"
  higher = direction(name)
  if higher is None:
    return "unregistered, raw value"
  return f"{'higher' if higher else 'lower'} is better"


def aggregates(oriented: dict[str, np.ndarray], singles: dict[str, ground_truth.Correlation],
               requested: list[list[str]]) -> tuple[dict[str, np.ndarray], str]:
  """Rank-sum aggregates: TE-NAS ntk+lr, each requested group, every score with rho >= 0.85.

  Returns `{label: [n]}` and a sentence on the rho >= 0.85 group.
  """
  groups = {}
  if all(name in oriented for name in TE_NAS):
    groups["ntk+lr (TE-NAS ranks)"] = list(TE_NAS)
  for names in requested:
    groups["+".join(names) + " (ranks)"] = names
  high = [name for name, c in singles.items() if c.rho >= HIGH_RHO]
  if len(high) >= 2:
    groups["+".join(high) + f" (ranks; rho >= {HIGH_RHO})"] = high
    note = f"Scores with Spearman rho >= {HIGH_RHO}: {', '.join(high)} (aggregated below)."
  elif high:
    note = (f"Single scores with Spearman rho >= {HIGH_RHO}: {high[0]} only, so no group of them "
            "to aggregate.")
  else:
    note = f"Scores with Spearman rho >= {HIGH_RHO}: none reach {HIGH_RHO}."
  return {label: ground_truth.aggregate_ranks({n: oriented[n] for n in names})
          for label, names in groups.items()}, note


def overall_table(scores: dict[str, np.ndarray], truth: np.ndarray,
                  labels: dict[str, tuple[str, int]]) -> tuple[str, dict]:
  """Markdown table of tau and rho of each score `[n]` with `truth [n]`, and the correlations.

  `labels` gives each score's direction label and its count of rows flagged invalid.
  """
  lines = ["| score | direction | invalid rows | cells | Kendall tau | Spearman rho "
           f"| top-1 acc | top-{TOP_K} mean acc |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  result = {}
  for name, values in scores.items():
    result[name] = c = ground_truth.rank_correlation(values, truth)
    label, invalid = labels[name]
    top = [ground_truth.top_k_accuracy(values, truth, k) for k in (1, TOP_K)]
    lines.append(f"| {name} | {label} | {invalid} | {c.cells} | {c.tau:.3f} | {c.rho:.3f} "
                 f"| {top[0]:.2f} | {top[1]:.2f} |")
  return "\n".join(lines), result


def quartile_table(scores: dict[str, np.ndarray], truth: np.ndarray, flops: np.ndarray) -> str:
  """Markdown table of tau / rho of each score within each FLOPs quartile of the cells."""
  group, edges = ground_truth.quantile_groups(flops, 4)
  header = "| score | " + " | ".join(
      f"Q{q + 1}: {edges[q]:.1f}-{edges[q + 1]:.1f} M FLOPs, {(group == q).sum()} cells"
      for q in range(4)) + " |"
  lines = [header, "| --- |" + " ---: |" * 4]
  for name, values in scores.items():
    cells = [ground_truth.rank_correlation(values[group == q], truth[group == q]) for q in range(4)]
    lines.append(f"| {name} | " + " | ".join(f"{c.tau:.3f} / {c.rho:.3f}" for c in cells) + " |")
  return "\n".join(lines)


def plot(table: dict[str, np.ndarray], names: list[str], truth: np.ndarray,
         correlations: dict[str, ground_truth.Correlation], path: pathlib.Path) -> bool:
  """Scatter of each raw score (valid rows) against accuracy, one panel each; False without
  matplotlib."""
  plt = _results.pyplot()
  if plt is None:
    return False
  cols = min(4, len(names))
  rows = -(-len(names) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
  for ax, name in zip(axes.flat, names):
    values = table[name].astype(np.float64)
    keep = np.isfinite(values) & np.isfinite(truth)
    if name + "_valid" in table:
      keep &= table[name + "_valid"].astype(str) != "0"  # drop sentinels: they would flatten it
    x = values[keep]
    ax.scatter(x, truth[keep], s=2, alpha=0.3, linewidths=0, rasterized=True)
    if len(x) and x.min() > 0 and x.max() > 100 * x.min():
      ax.set_xscale("log")
    c = correlations[name]
    ax.set_title(f"{name}: tau {c.tau:.3f}, rho {c.rho:.3f}", fontsize=9)
    ax.set_xlabel(f"{name} ({direction_label(name)})", fontsize=8)
    ax.set_ylabel("test accuracy %", fontsize=8)
    ax.tick_params(labelsize=7)
  for ax in list(axes.flat)[len(names):]:
    ax.axis("off")
  _results.save_figure(fig, path, dpi=80)
  return True


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("scores", type=pathlib.Path, nargs="?",
                      default=_results.REPO / "benchmarks/data/nb201_scores_h100_seed0_r1.csv.gz",
                      help="score table from `micronas-jax score` or its CSV export (default: "
                           "the shipped whole-space table, exact and fast NTK, LR, one draw)")
  parser.add_argument("--truth", type=pathlib.Path,
                      default=_results.REPO.parent / "shared/data/nb201/cifar10.csv",
                      help="CSV table (default), NB201 .pth or NATS-Bench file")
  parser.add_argument("--truth-column", default="test_acc")
  parser.add_argument("--dataset", default="cifar10", help="for the official files only")
  parser.add_argument("--sample", type=int, default=None, help="random subset of this many cells")
  parser.add_argument("--seed", type=int, default=0, help="which random subset")
  parser.add_argument("--aggregate", action="append", default=[], metavar="A,B,...",
                      help="also rank-sum these scores (repeatable)")
  parser.add_argument("--plot", type=pathlib.Path, default=None,
                      help=f"scatter PNG (default with RESULTS.md written: {FIGURE.name} "
                           "under benchmarks/figures)")
  parser.add_argument("--no-plot", action="store_true")
  parser.add_argument("--no-write", action="store_true", help="only print the tables")
  parser.add_argument("--title", default=None,
                      help="RESULTS.md section to write (default: by the table's coverage), so "
                           "that a table of other proxies does not replace the main one")
  return parser.parse_args(argv)


def main(argv=None) -> str:
  """Runs the benchmark; returns the Markdown it printed."""
  args = parse_args(argv)
  table = read_scores(args.scores)
  sampled = args.sample is not None and args.sample < len(table["index"])
  if sampled:
    keep = np.sort(np.random.default_rng(args.seed).choice(len(table["index"]), args.sample,
                                                           replace=False))
    table = {name: column[keep] for name, column in table.items()}
  indices = table["index"].astype(np.int64)
  try:
    truth = ground_truth.read_accuracy(args.truth, args.truth_column, args.dataset)[indices]
  except ground_truth.BenchmarkError as error:
    raise SystemExit(str(error)) from None
  oriented = score_columns(table)
  requested = [[n.strip() for n in group.split(",") if n.strip()] for group in args.aggregate]
  for names in requested:
    unknown = [n for n in names if n not in oriented]
    if unknown or not names:
      raise SystemExit(f"--aggregate {','.join(names)}: no score column {', '.join(unknown)}; "
                       f"the table has {', '.join(oriented)}")
  invalid = {name: int((table[name + "_valid"].astype(str) == "0").sum())
             if name + "_valid" in table else 0 for name in oriented}
  singles_text, singles = overall_table(
      oriented, truth, {name: (direction_label(name), invalid[name]) for name in oriented})
  combined, note = aggregates(oriented, singles, requested)
  combined_text, combined_correlations = overall_table(
      combined, truth, {name: ("higher is better", 0) for name in combined})
  reaching = [f"{label.split(' (')[0]} ({c.rho:.3f})" for label, c in combined_correlations.items()
              if c.rho >= HIGH_RHO]
  combined_text += (f"\n\nAggregates with Spearman rho >= {HIGH_RHO}: "
                    + (", ".join(reaching) if reaching else "none") + ".")
  flops = (table["flops"].astype(np.float64) if "flops" in table
           else complexity.flops(space.all_archs()[indices]) / 1e6)
  quartiles = quartile_table(oriented | combined, truth, flops)
  cells = int(np.isfinite(truth).sum())
  scope = (f"a random sample of {len(indices)} cells (seed {args.seed})" if sampled
           else f"all {len(indices)} cells of the table")
  if "seed" in table:
    scope += f", rows of scoring seed {table['seed'][0]}"
  rendered = "\n\n".join([
      f"Scores `{args.scores.name}` over {scope}; truth `{args.truth.name}` column "
      f"`{args.truth_column}` ({cells} of them with a value; the best is "
      f"{np.nanmax(truth):.2f}). Top-1 and top-{TOP_K} are the accuracy of the cell, and the "
      f"mean of the {TOP_K} cells, that a score ranks best: what a search trusting it alone "
      "would pick (ties share places).", singles_text,
      "Rank-sum aggregates (each score's average rank, summed; higher is better). " + note,
      combined_text, "Within FLOPs quartiles of these cells (Kendall tau / Spearman rho):",
      quartiles, ANCHORS])
  print(rendered)
  default = FIGURE.with_name(f"correlation_sample{args.sample}.png") if sampled else FIGURE
  figure = args.plot or (None if args.no_write else default)
  plotted = figure is not None and not args.no_plot and plot(
      table, list(oriented), truth, singles, figure)
  if plotted:
    print(f"wrote {figure}", file=sys.stderr)
  if args.no_write:
    return rendered
  image = ""
  if plotted and figure.resolve().is_relative_to(_results.RESULTS.parent):
    link = figure.resolve().relative_to(_results.RESULTS.parent)
    image = f"\n\n![each score against accuracy]({link})"
  title = args.title or "Proxy correlation with CIFAR-10 accuracy"
  if sampled and not args.title:
    title += f" (sample of {args.sample} cells)"
  _results.write_section(
      title, f"Command: `{_results.command()}` ({_results.machine()}).\n\n" + rendered + image)
  return rendered


if __name__ == "__main__":
  main()
