"""Shared by the benchmark scripts: the machine line and generated sections of RESULTS.md."""
from __future__ import annotations

import datetime
import pathlib
import platform
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks/RESULTS.md"


def machine() -> str:
  """One line naming the date, CPU, cores, Python, jax and the accelerator JAX sees."""
  import os

  import jax

  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  accelerator = ("CPU only" if device.platform == "cpu"
                 else f"{device.device_kind} x{jax.device_count()}")
  return (f"{datetime.date.today().isoformat()}; {cpu}, {os.cpu_count()} cores; "
          f"Python {platform.python_version()}, jax {jax.__version__}; {accelerator}")


def command() -> str:
  """The command line that ran this script, as its `python3 -m benchmarks` subcommand."""
  script = pathlib.Path(sys.argv[0]).resolve()
  if script.parent == REPO / "benchmarks" and not script.name.startswith("_"):
    # The entry point runs from the repository root without installing the package.
    return " ".join(["python3 -m benchmarks", script.stem.replace("_", "-"), *sys.argv[1:]])
  shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
  return " ".join(["python3", str(shown), *sys.argv[1:]])


def write_section(title: str, body: str, path: pathlib.Path = RESULTS) -> None:
  """Replaces (or appends) the `## title` section of the Markdown file at `path` with `body`."""
  heading = f"## {title}"
  section = f"{heading}\n\n{body.strip()}\n"
  text = path.read_text() if path.exists() else "# Benchmark results\n"
  start = text.find(heading + "\n")
  if start < 0:
    text = text.rstrip("\n") + "\n\n" + section
  else:
    end = text.find("\n## ", start + len(heading))
    text = text[:start] + section + (text[end:] if end >= 0 else "")
  path.write_text(text.rstrip("\n") + "\n")


def write_subsection(title: str, text: str, intro: str = "", path: pathlib.Path = RESULTS) -> None:
  """Puts `text` (a `### ` subsection) into the `## title` section of the Markdown file at `path`
  (created with `intro` if missing), replacing the subsection of the same heading."""
  heading = text.split("\n", 1)[0]
  body = section_body(title, path) if path.exists() else ""
  parts = ("\n" + body).split("\n### ") if body else [intro]
  head, subsections = parts[0], ["### " + part for part in parts[1:]]
  subsections = [s for s in subsections if s.split("\n", 1)[0] != heading] + [text]
  write_section(title, "\n\n".join([head.strip()] + [s.strip() for s in subsections]), path)


def section_body(title: str, path: pathlib.Path = RESULTS) -> str:
  """The body of the `## title` section of the Markdown file at `path` (stripped; '' if none)."""
  text = path.read_text()
  start = text.find(f"## {title}\n")
  if start < 0:
    return ""
  end = text.find("\n## ", start + 3)
  return text[start + len(title) + 4:end if end >= 0 else None].strip()


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend, or None (after a one-line message) where
  matplotlib is missing: the scripts' tables never depend on it."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    print("no plot: it needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
    return None
  return plt


def save_figure(fig, path: pathlib.Path, dpi: float | None = None) -> None:
  """Writes `fig` as a PNG at `path` (making its folder) and closes it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def checkpoint_network(checkpoint: str):
  """(stored checkpoint, cell ops, variables, network config) of a `micronas-jax train` run."""
  from micronas_jax import export, space, train

  stored = train.read_checkpoint(checkpoint)
  variables, config = export.checkpoint_variables(stored)
  return stored, space.parse_arch(stored["meta"]["arch"]), variables, config


def shown_path(path: str | pathlib.Path) -> str:
  """`path` relative to the repository when it lies inside it, else as given."""
  resolved = pathlib.Path(path).resolve()
  return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)
