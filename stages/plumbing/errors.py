"""One line for every way a stage can fail: the error type for a user's mistake, the helpers that keep
a message to one short, safe line, and say, which prints a stage's notes and last line. (The error
boundary that turns each failure into its line is stages/plumbing/process.py's.)"""

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any


class UserError(Exception):
    """A mistake the user can fix (a parameter, a file): reported as one line, never a traceback."""


def abbreviate(value: Any) -> str:
    """repr(value), cut short to well under a line."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:76]} ..."


def printable(text: str) -> str:
    """Text for a terminal: escaped as Python writes a string unless every character prints, so that a
    name from a file (a newline, a terminal escape) cannot break or forge a line."""
    return text if text.isprintable() else repr(text)[1:-1]


def first_line(error: BaseException) -> str:
    """What a library's exception says, as one line for a message (its type when it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def listing(names: Sequence[Any], most: int = 20) -> str:
    """Names joined by commas for a message: at most `most` of them (each cut at 40 characters), then how
    many; a name that is empty or has spaces around it is quoted, so that they show."""
    shown = ", ".join(repr(n) if n != n.strip() or not n else n for n in (str(n)[:40] for n in names[:most]))
    return shown if len(names) <= most else f"{shown} ... ({len(names)})"


def say(line: str) -> None:
    """A stage's note or last line on stderr, escaped; printed by the first of torchrun's processes only
    (a RANK alone, left in a shell, means nothing), and nothing when whoever read stderr (DVC) is gone."""
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ and os.environ.get("WORLD_SIZE", "1") != "1"
    if line and (not torchrun or os.environ.get("RANK", "0") == "0"):
        with contextlib.suppress(OSError):
            print(printable(line), file=sys.stderr, flush=True)
