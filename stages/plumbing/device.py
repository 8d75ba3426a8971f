"""Choosing the device, and the settings that make a run repeat bit for bit."""

import os

import torch

from stages.plumbing.errors import UserError, say

# `auto`'s rule: CUDA when there is one and the run's arithmetic, 6 x rows x features x classes per
# epoch (the forward product and two for the gradients), comes to at least AUTO_CUDA_FLOP. The figure is
# a second of this project's CI CPU (about 8 GFLOP/s on one thread, MKL's reproducible branch) beyond
# what CUDA costs before it computes anything (0.4 s to start on an NVIDIA H200, and about 0.8 ms a step
# where the CPU takes 0.3 ms: bench/run.py, issue 12). The lesson's run is 2e5 FLOP: the CPU, whatever
# the GPU.
AUTO_CUDA_FLOP = 1e10


def flop(rows: int, features: int, classes: int, epochs: int) -> float:
    """The floating-point operations of a training run, as `auto` weighs it: range(epochs + 1) passes."""
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
        return torch.device("cpu")
    if run_flop >= AUTO_CUDA_FLOP:
        gpu = torch.cuda.get_device_name(0)
        say(f"device: auto -> cuda ({gpu}; the run's {run_flop:.2g} FLOP are over {AUTO_CUDA_FLOP:.0e})")
        return torch.device("cuda")
    # Not naming the GPU here: asking its name would start CUDA, the cost this choice avoids.
    why = (
        f"the run's {run_flop:.2g} FLOP are under {AUTO_CUDA_FLOP:.0e}, where CUDA's start-up costs more than it saves"
    )
    say(f"device: auto -> cpu (CUDA is available, but {why}; train.device: cuda forces CUDA)")
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
