"""The datasets, their split, and the prepared-data file that `prepare` writes. Every source gives a
Table (stages/plumbing/tables.py) of numpy arrays, so that `prepare` and `evaluate` need no torch (its
import takes seconds); torch draws only the synthetic data (the same data as in every version)."""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path, PurePosixPath

import numpy as np

from stages.features import Preprocessing, fit
from stages.plumbing.files import DATASETS_DIR, Tensors, open_input, tensors_bytes
from stages.plumbing.params import TABLES, DataParams
from stages.plumbing.process import UserError, abbreviate, listing
from stages.plumbing.tables import MISSING_FIX, Table, read_table

# The lesson's toy set: 8 samples, 4 features, 3 classes.
TOY_X = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5], [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6], [1, 7, 7, 7]]
TOY_Y = [2, 2, 2, 1, 1, 1, 0, 0]
TOY_COLUMNS = ("x1", "x2", "x3", "x4")
# Rows the toy model never saw, for predict to classify (the lesson has none: these are ours).
TOY_NEW = [[1, 2, 2, 1], [3, 1, 4, 5], [1, 6, 7, 7], [2, 4, 4, 4]]
FORMAT = "softmax-three-ways prepared data 2"  # as the model's (stages/classifier.py)
FIX = "run `dvc repro prepare` first"
BLOCK_BYTES = 1 << 24  # evaluate reads a split about this many bytes of features at a time


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray
    start: int = 0  # the first row's place in the split: these may be some of its rows (a process's share)
    of: int = -1  # the split's row count (-1: these are all of them)

    @property
    def total(self) -> int:
        return len(self.y) if self.of < 0 else self.of


@dataclass(frozen=True)
class Prepared:
    train: Split  # the model's inputs (preprocessed) and class indices
    eval: Split  # the test split when data.test_size > 0; else the training data, as in the lesson
    classes: tuple[str, ...]
    has_test: bool
    preprocessing: Preprocessing  # what made the inputs from the table's columns
    sha256: str = ""  # of the file it was read from


def toy() -> Table:
    return Table(np.array(TOY_X, dtype=np.float32), np.array(TOY_Y, dtype=np.int64), ("0", "1", "2"), TOY_COLUMNS)


def synthetic(n_samples: int, n_features: int, n_classes: int, seed: int) -> Table:
    """Gaussian class clusters: unit noise around class centres about 4 standard deviations apart,
    whatever the number of features, so that the task is neither trivial nor hopeless."""
    import torch  # its seeded generator: the same data on every machine and in every version of this project

    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, n_features, generator=generator) * (3.0 / math.sqrt(n_features))
    y = (torch.arange(n_samples) % n_classes)[torch.randperm(n_samples, generator=generator)]
    x = torch.randn(n_samples, n_features, generator=generator).add_(centres[y])
    columns = tuple(f"x{i}" for i in range(1, n_features + 1))
    return Table(x.numpy(), y.numpy(), tuple(str(c) for c in range(n_classes)), columns)


def load_table(params: DataParams) -> Table:
    if params.source == "toy":
        return toy()
    if params.source in ("iris", "digits"):  # they ship inside scikit-learn: nothing is downloaded
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, f"load_{params.source}")()
        classes, columns = tuple(map(str, bunch.target_names)), tuple(map(str, bunch.feature_names))
        return Table(bunch.data.astype(np.float32), bunch.target.astype(np.int64), classes, columns)
    if params.source == "synthetic":
        return synthetic(params.n_samples, params.n_features, params.n_classes, params.seed)
    if len(parts := PurePosixPath(params.path).parts) < 2 or parts[0] != DATASETS_DIR or ".." in parts:
        fix = "put the file there (or `dvc add` it there) so that DVC tracks it as a dependency of prepare"
        raise UserError(f"data.path: {params.path} is not under {DATASETS_DIR}/; {fix}")
    open_input(params.path, "table data.path names", "check data.path (relative to the repository root)").close()
    missing, columns = MISSING_FIX if params.missing == "error" else None, (params.categorical, params.exclude)
    return read_table(params.path, params.label, params.features, *columns, missing, params.delimiter, params.encoding)


def subset(table: Table, index: np.ndarray) -> Table:
    categorical = {column: values[index] for column, values in table.categorical.items()}
    return replace(table, x=table.x[index], y=table.y[index], categorical=categorical)


def without_missing(table: Table, missing: str) -> tuple[Table, int]:
    """The rows a model can learn from, and how many were left out: a row without its class is never
    imputed, and with data.missing: drop neither is a row with any missing value."""
    keep = table.y >= 0
    if missing == "drop":
        keep &= ~np.isnan(table.x).any(axis=1)
        for values in table.categorical.values():
            keep &= values != None  # noqa: E711 (elementwise)
    if keep.all():
        return table, 0
    present = np.unique(table.y[keep])  # the classes that still have rows, in their order
    kept = subset(table, np.flatnonzero(keep))
    classes = tuple(table.classes[c] for c in present)
    return replace(kept, y=np.searchsorted(present, kept.y), classes=classes), int((~keep).sum())


