"""Benchmark scripts: `python3 -m benchmarks SUBCOMMAND ...` (see benchmarks/__main__.py)."""
