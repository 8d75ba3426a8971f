"""Choosing the device, and the settings that make a run repeat bit for bit."""

import os

import torch

from stages.plumbing.errors import UserError, say

# `auto` takes CUDA for a run of at least this many FLOP: a second of this project's CI CPU (about 8
# GFLOP/s on one thread) beyond what CUDA costs before it computes anything (0.4 s to start on an
# NVIDIA H200, then about 0.8 ms a step where the CPU takes 0.3 ms: bench/run.py). The lesson's run is
# 2e5 FLOP: the CPU, whatever the GPU.
AUTO_CUDA_FLOP = 1e10


def flop(rows: int, features: int, classes: int, epochs: int) -> float:
    """A training run's arithmetic: the forward product and two for the gradients, range(epochs + 1) passes."""
    return 6.0 * rows * features * classes * (epochs + 1)


def resolve_device(requested: str, run_flop: float) -> torch.device:
    """`auto` takes CUDA when there is one and the run does at least AUTO_CUDA_FLOP, and says what it
    chose and why; `cuda` without CUDA is an error."""
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        build = f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}"
        raise UserError(f"train.device is 'cuda' but CUDA is not available here ({build}); use 'auto' or 'cpu'")
    if requested != "auto":
        return torch.device(requested)
    if not available:
        say("device: auto -> cpu (CUDA not available, falling back to the CPU)")
    elif run_flop >= AUTO_CUDA_FLOP:
        say(f"device: auto -> cuda ({torch.cuda.get_device_name(0)}; the run's {run_flop:.2g} FLOP are over 1e+10)")
        return torch.device("cuda")
    else:  # not naming the GPU: asking its name would start CUDA, the cost this choice avoids
        say(
            f"device: auto -> cpu (CUDA is available, but the run's {run_flop:.2g} FLOP are under 1e+10, where "
            "CUDA's start-up costs more than it saves; train.device: cuda forces CUDA)"
        )
    return torch.device("cpu")


def make_deterministic(device: torch.device) -> None:
    """Same inputs, same bits: one CPU thread, because how a float sum is split between threads changes
    its rounding; on a GPU, deterministic kernels too (the CPU kernels training uses are deterministic
    already, and the switch costs a second: it imports torch._inductor.config)."""
    torch.set_num_threads(1)
    if device.type == "cuda":
        # cuBLAS needs this before its first call to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
