"""JAX's persistent compilation cache for the command line: opt-in, one environment variable."""
from __future__ import annotations

import os
import pathlib


def cache_dir() -> pathlib.Path | None:
  """Where compiled XLA programs persist between runs; None (the default) keeps them in memory.

  Opt-in: MICRONAS_JAX_CACHE=DIR, or MICRONAS_JAX_CACHE=on for $XDG_CACHE_HOME/micronas-jax/xla
  (~/.cache/...). Off by default since jaxlib 0.10.2 aborted while writing the zero-cost
  proxies' program to the cache in a long test process (later traced to that process exhausting
  vm.max_map_count, see tests/conftest.py; not re-verified with the cache on).
  """
  setting = os.environ.get("MICRONAS_JAX_CACHE", "")
  if setting.lower() in ("", "off", "0", "false", "no"):
    return None
  if setting.lower() in ("on", "1", "true", "yes"):
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "micronas-jax" / "xla"
  return pathlib.Path(setting)


def enable() -> None:
  """Turns on JAX's persistent compilation cache (`cache_dir`), so a second search or score run
  with the same configuration skips XLA compilation (minutes for the exact NTK search on a CPU).
  A cache folder the user set for JAX (JAX_COMPILATION_CACHE_DIR) wins."""
  import jax

  folder = cache_dir()
  if folder is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    return  # a read-only home: run without the cache rather than fail
  jax.config.update("jax_compilation_cache_dir", str(folder))
  # Only programs worth keeping: the proxies' and the search's, not every tiny helper.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
