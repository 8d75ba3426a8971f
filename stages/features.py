"""What turns a table's columns into the model's input, fitted on the training split only: prepare
fits it, the prepared file and every model file carry it, predict applies it to new rows, and the ONNX
graph holds it.

The input vector of a row, before filling in and scaling, is its numeric columns as they are (NaN where
a value is missing), then for each categorical column one 0/1 entry per category of the training split,
sorted (all 0 for a category the training split never had, all NaN where the value is missing: filled
in with the training means, that is each category's share). Then, with data.missing: mean, each NaN
becomes its input's mean over the training split (scikit-learn's SimpleImputer), and with
data.standardize each input is scaled by the training split's mean and standard deviation.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stages.plumbing.errors import UserError, abbreviate
from stages.plumbing.files import tensors_bytes
from stages.plumbing.tables import Table


@dataclass(frozen=True)
class Preprocessing:
    numeric: tuple[str, ...]  # the numeric columns, in the order of the input vector
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)  # categorical column -> categories
    missing: str = "error"  # data.missing: "mean" fills in, the others refuse a missing value
    fill: np.ndarray | None = None  # per input: its training mean (data.missing: mean)
    mean: np.ndarray | None = None  # per input: the standardization (data.standardize)
    std: np.ndarray | None = None

    @property
    def features(self) -> list[str]:
        """The input vector's entries by name: a one-hot entry is `column=category`."""
        return [*self.numeric, *(f"{c}={k}" for c, categories in self.categories.items() for k in categories)]

    def inputs(self, table: Table) -> tuple[np.ndarray, int]:
        """The rows' input vectors before filling in and scaling, and how many rows hold a category the
        training split never had."""
        parts, unknown = [table.x], np.zeros(len(table.x), dtype=bool)
        for column, categories in self.categories.items():
            index = {category: i for i, category in enumerate(categories)}
            of_row = np.array([-2 if v is None else index.get(v, -1) for v in table.categorical[column]], dtype=int)
            one_hot = np.zeros((len(of_row), len(categories)), dtype=np.float32)
            known = np.flatnonzero(of_row >= 0)
            one_hot[known, of_row[known]] = 1
            one_hot[of_row == -2] = np.nan
            unknown |= of_row == -1
            parts.append(one_hot)
        return np.hstack(parts).astype(np.float32, copy=False), int(unknown.sum())

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Input vectors filled in and scaled, as the model takes them."""
        if self.fill is not None:
            x = np.where(np.isnan(x), self.fill, x)
        return x if self.mean is None else scaled(x, self.mean, self.std)

    def tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the description a tensors file stores it as (read back by from_tensors)."""
        arrays = {name: getattr(self, name) for name in ("fill", "mean", "std") if getattr(self, name) is not None}
        info = {"numeric": list(self.numeric), "categories": {c: list(k) for c, k in self.categories.items()}}
        return {f"preprocessing.{name}": array for name, array in arrays.items()}, info | {"missing": self.missing}

    @classmethod
    def from_tensors(cls, arrays: dict[str, np.ndarray], info: Any) -> "Preprocessing":
        """Read back what tensors() wrote; ValueError when it is not that."""
        try:
            numeric, missing = tuple(info["numeric"]), info["missing"]
            categories = {c: tuple(k) for c, k in info["categories"].items()}
            names = [*numeric, *categories, *(k for ks in categories.values() for k in ks)]
        except (TypeError, KeyError, AttributeError):
            names, missing = [None], None
        if not all(isinstance(n, str) for n in names) or missing not in ("error", "drop", "mean"):
            raise ValueError(f"its preprocessing {abbreviate(info)} is not one prepare writes")
        stored = {name: arrays.get(f"preprocessing.{name}") for name in ("fill", "mean", "std")}
        made = cls(numeric, categories, missing, **stored)
        for name, array in stored.items():
            if array is not None and (array.dtype != np.float32 or array.shape != (len(made.features),)):
                raise ValueError(f"its preprocessing's {name} is {array.dtype}{list(array.shape)}")
        if (stored["mean"] is None) != (stored["std"] is None) or (stored["fill"] is None) == (missing == "mean"):
            raise ValueError("its preprocessing is not one prepare writes")
        return made

    def same(self, other: "Preprocessing") -> bool:
        return tensors_bytes(*self.tensors()) == tensors_bytes(*other.tensors())


def fit(train: Table, missing: str, standardize: bool) -> Preprocessing:
    """The preprocessing of the training split `train`."""
    categories = {}
    for column, values in train.categorical.items():
        categories[column] = tuple(sorted({v for v in values if v is not None}))
        if not categories[column]:
            raise UserError(f"data.categorical: column {abbreviate(column)} has no value in the training split")
    columns = train.columns or tuple(f"x{i}" for i in range(1, train.x.shape[1] + 1))
    made = Preprocessing(columns, categories, missing)
    x, _ = made.inputs(train)
    if missing == "mean":
        with np.errstate(invalid="ignore"), warnings.catch_warnings(action="ignore"):
            fill = np.nanmean(x, axis=0, dtype=np.float64).astype(np.float32)  # NaN: no value at all
        if np.isnan(fill).any():
            column = made.features[int(np.flatnonzero(np.isnan(fill))[0])]
            fix = "leave it out of data.features, or fill it in yourself"
            raise UserError(f"data.missing: column {abbreviate(column)} has no value in the training split; {fix}")
        made = Preprocessing(columns, categories, missing, fill)
        x = made.apply(x)
    if standardize:
        return Preprocessing(columns, categories, missing, made.fill, *standardization(x))
    return made


def standardization(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each input over the training split, in float64: for finite
    float32 inputs neither can overflow (the mean of values near 3e38 would, summed in float32). A
    constant input keeps std 1. Stored as float32, with which the inputs are scaled."""
    mean = x.mean(axis=0, dtype=np.float64)
    std = np.sqrt(((x - mean) ** 2).mean(axis=0)).astype(np.float32)
    return mean.astype(np.float32), np.where(std > 0, std, np.float32(1))  # 0 once in float32: 1


def scaled(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std in float64, then float32. Finite for the training rows (none lies more than
    sqrt(rows) standard deviations from the mean); a test row far outside a tiny spread may not be."""
    with np.errstate(over="ignore"):
        result = ((x - mean.astype(np.float64)) / std.astype(np.float64)).astype(np.float32)
    bad = np.argwhere(~np.isfinite(result))
    if len(bad):
        raise UserError(
            f"data.standardize: feature {bad[0][1]} of a row lies beyond float32 once scaled by the "
            "training split's spread; leave data.standardize off or rescale that column"
        )
    return result
