"""Ground truth from NAS-Bench-201 and how well a score ranks it (Kendall tau, Spearman rho).

Readers return one value per cell in benchmark index order, `[15625]` float64, NaN for a cell the
source does not hold. Three sources:

- A CSV table (the default; `.csv` or `.csv.gz`), e.g. `../shared/data/nb201/cifar10.csv`:

      index,arch,test_acc,params_m
      0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|...|,85.8633,0.129306

  A header row, then one row per cell. The cell is named by `index` (the official topology
  index, 0..15624) or `arch` (the benchmark's arch string), or both (they must agree). Any other
  column is a value column, read when asked for (`test_acc` by default); an empty cell or `nan`
  means "not measured" (NaN). A cell may appear once. Anything else (an unknown arch string, an
  index out of range, a missing column, a non-numeric value) raises `BenchmarkError` naming the
  file and line.
- The official NAS-Bench-201 file (`NAS-Bench-201-v1_*.pth`, through `nas_201_api`) and a
  NATS-Bench topology file or folder (`NATS-tss-v1_0-*`, through `nats_bench`): optional, from
  the `bench` extra, imported only when such a file is given. The .pth takes tens of GB of RAM to
  load, so the CSV stays the default path; final (200-epoch) results are read (`hp='200'`).

The rank statistics orient every score so that higher means predicted-better, drop cells whose
score or truth is not finite, and use tau-b and rho with average ranks for ties.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import importlib
import math
import os
import pathlib
import warnings

import numpy as np
from scipy import stats

from micronas_jax import space

# Accuracy column names of CSV tables -> keys of the official APIs' `get_more_info`.
API_METRICS = {"test_acc": "test-accuracy", "valid_acc": "valid-accuracy"}


class BenchmarkError(ValueError):
  """Ground truth that cannot be read: a missing file or extra, or a malformed table."""


# ---------------------------------------------------------------------------------------------
# Readers.


def read_csv(path: str | os.PathLike, columns=("test_acc",)) -> dict[str, np.ndarray]:
  """Value columns of a CSV table, each `[15625]` float64 in benchmark index order (NaN: absent).

  See the module docstring for the format; every row is validated.
  """
  source = pathlib.Path(path)
  if not source.is_file():
    raise BenchmarkError(f"{source}: no such benchmark table")
  opener = gzip.open if source.suffix == ".gz" else open
  try:
    with opener(source, "rt", newline="") as f:
      return _parse_rows(source, csv.reader(f), tuple(columns))
  except (OSError, UnicodeDecodeError, csv.Error) as error:
    raise BenchmarkError(f"{source}: cannot read: {error}") from None


def _parse_rows(source: pathlib.Path, reader, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
  header = next(reader, None)
  if header is None:
    raise BenchmarkError(f"{source}: empty file, expected a header row")
  header = [name.strip() for name in header]
  if "index" not in header and "arch" not in header:
    raise BenchmarkError(f"{source}, line 1: needs a column `index` or `arch`; "
                         f"found {', '.join(header)}")
  missing = [name for name in columns if name not in header]
  if missing:
    raise BenchmarkError(f"{source}, line 1: no column {', '.join(missing)}; "
                         f"found {', '.join(header)}")
  position = {name: header.index(name) for name in header}
  values = {name: np.full(space.NUM_CELLS, np.nan) for name in columns}
  first_line = np.zeros(space.NUM_CELLS, np.int64)  # 0: no row yet
  for line, row in enumerate(reader, start=2):
    if not row or all(not field.strip() for field in row):
      continue  # blank line
    if len(row) != len(header):
      raise BenchmarkError(f"{source}, line {line}: {len(row)} fields, header has {len(header)}")
    index = _row_index(source, line, row, position)
    if first_line[index]:
      raise BenchmarkError(f"{source}, line {line}: cell {index} already given on line "
                           f"{first_line[index]}")
    first_line[index] = line
    for name in columns:
      values[name][index] = _number(source, line, name, row[position[name]])
  return values


def _row_index(source, line: int, row: list[str], position: dict[str, int]) -> int:
  """The benchmark index a row names, by `index` and/or `arch` (which must then agree)."""
  index = None
  if "index" in position:
    text = row[position["index"]].strip()
    try:
      index = int(text)
    except ValueError:
      raise BenchmarkError(f"{source}, line {line}: index {text!r} is not an integer") from None
    if not 0 <= index < space.NUM_CELLS:
      raise BenchmarkError(f"{source}, line {line}: index {index} out of range "
                           f"[0, {space.NUM_CELLS})")
  if "arch" in position:
    text = row[position["arch"]].strip()
    try:
      from_arch = int(space.index_of(space.parse_arch(text)))
    except space.ArchError as error:
      raise BenchmarkError(f"{source}, line {line}: {error}") from None
    if index is not None and index != from_arch:
      raise BenchmarkError(f"{source}, line {line}: index {index} but arch {text} is cell "
                           f"{from_arch}")
    index = from_arch
  return index


def _number(source, line: int, column: str, text: str) -> float:
  text = text.strip()
  if not text:
    return math.nan
  try:
    value = float(text)
  except ValueError:
    raise BenchmarkError(f"{source}, line {line}: {column} {text!r} is not a number") from None
  if math.isinf(value):
    raise BenchmarkError(f"{source}, line {line}: {column} is {text!r}, not a finite number")
  return value


def _import_extra(module: str, source: pathlib.Path):
  """Imports an optional benchmark API, or says how to install it (and what to use instead)."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise BenchmarkError(
        f"{source}: reading this file needs the `{module}` package (pip install -e '.[bench]'); "
        "or pass a CSV table such as ../shared/data/nb201/cifar10.csv") from None


