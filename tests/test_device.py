"""`train.device: auto`: CUDA only when the run is large enough to gain from it, and it says why.

CI has no GPU: CUDA's presence is simulated, and only the choice is checked (no CUDA call is made)."""

import pytest
import torch

from stages.plumbing.device import Work, resolve_device
from stages.plumbing.errors import UserError

TOY = Work(rows=8, features=4, classes=3, epochs=1000, batch_size=0)
LARGE = Work(rows=1_000_000, features=784, classes=10, epochs=100, batch_size=0)


@pytest.fixture
def cuda_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Simulated GPU")


def test_steps_count_the_batches_of_every_pass():
    assert TOY.steps() == 1001  # range(epochs + 1), one full batch each
    assert Work(rows=10, features=2, classes=2, epochs=1, batch_size=3).steps() == 2 * 4
    assert Work(rows=10, features=2, classes=2, epochs=1, batch_size=10).steps() == 2  # a batch of all rows


def test_the_estimates_agree_with_the_toy_figures_they_come_from():
    # Measured on the lesson's 1001 functional steps (issue 12, an H200, and this project's CI CPU):
    # 0.31 s on the CPU; 0.78 s eager on CUDA plus 0.38 s start-up.
    cpu, cuda = TOY.seconds()
    assert cpu == pytest.approx(0.31, abs=0.05) and cuda == pytest.approx(0.78 + 0.38, abs=0.1)


def test_without_cuda_auto_falls_back_to_the_cpu_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", LARGE) == torch.device("cpu")
    assert capsys.readouterr().err == "device: auto -> cpu (CUDA not available, falling back to the CPU)\n"


def test_with_cuda_the_lessons_run_stays_on_the_cpu_and_says_why(cuda_present, monkeypatch, capsys):
    def started_cuda(index=0):
        raise AssertionError("naming the GPU starts CUDA, which this choice avoids")

    monkeypatch.setattr(torch.cuda, "get_device_name", started_cuda)
    assert resolve_device("auto", TOY) == torch.device("cpu")
    message = capsys.readouterr().err
    assert message.startswith("device: auto -> cpu (CUDA is available, but a run this small is faster on the CPU")
    assert "about 0.3 s against 1.2 s" in message and "train.device: cuda forces CUDA" in message


def test_with_cuda_a_large_run_goes_to_the_gpu(cuda_present, capsys):
    assert resolve_device("auto", LARGE) == torch.device("cuda")
    assert capsys.readouterr().err.startswith("device: auto -> cuda (Simulated GPU; about ")


@pytest.mark.parametrize("requested", ["cpu", "cuda"])
def test_a_named_device_is_taken_as_it_is(cuda_present, capsys, requested):
    assert resolve_device(requested, TOY) == torch.device(requested)
    assert capsys.readouterr().err == ""


def test_cuda_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"train\.device is 'cuda' but CUDA is not available here"):
        resolve_device("cuda", TOY)
