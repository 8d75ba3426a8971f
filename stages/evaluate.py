"""Stage `evaluate`: score one trained implementation; write its metrics and its confusion matrix."""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from stages.data import Split, load_prepared
from stages.errors import UserError, run_stage
from stages.files import float32_str, load_torch, write_text_atomic
from stages.models import Model, build_model


def scores(model: Model, data: Split) -> tuple[dict[str, float], torch.Tensor]:
    """Accuracy and cross-entropy (by PyTorch's reference op, whatever the implementation), and the
    predicted class of every row."""
    with torch.no_grad():
        logits = model(data.x)
        predicted = logits.argmax(dim=1)
        accuracy = (predicted == data.y).float().mean()
        cost = F.cross_entropy(logits, data.y)
    return {"accuracy": accuracy.item(), "cost": cost.item()}, predicted


def macro_f1(actual: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> float:
    """F1 averaged over the classes that occur in `actual` or `predicted` (as scikit-learn's f1_score
    with average="macro" does); a class never predicted right scores 0."""
    confusion = torch.bincount(actual * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)
    true_positives = confusion.diag().double()
    actual_count, predicted_count = confusion.sum(dim=1).double(), confusion.sum(dim=0).double()
    f1 = 2 * true_positives / (actual_count + predicted_count).clamp(min=1)
    present = (actual_count + predicted_count) > 0
    return f1[present].mean().item()


def confusion_csv(actual: torch.Tensor, predicted: torch.Tensor, classes: list[str]) -> str:
    """One row per evaluated sample, for DVC's confusion template."""
    rows = [f"{classes[a]},{classes[p]}\n" for a, p in zip(actual.tolist(), predicted.tolist(), strict=True)]
    return "actual,predicted\n" + "".join(rows)


def load_model(path: str | Path) -> tuple[Model, dict]:
    keys = ("impl", "n_features", "classes", "device", "state")
    checkpoint = load_torch(path, "trained model", keys, "run `dvc repro` to train it")
    model = build_model(checkpoint["impl"], checkpoint["n_features"], len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["state"])
    return model, checkpoint


def final_cost(costs_path: str | Path) -> float:
    """The training cost at the last epoch: the last number the lesson prints."""
    if not Path(costs_path).is_file():
        raise UserError(f"{costs_path}: training costs not found; run `dvc repro` to train the model")
    last_row = Path(costs_path).read_text(encoding="utf-8").splitlines()[-1]
    return float(last_row.split("\t")[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="prepared tensors, e.g. data/prepared.pt")
    parser.add_argument("model", help="a trained model, e.g. models/low_level.pt")
    parser.add_argument("costs", help="its training costs (TSV), e.g. plots/cost/low_level.tsv")
    parser.add_argument("metrics", help="where to write the metrics (JSON), e.g. metrics/low_level.json")
    parser.add_argument("confusion", help="where to write actual and predicted classes (CSV)")
    args = parser.parse_args(argv)
    prepared = load_prepared(args.data)
    model, checkpoint = load_model(args.model)
    evaluation, predicted = scores(model, prepared.eval)
    # The evaluation split is the test split when there is one, else the training data (the lesson).
    metrics = {
        "accuracy": evaluation["accuracy"],
        "final_cost": final_cost(args.costs),
        "eval_cost": evaluation["cost"],
    }
    if prepared.has_test:
        training, _ = scores(model, prepared.train)
        metrics["f1_macro"] = macro_f1(prepared.eval.y, predicted, prepared.n_classes)
        metrics["train_accuracy"] = training["accuracy"]
        metrics["train_cost"] = training["cost"]
    # Written as the shortest decimals that read back as the same float32: stable bytes.
    metrics = {name: float(float32_str(value)) for name, value in metrics.items()}
    metrics["device"] = checkpoint["device"]  # where it was trained; evaluation runs on the CPU
    write_text_atomic(args.metrics, json.dumps(metrics, indent=2) + "\n")
    write_text_atomic(args.confusion, confusion_csv(prepared.eval.y, predicted, list(prepared.classes)))


if __name__ == "__main__":
    run_stage("evaluate", main)
