"""The benchmark keeps working: bench/run.py at toy sizes. No timing is compared with another (a loaded
machine reorders them): every figure is there, and each derived one is what its parts make it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages.models import IMPLEMENTATIONS
from tests.stage_runs import REPO


@pytest.mark.slow
def test_tiny_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "results.json"
    command = [sys.executable, "bench/run.py", "--tiny", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "x the floor" in result.stdout and "% of the floor" in result.stdout
    figures = json.loads(out.read_text())
    latency = figures["latency"]
    assert latency["stage_count"] == 1  # --tiny times one stage's command
    measured = ["floor_s", "dvc_repro_forced_s", "dvc_repro_noop_s", "python_start_s", "stage_processes_s"]
    assert all(latency[name] > 0 for name in measured)
    assert latency["ratio_to_floor"] == pytest.approx(latency["dvc_repro_forced_s"] / latency["floor_s"])
    assert sum(latency["stage_processes_by_stage_s"].values()) == pytest.approx(latency["stage_processes_s"])
    assert latency["dvc_own_work_s"] == pytest.approx(latency["dvc_repro_forced_s"] - latency["stage_processes_s"])
    assert set(latency["stage_processes_by_stage_s"]) == {"prepare", "train", "evaluate", "predict"}
    assert latency["stage_processes_by_stage_s"]["prepare"] == latency["stage_processes_s"]
    assert isinstance(latency["torch_import_s"], float)  # a difference of two timings: its sign is not promised
    throughput = figures["throughput"]
    for impl in IMPLEMENTATIONS:
        rate = throughput[impl]["epochs_per_s"]
        assert throughput[impl]["fraction_of_floor"] == pytest.approx(rate / throughput["floor_epochs_per_s"])
    parts = throughput["epoch_parts"]
    assert parts["forward_matmul_s"] > 0 and parts["gradient_matmul_s"] > 0 and parts["cross_entropy_s"] > 0
    assert parts["compute_floor_epochs_per_s"] > 0 and parts["forward_matmul_native_mkl_s"] > 0
    ingestion = figures["ingestion"]
    assert ingestion["rows"] == 2000 and ingestion["file_mb"] > 0
    ours, numpy = ingestion["ours"], ingestion["numpy_loadtxt"]
    for reader in (ours, numpy):  # the same float32 features: 2,000 x 20
        assert reader["tensor_mb"] == pytest.approx(2000 * 20 * 4 / 2**20)
        assert reader["seconds"] > 0 and reader["peak_above_start_mb"] >= 0
    assert ingestion["time_ratio"] == pytest.approx(ours["seconds"] / numpy["seconds"])
    pro = figures["processes"]
    for run in (pro["one"], pro["two"]):
        assert run["peak_mb"] > 0 and run["beyond_baseline_mb"] == pytest.approx(run["peak_mb"] - pro["baseline_mb"])
    assert pro["speedup"] == pytest.approx(pro["two"]["epochs_per_s"] / pro["one"]["epochs_per_s"])
    assert pro["memory_ratio"] == pytest.approx(pro["two"]["beyond_baseline_mb"] / pro["one"]["beyond_baseline_mb"])
    memory = figures["evaluate_memory"]
    assert list(memory["by_rows"]) == ["1000", "4000"] and memory["baseline_mb"] > 0
    for run in memory["by_rows"].values():
        assert run["seconds"] > 0 and run["beyond_baseline_mb"] == pytest.approx(run["peak_mb"] - memory["baseline_mb"])
    for data in ("digits", "synthetic"):
        race = figures["time_to_accuracy"][data]
        assert 0 < race["target_accuracy"] <= 1 and race["sklearn_iterations"] > 0
        for impl in ("functional", "high_level"):
            ours = race[impl]
            assert ours["updates"] > 0
            if ours["seconds"] != float("inf"):  # reached: at the target accuracy or above it
                assert ours["accuracy"] >= race["target_accuracy"]
                assert ours["speedup"] == pytest.approx(race["sklearn_s"] / ours["seconds"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path):
    command = [sys.executable, "bench/run.py", "--tiny", "--device", "cuda", "--out", str(tmp_path / "r.json")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("bench: error: --device cuda, but CUDA is not available here (torch ")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "r.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_the_gpu_check_stops_at_once_without_cuda(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "out")], cwd=REPO, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and result.stderr == "gpu_check: error: CUDA is not available here\n"
