"""The pipeline's stages: `python -m stages.<stage> ARGS` runs stages/<stage>.py (see dvc.yaml).

This file runs first in every stage process, before torch is imported, and sets three things.

The same bits on every x86-64 machine. PyTorch's CPU kernels and MKL pick their code by the
processor's instruction set, and a sum of floats taken 8 or 16 lanes at a time rounds differently:
the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon. So torch's
own kernels are held to AVX2 and MKL to its reproducible COMPATIBLE branch (Intel's "conditional
numerical reproducibility"); both are read at torch's first operation. Set either variable yourself
to trade that for speed; other architectures (ARM) agree to float32 rounding only.

One thread, for the same reason: a sum split between threads rounds by how it was split.

A stage process ends cleanly whatever ends it. Ctrl-C (SIGINT), SIGTERM and a closed terminal
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
from pathlib import Path

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# One thread in every library (torch, MKL, OpenBLAS under numpy), whatever the machine's cores or the
# caller's environment: how a sum is split between threads changes its rounding.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stopped(signum: int, frame: object) -> None:
    for stop in STOP_SIGNALS:  # the clean-up below runs once, whatever else arrives
        signal.signal(stop, signal.SIG_IGN)
    stage = Path(sys.argv[0]).stem if sys.argv[0].endswith(".py") else "stage"
    how = "interrupted" if signum == signal.SIGINT else "terminated"
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for all the processes
        with contextlib.suppress(OSError):  # whoever read stderr (DVC) may be gone
            print(f"{stage}: {how}; its outputs were not written", file=sys.stderr)
    raise SystemExit(128 + signum)


def _end_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent dies; if it died already, end now."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


# Only in a stage process: `python -m stages.<stage>` (sys.argv[0] is "-m" while Python locates the
# module, as its documentation says), not in pytest or the benchmark, which import these modules.
if sys.argv[0] == "-m":
    for stop in STOP_SIGNALS:
        signal.signal(stop, _stopped)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if sys.platform == "linux":
        _end_with_parent()
