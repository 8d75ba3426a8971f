"""Stage `evaluate`: score one trained implementation; write its metrics and its confusion matrix.

It runs on numpy alone, in float64: an independent check of the three torch implementations (and a
stage that does not spend seconds importing torch)."""

import csv
import io
import json
from pathlib import Path

import numpy as np

from stages.classifier import FIX, Classifier, load_classifier, log_probabilities
from stages.data import Prepared, Split, load_prepared
from stages.plumbing.errors import UserError, listing
from stages.plumbing.files import StageArguments, float32_text, open_input, sha256, write_outputs


def scores(model: Classifier, data: Split) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy, mean cross-entropy and macro F1 on `data`, and the predicted class of every row."""
    log_p = log_probabilities(model, data.x)
    predicted = log_p.argmax(axis=1)
    cost = -log_p[np.arange(len(data.y)), data.y].mean()
    accuracy = float((predicted == data.y).mean())
    return {
        "accuracy": accuracy,
        "cost": float(cost),
        "f1_macro": macro_f1(data.y, predicted, model.W.shape[1]),
    }, predicted


def macro_f1(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """F1 averaged over the classes that occur in `actual` or `predicted` (as scikit-learn's f1_score
    with average="macro" does); a class never predicted right scores 0."""
    true_positives = np.bincount(actual[actual == predicted], minlength=n_classes)
    both = np.bincount(actual, minlength=n_classes) + np.bincount(predicted, minlength=n_classes)
    present = both > 0
    return float((2 * true_positives[present] / both[present]).mean())


def confusion_csv(actual: np.ndarray, predicted: np.ndarray, classes: list[str]) -> str:
    """One row per evaluated sample, for DVC's confusion template; rows end in LF, as the other files do."""
    names = [_csv_field(name) for name in classes]
    rows = zip(actual.tolist(), predicted.tolist(), strict=True)
    return "actual,predicted\n" + "".join(f"{names[a]},{names[p]}\n" for a, p in rows)


def _csv_field(text: str) -> str:
    """`text` as one CSV field, as the csv module writes it: quoted when it holds a comma, a quote, a CR
    or a LF (the line end is CRLF here so that a lone CR counts too), so that every row has two fields."""
    field = io.StringIO()
    csv.writer(field, lineterminator="\r\n").writerow([text])
    return field.getvalue().removesuffix("\r\n")


def float32_values(metrics: dict, prefix: str = "") -> dict:
    """Every number as the shortest decimal that reads back as the same float32: stable bytes, no noise
    digits."""
    values = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            values[name] = float32_values(value, f"{prefix}{name}.")
        else:
            values[name] = float(float32_text(value, f"{prefix}{name}"))
    return values


def load_model(path: str | Path, prepared: Prepared, data_path: str | Path) -> Classifier:
    """The trained model, checked against the prepared data: the model records the SHA-256 of the
    prepared file it was trained on (and of the costs it wrote), so that no file of another run
    (another split, standardized or not, another implementation's costs) goes into its metrics."""
    model = load_classifier(path)
    if model.classes != prepared.classes or model.W.shape != (prepared.n_features, prepared.n_classes):
        raise UserError(
            f"{path}: trained on {model.W.shape[0]} features and classes {listing(model.classes, 5)}, but the "
            f"prepared data has {prepared.n_features} features and classes {listing(prepared.classes, 5)}; {FIX}"
        )
    if model.info["data_sha256"] != prepared.sha256 or not model.preprocessing.same(prepared.preprocessing):
        raise UserError(f"{path}: was trained on other prepared data than {data_path}; {FIX}")
    return model


def final_cost(costs_path: str | Path, costs_sha256: str) -> float:
    """The training cost at the last epoch (the last number the lesson prints), from the costs file
    that was written with the model."""
    try:
        with open_input(costs_path, "training costs", FIX) as f:
            content = f.read()
        if sha256(content) != costs_sha256:
            raise ValueError("another run's costs")
        cost = float(content.decode("utf-8").splitlines()[-1].split("\t")[1])
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        raise UserError(f"{costs_path}: not the training costs written with this model; {FIX}") from None
    return cost


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("evaluate", __doc__)
    parser.add_input("data", help="prepared tensors, e.g. data/prepared.safetensors")
    parser.add_input("model", help="a trained model, e.g. models/low_level.safetensors")
    parser.add_input("costs", help="its training costs (TSV), e.g. plots/cost/low_level.tsv")
    parser.add_output("metrics", help="where to write the metrics (JSON), e.g. metrics/low_level.json")
    parser.add_output("confusion", help="where to write actual and predicted classes (CSV)")
    args = parser.parse_args(argv)
    prepared = load_prepared(args.data)
    model = load_model(args.model, prepared, args.data)
    info = model.info
    # Each split's figures under its name: `train` always, `test` when data.test_size holds rows out.
    # final_cost is the lesson's last printed number: the training cost before the last update.
    metrics: dict = {"final_cost": final_cost(args.costs, info["costs_sha256"])}
    metrics["train"], predicted = scores(model, prepared.train)
    if prepared.has_test:
        metrics["test"], predicted = scores(model, prepared.eval)
    metrics = float32_values(metrics)
    metrics["device"] = info["device"]  # where it was trained
    confusion = confusion_csv(prepared.eval.y, predicted, list(prepared.classes))
    write_outputs({args.metrics: json.dumps(metrics, indent=2, allow_nan=False) + "\n", args.confusion: confusion})
