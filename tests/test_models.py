"""micrograd-style checks: our primitive softmax and cross-entropy against PyTorch's reference ops,
forward values and gradients, on ordinary and on extreme logits."""

import pytest
import torch
import torch.nn.functional as F

from stages.models import log_softmax, low_level_cross_entropy, softmax


def random_logits(scale: float, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(16, 5, generator=generator, dtype=dtype) * scale
    return z, torch.randint(5, (16,), generator=generator)


# exp(300) overflows float32 (and exp(800) float64): a softmax without the max shift gives inf/inf = nan. The
# labels are mostly the unlikely class: the cost is large but finite.
EXTREME = [[300.0, -300.0, 0.0], [-300.0, 300.0, 299.0], [800.0, 800.0, -800.0], [-800.0, -799.0, -800.0]]
LOGITS = {
    "randn": random_logits(1.0),
    "randn*30": random_logits(30.0),
    "randn-float32": random_logits(1.0, torch.float32),
    "extreme-float32": (torch.tensor(EXTREME), torch.tensor([1, 2, 0, 1])),
}


def value_and_grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    out = fn(z)
    # A fixed random weighting makes the gradient check every output, not just their sum.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * weights).sum().backward()
    return out.detach(), z.grad


def lesson_double_softmax_cost(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The lesson's published low-level cost, verbatim: softmax in the hypothesis and again in the cost."""
    hypothesis = F.softmax(z, dim=1)
    y_one_hot = torch.zeros_like(hypothesis)
    y_one_hot.scatter_(1, y.unsqueeze(1), 1)
    return (y_one_hot * -torch.log(F.softmax(hypothesis, dim=1))).sum(dim=1).mean()


OPS = {  # ours and its reference, each a function of the logits and the labels
    "softmax": (lambda z, y: softmax(z), lambda z, y: F.softmax(z, dim=1)),
    "log_softmax": (lambda z, y: log_softmax(z), lambda z, y: F.log_softmax(z, dim=1)),
    "cross_entropy": (low_level_cross_entropy, F.cross_entropy),
    "double softmax": (lambda z, y: low_level_cross_entropy(z, y, double_softmax=True), lesson_double_softmax_cost),
}


@pytest.mark.parametrize("z, y", LOGITS.values(), ids=LOGITS.keys())
@pytest.mark.parametrize("ours, reference", OPS.values(), ids=OPS.keys())
def test_ours_match_pytorch_in_value_and_gradient(ours, reference, z, y):
    value, grad = value_and_grad(lambda z: ours(z, y), z)
    ref_value, ref_grad = value_and_grad(lambda z: reference(z, y), z)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)
