"""Messages that name a call's parameters as data, so that each front end spells them its way.

A library message is a sequence of parts: plain text and `Param` mentions. The library renders a
mention as its parameter name (`max_latency_ms=200`, `scores_path`, `fast=True`); the command
line renders the same mention as its option (`--max-latency-ms 200`, `--scores`, `--fast`)
through a `Names` table. No front end reads a rendered message back.

    >>> error = ParamError(Param("budget", 10), " is smaller than ", Param("population", 50))
    >>> str(error)
    'budget=10 is smaller than population=50'
    >>> error.render(Names({"budget": "--budget", "population": "--population"}))
    '--budget 10 is smaller than --population 50'
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

_NO_VALUE = object()


@dataclasses.dataclass(frozen=True)
class Param:
  """A mention of parameter `name`, with the value it was given (if the message shows one)."""
  name: str
  value: Any = _NO_VALUE

  @property
  def has_value(self) -> bool:
    return self.value is not _NO_VALUE


class Names:
  """How a front end spells parameters: `flags` maps a parameter name to its option. A mention of
  a name it does not hold is spelled the library's way."""

  def __init__(self, flags: Mapping[str, str] | None = None):
    self.flags = dict(flags or {})

  def __call__(self, mention: Param) -> str:
    flag = self.flags.get(mention.name)
    if flag is None:
      return f"{mention.name}={mention.value}" if mention.has_value else mention.name
    if not mention.has_value or mention.value is True:
      return flag
    return f"{flag} {mention.value}"


LIBRARY = Names()


def render(parts, names: Names = LIBRARY) -> str:
  """The text of a message's parts (str, `Param`, or nested sequences of them) under `names`."""
  if isinstance(parts, str):
    return parts
  if isinstance(parts, Param):
    return names(parts)
  if isinstance(parts, ParamError):  # an error wrapped in another keeps its mentions
    return render(parts.parts, names)
  if isinstance(parts, BaseException):  # any other error: its own text
    return str(parts)
  return "".join(render(part, names) for part in parts)


def joined(items, separator: str) -> list:
  """The parts `items` with `separator` between them (for lists of mentions)."""
  parts: list = []
  for i, item in enumerate(items):
    parts += [separator, item] if i else [item]
  return parts


class ParamError(ValueError):
  """An error whose message mentions parameters (`Param`); `str()` is the library's rendering,
  `render(names)` a front end's. Built from one plain string it is an ordinary ValueError."""

  def __init__(self, *parts):
    self.parts = parts
    super().__init__(render(parts))

  def __reduce__(self):  # pickles (across processes) as its library text
    return type(self), (str(self),)

  def render(self, names: Names = LIBRARY) -> str:
    """The message with its parameters spelled by `names`."""
    return render(self.parts, names)

  @property
  def params(self) -> tuple[str, ...]:
    """The names of the parameters the message mentions, in order."""
    found = []

    def walk(parts):
      if isinstance(parts, Param):
        found.append(parts.name)
      elif isinstance(parts, ParamError):
        walk(parts.parts)
      elif not isinstance(parts, (str, BaseException)):
        for part in parts:
          walk(part)

    walk(self.parts)
    return tuple(found)
