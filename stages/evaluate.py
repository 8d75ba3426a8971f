"""Stage `evaluate`: score one trained implementation; write its metrics and its confusion matrix. It runs on
numpy alone, in float64: an independent check of the three torch implementations (and no torch import's seconds)."""

import json

import numpy as np

from stages.classifier import FIX, Classifier, load_classifier, log_probabilities
from stages.data import PreparedFile, Split
from stages.plumbing.files import StageArguments, float32_text, write_outputs
from stages.plumbing.process import UserError


class Tally:
    """The confusion matrix (actual, predicted) and the sum of the costs, added up a block of rows at a time."""

    def __init__(self, n_classes: int) -> None:
        self.confusion, self.cost = np.zeros((n_classes, n_classes), np.int64), 0.0

    def add(self, model: Classifier, data: Split) -> np.ndarray:
        log_p = log_probabilities(model, data.x)
        predicted = log_p.argmax(axis=1)
        self.cost += float(-log_p[np.arange(len(data.y)), data.y].sum())
        k = len(self.confusion)
        self.confusion += np.bincount(data.y * k + predicted, minlength=k * k).reshape(k, k)
        return predicted

    def scores(self) -> dict[str, float]:
        """Accuracy, mean cross-entropy and macro F1 of the rows counted. Macro F1 averages over the classes that occur
        or are predicted (as scikit-learn's f1_score with average="macro" does); a class never predicted right: 0."""
        rows, right, both = self.confusion.sum(), np.diag(self.confusion), self.confusion.sum(0) + self.confusion.sum(1)
        f1 = float((2 * right[both > 0] / both[both > 0]).mean())
        return {"accuracy": int(right.sum()) / rows, "cost": self.cost / rows, "f1_macro": f1}


def scores(model: Classifier, data: Split) -> tuple[dict[str, float], np.ndarray]:
    """Accuracy, mean cross-entropy and macro F1 on `data`, and the predicted class of every row."""
    tally = Tally(model.W.shape[1])
    predicted = tally.add(model, data)
    return tally.scores(), predicted


def confusion_csv(actual: np.ndarray, predicted: np.ndarray, classes: list[str], header: bool = True) -> str:
    """One row per evaluated sample, for DVC's confusion template; rows end in LF, as the other files do.
    A name is quoted, as the csv module quotes it, when it holds a comma, a quote, a CR or a LF."""
    names = [f'"{c.replace(chr(34), chr(34) * 2)}"' if any(s in c for s in ',"\r\n') else c for c in classes]
    rows = zip(actual.tolist(), predicted.tolist(), strict=True)
    return "actual,predicted\n" * header + "".join(f"{names[a]},{names[p]}\n" for a, p in rows)


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("evaluate", __doc__)
    parser.add_input("data", help="prepared tensors, e.g. data/prepared.safetensors")
    parser.add_input("model", help="a trained model, e.g. models/low_level.safetensors")
    parser.add_output("metrics", help="where to write the metrics (JSON), e.g. metrics/low_level.json")
    parser.add_output("confusion", help="where to write actual and predicted classes (CSV)")
    args = parser.parse_args(argv)
    prepared = PreparedFile(args.data)  # read a block of rows at a time: memory does not grow with the rows
    model = load_classifier(args.model)
    # The model names (by SHA-256) the prepared file it was trained on: no other data enters its metrics.
    if model.info["data_sha256"] != prepared.sha256:
        raise UserError(f"{args.model}: was trained on other prepared data than {args.data}; {FIX}")
    # Each split's figures under its name: `train` always, `test` when data.test_size holds rows out.
    splits = {name: Tally(len(prepared.classes)) for name in ("train", "test")[: 1 + prepared.has_test]}
    # final_cost is the lesson's last printed number: the training cost before the last update.
    values = {"final_cost": float(float32_text(model.info["final_cost"], "final_cost"))}
    for name, tally in splits.items():  # the scores first, then the files
        for block in prepared.blocks("eval" if name == "test" else "train"):
            tally.add(model, block)
        values[name] = {key: float(float32_text(value, f"{name}.{key}")) for key, value in tally.scores().items()}
    values["device"] = model.info["device"]  # where it was trained
    evaluation = splits.get("test", splits["train"])
    # The confusion CSV made as it is written: the evaluation rows read again, a block at a time.
    predictions = ((b, log_probabilities(model, b.x).argmax(axis=1)) for b in prepared.blocks("eval"))
    confusion = (confusion_csv(b.y, p, list(prepared.classes), header=b.start == 0).encode() for b, p in predictions)
    note, shares = "", evaluation.confusion.sum(1) / evaluation.confusion.sum()
    if (accuracy := evaluation.scores()["accuracy"]) < shares.max():  # worse than always the commonest class
        why = "the inputs may not tell the classes apart, or training stopped short (train.epochs, train.lr)"
        if model.b.shape == (1,):
            why = "the lesson's one scalar bias cannot learn how common a class is (high_level's nn.Linear can)"
        common = f"{shares.max():.3g}, the share of class {prepared.classes[int(shares.argmax())]}"
        note = f"evaluate: note: accuracy {accuracy:.3g} is below {common}; {why}"
    metrics_json = json.dumps(values, indent=2, allow_nan=False) + "\n"
    write_outputs({args.confusion: confusion, args.metrics: metrics_json}, note, args.inputs)
