"""Data-parallel training with two processes (gloo on the CPU), each reading only its rows, gives the
single-process result to 1e-6 (costs, test costs, weights), launched by `train.processes: 2` or by two
torchrun launchers as two machines would."""

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from safetensors.numpy import load_file

from stages import train
from stages.data import PreparedFile
from stages.plumbing import distributed
from stages.plumbing.process import UserError
from tests.stage_runs import REPO
from tests.waiting import importing_torch, wait_for

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
TRAIN = {"epochs": 300, "lr": 0.1, "seed": 1, "device": "auto", "log_every": 100, "double_softmax": "false"}
SYNTHETIC = "data:\n  source: synthetic\n  n_samples: 1000\n  n_features: 20\n  n_classes: 4\n  test_size: 0.2\n"
DATA = {
    # Batches of 7 of the 8 rows: every epoch ends with a batch of one row, fewer rows than processes.
    # (A smaller step: at lr 0.1 one-row updates make the cost jump about, amplifying rounding.)
    "toy-short-last-batch": ("data:\n  source: toy\n", {"batch_size": 7, "lr": 0.02}),
    "synthetic": (SYNTHETIC, {}),
    "synthetic-mini-batches": (SYNTHETIC, {"batch_size": 300}),  # 3 batches, the last of 200 rows
}
STAGE_ARGS = ["prepared.safetensors", "model.safetensors", "costs.tsv", "test_costs.tsv", "model.onnx"]


def write_params(workdir: Path, name: str, **train_changes: object) -> None:
    data, changes = DATA[name]
    train = "".join(f"  {key}: {value}\n" for key, value in {**TRAIN, **changes, **train_changes}.items())
    (workdir / "params.yaml").write_text(f"{data}train:\n{train}")


def prepare(workdir: Path, name: str, copies: int = 1) -> list[Path]:
    """`copies` directories under `workdir` (as many machines), each with params.yaml and the prepared data."""
    dirs = [workdir / f"copy{n}" for n in range(copies)]
    dirs[0].mkdir(parents=True)
    write_params(dirs[0], name)
    prepare = [sys.executable, "-m", "stages", "prepare", "prepared.safetensors", "new_rows.csv"]
    subprocess.run(prepare, cwd=dirs[0], env=ENV, check=True, capture_output=True)
    for copy in dirs[1:]:
        shutil.copytree(dirs[0], copy)
    return dirs


def results(workdir: Path) -> tuple[list[float], list[float], dict]:
    """The costs of every epoch, the test costs and the model's tensors that a train stage wrote."""
    costs, test_costs = (
        [float(line.split("\t")[1]) for line in (workdir / name).read_text().splitlines()[1:]]
        for name in ("costs.tsv", "test_costs.tsv")
    )
    return costs, test_costs, load_file(workdir / "model.safetensors")


def assert_equal_within_1e_6(alone: tuple, shared: tuple) -> None:
    for one, other in zip(alone[:2], shared[:2], strict=True):
        assert len(one) == len(other) and max((abs(a - b) for a, b in zip(one, other, strict=True)), default=0) < 1e-6
    for name, value in alone[2].items():
        np.testing.assert_allclose(shared[2][name], value, rtol=0, atol=1e-6)


# Mini-batches, with a test split and with a last batch of fewer rows than processes (full batches, with the
# third implementation: test_two_machines_equal_one).
CASES = [("synthetic-mini-batches", "high_level"), ("toy-short-last-batch", "functional")]


