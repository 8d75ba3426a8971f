"""One line for every way a stage can fail: the error type for a user's mistake, the helpers that keep
a message to one short, safe line, and say, which prints a stage's notes and last line. (The error
boundary that turns each failure into its line is stages/plumbing/process.py's.)"""

import contextlib
import os
import reprlib
import sys
from collections.abc import Sequence
from typing import Any

# The user's tables live here (data.path must name a file in it), so that `prepare` can declare them
# as a dependency in dvc.yaml; no stage writes in it.
DATASETS_DIR = "datasets"


class UserError(Exception):
    """A mistake the user can fix (a parameter, a file): reported as one line, never a traceback."""


# A value shown in a message is cut short: a YAML alias bomb or a megabyte string stays one short line.
_short = reprlib.Repr()  # (keyword arguments need Python 3.12)
_short.maxlevel, _short.maxdict, _short.maxlist, _short.maxtuple, _short.maxstring = 2, 4, 4, 4, 60


def abbreviate(value: Any) -> str:
    """repr(value), cut short to well under a line."""
    text = _short.repr(value)
    return text if len(text) <= 80 else f"{text[:76]} ..."


def printable(text: str) -> str:
    """Text for a terminal: as it is when every character prints, else escaped as Python writes a
    string, so that a name from a file (a newline, a terminal escape) cannot break or forge a line."""
    return text if text.isprintable() else repr(text)[1:-1]


def first_line(error: BaseException) -> str:
    """What a library's exception says, as one line for a message (its type when it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def listing(names: Sequence[Any], most: int = 20) -> str:
    """Names joined by commas for a message: at most `most` of them, and then how many there are. A name
    that is empty or has spaces around it is quoted, so that they show; one over 40 characters is cut,
    with a mark that it was."""
    cut = (str(name) if len(str(name)) <= 40 else f"{str(name)[:39]}…" for name in names[:most])
    shown = ", ".join(repr(n) if n != n.strip() or not n else n for n in cut)
    return shown if len(names) <= most else f"{shown} ... ({len(names)})"


def first_process() -> bool:
    """Whether this process prints its errors and notes: every one but the other processes of a group
    torchrun started (a RANK or a TORCHELASTIC_RUN_ID alone, left in a shell, means nothing)."""
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ and os.environ.get("WORLD_SIZE", "1") != "1"
    return not torchrun or os.environ.get("RANK", "0") == "0"


def tell(line: str) -> None:
    """A line of the lesson's output on stdout, at once. A stdout that cannot take it (a full disk under
    `> log`) is named in the stage's last line; a closed pipe ends the stage (SIGPIPE)."""
    try:
        print(line, flush=True)
    except OSError as error:
        raise OSError(error.errno, error.strerror, "standard output") from None


def say(line: str) -> None:
    """A stage's note or last line on stderr: escaped, printed by torchrun's first process only, and
    nothing when whoever read stderr (DVC) is gone."""
    if first_process():
        with contextlib.suppress(OSError):
            print(printable(line), file=sys.stderr)
