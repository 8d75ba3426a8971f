"""Data-parallel training (docs/distributed.md): each process reads its share of the rows, and the gradients are summed
across processes (gloo on the CPU, NCCL on GPUs) before each update. train.processes > 1 launches torchrun here."""

import logging
import os
import re
import signal
from collections.abc import Iterable
from typing import NoReturn

import torch
import torch.distributed as dist

from stages.plumbing.process import STOP_SIGNALS, UserError, first_line, say


def launched() -> bool:
    """Whether torchrun started this process (it sets TORCHELASTIC_RUN_ID and WORLD_SIZE in every process)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def start(device: torch.device) -> int:
    """Join the process group when torchrun started this process; returns this process's rank (0 alone)."""
    if not launched() or os.environ["WORLD_SIZE"] == "1":
        return 0
    if device.type == "cuda":  # one GPU per process; every process checks, so that none waits for the others
        if (gpus := torch.cuda.device_count()) < int(processes := os.environ.get("LOCAL_WORLD_SIZE", "1")):
            fix = f"run torchrun --nproc-per-node={gpus}, or set train.device: cpu"
            raise UserError(f"torchrun started {processes} processes on this machine, but it has {gpus} GPU(s); {fix}")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank()


def launch(processes: int, stage_args: list[str]) -> NoReturn:
    """Run the stage as `processes` processes: `torchrun --standalone --nproc-per-node=N -m stages ARGS`, by
    torchrun's own code in this process. The first process prints the run's lines; torchrun's log and report
    are left out, and a line is printed here only when the first process was killed (it printed none)."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    quiet = logging.getLogger("torch.distributed.elastic")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    # torchrun passes these signals on to its processes; one the stage inherited as ignored (nohup) stays so.
    handled = ",".join(s.name for s in (*STOP_SIGNALS, signal.SIGQUIT) if signal.getsignal(s) != signal.SIG_IGN)
    options = [f"--nproc-per-node={processes}", "--monitor-interval=0.1", f"--signals-to-handle={handled}"]
    try:
        torchrun.run(torchrun.parse_args(["--standalone", *options, "-m", "stages", *stage_args]))
    except ChildFailedError as failed:
        first = failed.failures.get(0)
        if first is not None and first.exitcode < 0:  # the first process was killed: it printed nothing
            killed = signal.Signals(-first.exitcode).name
            say(f"{stage_args[0]}: error: the first of {processes} processes was killed ({killed}: out of memory, "
                "or by hand); nothing was written")  # fmt: skip
        code = failed.get_first_failure()[1].exitcode
        raise SystemExit(code if code > 0 else 128 - code) from None  # -N: ended by signal N
    except SignalException as stopped:  # Ctrl-C or SIGTERM: torchrun stopped its processes, whose first said so
        raise SystemExit(128 + stopped.sigval) from None
    raise SystemExit(0)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def share(n_rows: int) -> slice:
    """This process's contiguous share of n_rows rows (all of them alone): empty when there are more
    processes than rows, and then the process adds zero gradients, weighted by its 0 rows."""
    return slice(n_rows * rank() // world(), n_rows * (rank() + 1) // world())


def sum_gradients(parameters: Iterable[torch.Tensor], cost: torch.Tensor, fraction: float) -> torch.Tensor:
    """Turn this process's gradients (of the mean cost over its rows, a `fraction` of the batch; zeros without rows)
    into those of the mean cost over the whole batch; returns the whole batch's cost. Alone: as they are."""
    for parameter in parameters if world() > 1 else ():
        parameter.grad = mean(torch.zeros_like(parameter) if parameter.grad is None else parameter.grad, fraction)
    return mean(cost, fraction)


def mean(value: torch.Tensor, fraction: float) -> torch.Tensor:
    """The mean over all processes' rows, from this process's mean over its rows, a `fraction` of them
    (alone, `value` itself). Another process gone is one line."""
    if world() == 1:
        return value
    value = value * fraction
    try:
        dist.all_reduce(value)
    except RuntimeError as error:  # gloo's or NCCL's (DistBackendError)
        cause = re.sub(r"^\[[^]]*\] ", "", first_line(error))[:120]  # without the source file of torch's build
        raise UserError(f"another process of the group stopped ({cause}); train.processes: 1 shows its error") from None
    return value
