"""`train.device: auto`: CUDA only when the run is large enough to gain from it, and it says why.

CI has no GPU: CUDA's presence is simulated, and only the choice is checked (no CUDA call is made)."""

import pytest
import torch

from stages.plumbing.device import flop, resolve_device
from stages.plumbing.errors import UserError

TOY = flop(rows=8, features=4, classes=3, epochs=1000)
LARGE = flop(rows=1_000_000, features=784, classes=10, epochs=100)


@pytest.fixture
def cuda_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Simulated GPU")


def test_the_rule_counts_the_lessons_passes():
    assert TOY == 6 * 8 * 4 * 3 * 1001  # range(epochs + 1)


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
    assert message == (
        "device: auto -> cpu (CUDA is available, but the run's 5.8e+05 FLOP are under 1e+10, where CUDA's start-up "
        "costs more than it saves; train.device: cuda forces CUDA)\n"
    )


def test_with_cuda_a_large_run_goes_to_the_gpu(cuda_present, capsys):
    assert resolve_device("auto", LARGE) == torch.device("cuda")
    assert capsys.readouterr().err == "device: auto -> cuda (Simulated GPU; the run's 4.8e+12 FLOP are over 1e+10)\n"


@pytest.mark.parametrize("requested", ["cpu", "cuda"])
def test_a_named_device_is_taken_as_it_is(cuda_present, capsys, requested):
    assert resolve_device(requested, TOY) == torch.device(requested)
    assert capsys.readouterr().err == ""


def test_cuda_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"train\.device is 'cuda' but CUDA is not available here"):
        resolve_device("cuda", TOY)
