"""The pipeline's stages: `python -m stages.<stage> ARGS` runs stages/<stage>.py (see dvc.yaml).

This file runs first in every stage process, before numpy and torch load, and sets what they read.

The same bits on every x86-64 machine. PyTorch's CPU kernels and MKL pick their code by the
processor's instruction set, and a sum of floats taken 8 or 16 lanes at a time rounds differently:
the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon. So torch's
own kernels are held to AVX2 and MKL to its reproducible COMPATIBLE branch (Intel's "conditional
numerical reproducibility"); both are read at torch's first operation. Set either variable yourself
to trade that for speed; other architectures (ARM) agree to float32 rounding only.

One thread, for the same reason: a sum split between threads rounds by how it was split.

A stage process also ends cleanly whatever ends it, and with its parent: stages/plumbing/process.py.
"""

import os
import signal
import sys

if sys.argv[0] == "-m":  # a stage process: until plumbing/process.py handles it, Ctrl-C ends it quietly
    signal.signal(signal.SIGINT, signal.SIG_DFL)
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# One thread in every library (torch, MKL, OpenBLAS under numpy), whatever the machine's cores or the
# caller's environment: how a sum is split between threads changes its rounding.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

# The signals and the parent's death, handled from the start of the stage.
from stages.plumbing import process  # noqa: F401
