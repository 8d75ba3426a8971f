"""Stage `predict`: classify new rows with a trained model, from the model file alone: every column the
model reads (numeric or categorical, by name, in any order; others are ignored) and the preprocessing
it was trained with (filling in, scaling, one-hot encoding). The output is a CSV: `row` (the input's
data rows counted from 1, in input order), the predicted class, and the probability of each class
(`p_<class>`). No torch: a linear map in numpy."""

import argparse

import numpy as np

from stages.classifier import Classifier, load_classifier, log_probabilities
from stages.plumbing.files import StageArguments, write_outputs
from stages.plumbing.params import DELIMITERS, text_encoding
from stages.plumbing.process import listing
from stages.plumbing.tables import Table, csv_blocks, read_table

FIX = "give the path of a model file that `dvc repro` trained, e.g. models/high_level.safetensors"


def predict(model: Classifier, rows: Table, table: str = "the table") -> tuple[np.ndarray, int, int]:
    """The probability of each class for each row (float64), and how many rows held a category the
    training split never had, and how many had a value filled in."""
    x, unknown = model.preprocessing.inputs(rows)
    filled = int(np.isnan(x).any(axis=1).sum())
    return np.exp(log_probabilities(model, model.preprocessing.apply(x, table))), unknown, filled


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("predict", __doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_input("model", help="a trained model, e.g. models/high_level.safetensors")
    parser.add_input("table", help="the rows to classify: a CSV or Parquet file")
    parser.add_output("out", help="where to write the predictions (CSV), e.g. predictions.csv")
    delimiters = ", ".join(map(repr, DELIMITERS))
    parser.add_argument("--delimiter", choices=DELIMITERS, metavar="D", help=f"{delimiters} (default: the header's)")
    parser.add_argument("--encoding", default="utf-8", type=text_encoding, help="a CSV's encoding (default: utf-8)")
    args = parser.parse_args(argv)
    model = load_classifier(args.model, FIX)
    pre = model.preprocessing
    missing = f"the model was trained with data.missing: {pre.missing}, so it needs every value; fill it in"
    missing = None if pre.missing == "mean" else missing
    texts = [column for column, _ in pre.categories]
    rows = read_table(args.table, None, pre.numeric, texts, (), missing, args.delimiter, args.encoding)
    probabilities, unknown, filled = predict(model, rows, args.table)
    predicted = probabilities.argmax(1)
    counts = np.bincount(predicted, minlength=len(model.classes)).tolist()
    found = listing([f"{name}: {count}" for name, count in zip(model.classes, counts, strict=True)])
    how = f"of {args.table} classified by {model.info['impl']} as {found}"
    summary = f"predict: {len(rows.x)} row{'s' * (len(rows.x) != 1)} {how}"
    summary += f"; {unknown} with a category new to the model" * bool(unknown) + f"; {filled} filled in" * bool(filled)
    columns = {"row": np.arange(1, len(predicted) + 1), "predicted": np.array(model.classes, dtype=object)[predicted]}
    columns |= {f"p_{c}": probabilities[:, i].astype(np.float32) for i, c in enumerate(model.classes)}
    write_outputs({args.out: csv_blocks(columns)}, summary, args.inputs)
