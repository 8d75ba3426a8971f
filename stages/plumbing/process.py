"""A stage process, from its first statement to its exit: run_stage sets up the signals before it imports
the stage (torch takes seconds to load), runs it inside the one error boundary and exits. Every way a
stage fails is one line: a UserError for a user's mistake, values in it cut short and escaped.

Ctrl-C, SIGTERM and SIGHUP end a stage with one line and status 128 + the signal's number, by SystemExit,
which unwinds as an exception does: a write in progress removes its temporary files. Once the stage is
ending (a first signal, its last line, the renames of its outputs) they change nothing. One inherited
as ignored (`nohup`) stays ignored; a closed output pipe (`| head`) ends the stage quietly."""

import contextlib
import functools
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

STAGES = ("prepare", "train", "evaluate", "predict")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
TRACEBACK = "SOFTMAX_TRACEBACK=1 shows the traceback"


class UserError(Exception):
    """A mistake the user can fix (a parameter, a file): reported as one line, never a traceback."""


def abbreviate(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:76]} ..."


def first_line(error: BaseException) -> str:
    """What a library's exception says, as one line for a message (its type when it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def listing(names: Sequence[Any], most: int = 20) -> str:
    """Names for a message, comma-separated: at most `most` (each cut at 40 characters); empty or padded ones quoted."""
    shown = ", ".join(repr(n) if n != n.strip() or not n else n for n in (str(n)[:40] for n in names[:most]))
    return shown if len(names) <= most else f"{shown} ... ({len(names)})"


def say(line: str) -> None:
    """A stage's note or last line on stderr, by the first of torchrun's processes only (a RANK alone, left
    in a shell, means nothing); nothing when whoever read stderr (DVC) is gone. Escaped as Python writes a
    string unless every character prints: a name from a file (a newline, an escape) cannot forge a line."""
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ and os.environ.get("WORLD_SIZE", "1") != "1"
    if line and (not torchrun or os.environ.get("RANK", "0") == "0"):
        with contextlib.suppress(OSError):
            print(line if line.isprintable() else repr(line)[1:-1], file=sys.stderr, flush=True)


def _stopped(stage: str, signum: int, frame: object) -> None:
    ending()  # a second signal, during the clean-up, changes nothing
    say(f"{stage}: {'interrupted' if signum == signal.SIGINT else 'terminated'}; its outputs were not written")
    raise SystemExit(128 + signum)


def ending() -> None:
    """From here on the stop signals change nothing (the module's docstring says when). Only run_stage's handlers are
    replaced (a test's stay), and not by SIG_IGN: Python would report a signal that came before as lost."""
    for stop in STOP_SIGNALS:
        if getattr(signal.getsignal(stop), "func", None) is _stopped:
            signal.signal(stop, lambda signum, frame: None)


def boundary(name: str, main: Callable[[], object]) -> int:
    """Run a stage's main() inside the one error boundary and return its exit status: a UserError, an
    OSError, a failed import and running out of memory are one line `<stage>: error: ...`, status 1; any
    other exception is a bug, `<stage>: bug: ...`, status 70 (under torchrun, the first process's line)."""
    try:
        main()
        return 0
    except UserError as error:
        line, status = f"{name}: error: {error}", 1
    except OSError as error:  # a path too long or looping, a failing disk, ...
        what = f"{str(error.filename)[:200]}: {error.strerror}" if error.filename else first_line(error)
        line, status = f"{name}: error: {what}; check that path, its permissions and the disk", 1
    except Exception as error:
        if os.environ.get("SOFTMAX_TRACEBACK"):
            raise
        what = f"{type(error).__name__}: {first_line(error)}"
        # numpy's MemoryError, torch's on CUDA (OutOfMemoryError) or on the CPU (a RuntimeError)
        if isinstance(error, MemoryError) or "OutOfMemory" in what or "can't allocate memory" in what:
            line, status = f"{name}: error: out of memory; lower the data's or the run's size, or give it more", 1
        elif isinstance(error, ImportError):  # an installation's fault, not this code's
            line, status = f"{name}: error: {what} ({TRACEBACK})", 1
        else:
            line = f"{name}: bug: {what} (not your mistake: please report it with params.yaml; {TRACEBACK})"
            status = 70  # sysexits.h's EX_SOFTWARE: a bug, apart from a user's mistake (1) and a wrong command line (2)
    ending()
    say(line)
    return status


def run_stage(argv: list[str]) -> NoReturn:
    """The stage process (`argv`: the stage's name and arguments), ended by os._exit once stdout and stderr
    are flushed: Python's teardown of torch's thousands of modules takes half a second, and its atexit
    callbacks (torch.distributed's, after another process died) would add lines after the stage's last."""
    if not argv or (stage := argv[0]) not in STAGES:
        say(f"stages: error: the stage must be one of {', '.join(STAGES)}; usage: python -m stages STAGE ARGS")
        os._exit(2)
    for stop in STOP_SIGNALS:
        if signal.getsignal(stop) != signal.SIG_IGN:  # one ignored before the stage began (nohup) stays so
            signal.signal(stop, functools.partial(_stopped, stage))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        status = boundary(stage, lambda: importlib.import_module(f"stages.{stage}").main(argv[1:]))
    except SystemExit as stop:  # a signal's handler, or argparse
        status = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
    ending()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError):  # None when closed (`>&-`), or full: done
            stream.flush()
    os._exit(status)
