"""`python -m stages <stage>` through the fork server behaves as `python -m stages.<stage>` does: the
same output bytes, exit status, messages and streams; the server is shared and then left alone."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from stages import forkserver

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["train", "functional", "data/prepared.pt", "model.pt", "cost.tsv", "test_cost.tsv"]


@pytest.fixture
def sockets():
    """A socket directory of the test's own (a short path: socket paths have a length limit)."""
    directory = tempfile.mkdtemp(prefix="fs-")
    yield Path(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path):
    shutil.copy2(REPO / "params.yaml", tmp_path / "params.yaml")
    stage(tmp_path, {"SOFTMAX_FORK_SERVER": "0"}, "prepare", "data/prepared.pt")
    return tmp_path


def python(cwd: Path, variables: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **variables}
    # A timeout, since a server that held on to the caller's pipes would keep this waiting for ever.
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip


def stage(cwd: Path, variables: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = python(cwd, variables, "-m", "stages", *args)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def socket_file(sockets: Path) -> Path:
    [path] = (sockets / f"softmax-stages-{os.getuid()}").glob("*.sock")
    return path


def test_a_served_stage_writes_the_bytes_and_prints_what_a_fresh_process_does(workdir, sockets):
    here = stage(workdir, {"SOFTMAX_FORK_SERVER": "0"}, *TRAIN)
    outputs = {name: (workdir / name).read_bytes() for name in ("model.pt", "cost.tsv", "test_cost.tsv")}
    served = stage(workdir, {"XDG_RUNTIME_DIR": str(sockets)}, *TRAIN)
    assert socket_file(sockets).exists(), "the stage ran without a server"
    assert {name: (workdir / name).read_bytes() for name in outputs} == outputs
    assert served.stdout == here.stdout and "Epoch 1000/1000 Cost: 0.399962" in served.stdout
    assert served.stderr == here.stderr


def test_one_server_serves_stage_after_stage(workdir, sockets):
    stage(workdir, {"XDG_RUNTIME_DIR": str(sockets)}, *TRAIN)
    first = socket_file(sockets).stat().st_ino
    stage(workdir, {"XDG_RUNTIME_DIR": str(sockets)}, *TRAIN)
    assert socket_file(sockets).stat().st_ino == first  # the same server still listens
    # DVC names each stage in DVC_STAGE: that does not call for a server of its own ...
    stage(workdir, {"XDG_RUNTIME_DIR": str(sockets), "DVC_STAGE": "train@functional"}, *TRAIN)
    assert socket_file(sockets).stat().st_ino == first
    # ... but another environment does: torch reads some variables when it is imported.
    stage(workdir, {"XDG_RUNTIME_DIR": str(sockets), "OMP_NUM_THREADS": "1"}, *TRAIN)
    assert len(list((sockets / f"softmax-stages-{os.getuid()}").glob("*.sock"))) == 2


def test_a_user_mistake_reads_the_same_served_or_not(workdir, sockets):
    params = (workdir / "params.yaml").read_text().replace("lr: 0.1", "lr: -1")
    (workdir / "params.yaml").write_text(params)
    for variables in ({"SOFTMAX_FORK_SERVER": "0"}, {"XDG_RUNTIME_DIR": str(sockets)}):
        result = stage(workdir, variables, *TRAIN, check=False)
        assert result.returncode == 1
        assert result.stderr == "train: error: params.yaml: train.lr must be a number > 0, got -1\n"
        assert not (workdir / "model.pt").exists()


def test_a_crash_shows_its_traceback_and_exit_statuses_pass_through(workdir, sockets):
    for variables in ({"SOFTMAX_FORK_SERVER": "0"}, {"XDG_RUNTIME_DIR": str(sockets)}):
        for module, args, status, message in (
            ("no_such_module", [], 1, "Traceback (most recent call last)"),  # raised in the stage process
            ("json.tool", ["--no-such-option"], 2, "unrecognized arguments: --no-such-option"),  # sys.exit(2)
        ):
            code = f"import sys; from stages.forkserver import run; sys.exit(run({module!r}, {args!r}))"
            result = python(workdir, variables, "-c", code)
            assert result.returncode == status, variables
            assert message in result.stderr, variables


def test_a_stage_that_is_not_one_gets_the_usage(workdir, sockets):
    result = stage(workdir, {"XDG_RUNTIME_DIR": str(sockets)}, "fit", check=False)
    assert result.returncode == 1
    assert result.stderr == "usage: python -m stages {prepare,train,evaluate} ARGS...\n"


def test_a_socket_directory_others_can_enter_is_not_used(workdir, sockets):
    shared = sockets / f"softmax-stages-{os.getuid()}"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    stage(workdir, {"XDG_RUNTIME_DIR": str(sockets)}, *TRAIN)  # runs, in its own process
    assert list(shared.iterdir()) == []
    assert (workdir / "cost.tsv").read_text().startswith("epoch\tcost\n0\t1.0986123\n")


def test_the_socket_path_depends_on_the_environment_but_not_on_the_stage(monkeypatch, sockets):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(sockets))
    path = forkserver.socket_path()
    assert path is not None and path.parent.stat().st_mode & 0o777 == 0o700
    for name, value in (("DVC_STAGE", "evaluate@low_level"), ("DVC_EXP_NAME", "exp-1"), ("PWD", "/elsewhere")):
        monkeypatch.setenv(name, value)
        assert forkserver.socket_path() == path
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert forkserver.socket_path() != path
