"""The three implementations of softmax classification, and the cost each one trains on.

- low_level:  softmax and cross-entropy from tensor primitives; W and b are raw tensors.
- functional: the same W and b, with torch.nn.functional.cross_entropy on the logits.
- high_level: an nn.Module holding nn.Linear, with F.cross_entropy.
"""

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.classifier import IMPLEMENTATIONS as IMPLEMENTATIONS  # named where predict reads a model, without torch


def softmax(z: Tensor) -> Tensor:
    """Row-wise softmax from primitives. Subtracting each row's max changes nothing mathematically
    (softmax is shift-invariant) but keeps exp() from overflowing on large logits."""
    shifted = z - z.amax(dim=1, keepdim=True).detach()
    exp = torch.exp(shifted)
    return exp / torch.sum(exp, dim=1, keepdim=True)


def log_softmax(z: Tensor) -> Tensor:
    """log(softmax(z)) without ever taking log of an underflowed 0: z - max - log(sum(exp(z - max)))."""
    shifted = z - z.amax(dim=1, keepdim=True).detach()
    return shifted - torch.log(torch.sum(torch.exp(shifted), dim=1, keepdim=True))


def low_level_cross_entropy(z: Tensor, y: Tensor, double_softmax: bool = False) -> Tensor:
    """Mean cross-entropy of logits z against class indices y. double_softmax=True is the lesson's published code,
    -log(softmax(softmax(z))): a bug that squashes the probabilities towards uniform (costs unlike F.cross_entropy)."""
    y_one_hot = torch.zeros_like(z).scatter_(1, y.unsqueeze(1), 1)  # as the lesson builds it
    log_p = torch.log(softmax(softmax(z))) if double_softmax else log_softmax(z)
    return torch.sum(y_one_hot * -log_p, dim=1).mean()


class RawLinear:
    """z = x W + b with W and b as plain tensors, as the lesson's low-level and functional code has them."""

    def __init__(self, n_features: int, n_classes: int, device: torch.device | str = "cpu") -> None:
        # W is the lesson's (features, classes) matrix, stored class by class as nn.Linear stores its
        # weight: the gradient x^T dz then lands in that layout, which BLAS computes about four times
        # faster on tall data than into a feature-by-feature W (bench/run.py, throughput).
        self.W = torch.zeros((n_classes, n_features), device=device).t().requires_grad_()
        # One scalar bias, as in the lesson. It cannot learn anything: adding the same number to
        # every logit leaves softmax unchanged, so its gradient is zero and it stays at 0.
        self.b = torch.zeros(1, device=device, requires_grad=True)

    def __call__(self, x: Tensor) -> Tensor:
        return x.matmul(self.W) + self.b

    def parameters(self) -> list[Tensor]:
        return [self.W, self.b]


class SoftmaxClassifier(nn.Module):
    """The high-level model: one nn.Linear; softmax lives inside F.cross_entropy."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


Model = RawLinear | SoftmaxClassifier


def lesson_weights(model: Model) -> tuple[Tensor, Tensor]:
    """The lesson's W (inputs, classes) and b, logits = x W + b, of any implementation: the one place
    that knows what each calls them (nn.Linear keeps W transposed, as its weight). The model file
    stores these two, so renaming an attribute here changes no stored model."""
    if isinstance(model, SoftmaxClassifier):
        return model.linear.weight.T, model.linear.bias
    return model.W, model.b


def build_model(impl: str, n_features: int, n_classes: int, device: torch.device | str = "cpu") -> Model:
    """A fresh model. high_level draws its initial weights from torch's generator: seed it first."""
    if impl == "high_level":
        return SoftmaxClassifier(n_features, n_classes).to(device)
    return RawLinear(n_features, n_classes, device)


def cost_function(impl: str, double_softmax: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    """The cost each implementation trains on: logits, class indices -> mean cross-entropy."""
    if impl == "low_level":
        return partial(low_level_cross_entropy, double_softmax=double_softmax)
    return F.cross_entropy
