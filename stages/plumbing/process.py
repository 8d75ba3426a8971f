"""A stage process ends cleanly whatever ends it. Ctrl-C (SIGINT), SIGTERM and a closed terminal
(SIGHUP) end it with one line and exit status 128 + the signal's number, importing torch included
(Python's KeyboardInterrupt would print a traceback there); SystemExit unwinds as an exception does,
so a write in progress still removes its temporary files; a second signal during that clean-up, or
one while the outputs are renamed into place, is ignored: the stage is ending already. Whatever else escapes
the stage's error boundary is one line too. On Linux the kernel sends SIGTERM when the process that
started the stage dies (DVC, torchrun; dvc.yaml's `exec` leaves no shell between them), so no stage
outlives it and none writes after it was killed. A closed output pipe (`| head`) ends the stage
quietly, as it ends any Unix tool.
"""

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from stages.plumbing.errors import STAGE_PROCESS, TRACEBACK_VARIABLE, first_line, say

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stage() -> str:
    return Path(sys.argv[0]).stem if sys.argv[0].endswith(".py") else "stage"


_ending = False  # once set, Ctrl-C, SIGTERM and SIGHUP change nothing: the stage is on its way out


def _stopped(signum: int, frame: object) -> None:
    global _ending
    if _ending:  # a second signal during the clean-up below, or one while the outputs are renamed
        return
    _ending = True
    how = "interrupted" if signum == signal.SIGINT else "terminated"
    say(f"{_stage()}: {how}; its outputs were not written")
    raise SystemExit(128 + signum)


def finishing() -> None:
    """From here on the stage ends without heeding Ctrl-C, SIGTERM or SIGHUP, so that none stops the
    renames of its outputs into place halfway (some new, others old); it ends a moment later."""
    global _ending
    _ending = True


def _uncaught(kind: type[BaseException], error: BaseException, traceback: object) -> None:
    """What escapes the stage's error boundary, such as an import that fails before it (torch under a
    tiny `ulimit -v`): one line too, and Python's exit status 1."""
    say(f"{_stage()}: error: {kind.__name__}: {first_line(error)} ({TRACEBACK_VARIABLE}=1 shows the traceback)")


@contextlib.contextmanager
def signals_end_at_once() -> Iterator[None]:
    """Around a native call that waits and does not return to Python (joining torchrun's processes),
    where a Python handler would never run: Ctrl-C, SIGTERM and SIGHUP end the process at once, as
    they end any program. Nothing is written before that point."""
    handlers = {stop: signal.signal(stop, signal.SIG_DFL) for stop in STOP_SIGNALS}
    try:
        yield
    finally:
        for stop, handler in handlers.items():
            signal.signal(stop, handler)


def _end_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent dies; if it died already, end now."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


if STAGE_PROCESS:  # not in pytest or the benchmark, which import these modules
    if not os.environ.get(TRACEBACK_VARIABLE):
        sys.excepthook = _uncaught
    for stop in STOP_SIGNALS:
        signal.signal(stop, _stopped)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if sys.platform == "linux":
        _end_with_parent()
