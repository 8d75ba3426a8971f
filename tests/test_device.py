"""`train.device: auto`: CUDA only when the run is large enough to gain from it, and it says why. CUDA's
presence is simulated, and only the choice is checked (no CUDA call is made)."""

import pytest
import torch

from stages.plumbing.process import UserError
from stages.train import flop, resolve_device

TOY = flop(rows=8, features=4, classes=3, epochs=1000)
LARGE = flop(rows=1_000_000, features=784, classes=10, epochs=100)


def test_the_rule_counts_the_lessons_passes():
    assert TOY == 6 * 8 * 4 * 3 * 1001  # range(epochs + 1)


# (train.device, whether there is CUDA, the run's FLOP, the device chosen, what it says on stderr)
CHOICES = {
    "auto without CUDA": ("auto", False, LARGE, "cpu", "device: auto -> cpu (CUDA not available, falling back to the CPU)\n"),
    "auto, the lesson's run": ("auto", True, TOY, "cpu", "device: auto -> cpu (CUDA is available, but the run's 5.8e+05 FLOP are under 1e+10, where CUDA's start-up costs more than it saves; train.device: cuda forces CUDA)\n"),
    "auto, a large run": ("auto", True, LARGE, "cuda", "device: auto -> cuda (Simulated GPU; the run's 4.8e+12 FLOP are over 1e+10)\n"),
    "cpu as it is": ("cpu", True, LARGE, "cpu", ""),
    "cuda as it is": ("cuda", True, TOY, "cuda", ""),
}  # fmt: skip


@pytest.mark.parametrize("requested, cuda, run_flop, chosen, said", CHOICES.values(), ids=CHOICES.keys())
def test_the_device_chosen_and_why(monkeypatch, capsys, requested, cuda, run_flop, chosen, said):
    def name(index=0):
        assert "cuda (" in said, "naming the GPU starts CUDA, which a choice of the CPU avoids"
        return "Simulated GPU"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "get_device_name", name)
    assert resolve_device(requested, run_flop) == torch.device(chosen)
    assert capsys.readouterr().err == said


def test_cuda_without_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"train\.device is 'cuda' but CUDA is not available here"):
        resolve_device("cuda", TOY)
