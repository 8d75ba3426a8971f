"""Choosing the device, and the settings that make a run repeat bit for bit."""

import math
import os
from typing import NamedTuple

import torch

from stages.plumbing.errors import UserError, say

# What `auto` weighs: the seconds a run would take on each device, estimated from its size. Each
# training step costs a fixed time (Python and kernel launches, whatever the data) plus its arithmetic,
# about 6 x rows x features x classes floating-point operations (the forward product, and two for the
# gradients). The constants were measured: the CPU's on this project's CI machine (bench/run.py: one
# thread, MKL's reproducible branch, ~0.3 ms a toy step, ~8 GFLOP/s on large products); CUDA's on an
# NVIDIA H200 (issue 12: 0.38 s start-up, 0.78 ms an eager toy step, ~8 TFLOP/s effective on
# 1,000,000 x 784 x 10; 5e12 leaves a margin). On the lesson's 8 rows the CPU wins whatever the GPU:
# CUDA's start-up alone is longer than the CPU's whole run.
CPU_STEP_S, CPU_FLOPS = 0.3e-3, 8e9
CUDA_START_S, CUDA_STEP_S, CUDA_FLOPS = 0.4, 0.8e-3, 5e12


class Work(NamedTuple):
    """The size of a training run, as `auto` weighs it."""

    rows: int
    features: int
    classes: int
    epochs: int  # the loop runs epochs + 1 passes
    batch_size: int  # 0: full batch

    def steps(self) -> int:
        batch = self.batch_size if 0 < self.batch_size < self.rows else max(self.rows, 1)
        return (self.epochs + 1) * math.ceil(self.rows / batch)

    def flops(self) -> float:
        return 6.0 * self.rows * self.features * self.classes * (self.epochs + 1)

    def seconds(self) -> tuple[float, float]:
        """Estimated seconds on the CPU and on CUDA (start-up included)."""
        cpu = self.steps() * CPU_STEP_S + self.flops() / CPU_FLOPS
        cuda = CUDA_START_S + self.steps() * CUDA_STEP_S + self.flops() / CUDA_FLOPS
        return cpu, cuda


def _seconds(value: float) -> str:
    return f"{value:.2g}" if value < 100 else f"{value:.0f}"


def resolve_device(requested: str, work: Work) -> torch.device:
    """`auto` takes CUDA when there is one and the run is large enough to gain from it, and says what
    it chose and why; `cuda` without CUDA is an error."""
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise UserError(
            "train.device is 'cuda' but CUDA is not available here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use 'auto' or 'cpu'"
        )
    if requested != "auto":
        return torch.device(requested)
    if not available:
        say("device: auto -> cpu (CUDA not available, falling back to the CPU)")
        return torch.device("cpu")
    cpu, cuda = work.seconds()
    if cuda < cpu:
        say(f"device: auto -> cuda ({torch.cuda.get_device_name(0)}; about {_seconds(cuda)} s against "
            f"{_seconds(cpu)} s on the CPU, by estimate)")  # fmt: skip
        return torch.device("cuda")
    # Not naming the GPU here: asking its name would start CUDA, the cost this choice avoids.
    say(f"device: auto -> cpu (CUDA is available, but a run this small is faster on the CPU: about "
        f"{_seconds(cpu)} s against {_seconds(cuda)} s with CUDA's start-up, by estimate; train.device: cuda "
        "forces CUDA)")  # fmt: skip
    return torch.device("cpu")


def make_deterministic(device: torch.device) -> None:
    """Same inputs, same bits: one CPU thread, because how a float sum is split between threads changes
    its rounding, and thread counts differ between machines; on a GPU, deterministic kernels too.
    The CPU kernels training uses are deterministic already, and the switch costs every process a
    second (it imports torch._inductor.config), so only CUDA pays for it."""
    torch.set_num_threads(1)
    if device.type == "cuda":
        # cuBLAS needs this before its first call to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
