"""One entry point for the benchmark scripts: `python3 -m benchmarks SUBCOMMAND [ARGS...]`.

Run from the repository root (no install needed). Each subcommand forwards its arguments to the
script of that name, run as `__main__`; `python3 -m benchmarks SUBCOMMAND --help` shows its
options.
"""
from __future__ import annotations

import ast
import pathlib
import runpy
import sys

HERE = pathlib.Path(__file__).resolve().parent
SUBCOMMANDS = {
    "correlation": "correlation",
    "throughput": "throughput",
    "search-quality": "search_quality",
    "search-evolution": "search_evolution",
    "fitness-ablation": "fitness_ablation",
    "search-budget": "search_budget",
    "table1": "table1",
    "latency-fit": "latency_fit",
    "lut-agreement": "lut_agreement",
    "emu-validation": "emu_validation",
    "deploy-memory": "deploy_memory",
    "deploy-formats": "deploy_formats",
    "shape-model": "shape_model",
    "task-study": "task_study",
    "task-search": "task_search",
    "natural-images": "natural_images",
    "torch-reference": "torch_reference",
    "summary": "summary",
}


def describe(module: str) -> str:
  """First line of a script's docstring, read without importing it (imports are slow)."""
  tree = ast.parse((HERE / f"{module}.py").read_text())
  return (ast.get_docstring(tree) or "").split("\n", 1)[0]


def usage() -> str:
  """The list of subcommands with what each measures."""
  width = max(map(len, SUBCOMMANDS))
  lines = ["usage: python3 -m benchmarks SUBCOMMAND [ARGS...]", "", "subcommands:"]
  lines += [f"  {name:<{width}}  {describe(module)}" for name, module in SUBCOMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  """Runs the subcommand named by `argv[0]` with the rest as its arguments; returns the status."""
  argv = sys.argv[1:] if argv is None else argv
  if not argv or argv[0] in ("-h", "--help"):
    print(usage())
    return 0
  if argv[0] not in SUBCOMMANDS:
    print(f"{usage()}\n\nerror: unknown subcommand {argv[0]!r}", file=sys.stderr)
    return 2
  script = HERE / f"{SUBCOMMANDS[argv[0]]}.py"
  saved = sys.argv
  sys.argv = [str(script), *argv[1:]]
  try:
    # By path, not module name: a fresh `__main__` even where the module is already imported.
    runpy.run_path(str(script), run_name="__main__")
  finally:
    sys.argv = saved
  return 0


if __name__ == "__main__":
  sys.exit(main())