def _official_values(api, source, dataset: str, metric: str) -> np.ndarray:
  """`metric` of every cell from an official API object (NB201 or NATS-Bench topology)."""
  if metric not in API_METRICS:
    raise BenchmarkError(f"Unknown metric {metric!r} for the official APIs; "
                         f"known: {', '.join(API_METRICS)}")
  key = API_METRICS[metric]
  archs = space.all_archs()
  values = np.full(space.NUM_CELLS, np.nan)
  for index in range(space.NUM_CELLS):
    # The benchmark's own order is not lexicographic: check it cell by cell, never assume it.
    if api.arch(index) != space.format_arch(archs[index]):
      raise BenchmarkError(f"{source}: cell {index} is {api.arch(index)} in the file, "
                           f"{space.format_arch(archs[index])} in micronas-jax")
    info = api.get_more_info(index, dataset, hp="200", is_random=False)
    if key not in info:
      raise BenchmarkError(f"{source}: no {key!r} for dataset {dataset!r}; "
                           f"has {', '.join(sorted(info))}")
    values[index] = float(info[key])
  return values


def read_nb201(path: str | os.PathLike, dataset: str = "cifar10",
               metric: str = "test_acc") -> np.ndarray:
  """Final (200-epoch, mean over seeds) `metric` `[15625]` from an official NAS-Bench-201 .pth.

  Needs `nas_201_api` (the `bench` extra) and tens of GB of RAM: prefer a CSV table.
  """
  source = pathlib.Path(path)
  if not source.exists():
    raise BenchmarkError(f"{source}: no such NAS-Bench-201 file")
  api_module = _import_extra("nas_201_api", source)
  api = api_module.NASBench201API(str(source), verbose=False)
  return _official_values(api, source, dataset, metric)


def read_nats(path: str | os.PathLike, dataset: str = "cifar10",
              metric: str = "test_acc") -> np.ndarray:
  """Final (200-epoch) `metric` `[15625]` from a NATS-Bench topology (tss) file or folder.

  Needs `nats_bench` (the `bench` extra).
  """
  source = pathlib.Path(path)
  if not source.exists():
    raise BenchmarkError(f"{source}: no such NATS-Bench file or folder")
  nats_bench = _import_extra("nats_bench", source)
  api = nats_bench.create(str(source), "tss", fast_mode=True, verbose=False)
  return _official_values(api, source, dataset, metric)


