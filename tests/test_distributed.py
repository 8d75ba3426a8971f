"""Data-parallel training under torchrun with two processes (gloo on the CPU) gives the single-process
result to 1e-6: the same costs at every epoch and the same trained weights, with full batches and
with a last batch that has fewer rows than processes."""

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from stages import train
from stages.plumbing import distributed
from stages.plumbing.errors import UserError
from stages.plumbing.files import read_tensors
from tests.waiting import importing_torch, wait_for

REPO = Path(__file__).resolve().parent.parent
TRAIN = {"epochs": 300, "lr": 0.1, "seed": 1, "device": "auto", "log_every": 100, "double_softmax": "false"}
DATA = {
    # Batches of 7 of the 8 rows: every epoch ends with a batch of one row, fewer rows than processes.
    # (A smaller step: at lr 0.1 one-row updates make the cost jump about, amplifying rounding.)
    "toy-short-last-batch": ("data:\n  source: toy\n", {"batch_size": 7, "lr": 0.02}),
    "synthetic": (
        "data:\n  source: synthetic\n  n_samples: 1000\n  n_features: 20\n  n_classes: 4\n  test_size: 0.2\n",
        {},
    ),
}


def train_stage(workdir: Path, impl: str, name: str, processes: int) -> tuple[list[float], dict]:
    """The train stage's results: in this process alone (as the stage runs, one thread), else under torchrun."""
    args = [impl, "prepared.safetensors", f"{name}.safetensors", f"{name}.tsv", f"{name}_test.tsv", f"{name}.onnx"]
    if processes == 1:
        with contextlib.chdir(workdir), contextlib.redirect_stdout(io.StringIO()):
            train.main(args)
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [*launcher, "-m", "stages", "train", *args]
        result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("device: ") == 1, result.stderr  # the first process's note alone
    costs = [float(line.split("\t")[1]) for line in (workdir / f"{name}.tsv").read_text().splitlines()[1:]]
    return costs, read_tensors(workdir / f"{name}.safetensors", "trained model", (), "")[0]


def prepare(workdir: Path, name: str) -> Path:
    data, train_changes = DATA[name]
    train = "".join(f"  {key}: {value}\n" for key, value in {**TRAIN, **train_changes}.items())
    (workdir / "params.yaml").write_text(f"{data}train:\n{train}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "stages", "prepare", "prepared.safetensors", "new_rows.csv"],
        cwd=workdir,
        env=env,
        check=True,
    )
    return workdir


# Each implementation once: full batches, and a last batch with fewer rows than processes, which is
# the training step's to handle, the same for every implementation.
CASES = [("synthetic", "low_level"), ("synthetic", "high_level"), ("toy-short-last-batch", "functional")]


@pytest.mark.slow
@pytest.mark.parametrize(("data", "impl"), CASES)
def test_two_processes_equal_one(tmp_path, data, impl):
    prepared = prepare(tmp_path, data)
    alone, alone_state = train_stage(prepared, impl, "alone", processes=1)
    shared, shared_state = train_stage(prepared, impl, "shared", processes=2)
    assert len(alone) == len(shared) == 301
    assert max(abs(a - b) for a, b in zip(alone, shared, strict=True)) < 1e-6
    for name, value in alone_state.items():
        np.testing.assert_allclose(shared_state[name], value, rtol=0, atol=1e-6)


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")  # as torchrun sets it
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(UserError, match=r"^torchrun started 2 processes on this machine, but it has 1 GPU\(s\); run "
                       r"torchrun --nproc-per-node=1, or set train.device: cpu$"):  # fmt: skip
        distributed.start(torch.device("cuda"))


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["torchrun alone", "torchrun's process group"])
def test_no_worker_outlives_torchrun(tmp_path, kill):
    """torchrun starts each worker in a session of its own, so neither kill reaches them: the kernel's
    signal on their parent's death does (stages/plumbing/process.py), and they end without writing anything."""
    train = "".join(f"  {key}: {value}\n" for key, value in {**TRAIN, "epochs": 10**6}.items())
    (tmp_path / "params.yaml").write_text(f"data:\n  source: toy\ntrain:\n{train}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "stages", "prepare", "prepared.safetensors", "new_rows.csv"],
        cwd=tmp_path,
        env=env,
        check=True,
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    args = ["functional", "prepared.safetensors", "model.safetensors", "costs.tsv", "test.tsv", "model.onnx"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    command = [*launcher, "-m", "stages", "train", *args]
    torchrun = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, **quiet)

    def two_workers() -> list[psutil.Process]:
        workers = [p for p in psutil.Process(torchrun.pid).children() if "-m stages train " in " ".join(p.cmdline())]
        return workers if len(workers) == 2 else []

    workers = wait_for(two_workers, "torchrun to start two workers")
    for worker in workers:
        wait_for(lambda worker=worker: importing_torch(worker.pid), "the workers to import torch")
    if kill == "torchrun alone":
        torchrun.send_signal(signal.SIGKILL)
    else:
        os.killpg(torchrun.pid, signal.SIGKILL)
    torchrun.wait()
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == [], "a worker lives on"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new_rows.csv", "params.yaml", "prepared.safetensors"]


@pytest.mark.slow
def test_a_worker_killed_leaves_one_line_from_the_first(tmp_path):
    """The others' collective fails (or torchrun's SIGTERM comes first): one line either way, and nothing
    after it (no atexit traceback, no second line for the signal)."""
    train = "".join(f"  {key}: {value}\n" for key, value in {**TRAIN, "epochs": 10**6}.items())
    (tmp_path / "params.yaml").write_text(f"data:\n  source: toy\ntrain:\n{train}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    prepare = [sys.executable, "-m", "stages", "prepare", "prepared.safetensors", "new_rows.csv"]
    subprocess.run(prepare, cwd=tmp_path, env=env, check=True, capture_output=True)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    logs = ["--log-dir", str(tmp_path / "logs"), "--redirects", "3"]  # each worker's streams in its own files
    args = ["functional", "prepared.safetensors", "model.safetensors", "costs.tsv", "test.tsv", "model.onnx"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    torchrun = subprocess.Popen([*launcher, *logs, "-m", "stages", "train", *args], cwd=tmp_path, env=env, **quiet)

    def training() -> list[Path]:
        return [log for log in (tmp_path / "logs").rglob("0/stdout.log") if "Epoch  100/" in log.read_text()]

    (stdout,) = wait_for(training, "the first worker to train")
    second = wait_for(
        lambda: [p for p in psutil.Process(torchrun.pid).children() if p.environ().get("RANK") == "1"],
        "the second worker",
    )[0]
    second.kill()
    assert torchrun.wait(timeout=120) != 0
    device, line = (stdout.parent / "stderr.log").read_text().splitlines()  # the device note, and one line
    ends = ("train: error: another process of the group stopped", "train: terminated")
    assert device.startswith("device: ") and line.startswith(ends)
    assert not (tmp_path / "model.safetensors").exists()
