"""A stage process ends cleanly whatever ends it. Ctrl-C (SIGINT), SIGTERM and a closed terminal
(SIGHUP) end it with one line and exit status 128 + the signal's number, importing torch included
(Python's KeyboardInterrupt would print a traceback there); SystemExit unwinds as an exception does,
so a write in progress still removes its temporary files, and a second signal during that clean-up
is ignored. On Linux the kernel sends SIGTERM when the process that started the stage dies (DVC,
torchrun; dvc.yaml's `exec` leaves no shell between them), so no stage outlives it and none writes
after it was killed. A closed output pipe (`| head`) ends the stage quietly, as it ends any Unix tool.
"""

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from stages.plumbing.errors import STAGE_PROCESS, say

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stopped(signum: int, frame: object) -> None:
    for stop in STOP_SIGNALS:  # the clean-up below runs once, whatever else arrives
        signal.signal(stop, signal.SIG_IGN)
    stage = Path(sys.argv[0]).stem if sys.argv[0].endswith(".py") else "stage"
    how = "interrupted" if signum == signal.SIGINT else "terminated"
    say(f"{stage}: {how}; its outputs were not written")
    raise SystemExit(128 + signum)


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
    for stop in STOP_SIGNALS:
        signal.signal(stop, _stopped)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if sys.platform == "linux":
        _end_with_parent()
