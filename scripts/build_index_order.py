"""Regenerates micronas_jax/data/nb201_index_order.txt from a benchmark table.

The NAS-Bench-201 index order is the benchmark's own (not lexicographic), so the package ships it
as data: one line per cell, six digits (the op index of each edge, edges in NB201 order).

    python scripts/build_index_order.py ../shared/data/nb201/cifar10.csv

The order itself comes from HELP's index map (github HayeonLee/HELP, data/nasbench201/
str_arch2idx.pt, MIT), as redistributed in that table's `arch` column.
"""
import csv
import pathlib
import sys

from micronas_jax import space

HEADER = (
    "# NAS-Bench-201 cells in official benchmark index order (line k after this header = index k).\n"
    "# Each line: the op index on edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2; ops are\n"
    "# 0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3.\n"
    "# Source: HELP (github HayeonLee/HELP, data/nasbench201/str_arch2idx.pt, MIT);\n"
    "# regenerate with scripts/build_index_order.py.\n"
)


def main(table_path: str) -> None:
  with open(table_path, newline="") as f:
    rows = list(csv.DictReader(f))
  lines = []
  for expected_index, row in enumerate(rows):
    if int(row["index"]) != expected_index:
      raise SystemExit(f"row {expected_index} has index {row['index']}: table not in index order")
    lines.append("".join(str(op) for op in space.parse_arch(row["arch"])))
  out = pathlib.Path(space.__file__).parent / "data" / "nb201_index_order.txt"
  out.write_text(HEADER + "\n".join(lines) + "\n")
  print(f"wrote {len(lines)} cells to {out}")


if __name__ == "__main__":
  main(sys.argv[1])
