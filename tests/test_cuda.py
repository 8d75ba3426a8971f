"""The CUDA path of each stage. Skipped without CUDA (as on CI); run it on a GPU machine."""

import json

import pytest
import torch

from stages import evaluate, prepare, train
from stages.models import IMPLEMENTATIONS
from stages.plumbing.params import TrainParams
from stages.train import train as train_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

PARAMS = """\
data:
  source: toy
train:
  epochs: 1000
  lr: 0.1
  seed: 1
  device: cuda
  log_every: 100
  double_softmax: false
"""


def test_stages_run_on_cuda(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(PARAMS)
    prepare.main(["data/prepared.safetensors", "data/new_rows.csv"])
    for impl in IMPLEMENTATIONS:
        model = f"models/{impl}.safetensors"
        train.main(
            [
                impl,
                "data/prepared.safetensors",
                model,
                f"cost/{impl}.tsv",
                f"test_cost/{impl}.tsv",
                f"models/{impl}.onnx",
            ]
        )
        evaluate.main(
            [
                "data/prepared.safetensors",
                f"models/{impl}.safetensors",
                f"cost/{impl}.tsv",
                f"metrics/{impl}.json",
                f"confusion/{impl}.csv",
            ]
        )
        metrics = json.loads((tmp_path / f"metrics/{impl}.json").read_text())
        assert metrics["device"] == "cuda"
        assert metrics["train"]["accuracy"] >= 7 / 8


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_cuda_matches_cpu(impl, toy_data, lesson_params: TrainParams):
    models, costs = {}, {}
    for device in ("cpu", "cuda"):
        models[device], costs[device], _ = train_model(impl, toy_data, lesson_params, torch.device(device))
    assert max(abs(a - b) for a, b in zip(costs["cpu"], costs["cuda"], strict=True)) < 1e-5
    cpu_state = models["cpu"].state_dict()
    for name, value in models["cuda"].state_dict().items():
        torch.testing.assert_close(value.cpu(), cpu_state[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_cuda_repeats_bit_for_bit(impl, toy_data, lesson_params: TrainParams):
    cuda = torch.device("cuda")
    first = train_model(impl, toy_data, lesson_params, cuda).costs
    second = train_model(impl, toy_data, lesson_params, cuda).costs
    assert first == second
