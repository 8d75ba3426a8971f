"""The datasets, their split and standardization, and the prepared-data file that `prepare` writes.

Every source gives a table: features x (float32), class indices y (int64) and the class names,
in the order the indices count them. The number of features and classes comes from the data.
"""

import csv
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from stages.errors import UserError
from stages.files import load_torch, save_torch_atomic
from stages.params import DataParams

# The lesson's toy set: 8 samples, 4 features, 3 classes.
TOY_X = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5],
         [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6], [1, 7, 7, 7]]  # fmt: skip
TOY_Y = [2, 2, 2, 1, 1, 1, 0, 0]

# User tables live here, so that `prepare` can declare them as a dependency in dvc.yaml.
DATASETS_DIR = "datasets"


@dataclass(frozen=True)
class Table:
    x: torch.Tensor  # float32, (samples, features)
    y: torch.Tensor  # int64 class indices, (samples,)
    classes: tuple[str, ...]  # classes[i] is the name of class index i


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Prepared:
    train: Split
    eval: Split  # the test split when data.test_size > 0; else the training data, as in the lesson
    classes: tuple[str, ...]
    has_test: bool
    mean: torch.Tensor | None = None  # the standardization, from the training split (None: not standardized)
    std: torch.Tensor | None = None

    @property
    def n_features(self) -> int:
        return self.train.x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def toy() -> Table:
    return Table(torch.tensor(TOY_X, dtype=torch.float32), torch.tensor(TOY_Y), ("0", "1", "2"))


def _sklearn(load) -> Table:
    bunch = load()  # these datasets ship inside scikit-learn: nothing is downloaded
    x = torch.tensor(bunch.data, dtype=torch.float32)
    return Table(x, torch.tensor(bunch.target, dtype=torch.int64), tuple(str(n) for n in bunch.target_names))


def iris() -> Table:
    from sklearn.datasets import load_iris

    return _sklearn(load_iris)


def digits() -> Table:
    from sklearn.datasets import load_digits

    return _sklearn(load_digits)


