"""A stage as its own process, `python -m stages STAGE ARGS`: one line and its exit status whatever ends it
(docs/reliability.md), nothing written after it, and signals a user set aside left aside."""

import os
import signal
import subprocess
import sys

import pytest

from tests.stage_runs import EVALUATE_ARGS, REPO, TRAIN_ARGS, params_text, stage_process
from tests.waiting import importing_torch, wait_for

pytestmark = pytest.mark.slow
PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


def no_train_outputs(workdir) -> bool:
    return not (workdir / "models").exists() and not (workdir / "plots").exists()


@pytest.mark.parametrize("stage, args, mistake, expected", [
    ("prepare", ["data/p.safetensors", "data/new_rows.csv"], ("data", "source", "nope"), "data.source"),
    ("train", TRAIN_ARGS, ("train", "lr", -1), "params.yaml: train.lr must be greater than 0, got -1"),
    ("evaluate", [a.replace("models/low_level", "models/none") for a in EVALUATE_ARGS], None, "models/none"),
])  # fmt: skip
def test_every_stage_reports_mistakes_alike(workdir, stage, args, mistake, expected):
    """Exit status 2 for a wrong command line (argparse's), 1 for a parameter or file; one line each."""
    wrong = stage_process(workdir, stage, [*args, "extra"], **PIPES)
    assert wrong.wait(timeout=60) == 2
    line = f"{stage}: error: unrecognized arguments: extra; usage: python -m stages {stage} "
    assert wrong.stderr.read().startswith(line)
    if mistake is not None:
        (workdir / "params.yaml").write_text(params_text(*mistake))
    result = stage_process(workdir, stage, args, **PIPES)
    assert result.wait(timeout=60) == 1
    stderr = result.stderr.read()
    assert stderr.count("\n") == 1 and stderr.startswith(f"{stage}: error: ") and expected in stderr, stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("argv", [[], ["nope"], ["-h"]])
def test_a_stage_that_is_not_one_is_one_line(argv):
    result = subprocess.run([sys.executable, "-m", "stages", *argv], capture_output=True, text=True, cwd=REPO)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "stages: error: the stage must be one of prepare, train, evaluate, predict; "
        "usage: python -m stages STAGE ARGS\n"
    )


