"""The joint search as a user runs it: cold time, determinism, and a task on the Cortex-M4 board.

Each search runs as its own `micronas-jax search` process (a cold start: imports, XLA
compilation and all), so the time is what a user waits:
  1. the default search (no options: skeleton x cell on the STM32F746), twice with the same
     seed: wall time of each (target: <= 2 minutes on the 2-core CPU) and whether both give the
     same network;
  2. issue 26's command on CIFAR-10 as the user's images, on the NUCLEO-F411RE with a 100 ms
     limit: the network it prints and every limit, with SRAM and flash from TFLM's exact arena.
Writes the section "Your task: the joint search from a cold start" of RESULTS.md.
    python3 -m benchmarks task-search --data ../shared/data/cifar10/cifar10-jpeg.zip
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

try:
  from benchmarks import _results
except ImportError:  # run as a file: its folder is on the path
  import _results

SECTION = "Your task: the joint search from a cold start"
TARGET_S = 120.0


def run_search(args: list[str], out: pathlib.Path) -> tuple[dict, float, str]:
  """(report, wall seconds, printed text) of one `micronas-jax search` process."""
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "micronas_jax.cli", "search", *args, "--out",
                         str(out), "--no-progress"], capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise SystemExit(f"search {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
  return json.loads(out.read_text()), seconds, done.stdout


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", required=True, help="images standing for the user's task")
  parser.add_argument("--no-write", action="store_true", help="print only")
  args = parser.parse_args()
  folder = pathlib.Path(tempfile.mkdtemp())
  runs = [run_search([], folder / f"default{i}.json") for i in range(2)]
  same = (runs[0][0]["index"] == runs[1][0]["index"]
          and runs[0][0]["network"] == runs[1][0]["network"])
  task_args = ["--data", args.data, "--board", "nucleo-f411re", "--max-latency-ms", "100"]
  task_report, task_seconds, task_text = run_search(task_args, folder / "task.json")
  for report, seconds, _ in runs:
    print(f"default search: {seconds:.1f} s, network {report['network']}, cell {report['index']}")
  print(task_text)
  net = runs[0][0]["network"]
  rows = "\n".join(f"| default search, run {i + 1} | {seconds:.1f} | {report['search_seconds']:.1f} "
                   f"| C={report['network']['channels']}, N={report['network']['cells_per_stage']},"
                   f" cell {report['index']} |" for i, (report, seconds, _) in enumerate(runs))
  limits = task_report["limits"]
  worst = max(seconds for _, seconds, _ in runs)
  body = f"""Command: `{_results.command()}`
Machine: {_results.machine()}. Each search is a fresh `micronas-jax search` process (imports,
compilation and all; the persistent compilation cache off, as by default).

| run | wall s | search s (in the report) | network |
|---|---:|---:|---|
{rows}
| `{' '.join(['search', *task_args[:1], '<cifar10 zip>', *task_args[2:]])}` | {task_seconds:.1f} | {task_report['search_seconds']:.1f} | C={task_report['network']['channels']}, N={task_report['network']['cells_per_stage']}, cell {task_report['index']} |

- Cold start of the default search: **{worst:.0f} s** at most (target <= {TARGET_S:.0f} s:
  {'met' if worst <= TARGET_S else '**missed**'}); the same seed gave the same network in both
  runs: **{'yes' if same else 'NO'}** (C={net['channels']}, N={net['cells_per_stage']}, cell
  {runs[0][0]['index']}). {runs[0][0]['compilations']} compilation of the indicator program
  per run, whatever the skeleton: the indicators run on fixed proxy networks.
- On the NUCLEO-F411RE with `--max-latency-ms 100`: {task_report['network']['resolution']}x{task_report['network']['resolution']}x{task_report['network']['in_channels']} input, {task_report['network']['num_classes']} classes, latency
  **{task_report['latency_ms']:.1f} ms**, SRAM **{task_report['sram_kb']:.1f} KB** of 128, flash
  **{task_report['flash_kb']:.1f} KB** of 512 (TFLM's arena and `.tflite`, exact, with the
  runtime's); limits: {', '.join(limits)}.

```
{task_text.strip()}
```
"""
  if not args.no_write:
    _results.write_section(SECTION, body)


if __name__ == "__main__":
  main()
