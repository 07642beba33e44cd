"""A results store for long scoring runs: SQLite in WAL mode, one row per (cell, seed, config).

Each chunk of rows is committed in one transaction, so a run killed at any moment (SIGKILL
included) leaves every committed row intact and no partial chunk; rerunning the same command
skips the cells already stored. A store holds one scoring configuration: opening it with another
is refused, naming the differing fields.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import pathlib
import sqlite3

import numpy as np

from micronas_jax import __version__, paths
from micronas_jax.errors import ParamError


class StoreError(ParamError):
  """A store that cannot be used: another configuration, or not a micronas-jax store."""


def _same_but_proxy_order(old: dict, new: dict) -> bool:
  """Whether two scoring configurations differ at most in the order of their proxies."""
  strip = lambda config: {k: v for k, v in config.items() if k != "proxies"}
  return (strip(old) == strip(new)
          and sorted(old.get("proxies", [])) == sorted(new.get("proxies", [])))


def _quote(name: str) -> str:
  if not name.replace("_", "").isalnum():
    raise StoreError(f"invalid column name {name!r}")
  return f'"{name}"'


class ScoreStore:
  """Rows {index, arch, seed, <proxy>, <proxy>_valid} for one configuration (a JSON dict)."""

  def __init__(self, path: str | os.PathLike, config: dict, config_hash: str,
               columns: tuple[str, ...]):
    self.path = pathlib.Path(path)
    self.config_hash = config_hash
    self.columns = tuple(columns)
    try:
      paths.check_writable(path, "score store", create_parents=True)
    except paths.PathError as error:
      raise StoreError(error) from None
    paths.ensure_parent(self.path)
    # A store this opening makes is removed again if nothing is ever written to it, so that an
    # interrupted first run leaves no empty store tied to its configuration.
    self.created = not self.path.exists()
    self._db = sqlite3.connect(self.path)
    try:
      self._open(config)
    except sqlite3.Error as error:
      self._db.close()
      reason = ("not an SQLite database" if isinstance(error, sqlite3.DatabaseError)
                and "not a database" in str(error) else str(error))
      self.remove_if_new()
      raise StoreError(f"{self.path}: not a micronas-jax score store ({reason})") from None
    except StoreError:
      self._db.close()
      self.remove_if_new()
      raise

  def remove_if_new(self) -> None:
    """Deletes the store (and its WAL files) if this opening created it and it holds no rows;
    call it after `close`."""
    if not self.created:
      return
    try:
      with sqlite3.connect(self.path) as db:
        if db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]:
          return
    except sqlite3.Error:
      pass  # No scores table: nothing of ours was ever committed.
    for suffix in ("", "-wal", "-shm"):
      pathlib.Path(f"{self.path}{suffix}").unlink(missing_ok=True)

  def _open(self, config: dict) -> None:
    tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")}
    if tables and not {"meta", "scores"} <= tables:
      # Another application's database: adding our tables (or even switching it to WAL mode)
      # would change a file that is not ours, so this check comes before any write.
      raise StoreError(f"{self.path}: not a micronas-jax score store (it holds tables "
                       f"{', '.join(sorted(tables))}); use another file")
    self._db.execute("PRAGMA journal_mode=WAL")
    # NORMAL keeps committed transactions across a killed process (not across power loss).
    self._db.execute("PRAGMA synchronous=NORMAL")
    with self._db:
      self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
      stored = dict(self._db.execute("SELECT key, value FROM meta"))
      if stored:
        self._check_same_config(stored, config)
      else:
        value_columns = ", ".join(f"{_quote(c)} REAL, {_quote(c + '_valid')} INTEGER"
                                  for c in self.columns)
        self._db.execute(f"CREATE TABLE scores (\"index\" INTEGER NOT NULL, arch TEXT NOT NULL, "
                         f"seed INTEGER NOT NULL, config_hash TEXT NOT NULL, {value_columns}, "
                         f"PRIMARY KEY (\"index\", seed, config_hash))")
        self._db.executemany("INSERT INTO meta VALUES (?, ?)", [
            ("config", json.dumps(config, sort_keys=True)), ("config_hash", self.config_hash),
            ("columns", json.dumps(self.columns)), ("micronas_jax_version", __version__)])

  def _check_same_config(self, stored: dict, config: dict) -> None:
    if "config_hash" not in stored:
      raise StoreError(f"{self.path}: not a micronas-jax score store")
    if stored["config_hash"] != self.config_hash:
      old = json.loads(stored["config"])
      if _same_but_proxy_order(old, config):
        # The same measurements asked for in another order: keep the store's rows and hash.
        self.config_hash = stored["config_hash"]
        return
      differing = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
      details = ", ".join(f"{k}: stored {old.get(k)!r} vs now {config.get(k)!r}" for k in differing)
      raise StoreError(f"{self.path} was made with another scoring configuration ({details}); "
                       "use another file")

  def done(self, seed: int) -> set[int]:
    """Benchmark indices already stored for `seed` under this configuration."""
    cursor = self._db.execute('SELECT "index" FROM scores WHERE seed = ? AND config_hash = ?',
                              (seed, self.config_hash))
    return {row[0] for row in cursor}

  def write(self, rows: list[dict], seed: int) -> None:
    """Commits rows (dicts with index, arch, each column and column + '_valid') atomically."""
    names = ["index", "arch", "seed", "config_hash"]
    for column in self.columns:
      names += [column, column + "_valid"]
    placeholders = ", ".join("?" for _ in names)
    values = [[row["index"], row["arch"], seed, self.config_hash]
              + [v for c in self.columns for v in (row[c], int(row[c + "_valid"]))]
              for row in rows]
    try:
      with self._db:
        # OR IGNORE: a row a resumed run scores again is kept once, never duplicated.
        self._db.executemany(f"INSERT OR IGNORE INTO scores ({', '.join(map(_quote, names))}) "
                             f"VALUES ({placeholders})", values)
    except sqlite3.OperationalError as error:
      # A full disk, a read-only file or a writer holding the lock: the transaction is rolled
      # back, and every chunk committed before it stays.
      raise StoreError(f"{self.path}: cannot write: {error}; the rows committed before are kept, "
                       "rerun to resume") from None

  def close(self) -> None:
    self._db.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_existing(path: str | os.PathLike) -> tuple[sqlite3.Connection, dict]:
  """Opens a store read-only-ish; returns the connection and its metadata."""
  source = pathlib.Path(path)
  if source.is_dir():
    raise StoreError(f"{source}: is a directory, not a score store")
  if not source.is_file():
    raise StoreError(f"{source}: no such score store")
  db = sqlite3.connect(source)
  try:
    meta = dict(db.execute("SELECT key, value FROM meta"))
    db.execute("SELECT COUNT(*) FROM scores").fetchone()
  except sqlite3.DatabaseError as error:
    db.close()
    with open(source, "rb") as stream:
      is_sqlite = stream.read(16) == b"SQLite format 3\x00"
    if is_sqlite and "no such table" not in str(error):
      raise StoreError(f"{source}: a damaged or truncated score store ({error}); score again "
                       "into a new file") from None
    raise StoreError(f"{source}: not a micronas-jax score store") from None
  if "config_hash" not in meta:
    db.close()
    raise StoreError(f"{source}: not a micronas-jax score store")
  return db, meta


CSV_SUFFIXES = (".csv", ".csv.gz")


def read_table(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
  """All rows of a store as columns {name: [rows]} sorted by (seed, index), and its config.

  A CSV export (`score-export`, optionally gzipped) reads too; it does not carry the scoring
  configuration, so its config holds only `proxies` (the columns with a `<name>_valid` partner).
  """
  if str(path).endswith(CSV_SUFFIXES):
    return _read_csv_export(pathlib.Path(path))
  db, meta = open_existing(path)
  try:
    cursor = db.execute('SELECT * FROM scores ORDER BY seed, "index"')
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
  finally:
    db.close()
  table = {name: np.asarray([row[i] for row in rows]) for i, name in enumerate(names)}
  return table, json.loads(meta["config"])


def _read_csv_export(source: pathlib.Path) -> tuple[dict[str, np.ndarray], dict]:
  if not source.is_file():
    raise StoreError(f"{source}: no such score table")
  opener = gzip.open if source.suffix == ".gz" else open
  try:
    with opener(source, "rt", newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as error:
    raise StoreError(f"{source}: not a CSV score table ({error})") from None
  if not rows or not {"index", "arch", "seed"} <= set(rows[0]):
    raise StoreError(f"{source}: not a CSV score table (needs index, arch and seed columns)")
  names, body = rows[0], rows[1:]
  if any(len(row) != len(names) for row in body):
    raise StoreError(f"{source}: rows of unequal length")
  table = {}
  for position, name in enumerate(names):
    column = [row[position] for row in body]
    try:
      table[name] = np.asarray(column, np.float64)
    except ValueError:
      table[name] = np.asarray(column)
  for name in ("index", "seed", *(n for n in names if n.endswith("_valid"))):
    if table[name].dtype != np.float64:
      raise StoreError(f"{source}: column {name} is not numeric")
    table[name] = table[name].astype(np.int64)  # INTEGER columns in the SQLite store
  order = np.lexsort((table["index"], table["seed"]))
  table = {name: column[order] for name, column in table.items()}
  proxies = [name for name in names if name + "_valid" in table]
  return table, {"proxies": proxies}


def _export_target(path, out) -> pathlib.Path:
  """The output path of an export, refused (StoreError, before anything is written) when it is
  the store itself or cannot be written."""
  try:
    paths.check_outputs([paths.Output("out", out)], [paths.Input("store", path)])
  except paths.PathError as error:
    raise StoreError(error) from None
  return pathlib.Path(out)


def _write_atomically(out: pathlib.Path, write) -> None:
  try:
    paths.write_atomically(out, write)
  except paths.PathError as error:
    raise StoreError(error) from None


def export_csv(path: str | os.PathLike, out: str | os.PathLike) -> int:
  """Writes every row of a store to a CSV file; returns the row count."""
  out = _export_target(path, out)
  table, _ = read_table(path)
  names = list(table)
  count = len(table[names[0]]) if names else 0

  def write(target):
    with open(target, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(names)
      for i in range(count):
        writer.writerow([table[name][i] for name in names])

  _write_atomically(out, write)
  return count


def export_parquet(path: str | os.PathLike, out: str | os.PathLike) -> int:
  """Writes every row of a store to a Parquet file (needs pyarrow); returns the row count."""
  try:
    import pyarrow as pa
    import pyarrow.parquet as pq
  except ImportError:
    raise StoreError("Parquet export needs pyarrow: pip install pyarrow") from None
  out = _export_target(path, out)
  table, _ = read_table(path)
  _write_atomically(out, lambda target: pq.write_table(
      pa.table({name: column.tolist() for name, column in table.items()}), target))
  return len(next(iter(table.values()), []))