def test_python_m_stages_dot_stage_is_the_stage(workdir):
    """`python -m stages.prepare ARGS` (a module's usual form) runs `python -m stages prepare ARGS`, and so
    does `python -mstages prepare ARGS`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in (["-m", "stages", "prepare", "a"], ["-m", "stages.prepare", "b"], ["-mstages", "prepare", "c"]):
        *command, name = command
        run = [sys.executable, *command, f"{name}.safetensors", f"{name}.csv"]
        subprocess.run(run, cwd=workdir, env=env, check=True, capture_output=True)
    for name in "bc":
        assert (workdir / f"{name}.safetensors").read_bytes() == (workdir / "a.safetensors").read_bytes()
        assert (workdir / f"{name}.csv").read_bytes() == (workdir / "a.csv").read_bytes()


@pytest.mark.parametrize("signum, status, line", [
    (signal.SIGINT, 130, "train: interrupted; its outputs were not written\n"),  # Ctrl-C
    (signal.SIGTERM, 143, "train: terminated; its outputs were not written\n"),  # kill, or DVC died
    (signal.SIGHUP, 129, "train: terminated; its outputs were not written\n"),  # the terminal closed
])  # fmt: skip
@pytest.mark.parametrize("times", [1, 3])  # Ctrl-C pressed again while the stage cleans up: nothing more
def test_a_signal_while_importing_torch_is_one_line(workdir, signum, status, line, times):
    stage = stage_process(workdir, "train", **PIPES)
    wait_for(lambda: importing_torch(stage.pid) or stage.poll() is not None, "the stage to import torch")
    for _ in range(times):
        stage.send_signal(signum)
    _, stderr = stage.communicate(timeout=60)
    assert (stage.returncode, stderr) == (status, line)
    assert no_train_outputs(workdir)


def test_two_signals_at_once_are_one_line(workdir):
    (workdir / "params.yaml").write_text(params_text("train", "epochs", 10**6))
    stage = stage_process(workdir, "train", **PIPES)
    assert stage.stdout.readline().startswith("Epoch    0/")  # training
    stage.send_signal(signal.SIGTERM)
    stage.send_signal(signal.SIGINT)
    status = stage.wait(timeout=60)  # Python runs pending handlers lowest signal first: SIGINT's
    how = {128 + signal.SIGINT: "interrupted", 128 + signal.SIGTERM: "terminated"}[status]
    assert stage.stderr.read().splitlines()[1:] == [f"train: {how}; its outputs were not written"]
    assert no_train_outputs(workdir)


@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_a_signal_ignored_before_the_stage_stays_ignored(workdir, ignored):
    """`nohup dvc repro &`: a closed terminal must not end training (a shell's `&` ignores SIGINT too)."""
    (workdir / "params.yaml").write_text(params_text("train", "epochs", 10**6))
    stage = stage_process(workdir, "train", preexec_fn=lambda: signal.signal(ignored, signal.SIG_IGN), **PIPES)
    assert stage.stdout.readline().startswith("Epoch    0/")
    stage.send_signal(ignored)
    assert stage.stdout.readline().startswith("Epoch  100/")  # still training
    stop = next(other for other in (signal.SIGTERM, signal.SIGINT) if other != ignored)
    stage.send_signal(stop)
    assert stage.wait(timeout=60) == 128 + stop
    assert no_train_outputs(workdir)


def test_a_closed_output_pipe_ends_the_stage_quietly(workdir):
    """`python -m stages train ... | head -2`: the stage ends as any Unix tool does, no traceback."""
    stage = stage_process(workdir, "train", **PIPES)
    assert stage.stdout.readline().startswith("Epoch    0/1000")
    stage.stdout.close()  # as `head -1` does once it has its line
    stderr = stage.stderr.read()
    assert stage.wait(timeout=60) == -signal.SIGPIPE
    assert "Traceback" not in stderr and no_train_outputs(workdir)


def test_a_closed_stdout_after_a_complete_run_is_no_failure(workdir):
    stage = stage_process(workdir, "train", stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    assert stage.wait(timeout=120) == 0, stage.stderr.read()
    assert all((workdir / path).is_file() for path in TRAIN_ARGS[2:])


# A module the stage finds before its own, its code, and how the stage ends: its status, its lines on stderr
# (the device note aside), whether it wrote its outputs.
HOOKS = {
    "a failed import": ("torch/__init__.py", "raise ImportError('libtorch_cpu.so: failed to map')\n", 1, ["train: error: ImportError: libtorch_cpu.so: failed to map (SOFTMAX_TRACEBACK=1 shows the traceback)"], False),
    # SIGTERM right after the first rename: the stage still renames the others, and ends with 0
    "SIGTERM while the outputs are renamed": ("sitecustomize.py", "import os, signal\nreplace = os.replace\ndef renamed_then_terminated(*args):\n    replace(*args)\n    os.kill(os.getpid(), signal.SIGTERM)\nos.replace = renamed_then_terminated\n", 0, [], True),
}  # fmt: skip


@pytest.mark.parametrize("module, code, status, lines, written", HOOKS.values(), ids=HOOKS.keys())
def test_a_stage_ended_by_what_runs_before_it(workdir, tmp_path_factory, module, code, status, lines, written):
    folder = tmp_path_factory.mktemp("path")
    (folder / module).parent.mkdir(exist_ok=True)
    (folder / module).write_text(code)
    env = {"PYTHONPATH": f"{folder}{os.pathsep}{REPO}"}
    stage = stage_process(workdir, "train", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, stderr = stage.communicate(timeout=120)
    assert stage.returncode == status and [line for line in stderr.splitlines() if "device: " not in line] == lines
    assert all((workdir / path).is_file() for path in TRAIN_ARGS[2:]) if written else no_train_outputs(workdir)
