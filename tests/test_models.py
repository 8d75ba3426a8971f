"""micrograd-style checks: our primitive softmax and cross-entropy against PyTorch's reference ops,
forward values and gradients, on ordinary and on extreme logits."""

import pytest
import torch
import torch.nn.functional as F

from stages.models import log_softmax, low_level_cross_entropy, one_hot, softmax

N_CLASSES = 5


def random_logits(scale: float, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(16, N_CLASSES, generator=generator, dtype=dtype) * scale
    y = torch.randint(N_CLASSES, (16,), generator=generator)
    return z, y


def extreme_logits(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # exp(300) overflows float32 (and exp(800) float64): a softmax without the max shift gives inf/inf = nan.
    z = torch.tensor(
        [[300.0, -300.0, 0.0], [-300.0, 300.0, 299.0], [800.0, 800.0, -800.0], [-800.0, -799.0, -800.0]], dtype=dtype
    )
    y = torch.tensor([1, 2, 0, 1])  # mostly the unlikely class: the cost is large but finite
    return z, y


def value_and_grad(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    out = fn(z)
    # A fixed random weighting makes the gradient check every output, not just their sum.
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    (out * weights).sum().backward()
    return out.detach(), z.grad


CASES = [random_logits(1.0), random_logits(30.0), random_logits(1.0, torch.float32), extreme_logits(torch.float32)]


@pytest.mark.parametrize("z, y", CASES, ids=["randn", "randn*30", "randn-float32", "extreme-float32"])
@pytest.mark.parametrize(
    "ours, reference",
    [
        (softmax, lambda z: F.softmax(z, dim=1)),
        (log_softmax, lambda z: F.log_softmax(z, dim=1)),
    ],
    ids=["softmax", "log_softmax"],
)
def test_softmax_matches_pytorch(ours, reference, z, y):
    value, grad = value_and_grad(ours, z)
    ref_value, ref_grad = value_and_grad(reference, z)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize("z, y", CASES, ids=["randn", "randn*30", "randn-float32", "extreme-float32"])
def test_cross_entropy_matches_pytorch(z, y):
    value, grad = value_and_grad(lambda z: low_level_cross_entropy(z, y), z)
    ref_value, ref_grad = value_and_grad(lambda z: F.cross_entropy(z, y), z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)


def test_cross_entropy_on_extreme_logits_is_large_not_inf():
    z, y = extreme_logits(torch.float32)
    assert low_level_cross_entropy(z, y).item() == pytest.approx(F.cross_entropy(z, y).item())
    assert low_level_cross_entropy(z, y).item() > 100


def test_one_hot_matches_pytorch():
    y = torch.tensor([2, 0, 1, 1])
    assert torch.equal(one_hot(y, 3, torch.float32), F.one_hot(y, 3).float())


def lesson_double_softmax_cost(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The lesson's published low-level cost, verbatim: softmax in the hypothesis and again in the cost."""
    hypothesis = F.softmax(z, dim=1)
    y_one_hot = torch.zeros_like(hypothesis)
    y_one_hot.scatter_(1, y.unsqueeze(1), 1)
    return (y_one_hot * -torch.log(F.softmax(hypothesis, dim=1))).sum(dim=1).mean()


@pytest.mark.parametrize("z, y", CASES[:3], ids=["randn", "randn*30", "randn-float32"])
def test_double_softmax_is_the_lessons_formula(z, y):
    value, grad = value_and_grad(lambda z: low_level_cross_entropy(z, y, double_softmax=True), z)
    ref_value, ref_grad = value_and_grad(lambda z: lesson_double_softmax_cost(z, y), z)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)
    assert not torch.allclose(value, F.cross_entropy(z, y))
