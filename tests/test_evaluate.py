"""Evaluation: macro F1 against scikit-learn's, the confusion rows, the metrics of each split."""

import contextlib
import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score

from stages import evaluate, prepare, train
from stages.classifier import Classifier
from stages.data import Split
from stages.evaluate import Tally, confusion_csv, scores
from stages.features import Preprocessing
from stages.models import IMPLEMENTATIONS
from tests.stage_runs import REPO


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn(seed):
    generator = torch.Generator().manual_seed(seed)
    actual = torch.randint(4, (50,), generator=generator)
    kept = torch.rand(50, generator=generator) < 0.6
    predicted = torch.where(kept, actual, torch.randint(4, (50,), generator=generator))
    predicted[predicted == 3] = 2  # class 3 never predicted: its F1 is 0
    expected = f1_score(actual.numpy(), predicted.numpy(), average="macro")
    # Class 4 occurs nowhere: left out, as by scikit-learn.
    tally = Tally(5)
    tally.confusion[:] = confusion_matrix(actual.numpy(), predicted.numpy(), labels=range(5))
    assert tally.scores()["f1_macro"] == pytest.approx(expected)


CONFUSION = {  # the classes, and the text when no name needs quoting
    "plain": (["cat", "dog"], "actual,predicted\ncat,dog\ndog,cat\n"),
    "a comma, a quote, a line break": (["a,b", 'say "hi"', "two\nlines"], None),
    "a lone carriage return": (["x\ry", "n\nm"], None),
}


@pytest.mark.parametrize("classes, text", CONFUSION.values(), ids=CONFUSION.keys())
def test_confusion_rows_name_the_classes_quoted_where_a_name_would_break_a_row(classes, text):
    actual, predicted = np.arange(len(classes)), np.roll(np.arange(len(classes)), 1)
    written = confusion_csv(actual, predicted, classes)
    rows = [["actual", "predicted"], *([classes[a], classes[p]] for a, p in zip(actual, predicted, strict=True))]
    assert list(csv.reader(io.StringIO(written, newline=""))) == rows
    assert text is None or written == text


@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: logits where a naive exp() overflows
def test_scores_match_torch(scale):
    """evaluate's numpy accuracy and cross-entropy against torch's F.cross_entropy and argmax."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator)
    W, b = torch.randn(6, 4, generator=generator) * scale, torch.randn(4, generator=generator)
    y = torch.randint(4, (200,), generator=generator)
    logits = x.double() @ W.double() + b.double()
    model = Classifier(W.double().numpy(), b.double().numpy(), tuple("abcd"), Preprocessing(tuple("uvwxyz")), {})
    result, predicted = scores(model, Split(x.numpy(), y.numpy()))
    assert result["cost"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-12)
    assert np.array_equal(predicted, logits.argmax(dim=1).numpy())
    assert result["accuracy"] == (logits.argmax(dim=1) == y).double().mean().item()


def test_the_example_csv_with_a_test_split(tmp_path, monkeypatch):
    """docs/data.md's row for datasets/wine.csv: every implementation above 0.9 on the test split, metrics of
    both splits, the test cost every log_every epochs, the confusion rows named by the cultivars."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    shutil.copy(REPO / "datasets" / "wine.csv", tmp_path / "datasets" / "wine.csv")
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: csv\n  path: datasets/wine.csv\n  label: cultivar\n  test_size: 0.2\n  standardize: true\n"
        "train:\n  epochs: 500\n  lr: 0.1\n  seed: 1\n  device: cpu\n  log_every: 100\n  double_softmax: false\n"
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        prepare.main(["data.safetensors", "new_rows.csv"])
        for impl in IMPLEMENTATIONS:
            train.main([impl, "data.safetensors", f"{impl}.safetensors", "cost.tsv", "test_cost.tsv", "model.onnx"])
            evaluate.main(["data.safetensors", f"{impl}.safetensors", f"{impl}.json", f"{impl}.csv"])
            metrics = json.loads((tmp_path / f"{impl}.json").read_text())
            assert set(metrics) == {"final_cost", "train", "test", "device"}
            assert set(metrics["train"]) == set(metrics["test"]) == {"accuracy", "cost", "f1_macro"}
            assert metrics["test"]["accuracy"] >= 0.9 and metrics["test"]["f1_macro"] >= 0.9, impl
    assert (tmp_path / "test_cost.tsv").read_text().splitlines()[0] == "epoch\ttest_cost"
    assert len((tmp_path / "test_cost.tsv").read_text().splitlines()) == 1 + 6  # epochs 0, 100, ..., 500
    confusion = (tmp_path / "functional.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 36  # 20 % of 178 wines, per class
    assert {row.split(",")[0] for row in confusion[1:]} == {"barbera", "barolo", "grignolino"}
    # Read two rows at a time (wine has 13 float32 features: 52 bytes a row), evaluate writes the same bytes.
    monkeypatch.setattr("stages.data.BLOCK_BYTES", 2 * 52)
    with contextlib.redirect_stderr(io.StringIO()):
        evaluate.main(["data.safetensors", "high_level.safetensors", "blocks.json", "blocks.csv"])
    assert (tmp_path / "blocks.json").read_bytes() == (tmp_path / "high_level.json").read_bytes()
    assert (tmp_path / "blocks.csv").read_bytes() == (tmp_path / "high_level.csv").read_bytes()
