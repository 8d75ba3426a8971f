"""The pipeline's stages: `python -m stages.<stage> ARGS` runs stages/<stage>.py (see dvc.yaml).

This file runs first in every stage process, before torch is imported, and sets three things.

The same bits on every x86-64 machine. PyTorch's CPU kernels and MKL pick their code by the
processor's instruction set, and a sum of floats taken 8 or 16 lanes at a time rounds differently:
the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon. So torch's
own kernels are held to AVX2 and MKL to its reproducible COMPATIBLE branch (Intel's "conditional
numerical reproducibility"); both are read at torch's first operation. Set either variable yourself
to trade that for speed; other architectures (ARM) agree to float32 rounding only.

One thread, for the same reason: a sum split between threads rounds by how it was split.

Ctrl-C (SIGINT) and SIGTERM end a stage with one line and exit status 130 or 143 wherever it is,
importing torch included (Python's own KeyboardInterrupt would print a traceback there). SystemExit
unwinds as an exception does, so a write in progress still removes its temporary files.
"""

import contextlib
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# One thread in every library (torch, MKL, OpenBLAS under numpy), whatever the machine's cores or the
# caller's environment: how a sum is split between threads changes its rounding.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"


def _stopped(signum: int, frame: object) -> None:
    stage = Path(sys.argv[0]).stem if sys.argv[0].endswith(".py") else "stage"
    how = "interrupted" if signum == signal.SIGINT else "terminated"
    with contextlib.suppress(OSError):  # whoever read stderr (DVC) may be gone
        print(f"{stage}: {how}; its outputs were not written", file=sys.stderr)
    raise SystemExit(128 + signum)


# Only in a stage process: `python -m stages.<stage>` (sys.argv[0] is "-m" while Python locates the
# module, as its documentation says), not in pytest or the benchmark, which import these modules.
if sys.argv[0] == "-m":
    signal.signal(signal.SIGINT, _stopped)
    signal.signal(signal.SIGTERM, _stopped)