def synthetic(n_samples: int, n_features: int, n_classes: int, seed: int) -> Table:
    """Gaussian class clusters: unit noise around class centres about 4 standard deviations apart,
    whatever the number of features, so that the task is neither trivial nor hopeless."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, n_features, generator=generator) * (3.0 / math.sqrt(n_features))
    y = (torch.arange(n_samples) % n_classes)[torch.randperm(n_samples, generator=generator)]
    x = torch.randn(n_samples, n_features, generator=generator).add_(centres[y])
    return Table(x, y, tuple(str(c) for c in range(n_classes)))


def _class_order(labels: list[str]) -> list[str]:
    """Sorted, numerically when every label is a number (so "10" comes after "9"): stable across runs."""
    try:
        return sorted(set(labels), key=float)
    except ValueError:
        return sorted(set(labels))


def read_csv(path: str, label: str, features: tuple[str, ...] | None) -> Table:
    """A CSV table with a header row; the label column may hold strings."""
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != DATASETS_DIR:
        raise UserError(f"data.path: {path} is not under {DATASETS_DIR}/; put the file there (or `dvc add` it there) "
                        "so that DVC tracks it as a dependency of prepare")  # fmt: skip
    if not Path(path).is_file():
        raise UserError(f"data.path: {path} not found; check the path (relative to the repository root)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise UserError(f"{path}: the table is empty; it needs a header row and at least one data row")
    header, rows = rows[0], rows[1:]
    if label not in header:
        raise UserError(f"{path}: no label column '{label}' (data.label); columns: {', '.join(header)}")
    feature_names = list(features) if features is not None else [c for c in header if c != label]
    missing = [c for c in feature_names if c not in header]
    if missing:
        raise UserError(f"{path}: no column '{missing[0]}' (data.features); columns: {', '.join(header)}")
    if not feature_names:
        raise UserError(f"{path}: no feature columns besides the label '{label}'")
    columns = [header.index(c) for c in feature_names]
    label_column = header.index(label)
    values, labels = [], []
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
        try:
            numbers = [float(row[c]) for c in columns]
        except ValueError:
            bad = next(c for c in columns if not _is_float(row[c]))
            raise UserError(f"{path}, line {line}: column '{header[bad]}' is not a number: {row[bad]!r}") from None
        if not all(math.isfinite(v) for v in numbers):
            bad = next(c for c, v in zip(columns, numbers, strict=True) if not math.isfinite(v))
            raise UserError(
                f"{path}, line {line}: column '{header[bad]}' is {row[bad]}; only finite numbers are allowed"
            )
        values.append(numbers)
        labels.append(row[label_column].strip())
    classes = _class_order(labels)
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[name] for name in labels], dtype=torch.int64)
    return Table(torch.tensor(values, dtype=torch.float32), y, tuple(classes))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_table(params: DataParams) -> Table:
    if params.source == "toy":
        return toy()
    if params.source == "iris":
        return iris()
    if params.source == "digits":
        return digits()
    if params.source == "csv":
        return read_csv(params.path, params.label, params.features)
    return synthetic(params.n_samples, params.n_features, params.n_classes, params.seed)


def check_table(table: Table, name: str) -> None:
    if len(table.y) == 0:
        raise UserError(f"{name}: the table is empty")
    if not torch.isfinite(table.x).all():
        raise UserError(f"{name}: the features hold NaN or infinite values")
    present = torch.bincount(table.y, minlength=len(table.classes))
    if int((present > 0).sum()) < 2:
        raise UserError(f"{name}: fewer than two classes ({', '.join(table.classes)}); a classifier needs two or more")


def split(table: Table, test_size: float, seed: int) -> tuple[Split, Split]:
    """A seeded, stratified split: each class gives round(test_size * its rows) rows to the test split."""
    generator = torch.Generator().manual_seed(seed)
    train_rows, test_rows = [], []
    for c, name in enumerate(table.classes):
        rows = (table.y == c).nonzero().flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n_test = round(test_size * len(rows))
        if len(rows) and n_test >= len(rows):
            raise UserError(f"data.test_size={test_size} leaves class '{name}' ({len(rows)} rows) without "
                            "training rows; lower data.test_size")  # fmt: skip
        test_rows.append(rows[:n_test])
        train_rows.append(rows[n_test:])
    train, test = torch.cat(train_rows).sort().values, torch.cat(test_rows).sort().values
    if len(test) == 0:
        raise UserError(f"data.test_size={test_size} puts no row of {len(table.y)} in the test split; raise it")
    return Split(table.x[train], table.y[train]), Split(table.x[test], table.y[test])


def standardization(train: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of each feature over the training split; a constant feature keeps std 1."""
    mean = train.x.mean(dim=0)
    std = train.x.std(dim=0, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def prepare_table(table: Table, params: DataParams) -> Prepared:
    has_test = params.test_size > 0
    if has_test:
        train, test = split(table, params.test_size, params.seed)
    else:
        train = test = Split(table.x, table.y)
    mean = std = None
    if params.standardize:
        mean, std = standardization(train)
        train = Split((train.x - mean) / std, train.y)
        test = Split((test.x - mean) / std, test.y) if has_test else train
    return Prepared(train, test, table.classes, has_test, mean, std)


def save_prepared(prepared: Prepared, path: str | Path) -> None:
    tensors = {
        "train_x": prepared.train.x,
        "train_y": prepared.train.y,
        "eval_x": prepared.eval.x,
        "eval_y": prepared.eval.y,
        "classes": list(prepared.classes),
        "has_test": prepared.has_test,
        "mean": prepared.mean,
        "std": prepared.std,
    }
    save_torch_atomic(tensors, path)


def load_prepared(path: str | Path) -> Prepared:
    keys = ("train_x", "train_y", "eval_x", "eval_y", "classes", "has_test", "mean", "std")
    tensors = load_torch(path, "prepared data", keys, "run `dvc repro prepare` first")
    return Prepared(
        train=Split(tensors["train_x"], tensors["train_y"]),
        eval=Split(tensors["eval_x"], tensors["eval_y"]),
        classes=tuple(tensors["classes"]),
        has_test=tensors["has_test"],
        mean=tensors["mean"],
        std=tensors["std"],
    )
