"""Headline numbers of every benchmark, parsed from benchmarks/RESULTS.md (nothing typed here).

    python3 -m benchmarks summary [--results benchmarks/RESULTS.md]

Reads each `## ` section (and `### ` subsection) the scripts wrote and prints one Markdown table:
from every results table whose header holds a section's headline columns, one row per table row
(keyed by its first columns), and every bold figure of a bullet line. A section without either
is listed with a pointer to RESULTS.md, so a new script's section never goes missing.
"""
from __future__ import annotations

import argparse
import pathlib
import re

RESULTS = pathlib.Path(__file__).resolve().parent / "RESULTS.md"

# Section title prefix -> (key columns, headline columns, keep(row) or None). A table counts
# when its header has all of these columns; other tables of the section are details.
HEADLINES = {
    "Proxy correlation": (("score",), ("Kendall tau", "Spearman rho"), None),
    "Proxy throughput": (("device", "proxy"), ("cells/s", "vs exact NTK"), None),
    "Latency LUT fit": (("device", "semantics", "train"), ("Kendall tau", "within ±10% %"),
                        lambda row: row["train"] in ("1%", "ceiling")),
    "Torch reference": (("proxy",), ("max rel diff value", "speedup"), None),
    "Default search": (("measure",), ("value", "target"), None),
    "Standard formats: TFLM": (("estimate", "of"), ("error % (min / median / max)",
                                                     "within ±10 %"), None),
    "Shape-aware latency": (("metric",), ("value",), None),
}


def sections(text: str) -> list[tuple[str, str]]:
  """`(title, body)` of each `## ` section and each `### ` subsection ("section / subsection")."""
  found = []
  for block in re.split(r"^## ", text, flags=re.M)[1:]:
    title, _, body = block.partition("\n")
    parts = re.split(r"^### ", body, flags=re.M)
    found.append((title.strip(), parts[0]))
    for part in parts[1:]:
      subtitle, _, subbody = part.partition("\n")
      found.append((f"{title.strip()} / {subtitle.strip()}", subbody))
  return found


def tables(body: str) -> list[list[dict[str, str]]]:
  """Each Markdown table of `body` as a list of rows `{header: cell}`."""
  found, lines = [], body.splitlines()
  i = 0
  while i < len(lines):
    if lines[i].startswith("|") and i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$",
                                                                    lines[i + 1].strip()):
      header = [cell.strip() for cell in lines[i].strip().strip("|").split("|")]
      rows, i = [], i + 2
      while i < len(lines) and lines[i].startswith("|"):
        cells = [cell.strip() for cell in lines[i].strip().strip("|").split("|")]
        rows.append(dict(zip(header, cells)))
        i += 1
      found.append(rows)
    else:
      i += 1
  return found


def bold_bullets(body: str) -> list[tuple[str, str]]:
  """`(what, value)` of each bullet line with a bold figure: "- What ... **value** [unit]"."""
  found = []
  for line in body.splitlines():
    match = re.match(r"^- (.+?)\*\*([^*]+)\*\*( [a-z]+\b)?", line)
    if match:
      found.append((match.group(1).strip(), match.group(2).strip() + (match.group(3) or "")))
  return found


def headlines(text: str) -> list[tuple[str, str, str]]:
  """`(section, what, value)` rows of the headline numbers of a RESULTS.md text."""
  rows = []
  for title, body in sections(text):
    spec = next((s for prefix, s in HEADLINES.items() if title.startswith(prefix)), None)
    found = []
    if spec:
      keys, values, keep = spec
      for table in tables(body):
        if table and all(c in table[0] for c in keys + values):
          found += [(title, " ".join(row[k] for k in keys),
                     ", ".join(f"{c} {row[c]}" for c in values))
                    for row in table if keep is None or keep(row)]
    found += [(title, label, value) for label, value in bold_bullets(body)]
    if not found and body.strip() and (spec or "|" in body or "**" in body):
      found.append((title, "(no headline parsed)", "see benchmarks/RESULTS.md"))
    rows += found
  return rows


def render(rows: list[tuple[str, str, str]]) -> str:
  """The headline rows as one Markdown table."""
  lines = ["| benchmark | what | headline |", "| --- | --- | --- |"]
  lines += [f"| {section} | {what} | {value} |" for section, what, value in rows]
  return "\n".join(lines)


def main(argv=None) -> str:
  """Prints the summary table of the RESULTS.md file; returns it."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--results", type=pathlib.Path, default=RESULTS)
  args = parser.parse_args(argv)
  if not args.results.is_file():
    raise SystemExit(f"{args.results}: no such results file (run a benchmark first)")
  text = render(headlines(args.results.read_text()))
  print(text)
  return text


if __name__ == "__main__":
  main()
