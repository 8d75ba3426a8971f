"""Waiting for a process to reach a point, by what it shows, never by the clock alone."""

import time
from collections.abc import Callable
from pathlib import Path


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120.0) -> object:
    """Poll `condition` every 10 ms until it returns something true, and return that; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.01)
    return result


def importing_torch(pid: int) -> bool:
    """Whether the process has loaded torch's C++ library: then it is inside `import torch`, which goes
    on loading torch's Python modules for a second or more before any code of ours runs."""
    try:
        return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # not started yet, or gone
        return False
