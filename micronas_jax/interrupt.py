"""Ctrl-C for long commands: exit status 130, promptly, even while XLA compiles."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

# Seconds the main thread gets to unwind after Ctrl-C (closing stores, removing temporary files)
# before the process exits anyway: XLA compiles in C++ and only returns to Python when done.
GRACE_S = 2.0
EXIT_STATUS = 130  # 128 + SIGINT, what shells report for an interrupted command


class Interrupted(BaseException):
  """Ctrl-C: a BaseException, so that Click does not turn it into "Aborted!" with exit 1."""


def exit_promptly_on_interrupt() -> None:
  """From now on Ctrl-C raises `Interrupted` in the main thread, and ends the process with
  EXIT_STATUS within GRACE_S seconds if the main thread has not done so by then.

  Python runs its SIGINT handler only between bytecodes, so during an XLA compilation (tens of
  seconds) it would wait, and exiting the interpreter while compiler threads run crashed
  (segfaults were seen). The C-level handler also writes the signal to a wakeup pipe; a watcher
  thread reading it ends the process with os._exit. Writes are atomic (temporary file + rename,
  SQLite transactions), so exiting never leaves half a file.
  """
  def on_sigint(signum, frame):
    raise Interrupted()

  previous_hook = sys.unraisablehook

  def on_unraisable(unraisable):
    # Ctrl-C that lands in a callback whose exceptions Python swallows (JAX's gc callback was
    # seen) would print a traceback and be lost; end the process as Ctrl-C asked instead.
    if isinstance(unraisable.exc_value, Interrupted):
      os.write(2, b"\ninterrupted\n")
      exit_now()
    previous_hook(unraisable)

  sys.unraisablehook = on_unraisable

  read_end, write_end = os.pipe()
  os.set_blocking(write_end, False)
  signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
  signal.signal(signal.SIGINT, on_sigint)

  def watch():
    os.read(read_end, 1)
    time.sleep(GRACE_S)
    os.write(2, b"\ninterrupted\n")
    os._exit(EXIT_STATUS)

  threading.Thread(target=watch, daemon=True, name="interrupt-watch").start()


def exit_now() -> None:
  """Ends the process with EXIT_STATUS, skipping interpreter teardown (which crashed with
  compiler threads running)."""
  os._exit(EXIT_STATUS)