def check_table(table: Table, name: str, label: str | None = None, left_out: int = 0) -> None:
    """A table a classifier can learn from; `label` names the column its classes came from, if any."""
    dropped = f" once {left_out:,} rows with missing values are left out" if left_out else ""
    if (np.bincount(table.y, minlength=len(table.classes)) > 0).sum() < 2:
        fix = "a classifier needs two or more" + ": fill in the gaps, or set data.missing: mean" * bool(left_out)
        raise UserError(f"{name}: fewer than two classes ({listing(table.classes)}){dropped}; {fix}")
    if label and len(table.classes) > max(100, len(table.y) // 2):  # a class per row: an identifier
        what = f"column {label!r} gives {len(table.classes):,} classes to {len(table.y):,} rows"
        raise UserError(f"data.label: {what}; is it an identifier? Name the column that holds the classes")


def split(table: Table, test_size: float, seed: int) -> tuple[Table, Table]:
    """The training and the evaluation rows: with test_size 0 the whole table twice, as in the lesson;
    else a seeded split, stratified and counted as scikit-learn's train_test_split counts it: the test
    split holds ceil(test_size x rows) rows, with test_size taken as the decimal params.yaml writes (0.7
    of 10 rows is 7, although 0.7 * 10 is 7.000000000000001 in floats). Each class gives its share
    rounded down, and the rows left over go to the classes with the largest remainders (the first on a tie)."""
    if test_size == 0:
        return table, table
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
        rows = generator.permutation(np.flatnonzero(table.y == c))
        if len(rows) and per_class[c] >= len(rows):
            what = f"class {abbreviate(name)} ({len(rows)} rows) without training rows"
            raise UserError(f"data.test_size={test_size} leaves {what}; lower data.test_size")
        test_rows.append(rows[: per_class[c]])
        train_rows.append(rows[per_class[c] :])
    return subset(table, np.sort(np.concatenate(train_rows))), subset(table, np.sort(np.concatenate(test_rows)))


def prepare_split(train: Table, test: Table, params: DataParams) -> Prepared:
    pre = fit(train, params.missing, params.source in TABLES if params.standardize == "auto" else params.standardize)
    train_split = Split(pre.apply(pre.inputs(train)[0]), train.y)
    test_split = Split(pre.apply(pre.inputs(test)[0]), test.y) if params.test_size > 0 else train_split
    return Prepared(train_split, test_split, train.classes, params.test_size > 0, pre)


def prepare_table(table: Table, params: DataParams) -> Prepared:
    return prepare_split(*split(table, params.test_size, params.seed), params)


def prepared_bytes(prepared: Prepared) -> bytes:
    arrays = {"train_x": prepared.train.x, "train_y": prepared.train.y}
    if prepared.has_test:  # without a test split the evaluation data is the training data: stored once
        arrays |= {"eval_x": prepared.eval.x, "eval_y": prepared.eval.y}
    preprocessing, info = prepared.preprocessing.tensors()
    info = {"format": FORMAT, "classes": list(prepared.classes), "has_test": prepared.has_test, "preprocessing": info}
    return tensors_bytes(arrays | preprocessing, info)


class PreparedFile:
    """The prepared data file, open: what it describes (classes, preprocessing, ...) at once, and its
    rows only when asked for, a share or a block at a time, so that a process holds only those."""

    def __init__(self, path: str | Path) -> None:
        tensors = Tensors(path, "prepared data", FORMAT, FIX)
        small = {name: tensors.rows(name) for name in tensors.shapes if name.startswith("preprocessing.")}
        self.preprocessing = Preprocessing.from_tensors(small, tensors.info["preprocessing"])
        self.tensors, self.classes, self.sha256 = tensors, tuple(tensors.info["classes"]), tensors.sha256
        self.has_test, self.n_features = bool(tensors.info["has_test"]), len(self.preprocessing.features)
        self.stored = {"train": "train", "eval": "eval" if self.has_test else "train"}  # each split's tensors

    def n_rows(self, split: str) -> int:
        """The rows of a split: "train", or "eval" (the training rows again when there is no test split)."""
        return self.tensors.shapes[f"{self.stored[split]}_y"][0]

    def rows(self, split: str, rows: slice = slice(None)) -> Split:
        start, stop, _ = rows.indices(self.n_rows(split))
        x, y = (self.tensors.rows(f"{self.stored[split]}_{part}", start, stop) for part in "xy")
        return Split(x, y, start, self.n_rows(split))

    def blocks(self, split: str) -> Iterator[Split]:
        size = max(1, BLOCK_BYTES // (4 * self.n_features))
        return (self.rows(split, slice(start, start + size)) for start in range(0, self.n_rows(split), size))

    def load(self, share: Callable[[int], slice] = lambda rows: slice(rows)) -> Prepared:
        """The prepared data, each split holding the rows `share` gives this process of its row count (default: all)."""
        train = self.rows("train", share(self.n_rows("train")))
        test = self.rows("eval", share(self.n_rows("eval"))) if self.has_test else train
        return Prepared(train, test, self.classes, self.has_test, self.preprocessing, self.sha256)
