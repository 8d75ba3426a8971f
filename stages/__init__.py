"""The pipeline's stages: `python -m stages STAGE ARGS` runs stages/STAGE.py (see dvc.yaml).

This file runs before numpy and torch load, and sets what they read when they load: the same bits on every x86-64
machine. Torch's CPU kernels and MKL pick their code by the processor, and a float sum taken 8 or 16 lanes (or threads)
at a time rounds differently: the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon.
So torch's kernels are held to AVX2, MKL to its reproducible COMPATIBLE branch, and every library to one thread. Set the
first two yourself to trade that for speed; other architectures (ARM) agree to float32 rounding only."""

import os
import sys

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = "1"

# `python -m stages.train ARGS` would import the stage and run nothing: it runs `python -m stages train ARGS`.
# (sys.argv[0] is "-m" only while Python imports the module that -m names.)
if sys.argv[:1] == ["-m"] and sys.orig_argv[(m := sys.orig_argv.index("-m") + 1)].startswith("stages."):
    os.execv(sys.executable, [*sys.orig_argv[:m], "stages", sys.orig_argv[m][7:], *sys.orig_argv[m + 1 :]])
