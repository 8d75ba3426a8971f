"""The benchmark keeps working: bench/run.py at toy sizes. No timing is asserted, only that every
figure is there and makes sense."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages.models import IMPLEMENTATIONS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_benchmark_reports_every_figure(tmp_path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--tiny", "--out", str(out)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "x the floor" in result.stdout and "% of the floor" in result.stdout
    figures = json.loads(out.read_text())
    latency = figures["latency"]
    assert latency["stage_count"] == 7
    assert latency["floor_s"] > 0 and latency["dvc_repro_forced_s"] > 0 and latency["dvc_repro_noop_s"] > 0
    assert latency["ratio_to_floor"] == pytest.approx(latency["dvc_repro_forced_s"] / latency["floor_s"])
    throughput = figures["throughput"]
    for impl in IMPLEMENTATIONS:
        assert throughput[impl]["epochs_per_s"] > 0
    parts = throughput["epoch_parts"]
    assert parts["forward_matmul_s"] > 0 and parts["gradient_matmul_s"] > 0 and parts["cross_entropy_s"] > 0
    assert parts["compute_floor_epochs_per_s"] > 0
    for data in ("digits", "synthetic"):
        race = figures["time_to_accuracy"][data]
        assert 0 < race["target_accuracy"] <= 1 and race["sklearn_iterations"] > 0
        for impl in ("functional", "high_level"):
            assert race[impl]["updates"] > 0
