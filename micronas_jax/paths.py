"""Output paths checked before the work that fills them, and written so that nothing is lost.

A command that runs for minutes must not end in a path error, and a failed or interrupted write
must neither leave half a file behind nor destroy the file that was there.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any, Callable


class PathError(ValueError):
  """An output path that cannot be written; the message is one line naming it."""


def check_writable(path: str | os.PathLike, what: str = "output") -> pathlib.Path:
  """The path, if a file can be written there (a missing file in a writable folder, or a writable
  file); raises PathError naming `what` otherwise."""
  if not str(path).strip():
    raise PathError(f"empty {what} path")
  target = pathlib.Path(path)
  if target.is_dir():
    raise PathError(f"{target}: is a directory")
  parent = target.resolve().parent
  if not parent.is_dir():
    raise PathError(f"{target}: no such directory {target.parent}")
  if not os.access(target if target.exists() else parent, os.W_OK):
    raise PathError(f"{target}: not writable")
  return target


def _fsync_dir(directory: pathlib.Path) -> None:
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return  # Directories cannot be opened on some platforms (Windows); the replace still holds.
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def replace_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], Any]) -> Any:
  """Calls `write(temporary path)` beside `path`, flushes it to disk, then renames it to `path`,
  and returns what `write` returned: a crash leaves the old file or the new one, never half. On
  any failure the temporary file is removed and `path` is left as it was; an OSError
  propagates."""
  target = pathlib.Path(path)
  tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
  try:
    result = write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    os.replace(tmp, target)
  finally:
    tmp.unlink(missing_ok=True)
  _fsync_dir(target.parent)
  return result


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], Any]) -> Any:
  """`replace_atomically`, with an OSError turned into a one-line PathError naming the path."""
  try:
    return replace_atomically(path, write)
  except OSError as error:
    raise PathError(f"{pathlib.Path(path)}: cannot write: {error.strerror or error}") from None
