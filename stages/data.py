"""The datasets, their split and standardization, and the prepared-data file that `prepare` writes.
(User tables, CSV and Parquet, are read by stages/plumbing/tables.py.)

Every source gives a table: features x (float32), class indices y (int64) and the class names,
in the order the indices count them. The number of features and classes comes from the data.
Tables are numpy arrays, so that `prepare` and `evaluate` need no torch (its import takes seconds);
torch is imported only for the synthetic data, which it draws (the same data as in every version).
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stages.plumbing.errors import UserError, abbreviate
from stages.plumbing.files import read_tensors, tensors_bytes
from stages.plumbing.params import DataParams, memory_limit
from stages.plumbing.tables import Table, read_csv, read_parquet

# The lesson's toy set: 8 samples, 4 features, 3 classes.
TOY_X = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5], [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6], [1, 7, 7, 7]]
TOY_Y = [2, 2, 2, 1, 1, 1, 0, 0]


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Prepared:
    train: Split
    eval: Split  # the test split when data.test_size > 0; else the training data, as in the lesson
    classes: tuple[str, ...]
    has_test: bool
    mean: np.ndarray | None = None  # the standardization, from the training split (None: not standardized)
    std: np.ndarray | None = None
    sha256: str = ""  # of the file it was read from

    @property
    def n_features(self) -> int:
        return self.train.x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def toy() -> Table:
    return Table(np.array(TOY_X, dtype=np.float32), np.array(TOY_Y, dtype=np.int64), ("0", "1", "2"))


def scikit_learn(name: str) -> Table:
    """iris or digits: they ship inside scikit-learn, nothing is downloaded."""
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float32)
    return Table(x, np.asarray(bunch.target, dtype=np.int64), tuple(str(n) for n in bunch.target_names))


def synthetic(n_samples: int, n_features: int, n_classes: int, seed: int) -> Table:
    """Gaussian class clusters: unit noise around class centres about 4 standard deviations apart,
    whatever the number of features, so that the task is neither trivial nor hopeless."""
    import torch  # its seeded generator: the same data on every machine and in every version of this project

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, n_features, generator=generator) * (3.0 / math.sqrt(n_features))
    y = (torch.arange(n_samples) % n_classes)[torch.randperm(n_samples, generator=generator)]
    x = torch.randn(n_samples, n_features, generator=generator).add_(centres[y])
    return Table(x.numpy(), y.numpy(), tuple(str(c) for c in range(n_classes)))


def load_table(params: DataParams) -> Table:
    if params.source == "toy":
        return toy()
    if params.source in ("iris", "digits"):
        return scikit_learn(params.source)
    if params.source == "csv":
        return read_csv(params.path, params.label, params.features, params.delimiter, params.encoding)
    if params.source == "parquet":
        return read_parquet(params.path, params.label, params.features)
    return synthetic(params.n_samples, params.n_features, params.n_classes, params.seed)


def check_table(table: Table, name: str, label: str | None = None) -> None:
    """A table a classifier can learn from; `label` names the column its classes came from, if any."""
    if len(table.y) == 0:
        raise UserError(f"{name}: the table is empty")
    if not np.isfinite(table.x).all():
        raise UserError(f"{name}: the features hold NaN or infinite values")
    present = np.bincount(table.y, minlength=len(table.classes))
    if int((present > 0).sum()) < 2:
        raise UserError(f"{name}: fewer than two classes ({', '.join(table.classes)}); a classifier needs two or more")
    # Training holds a few (rows, classes) arrays: the logits and what it derives from them. A label
    # column that is an identifier gives a class per row, and they cannot fit.
    needed = len(table.y) * len(table.classes) * 4 * 8
    if label and needed > memory_limit():
        fix = "is it an identifier? Name the column that holds the classes"
        k, n, gib = len(table.classes), len(table.y), needed / 2**30
        raise UserError(
            f"data.label: column {label!r} gives {k:,} classes to {n:,} rows, which need {gib:.3g} GiB to train; {fix}"
        )


def split(table: Table, test_size: float, seed: int) -> tuple[Split, Split]:
    """A seeded split, stratified and counted as scikit-learn's train_test_split counts it: the test
    split holds ceil(test_size x rows) rows, with test_size taken as the decimal params.yaml writes (0.7
    of 10 rows is 7, although 0.7 * 10 is 7.000000000000001 in floats). Each class gives its share
    rounded down, and the rows left over go to the classes with the largest remainders (the first on a tie)."""
    counts = np.bincount(table.y, minlength=len(table.classes))
    n_test = math.ceil(Fraction(repr(test_size)) * len(table.y))
    shares = [Fraction(n_test * int(count), len(table.y)) for count in counts]
    per_class = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(counts)), key=lambda c: per_class[c] - shares[c])  # stable: first on a tie
    for c in by_remainder[: n_test - sum(per_class)]:
        per_class[c] += 1
    # numpy's seeded generator (PCG64), not torch's: the same permutations on every machine, and prepare
    # needs no torch for a split (its import is half of prepare's 1.5 s on iris).
    generator = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for c, name in enumerate(table.classes):
        rows = np.flatnonzero(table.y == c)
        rows = rows[generator.permutation(len(rows))]
        if len(rows) and per_class[c] >= len(rows):
            raise UserError(
                f"data.test_size={test_size} leaves class {abbreviate(name)} ({len(rows)} rows) without "
                "training rows; lower data.test_size"
            )
        test_rows.append(rows[: per_class[c]])
        train_rows.append(rows[per_class[c] :])
    train, test = np.sort(np.concatenate(train_rows)), np.sort(np.concatenate(test_rows))
    return Split(table.x[train], table.y[train]), Split(table.x[test], table.y[test])


def standardization(train: Split) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each feature over the training split, in float64: for finite
    float32 features neither can overflow (the mean of values near 3e38 would, summed in float32). A
    constant feature keeps std 1. Stored as float32, with which the features are scaled."""
    mean = train.x.mean(axis=0, dtype=np.float64)
    std = np.sqrt(((train.x - mean) ** 2).mean(axis=0)).astype(np.float32)
    return mean.astype(np.float32), np.where(std > 0, std, np.float32(1))  # 0 once in float32: 1


