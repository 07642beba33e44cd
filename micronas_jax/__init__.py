"""micronas-jax: zero-shot, hardware-aware neural architecture search for microcontrollers.

The calls a Python user makes, each a thin front to the module that does the work (imported when
called, so `import micronas_jax` stays light):

    run_search       the best cell for a board under hardware limits (`search.run`)
    score_cells      training-free indicators of cells into a resumable store (`scoring`)
    estimate         latency, peak SRAM, flash, FLOPs and params of many cells (`hardware.costs`)
    hardware_report  the hardware report of one cell on a board (`hardware.report`)
    network_graph    the network of one cell as typed nodes in execution order (`graph`)
    train_cell       trains a cell's network, resumably (`train`)
    export_onnx      the network as a checked ONNX file (`export`)
    deploy_cell      the int8 C library of a cell, built and checked (`deploy`)

Each is named apart from the module it fronts (`micronas_jax.search`, `.train`, ...), which stay
importable as modules.

A cell is a benchmark index (0..15624), an arch string of NAS-Bench-201's form, or 6 op indices.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["deploy_cell", "estimate", "export_onnx", "hardware_report", "network_graph",
           "run_search", "score_cells", "train_cell"]


def _ops(cell):
  from micronas_jax import space
  if isinstance(cell, str):
    return space.resolve(cell)
  if isinstance(cell, int):
    return space.arch_at(cell)
  return space.validate_ops(cell)


def _lut(board):
  from micronas_jax.hardware import latency
  if isinstance(board, latency.LUT):
    return board
  return latency.board(board)


def run_search(board="stm32f746", *, max_latency_ms=None, max_sram_kb=None, max_flash_kb=None,
           max_flops_m=None, method=None, seed: int = 0, images=None, channels=None,
           cells=None) -> dict:
  """The best network for `board` (a packaged board name or a `latency.LUT`) under the limits,
  as `micronas-jax search` finds it -> the search's JSON-ready report (index, arch, network,
  indicators, latency_ms, sram_kb, flash_kb, ...).

  `method` is the method's options: `search.run.Evolution()` (None: the default evolution, over
  skeleton and cell jointly unless `channels` and `cells` fix the skeleton), `Prune()`,
  `Table(scores_path)` or `Exhaustive(scores_path)`. `images: [N, 32, 32, C]` normalized images
  for the indicators (None: standard-normal inputs). The board's SRAM and flash always bound
  the search.

      >>> import micronas_jax
      >>> report = micronas_jax.run_search(max_latency_ms=300)  # doctest: +SKIP
      >>> report["latency_ms"] <= 300  # doctest: +SKIP
      True
  """
  from micronas_jax.hardware import shapes
  from micronas_jax.search import objective
  from micronas_jax.search import run as search_run
  limits = objective.Limits(max_latency_ms, max_sram_kb, max_flash_kb, max_flops_m)
  method = method or search_run.Evolution()
  lut = _lut(board)
  network = search_run.searched_network(lut.config, channels=channels, cells=cells)
  skeletons = search_run.default_skeletons(search_run.method_name(method), network, channels,
                                           cells)
  request = search_run.SearchRequest(shapes.at_network(lut, network), limits, method, seed,
                                     images, skeletons=skeletons)
  return search_run.run(request)


def score_cells(cells, out: str, *, proxies=("ntk", "lr"), seed: int = 0, images=None,
          repeats: int = 1) -> tuple[str, int]:
  """Scores `cells` (benchmark indices `[n]`) with the training-free `proxies` (names of
  `micronas_jax.proxies.names()`, or "flops", "params", "skip_span") into the resumable SQLite
  store `out`, skipping cells it holds -> (the store's path, cells scored now).

      >>> import micronas_jax
      >>> micronas_jax.score_cells([0, 1462], "scores.sqlite", proxies=("flops",))  # doctest: +SKIP
      ('scores.sqlite', 2)
  """
  import numpy as np

  from micronas_jax import scoring
  config = scoring.ScoreConfig(proxies=tuple(proxies), repeats=repeats)
  return scoring.score_into_store(config, np.asarray(cells, np.int32), seed, out, images)


def estimate(cells, board="stm32f746") -> dict:
  """Hardware costs of many cells (`[..., 6]` op indices, or benchmark indices `[n]`) on `board`
  -> {"latency_ms", "sram_kb", "flash_kb", "flops_m", "params_m"}: arrays of the cells' shape.
  Vectorized: the whole space takes milliseconds.

      >>> import micronas_jax
      >>> costs = micronas_jax.estimate([1462, 6111])
      >>> sorted(costs)
      ['flash_kb', 'flops_m', 'latency_ms', 'params_m', 'sram_kb']
      >>> costs["flops_m"].shape
      (2,)
  """
  import numpy as np

  from micronas_jax import space
  from micronas_jax.hardware import costs
  cells = np.asarray(cells)
  archs = space.all_archs()[cells] if cells.ndim <= 1 and cells.shape[-1:] != (6,) else cells
  return costs.cell_costs(archs, _lut(board))


def hardware_report(cell, board="stm32f746") -> dict:
  """The hardware report of one cell on `board`: latency, peak SRAM, flash, FLOPs, params, the
  board's capacities and whether the network fits.

      >>> import micronas_jax
      >>> report = micronas_jax.hardware_report(1462)
      >>> report["index"], report["fits_flash"]
      (1462, False)
  """
  from micronas_jax.hardware import report
  return report.cell_report(_ops(cell), _lut(board))


def network_graph(cell, config=None):
  """The network of one cell as typed nodes in execution order (`graph.Graph`), for the
  NAS-Bench-201 CIFAR-10 network or the `network.NetworkConfig` given.

      >>> import micronas_jax
      >>> network = micronas_jax.network_graph(1462)
      >>> network.nodes[0].kind.value, network.nodes[-1].shape
      ('conv', (10,))
  """
  from micronas_jax import graph as graph_module
  from micronas_jax.network import NB201_CIFAR10
  return graph_module.build(_ops(cell), config or NB201_CIFAR10)


def train_cell(cell, data: str, out: str, *, config=None, network=None, progress: bool = False):
  """Trains the network of `cell` on the images at `data` (an image folder or zip, a CIFAR-10
  python directory or an .npz) into the run folder `out`, resuming a run found there ->
  `train.TrainResult`. `config` is a `train.TrainConfig`, `network` a `NetworkConfig`.

      >>> import micronas_jax
      >>> from micronas_jax.train import TrainConfig
      >>> micronas_jax.train_cell(1462, "cifar10.zip", "run", config=TrainConfig(epochs=1))  # doctest: +SKIP
  """
  from micronas_jax import train as train_module
  from micronas_jax.network import NB201_CIFAR10
  return train_module.train_from_path(_ops(cell), data, out, network or NB201_CIFAR10,
                                      config or train_module.TrainConfig(), progress=progress)


def export_onnx(cell, onnx_path: str, *, checkpoint: str | None = None, seed: int = 0) -> dict:
  """Writes the network of `cell` (weights from a `train` run folder, or initialized from
  `seed`) as ONNX, checked against JAX with ONNX Runtime -> {"difference", "source", ...}.

      >>> import micronas_jax
      >>> micronas_jax.export_onnx(1462, "cell.onnx", checkpoint="run")  # doctest: +SKIP
  """
  from micronas_jax import export as export_module
  return export_module.export_cell(_ops(cell), onnx_path, checkpoint, seed=seed)


def deploy_cell(cell, out_dir: str, *, checkpoint: str | None = None, images=None,
           verify: bool = False, board: str = "stm32f746-emu", log=print):
  """Quantizes the network of `cell` to int8 and writes its C library to `out_dir`, built with
  arm-none-eabi-gcc where installed; `verify` checks it in the emulated Cortex-M7 ->
  `deploy.DeployReport` (its `summary()` is what the command prints).

      >>> import micronas_jax
      >>> micronas_jax.deploy_cell(0, "cell0", verify=True).checks  # doctest: +SKIP
  """
  from micronas_jax import deploy as deploy_module
  return deploy_module.deploy(_ops(cell), out_dir, checkpoint, images, verify=verify,
                              board=board, log=log)
