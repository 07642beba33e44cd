"""Output paths checked before the work that fills them, and written so that nothing is lost.

A command that runs for minutes must not end in a path error, and a failed or interrupted write
must neither leave half a file behind nor destroy the file that was there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import pathlib
from typing import Any, Callable, Sequence


class PathError(ValueError):
  """An output path that cannot be written; the message is one line naming it."""


def check_writable(path: str | os.PathLike, what: str = "output",
                   create_parents: bool = False) -> pathlib.Path:
  """The path, if a file can be written there (a missing file in a writable folder, or a writable
  file); raises PathError naming `what` otherwise. With `create_parents`, missing folders above
  it are allowed when the nearest existing one is a writable folder (they are made on write)."""
  if not str(path).strip():
    raise PathError(f"empty {what} path")
  target = pathlib.Path(path)
  if target.is_dir():
    raise PathError(f"{target}: is a directory")
  parent = target.resolve().parent
  if create_parents:
    while not parent.exists() and parent != parent.parent:
      parent = parent.parent
    if not parent.is_dir():
      raise PathError(f"{target}: {parent} is not a directory")
  elif not parent.is_dir():
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


class Busy(OSError):
  """Another process is writing the same output."""


@contextlib.contextmanager
def exclusive(path: str | os.PathLike):
  """Holds an exclusive lock on `path` for the block (a `.NAME.lock` file beside it, locked by
  `flock`, so a killed holder releases it); raises Busy at once when another process holds it."""
  target = pathlib.Path(path)
  ensure_parent(target)
  lock = target.with_name(f".{target.name}.lock")
  fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise Busy(errno.EBUSY, "another process is writing it") from None
    try:
      yield target
    finally:
      lock.unlink(missing_ok=True)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def replace_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], Any]) -> Any:
  """Calls `write(temporary path)` beside `path`, flushes it to disk, then renames it to `path`,
  and returns what `write` returned: a crash leaves the old file or the new one, never half. On
  any failure the temporary file is removed and `path` is left as it was; an OSError
  propagates (Busy while another process writes the same path). Missing folders above `path`
  are created."""
  target = pathlib.Path(path)
  tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
  with exclusive(target):
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
    raise PathError(write_failure(path, error)) from None


def write_failure(path: str | os.PathLike, error: OSError) -> str:
  """One line for a failed write of `path`: a read-only target, a full disk, a concurrent
  writer."""
  reasons = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
             errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
             errno.EPERM: "permission denied", errno.EBUSY: "another process is writing it"}
  reason = reasons.get(error.errno, error.strerror or str(error))
  return f"{pathlib.Path(path)}: cannot write: {reason}; nothing was written there"


# --- The one output guard --------------------------------------------------------------------
#
# Every command declares the paths it reads and the paths it writes; `check_outputs` refuses,
# before any work, an output that would overwrite an input (or another output). Paths are compared
# as the file system sees them: symlinks, `..`, relative and absolute spellings are resolved, and
# an existing output that shares device and inode with an input (a hard link) is the same file.


@dataclasses.dataclass(frozen=True)
class Output:
  """A path a command writes, named by its option.

  files: for a folder output, the names inside it that the command writes or replaces (each one
    is an output); None for a file output.
  """
  option: str
  path: str | os.PathLike | None
  files: tuple[str, ...] | None = None

  def targets(self) -> list[pathlib.Path]:
    """The files this output writes."""
    if self.path is None:
      return []
    if self.files is None:
      return [pathlib.Path(self.path)]
    return [pathlib.Path(self.path) / name for name in self.files]


@dataclasses.dataclass(frozen=True)
class Input:
  """A path a command reads, named by its option: a file, or a folder.

  files: for a folder, the names inside it that the command reads (a run's checkpoint and
    result); None: every file under it (an image folder).
  """
  option: str
  path: str | os.PathLike | None
  files: tuple[str, ...] | None = None

  def sources(self) -> list[pathlib.Path]:
    """The files, or the folder whose every file, this input reads."""
    if self.path is None or not str(self.path).strip():
      return []
    path = pathlib.Path(self.path)
    if self.files is not None and path.is_dir():
      return [path / name for name in self.files]
    return [path]


def _real(path: pathlib.Path) -> pathlib.Path:
  return pathlib.Path(os.path.realpath(path))


def _inode(path: pathlib.Path) -> tuple[int, int] | None:
  try:
    status = path.stat()
  except OSError:
    return None
  return status.st_dev, status.st_ino


def _files_under(folder: pathlib.Path):
  for root, _, names in os.walk(folder):
    for name in names:
      yield pathlib.Path(root) / name


def _reads(target: pathlib.Path, source: pathlib.Path) -> bool:
  """Whether writing `target` would overwrite `source` (a file, or any file under a folder)."""
  real_target, real_source = _real(target), _real(source)
  if real_target == real_source:
    return True
  inode = _inode(target)
  if source.is_dir():
    if real_source in real_target.parents and target.exists():
      return True
    if inode is None or target.stat().st_nlink < 2:
      return False  # A file with one link is reachable by one resolved path only.
    return any(_inode(path) == inode for path in _files_under(source))
  return inode is not None and inode == _inode(source)


def check_outputs(outputs: Sequence[Output], inputs: Sequence[Input] = ()) -> None:
  """Refuses, before any work, outputs that cannot be written or that would overwrite an input
  or each other; raises PathError with one line naming both options.

  An output file must be writable where it is (`check_writable`; a missing folder above it is
  created when it is written, so it needs a writable existing ancestor). It clashes with an input
  file that is the same file, and with an input folder that holds it as an existing file (a
  checkpoint run, an image folder).
  """
  seen: dict[pathlib.Path, str] = {}
  for output in outputs:
    if output.path is not None and not str(output.path).strip():
      raise PathError(f"{output.option}: empty output path")
    if output.files is not None and output.path is not None:
      folder = pathlib.Path(output.path)
      if not str(output.path).strip():
        raise PathError(f"{output.option}: empty folder path")
      if folder.exists() and not folder.is_dir():
        raise PathError(f"{output.option}: {folder}: is a file, not a folder")
    for target in output.targets():
      named = f"{output.option} {target}"
      try:
        check_writable(target, "output", create_parents=True)
      except PathError as error:
        raise PathError(f"{output.option}: {error}") from None
      for source in inputs:
        if any(_reads(target, path) for path in source.sources()):
          raise PathError(f"{named} would overwrite {source.option} {source.path}, "
                          "which this command reads: name another output")
      real = _real(target)
      if real in seen:
        raise PathError(f"{seen[real]} and {named} name the same file: name two different "
                        "outputs")
      seen[real] = named


def ensure_parent(path: str | os.PathLike) -> pathlib.Path:
  """Creates the missing folders above `path` (the one rule for missing output folders: they are
  made when the output is written) and returns `path`."""
  target = pathlib.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  return target
