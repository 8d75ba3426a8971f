"""The same bits whatever the machine's cores or the caller's environment: every stage process computes
on one thread in every library, so a stage run with other thread settings writes the same bytes."""

import os
import subprocess
import sys

import pytest

from tests.stage_runs import REPO

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def stage_env(threads: int) -> dict[str, str]:
    """The environment of a shell that asks every library for `threads` threads."""
    return {**os.environ, "PYTHONPATH": str(REPO), **dict.fromkeys(THREAD_VARIABLES, str(threads))}


def test_a_stage_process_computes_on_one_thread_whatever_its_environment_asks():
    code = (
        "import stages, numpy, torch\n"
        "from threadpoolctl import threadpool_info\n"
        "print(torch.get_num_threads(), sorted({pool['num_threads'] for pool in threadpool_info()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=stage_env(4), capture_output=True, text=True, check=True)
    assert result.stdout == "1 [1]\n"


@pytest.mark.slow
def test_prepare_and_train_write_the_same_bytes_with_one_thread_or_four(tmp_path):
    params = (
        "data:\n  source: synthetic\n  n_samples: 100000\n  n_features: 20\n  n_classes: 4\n  standardize: true\n"
        "  test_size: 0.2\ntrain:\n  epochs: 5\n  lr: 0.1\n  seed: 1\n  device: cpu\n  log_every: 1\n"
        "  double_softmax: false\n"
    )
    train = ["train", "high_level", "prepared.safetensors", "model.safetensors", "costs.tsv", "test.tsv", "model.onnx"]
    outputs = {}
    for threads in (1, 4):
        workdir = tmp_path / str(threads)
        workdir.mkdir()
        (workdir / "params.yaml").write_text(params)
        for command in (["prepare", "prepared.safetensors", "new_rows.csv"], train):
            run = [sys.executable, "-m", "stages", *command]
            subprocess.run(run, cwd=workdir, env=stage_env(threads), check=True, capture_output=True)
        outputs[threads] = {path.name: path.read_bytes() for path in sorted(workdir.iterdir())}
    assert outputs[1] == outputs[4]
