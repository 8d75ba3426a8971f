"""Choosing the device, and the settings that make a run repeat bit for bit."""

import os
import sys

import torch

from stages.errors import UserError


def resolve_device(requested: str) -> torch.device:
    """`auto` takes CUDA when there is one and says what it chose; `cuda` without CUDA is an error."""
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise UserError(
            "train.device is 'cuda' but CUDA is not available here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use 'auto' or 'cpu'"
        )
    if requested == "auto":
        chosen = "cuda" if available else "cpu"
        why = torch.cuda.get_device_name(0) if available else "CUDA not available, falling back to the CPU"
        print(f"device: auto -> {chosen} ({why})", file=sys.stderr)
        return torch.device(chosen)
    return torch.device(requested)


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
