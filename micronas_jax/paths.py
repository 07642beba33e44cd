"""Output paths checked before the work that fills them, and written so that nothing is lost.

A command that runs for minutes must not end in a path error, and a failed or interrupted write
must neither leave half a file behind nor destroy the file that was there.
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable


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


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], None]) -> None:
  """Calls `write(temporary path)` beside `path`, then renames the result to `path`; on any
  failure the temporary file is removed and `path` is left as it was (PathError for an OSError).
  """
  target = pathlib.Path(path)
  tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
  try:
    write(tmp)
    os.replace(tmp, target)
  except OSError as error:
    raise PathError(f"{target}: cannot write: {error.strerror or error}") from None
  finally:
    tmp.unlink(missing_ok=True)
