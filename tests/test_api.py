"""The package root's public calls: listed, documented, runnable as their examples say."""
import doctest
import inspect
import subprocess
import sys

import numpy as np

import micronas_jax
from micronas_jax import errors, graph, space
from micronas_jax.hardware import costs, latency
from micronas_jax.search import run as search_run


def test_every_public_call_is_listed_by_help_with_a_docstring_and_an_example():
  text = subprocess.run([sys.executable, "-c", "import micronas_jax as m; help(m)"],
                        capture_output=True, text=True, check=True,
                        env={"PAGER": "cat", "PATH": "/usr/bin:/bin"}).stdout
  for name in micronas_jax.__all__:
    call = getattr(micronas_jax, name)
    assert inspect.isfunction(call) and ">>> " in call.__doc__, name
    assert f"    {name}(" in text, name
  # The calls are named apart from the modules they front, which stay importable as modules.
  assert inspect.ismodule(graph) and inspect.ismodule(micronas_jax.graph)


def test_the_examples_in_the_root_and_errors_run_as_written():
  for module in (micronas_jax, errors):
    failed, attempted = doctest.testmod(module)
    assert attempted and not failed, module.__name__


def test_estimate_takes_indices_or_op_arrays_and_equals_the_costs_module():
  lut = latency.board("stm32f746")
  by_index = micronas_jax.estimate([1462, 0])
  by_ops = micronas_jax.estimate(space.all_archs()[[1462, 0]])
  direct = costs.cell_costs(space.all_archs()[[1462, 0]], lut)
  for name in direct:
    np.testing.assert_array_equal(by_index[name], direct[name])
    np.testing.assert_array_equal(by_ops[name], direct[name])


def test_run_search_passes_the_method_options_through(tmp_path, write_store):
  scores = write_store(tmp_path / "s.sqlite", [0, 1462, 6111], [3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
  report = micronas_jax.run_search(method=search_run.Table(str(scores)))
  assert report["method"] == "table" and report["index"] in (0, 1462, 6111)
  assert report == search_run.run(search_run.SearchRequest(
      latency.board("stm32f746"), method=search_run.Table(str(scores)))) | {
          "search_seconds": report["search_seconds"]}