@pytest.mark.slow
@pytest.mark.parametrize(("data", "impl"), CASES)
def test_two_processes_equal_one(tmp_path, data, impl):
    alone, shared = prepare(tmp_path, data, copies=2)
    with contextlib.chdir(alone), contextlib.redirect_stdout(io.StringIO()):
        train.main([impl, *STAGE_ARGS])  # one process, as the stage runs: in this one
    write_params(shared, data, processes=2)  # the stage as `dvc repro` runs it, with train.processes: 2
    command = [sys.executable, "-m", "stages", "train", impl, *STAGE_ARGS]
    result = subprocess.run(command, cwd=shared, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Epoch    0/300") == 1  # the first process's lines alone
    assert_equal_within_1e_6(results(alone), results(shared))
    if data != "toy-short-last-batch":
        assert len(results(alone)[1]) == 4  # test costs at epochs 0, 100, 200, 300


def test_each_process_reads_only_its_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(prepare(tmp_path, "synthetic")[0])
    whole = PreparedFile("prepared.safetensors").load()
    file = PreparedFile("prepared.safetensors")
    tracemalloc.start()
    try:
        mine = file.load(lambda rows: slice(rows // 2, rows))  # the second of two processes
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (mine.train.start, mine.train.total, mine.eval.start, mine.eval.total) == (400, 800, 100, 200)
    np.testing.assert_array_equal(mine.train.x, whole.train.x[400:])
    np.testing.assert_array_equal(mine.eval.y, whole.eval.y[100:])
    share = (400 + 100) * (20 * 4 + 8)  # its rows' features (float32) and labels (int64)
    assert share <= peak < share + (1000 * 88) // 4  # not the whole file's 1,000 rows


def workers_of(launcher: subprocess.Popen, count: int) -> list[psutil.Process]:
    """The `count` train processes a launcher started, once they are all there and importing torch."""

    def started() -> list[psutil.Process]:
        workers = [p for p in psutil.Process(launcher.pid).children() if "-m stages train " in " ".join(p.cmdline())]
        return workers if len(workers) == count else []

    workers = wait_for(started, f"{count} train processes")
    for worker in workers:
        wait_for(lambda worker=worker: importing_torch(worker.pid), "the train processes to import torch")
    return workers


# Which process is killed, and the stage's one line then: the first process's, or, when the first process
# is the one killed (out of memory), the stage's own.
KILLED = {
    "the second": ("1", ("train: error: another process of the group stopped", "train: terminated")),
    "the first": ("0", ("train: error: the first of 2 processes was killed (SIGKILL: out of memory, or by hand)",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("which", KILLED)
def test_a_process_killed_leaves_one_line(tmp_path, which):
    """The other's collective fails (or torchrun's SIGTERM comes first): the stage ends in one line, with
    nothing after it (no atexit traceback, no line for the signal, no torchrun report)."""
    rank, ends = KILLED[which]
    (workdir,) = prepare(tmp_path, "toy-short-last-batch")
    write_params(workdir, "toy-short-last-batch", epochs=10**6, processes=2)
    command = [sys.executable, "-m", "stages", "train", "functional", *STAGE_ARGS]
    stage = subprocess.Popen(command, cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert stage.stdout.readline().startswith("Epoch    0/")  # training
    killed = wait_for(lambda: [p for p in workers_of(stage, 2) if p.environ().get("RANK") == rank], "the process")
    killed[0].kill()
    assert stage.wait(timeout=120) in (1, 128 + signal.SIGKILL)  # the first failure seen: its status
    device, line = stage.stderr.read().splitlines()  # the device note, and one line
    assert device.startswith("device: ") and line.startswith(ends)
    assert not (workdir / "model.safetensors").exists()


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    for name in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):  # as torchrun sets them, with TORCHELASTIC_RUN_ID
        monkeypatch.setenv(name, "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(UserError, match=r"^torchrun started 2 processes on this machine, but it has 1 GPU\(s\); run "
                       r"torchrun --nproc-per-node=1, or set train.device: cpu$"):  # fmt: skip
        distributed.start(torch.device("cuda"))


def two_machines(tmp_path: Path, **train_changes: object) -> list[tuple[Path, subprocess.Popen]]:
    """Two torchrun launchers, as on two machines (docs/distributed.md), each in a copy of the prepared data."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    nodes = []
    for node, workdir in enumerate(prepare(tmp_path, "synthetic", copies=3)[:2]):
        write_params(workdir, "synthetic", **train_changes)
        options = ["--nnodes=2", f"--node-rank={node}", "--nproc-per-node=1", "--master-addr=127.0.0.1"]
        logs = ["--log-dir", str(workdir / "logs"), "--redirects", "3"]  # the process's streams in files
        torchrun = [sys.executable, "-m", "torch.distributed.run", *options, f"--master-port={port}", *logs]
        command = [*torchrun, "-m", "stages", "train", "low_level"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        nodes.append((workdir, subprocess.Popen([*command, *STAGE_ARGS], cwd=workdir, env=ENV, **quiet)))
    return nodes


@pytest.mark.slow
def test_two_machines_equal_one(tmp_path):
    (first, node0), (second, node1) = two_machines(tmp_path)
    assert node0.wait(timeout=300) == 0 and node1.wait(timeout=300) == 0
    alone = tmp_path / "copy2"
    with contextlib.chdir(alone), contextlib.redirect_stdout(io.StringIO()):
        train.main(["low_level", *STAGE_ARGS])
    assert_equal_within_1e_6(results(alone), results(first))  # full batches, a test split
    assert not (second / "model.safetensors").exists()  # only the first machine's first process writes


@pytest.mark.slow
def test_a_machine_lost_ends_the_other_in_one_line(tmp_path):
    (first, node0), (_, node1) = two_machines(tmp_path, epochs=10**6)

    def training() -> list[Path]:
        return [log for log in (first / "logs").rglob("0/stdout.log") if "Epoch  100/" in log.read_text()]

    (stdout,) = wait_for(training, "the first machine to train")
    for process in [*workers_of(node1, 1), node1]:  # the second machine goes down: its launcher and its process
        process.kill()
    assert node0.wait(timeout=120) != 0
    device, line = (stdout.parent / "stderr.log").read_text().splitlines()  # the device note, and one line
    assert device.startswith("device: ") and line.startswith("train: error: another process of the group stopped")
    assert not (first / "model.safetensors").exists()
