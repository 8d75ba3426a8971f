"""The pipeline's stages: `python -m stages STAGE ARGS` runs stages/STAGE.py (see dvc.yaml).

This file runs first wherever a module of the package is imported, before numpy and torch load, and
sets the environment variables they read when they load: set later, they would change nothing.

The same bits on every x86-64 machine. PyTorch's CPU kernels and MKL pick their code by the
processor's instruction set, and a sum of floats taken 8 or 16 lanes at a time rounds differently:
the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon. So torch's
own kernels are held to AVX2 and MKL to its reproducible COMPATIBLE branch (Intel's "conditional
numerical reproducibility"); both are read at torch's first operation. Set either variable yourself
to trade that for speed; other architectures (ARM) agree to float32 rounding only.

One thread, for the same reason: a sum split between threads rounds by how it was split.
"""

import os
import sys

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
# One thread in every library (torch, MKL, OpenBLAS under numpy), whatever the machine's cores or the
# caller's environment: how a sum is split between threads changes its rounding.
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

# `python -m stages.train ARGS` would import the stage and run nothing: it runs `python -m stages train ARGS`
# instead. (sys.argv[0] is "-m" only while Python imports the module that -m names.)
if sys.argv[:1] == ["-m"] and "-m" in sys.orig_argv:
    module = sys.orig_argv.index("-m") + 1
    if sys.orig_argv[module].startswith("stages."):
        stage = sys.orig_argv[module].removeprefix("stages.")
        os.execv(sys.executable, [*sys.orig_argv[:module], "stages", stage, *sys.orig_argv[module + 1 :]])
