"""The datasets, and the prepared-data file that `prepare` writes and the other stages read."""

from dataclasses import dataclass
from pathlib import Path

import torch

from stages.errors import UserError
from stages.files import save_torch_atomic

# The lesson's toy set: 8 samples, 4 features, 3 classes.
TOY_X = [[1, 2, 1, 1], [2, 1, 3, 2], [3, 1, 3, 4], [4, 1, 5, 5],
         [1, 7, 5, 5], [1, 2, 5, 6], [1, 6, 6, 6], [1, 7, 7, 7]]  # fmt: skip
TOY_Y = [2, 2, 2, 1, 1, 1, 0, 0]


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32, (samples, features)
    y: torch.Tensor  # int64 class indices, (samples,)


@dataclass(frozen=True)
class Prepared:
    train: Split
    eval: Split  # what `evaluate` scores; for the toy set it is the training data, as in the lesson
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.train.x.shape[1]


def toy() -> Prepared:
    split = Split(torch.tensor(TOY_X, dtype=torch.float32), torch.tensor(TOY_Y, dtype=torch.int64))
    return Prepared(train=split, eval=split, n_classes=3)


# `data.source` names one of these; each returns the whole prepared dataset.
SOURCES = {"toy": toy}


def save_prepared(prepared: Prepared, path: str | Path) -> None:
    tensors = {
        "train_x": prepared.train.x,
        "train_y": prepared.train.y,
        "eval_x": prepared.eval.x,
        "eval_y": prepared.eval.y,
        "n_classes": prepared.n_classes,
    }
    save_torch_atomic(tensors, path)


def load_prepared(path: str | Path) -> Prepared:
    if not Path(path).is_file():
        raise UserError(f"{path}: prepared data not found; run `dvc repro prepare` first")
    tensors = torch.load(path, weights_only=True)
    return Prepared(
        train=Split(tensors["train_x"], tensors["train_y"]),
        eval=Split(tensors["eval_x"], tensors["eval_y"]),
        n_classes=tensors["n_classes"],
    )
