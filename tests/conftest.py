# isort: off
import stages  # noqa: F401 (before numpy and torch load: the environment of every stage process)

# isort: on
import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import torch

from stages import train
from stages.data import prepare_table, prepared_bytes, toy
from stages.plumbing.files import write_outputs
from stages.plumbing.params import DataParams, TrainParams
from tests.stage_runs import TRAIN_ARGS, params_text

# The tests train in this process as the train stage does: on one thread (stages.train.make_deterministic).
torch.set_num_threads(1)
# Processes a test started whose parent was killed (torchrun's workers, by design) come back to this
# process rather than to init (Linux's child subreaper), so that each test can end whatever it left.
ctypes.CDLL(None).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests (processes, DVC, the benchmark) first, so that the quick ones fill in the gaps at the
    end. `pytest -n N --dist worksteal` hands each worker a contiguous Nth of the list, and the one that runs
    out steals from the end of another's: each Nth starts with its share of the slow tests."""
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    slow = [item for item in items if item.get_closest_marker("slow")]
    quick = [item for item in items if not item.get_closest_marker("slow")]
    items[:] = [item for w in range(workers) for item in slow[w::workers] + quick[w::workers]]


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """Every test ends the processes it started and left (a failed one may leave a training run): none
    outlives it to slow the tests after it."""
    yield
    left = psutil.Process().children(recursive=True)
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(left, timeout=10)


@contextlib.contextmanager
def torch_state_restored() -> Iterator[None]:
    """Undo what a stage run in this process changes globally (stages.train.make_deterministic): the
    thread count, deterministic mode, cuDNN's autotuner and cuBLAS's workspace setting."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        if workspace is not None:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


@pytest.fixture(autouse=True)
def _restore_torch_state() -> Iterator[None]:
    """Every test leaves torch as it found it (one thread, as the stages run), so that no result depends
    on the order tests run in."""
    with torch_state_restored():
        yield


@pytest.fixture
def lesson_params() -> TrainParams:
    """The lesson's settings, as in params.yaml."""
    return TrainParams(epochs=1000, lr=0.1, seed=1, device="cpu", log_every=100, double_softmax=False)


@pytest.fixture
def toy_data():
    return prepare_table(toy(), DataParams(source="toy"))


@pytest.fixture
def workdir(tmp_path, monkeypatch, toy_data) -> Path:
    """A working directory as a stage sees it: params.yaml as committed, the toy set prepared, and a small
    table under datasets/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params_text())
    write_outputs({"data/prepared.safetensors": prepared_bytes(toy_data)})
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "t.csv").write_text("x,y\n1,a\n2,b\n")
    return tmp_path


@pytest.fixture
def trained(workdir: Path) -> Path:
    """The working directory once low_level is trained with the committed parameters."""
    train.main(TRAIN_ARGS)
    return workdir