def read_accuracy(path: str | os.PathLike, column: str = "test_acc",
                  dataset: str = "cifar10") -> np.ndarray:
  """Accuracy `[15625]` in benchmark index order from a CSV table, an NB201 .pth or NATS-Bench.

  The kind follows the name: `.pth` -> NAS-Bench-201, a name starting `NATS` -> NATS-Bench,
  anything else -> CSV (`dataset` applies to the official files only).
  """
  source = pathlib.Path(path)
  if source.suffix == ".pth":
    return read_nb201(source, dataset, column)
  if source.name.upper().startswith("NATS"):
    return read_nats(source, dataset, column)
  return read_csv(source, (column,))[column]


# ---------------------------------------------------------------------------------------------
# Rank statistics against the truth.


@dataclasses.dataclass(frozen=True)
class Correlation:
  """Kendall tau-b and Spearman rho of a score with the truth over `cells` finite pairs."""
  tau: float
  rho: float
  cells: int


def orient(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
  """`values [n]` as float64 with higher meaning predicted-better (negated when lower is)."""
  values = np.asarray(values, np.float64)
  return values if higher_is_better else -values


def rank_correlation(score: np.ndarray, truth: np.ndarray) -> Correlation:
  """Kendall tau-b and Spearman rho of `score [n]` with `truth [n]` over pairs finite in both.

  Ties get average ranks; fewer than two cells, or a constant side, gives NaN.
  """
  score, truth = np.asarray(score, np.float64), np.asarray(truth, np.float64)
  if score.shape != truth.shape or score.ndim != 1:
    raise ValueError(f"score and truth must be [n] alike, got {score.shape} and {truth.shape}")
  keep = np.isfinite(score) & np.isfinite(truth)
  score, truth = score[keep], truth[keep]
  if len(score) < 2 or np.ptp(score) == 0 or np.ptp(truth) == 0:
    return Correlation(math.nan, math.nan, int(keep.sum()))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", stats.ConstantInputWarning)
    tau = stats.kendalltau(score, truth).statistic
    rho = stats.spearmanr(score, truth).statistic
  return Correlation(float(tau), float(rho), int(keep.sum()))


def top_k_accuracy(score: np.ndarray, truth: np.ndarray, k: int) -> float:
  """Mean `truth` of the `k` best cells by `score [n]` (higher is better), over finite pairs.

  What a search that trusts the score and takes its top k would get. Cells tied with the k-th
  best share the remaining places: the expectation over random tie-breaking, so the answer does
  not depend on row order. NaN when fewer than `k` cells are finite.
  """
  score, truth = np.asarray(score, np.float64), np.asarray(truth, np.float64)
  if score.shape != truth.shape or score.ndim != 1:
    raise ValueError(f"score and truth must be [n] alike, got {score.shape} and {truth.shape}")
  if k < 1:
    raise ValueError(f"k must be at least 1, got {k}")
  keep = np.isfinite(score) & np.isfinite(truth)
  score, truth = score[keep], truth[keep]
  if len(score) < k:
    return math.nan
  kth = np.sort(score)[::-1][k - 1]
  above, tied = score > kth, score == kth
  places_left = k - int(above.sum())
  return float((truth[above].sum() + places_left * truth[tied].mean()) / k)


def aggregate_ranks(oriented: dict[str, np.ndarray]) -> np.ndarray:
  """Sum over scores of their average ranks (1 = worst), each `[n]` oriented higher-is-better.

  TE-NAS's combination of NTK and LR, and the rank vote of zero-cost proxy papers. A cell with a
  non-finite score in any input gets NaN.
  """
  if not oriented:
    raise ValueError("aggregate_ranks needs at least one score")
  columns = [np.asarray(values, np.float64) for values in oriented.values()]
  finite = np.logical_and.reduce([np.isfinite(values) for values in columns])
  total = np.full(len(columns[0]), np.nan)
  total[finite] = sum(stats.rankdata(values[finite]) for values in columns)
  return total


def quantile_groups(values: np.ndarray, groups: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Group of each of `values [n]` (0 = smallest) by its `groups` quantiles, and the edges.

  Returns `(group [n] int, edges [groups + 1])`; equal values always share a group, so groups
  can differ in size where many values tie at an edge.
  """
  values = np.asarray(values, np.float64)
  edges = np.quantile(values, np.linspace(0, 1, groups + 1))
  group = np.searchsorted(edges[1:-1], values, side="right")
  return group, edges