def _scaled(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std in float64, then float32. Finite for the training rows (none lies more than
    sqrt(rows) standard deviations from the mean); a test row far outside a tiny spread may not be."""
    with np.errstate(over="ignore"):
        scaled = ((x - mean.astype(np.float64)) / std.astype(np.float64)).astype(np.float32)
    bad = np.argwhere(~np.isfinite(scaled))
    if len(bad):
        raise UserError(
            f"data.standardize: feature {bad[0][1]} of a row lies beyond float32 once scaled by the "
            "training split's spread; leave data.standardize off or rescale that column"
        )
    return scaled


def prepare_table(table: Table, params: DataParams) -> Prepared:
    has_test = params.test_size > 0
    if has_test:
        train, test = split(table, params.test_size, params.seed)
    else:
        train = test = Split(table.x, table.y)
    mean = std = None
    if params.standardize:
        mean, std = standardization(train)
        train = Split(_scaled(train.x, mean, std), train.y)
        test = Split(_scaled(test.x, mean, std), test.y) if has_test else train
    return Prepared(train, test, table.classes, has_test, mean, std)


def prepared_bytes(prepared: Prepared) -> bytes:
    arrays = {"train_x": prepared.train.x, "train_y": prepared.train.y}
    if prepared.has_test:  # without a test split the evaluation data is the training data: stored once
        arrays |= {"eval_x": prepared.eval.x, "eval_y": prepared.eval.y}
    if prepared.mean is not None:
        arrays |= {"mean": prepared.mean, "std": prepared.std}
    return tensors_bytes(arrays, {"classes": list(prepared.classes), "has_test": prepared.has_test})


FIX = "run `dvc repro prepare` first"


def load_prepared(path: str | Path) -> Prepared:
    """The prepared data, checked: a damaged file or one from another version is a one-line error."""
    arrays, info, digest = read_tensors(path, "prepared data", ("classes", "has_test"), FIX)
    classes, has_test = info["classes"], info["has_test"]
    names = isinstance(classes, list) and all(isinstance(c, str) and c for c in classes)
    if not names or len(set(classes)) != len(classes) or len(classes) < 2:
        raise UserError(f"{path}: its class list {abbreviate(classes)} is not two or more distinct names; {FIX}")
    train = _checked_split(path, arrays, "train", len(classes))
    test = _checked_split(path, arrays, "eval", len(classes)) if has_test else train
    if test.x.shape[1] != train.x.shape[1]:
        raise UserError(f"{path}: eval_x has {test.x.shape[1]} features, train_x {train.x.shape[1]}; {FIX}")
    return Prepared(train, test, tuple(classes), bool(has_test), arrays.get("mean"), arrays.get("std"), digest)


def _checked_split(path: str | Path, arrays: dict[str, np.ndarray], name: str, n_classes: int) -> Split:
    if not {f"{name}_x", f"{name}_y"} <= arrays.keys():
        raise UserError(f"{path}: has no {name}_x and {name}_y; {FIX}")
    x, y = arrays[f"{name}_x"], arrays[f"{name}_y"]
    if x.dtype != np.float32 or x.ndim != 2 or y.dtype != np.int64 or y.shape != (len(x),) or 0 in x.shape:
        raise UserError(
            f"{path}: {name}_x {x.dtype}{list(x.shape)} and {name}_y {y.dtype}{list(y.shape)} are not "
            f"a table of float32 features and its int64 labels; {FIX}"
        )
    if y.min() < 0 or y.max() >= n_classes:
        raise UserError(f"{path}: {name}_y holds class {int(y.max())} but the file names {n_classes} classes; {FIX}")
    return Split(x, y)
