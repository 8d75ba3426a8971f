"""The CUDA path of each stage. Skipped without CUDA (as on CI); run it on a GPU machine."""

import json

import pytest
import torch

from stages import evaluate, prepare, train
from stages.models import IMPLEMENTATIONS, lesson_weights
from stages.plumbing.params import TrainParams
from stages.train import train as train_model
from tests.stage_runs import params_text

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_stages_run_on_cuda(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params_text("train", "device", "cuda"))  # the committed ones, on CUDA
    prepare.main(["data/prepared.safetensors", "data/new_rows.csv"])
    for impl in IMPLEMENTATIONS:
        model, costs = f"models/{impl}.safetensors", f"cost/{impl}.tsv"
        train.main([impl, "data/prepared.safetensors", model, costs, f"test_cost/{impl}.tsv", f"models/{impl}.onnx"])
        evaluate.main(["data/prepared.safetensors", model, f"metrics/{impl}.json", f"confusion/{impl}.csv"])
        metrics = json.loads((tmp_path / f"metrics/{impl}.json").read_text())
        assert metrics["device"] == "cuda"
        assert metrics["train"]["accuracy"] >= 7 / 8


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_cuda_matches_cpu_and_repeats_bit_for_bit(impl, toy_data, lesson_params: TrainParams):
    cpu = train_model(impl, toy_data, lesson_params, torch.device("cpu"))
    cuda, again = (train_model(impl, toy_data, lesson_params, torch.device("cuda")) for _ in range(2))
    assert cuda.costs == again.costs
    assert max(abs(a - b) for a, b in zip(cpu.costs, cuda.costs, strict=True)) < 1e-5
    for on_cpu, on_cuda in zip(lesson_weights(cpu.model), lesson_weights(cuda.model), strict=True):
        torch.testing.assert_close(on_cuda.detach().cpu(), on_cpu.detach(), rtol=1e-4, atol=1e-5)
