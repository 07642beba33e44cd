"""JAX's persistent compilation cache for the command line: on by default, in a per-user folder.

A search spends most of a cold start compiling the indicators' XLA programs (about 26 of its
40 s on a 2-core CPU); with the cache, the next search in a new process reads them back.

Where: $XDG_CACHE_HOME/micronas-jax/xla (~/.cache/... by default). MICRONAS_JAX_CACHE=DIR puts it
elsewhere, MICRONAS_JAX_CACHE=off (or `micronas-jax --no-xla-cache ...`) turns it off, and a
folder the user set for JAX itself (JAX_COMPILATION_CACHE_DIR) wins over ours.

It was once off by default after jaxlib 0.10.2 aborted while writing a program to the cache in
a long test process; that abort was traced to the process passing vm.max_map_count (every
XLA:CPU executable holds memory mappings, tests/conftest.py), not to the cache. The suite now
runs with the cache on (tests/conftest.py) to keep that verified.
"""
from __future__ import annotations

import os
import pathlib

ENV = "MICRONAS_JAX_CACHE"
_OFF = ("off", "0", "false", "no")
_ON = ("", "on", "1", "true", "yes")
# Programs worth keeping: the proxies' and the search's, not every small helper
# (MICRONAS_JAX_CACHE_MIN_SECONDS overrides it).
MIN_COMPILE_SECONDS = 1.0

# What this process read from the cache and wrote to it (`usage`), counted from JAX's own
# monitoring events once `enable` has turned the cache on.
_USAGE: dict = {}


def cache_dir() -> pathlib.Path | None:
  """Where compiled XLA programs persist between runs: `MICRONAS_JAX_CACHE` (a folder, or off:
  None), by default $XDG_CACHE_HOME/micronas-jax/xla."""
  setting = os.environ.get(ENV, "").strip()
  if setting.lower() in _OFF:
    return None
  if setting.lower() in _ON:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "micronas-jax" / "xla"
  return pathlib.Path(setting).expanduser()


def enable(on: bool = True) -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache in `cache_dir()` (unless `on` is False, the
  environment turns it off, or JAX_COMPILATION_CACHE_DIR already chose a folder) and counts
  its hits; returns the folder in use, or None."""
  import jax

  folder = cache_dir() if on else None
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    folder = pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
  elif folder is None:
    return None
  else:
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError:
      return None  # a read-only home: run without the cache rather than fail
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(
        os.environ.get("MICRONAS_JAX_CACHE_MIN_SECONDS", MIN_COMPILE_SECONDS)))
  if not _USAGE:
    _USAGE.update(folder=str(folder), read=0, requests=0)
    jax.monitoring.register_event_listener(_count)
  return folder


def _count(event: str, **_) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    _USAGE["read"] += 1
  elif event == "/jax/compilation_cache/compile_requests_use_cache":
    _USAGE["requests"] += 1


def usage() -> dict | None:
  """{"folder", "read": programs read back from the cache, "compiled": the others that went
  through it} of this process, or None while the cache is off."""
  if not _USAGE:
    return None
  return {"folder": _USAGE["folder"], "read": _USAGE["read"],
          "compiled": _USAGE["requests"] - _USAGE["read"]}
