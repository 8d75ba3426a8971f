"""The pipeline's stages: `python -m stages STAGE ARGS` runs stages/STAGE.py (see dvc.yaml).

This file runs before numpy and torch load: it holds torch's kernels to AVX2, MKL to its COMPATIBLE branch and every
library to one thread, for the same bits on every x86-64 machine (docs/determinism.md says why, and what it costs)."""

import os
import sys

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

# `python -m stages.train ARGS` would import the stage and run nothing: it runs `python -m stages train ARGS`.
# (sys.argv[0] is "-m" only while Python imports the module that -m names.)
if sys.argv[:1] == ["-m"] and "-m" in sys.orig_argv:  # -m as a word of its own (not -mstages)
    m = sys.orig_argv.index("-m") + 1
    if sys.orig_argv[m].startswith("stages."):
        os.execv(sys.executable, [*sys.orig_argv[:m], "stages", sys.orig_argv[m][7:], *sys.orig_argv[m + 1 :]])
