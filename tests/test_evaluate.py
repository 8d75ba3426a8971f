"""Evaluation: macro F1 against scikit-learn's, the confusion rows, the metrics of each split."""

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from stages import evaluate, prepare, train
from stages.classifier import Classifier
from stages.data import Split
from stages.evaluate import Tally, confusion_csv, scores
from stages.features import Preprocessing
from stages.models import IMPLEMENTATIONS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_scikit_learn(seed):
    generator = torch.Generator().manual_seed(seed)
    actual = torch.randint(4, (50,), generator=generator)
    predicted = torch.where(
        torch.rand(50, generator=generator) < 0.6, actual, torch.randint(4, (50,), generator=generator)
    )
    predicted[predicted == 3] = 2  # class 3 never predicted: its F1 is 0
    expected = f1_score(actual.numpy(), predicted.numpy(), average="macro")
    # Class 4 occurs nowhere: left out, as by scikit-learn.
    tally = Tally(5)
    tally.count(actual.numpy(), predicted.numpy())
    assert tally.scores()["f1_macro"] == pytest.approx(expected)


def test_confusion_rows_name_the_classes():
    text = confusion_csv(np.array([0, 1]), np.array([1, 1]), ["cat", "dog"])
    assert text == "actual,predicted\ncat,dog\ndog,dog\n"


def test_confusion_rows_quote_class_names_that_would_break_a_row():
    classes = ["a,b", 'say "hi"', "two\nlines"]
    text = confusion_csv(np.array([0, 1, 2]), np.array([2, 0, 1]), classes)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["actual", "predicted"], ["a,b", "two\nlines"], ['say "hi"', "a,b"], ["two\nlines", 'say "hi"']]


def test_stages_with_a_test_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: iris\n  test_size: 0.2\n"
        "train:\n  epochs: 200\n  lr: 0.1\n  seed: 1\n  device: cpu\n  log_every: 50\n  double_softmax: false\n"
    )
    prepare.main(["data.safetensors", "new_rows.csv"])
    train.main(["high_level", "data.safetensors", "model.safetensors", "cost.tsv", "test_cost.tsv", "model.onnx"])
    evaluate.main(["data.safetensors", "model.safetensors", "cost.tsv", "metrics.json", "confusion.csv"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"final_cost", "train", "test", "device"}
    assert set(metrics["train"]) == set(metrics["test"]) == {"accuracy", "cost", "f1_macro"}
    assert metrics["test"]["accuracy"] >= 0.9 and metrics["test"]["f1_macro"] >= 0.9
    assert (tmp_path / "test_cost.tsv").read_text().splitlines()[0] == "epoch\ttest_cost"
    assert len((tmp_path / "test_cost.tsv").read_text().splitlines()) == 1 + 5  # epochs 0, 50, ..., 200
    confusion = (tmp_path / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 30  # the 30 test rows
    assert {row.split(",")[0] for row in confusion[1:]} == {"setosa", "versicolor", "virginica"}
    # Read two rows at a time (iris has 4 float32 features: 16 bytes a row), evaluate writes the same bytes.
    monkeypatch.setattr("stages.data.BLOCK_BYTES", 40)
    evaluate.main(["data.safetensors", "model.safetensors", "cost.tsv", "blocks.json", "blocks.csv"])
    assert (tmp_path / "blocks.json").read_bytes() == (tmp_path / "metrics.json").read_bytes()
    assert (tmp_path / "blocks.csv").read_bytes() == (tmp_path / "confusion.csv").read_bytes()


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


def test_a_class_name_with_a_lone_carriage_return_is_quoted():
    text = confusion_csv(np.array([0, 1]), np.array([1, 0]), ["x\ry", "n\nm"])
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["actual", "predicted"],
        ["x\ry", "n\nm"],
        ["n\nm", "x\ry"],
    ]
    assert confusion_csv(np.array([0]), np.array([1]), ["a", "b"]) == "actual,predicted\na,b\n"


def test_the_example_csv_with_a_test_split(tmp_path, monkeypatch):
    """docs/data.md's row for datasets/wine.csv: every implementation above 0.9 on the test split, and
    the confusion rows named by the cultivars (strings as labels)."""
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
            evaluate.main(["data.safetensors", f"{impl}.safetensors", "cost.tsv", f"{impl}.json", f"{impl}.csv"])
            assert json.loads((tmp_path / f"{impl}.json").read_text())["test"]["accuracy"] >= 0.9, impl
    confusion = (tmp_path / "functional.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 36  # 20 % of 178 wines, per class
    assert {row.split(",")[0] for row in confusion[1:]} == {"barbera", "barolo", "grignolino"}
