"""What turns a table's columns into the model's input, fitted on the training split only: prepare fits it, the prepared
file and every model file carry it, predict applies it to new rows, the ONNX graph holds it.

A row's input vector is its numeric columns (NaN where missing), then per categorical column, in data.categorical's
order, a 0/1 entry per category of the training split, sorted (all 0 for a category never seen, all NaN where missing).
data.missing: mean fills each NaN with its input's training mean (scikit-learn's SimpleImputer); data.standardize scales
each input by the training mean and deviation."""

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stages.plumbing.process import UserError, abbreviate
from stages.plumbing.tables import Table


@dataclass(frozen=True)
class Preprocessing:
    numeric: tuple[str, ...]  # the numeric columns, in the order of the input vector
    # (categorical column, its categories) in the input vector's order, the weights' rows': a list, as stored
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()
    missing: str = "error"  # data.missing: "mean" fills in, the others refuse a missing value
    fill: np.ndarray | None = None  # per input: its training mean (data.missing: mean)
    mean: np.ndarray | None = None  # per input: the standardization (data.standardize)
    std: np.ndarray | None = None

    @property
    def features(self) -> list[str]:
        """The input vector's entries by name: a one-hot entry is `column=category`."""
        return [*self.numeric, *(f"{c}={k}" for c, categories in self.categories for k in categories)]

    def inputs(self, table: Table) -> tuple[np.ndarray, int]:
        """The rows' input vectors before filling in and scaling, and how many rows hold a category new to the model."""
        parts, unknown = [table.x], np.zeros(len(table.x), dtype=bool)
        for column, categories in self.categories:
            index = {category: i for i, category in enumerate(categories)}
            of_row = np.array([-2 if v is None else index.get(v, -1) for v in table.categorical[column]], dtype=int)
            one_hot = (of_row[:, None] == np.arange(len(categories))).astype(np.float32)
            one_hot[of_row == -2] = np.nan
            unknown |= of_row == -1
            parts.append(one_hot)
        return (np.hstack(parts) if len(parts) > 1 else table.x), int(unknown.sum())  # no copy without categories

    def apply(self, x: np.ndarray, table: str = "") -> np.ndarray:
        """Input vectors filled in and scaled, as the model takes them; `table` names predict's rows, if they are."""
        if self.fill is not None:
            x = np.where(np.isnan(x), self.fill, x)
        if self.mean is None:
            return x
        with np.errstate(over="ignore"):  # in float64, then float32, where it may overflow: checked below
            scaled = x - self.mean.astype(np.float64)  # one float64 copy of x at a time
            scaled /= self.std.astype(np.float64)
            x = scaled.astype(np.float32)
        if len(bad := np.argwhere(~np.isfinite(x))):  # a row far outside a tiny spread: beyond float32
            where = f"{table}, row {bad[0][0] + 1}" if table else "data.standardize"
            fix = "the model cannot classify it" if table else "set data.standardize: false or rescale that column"
            column = abbreviate(self.features[bad[0][1]])
            raise UserError(f"{where}: column {column} lies beyond float32 once scaled by the training spread; {fix}")
        return x

    def tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the description a tensors file stores it as (read back by from_tensors)."""
        arrays = {name: getattr(self, name) for name in ("fill", "mean", "std") if getattr(self, name) is not None}
        info = {"numeric": list(self.numeric), "categories": [[c, list(k)] for c, k in self.categories]}
        return {f"preprocessing.{name}": array for name, array in arrays.items()}, info | {"missing": self.missing}

    @classmethod
    def from_tensors(cls, arrays: dict[str, np.ndarray], info: Any) -> "Preprocessing":
        """Read back what tensors() wrote (in a file whose format the reader checked)."""
        categories = tuple((column, tuple(names)) for column, names in info["categories"])
        stored = {name: arrays.get(f"preprocessing.{name}") for name in ("fill", "mean", "std")}
        return cls(tuple(info["numeric"]), categories, info["missing"], **stored)


def fit(train: Table, missing: str, standardize: bool) -> Preprocessing:
    categories = tuple((c, tuple(sorted(set(values) - {None}))) for c, values in train.categorical.items())
    column, most = max(categories, key=lambda pair: len(pair[1]), default=("", ()))
    if len(most) > max(100, len(train.x) // 2):  # a category per row: an identifier, and a vast input
        fix = "is it an identifier? List it in data.exclude instead"
        count = f"{len(most):,} categories in {len(train.x):,} rows"
        raise UserError(f"data.categorical: column {abbreviate(column)} has {count}; {fix}")
    made = Preprocessing(train.columns or tuple(f"x{i}" for i in range(1, train.x.shape[1] + 1)), categories, missing)
    x, _ = made.inputs(train)
    if missing == "mean":
        with np.errstate(invalid="ignore"), warnings.catch_warnings(action="ignore"):
            fill = np.nanmean(x, axis=0, dtype=np.float64).astype(np.float32)  # NaN: no value at all
        if np.isnan(fill).any():
            column = made.features[int(np.flatnonzero(np.isnan(fill))[0])]
            fix = "list it in data.exclude, or fill it in yourself"
            raise UserError(f"data.missing: column {abbreviate(column)} has no value in the training split; {fix}")
        made = replace(made, fill=fill)
        x = made.apply(x)
    if standardize:  # in float64: for finite float32 inputs neither overflows (a float32 sum near 3e38 would)
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64).astype(np.float32)  # one float64 copy of x at a time
        made = replace(made, mean=mean.astype(np.float32), std=np.where(std > 0, std, np.float32(1)))  # constant: 1
    return made
