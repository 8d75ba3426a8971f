"""The pipeline's stages: `python -m stages.<stage> ARGS` runs stages/<stage>.py (see dvc.yaml).

The same bits on every x86-64 machine. PyTorch's CPU kernels and MKL pick their code by the
processor's instruction set, and a sum of floats taken 8 or 16 lanes at a time rounds differently:
the committed results, made on an AMD EPYC, differed in the last digit on an Intel Xeon. So before
torch is imported (it reads both once), its own kernels are held to AVX2 and MKL to its
reproducible COMPATIBLE branch (Intel's "conditional numerical reproducibility"). Set either
variable yourself to trade that for speed; other architectures (ARM) agree to float32 rounding only.
"""

import os

os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")
