"""Stage `predict`: classify the rows of a table (CSV or Parquet) with a trained model file, and nothing
else: the model holds its columns, its preprocessing and its class names.

The table needs the model's columns, by name and in any order (other columns, the label among them, are
left alone). The output is a CSV: `row` (the input's data rows counted from 1, in input order), the
predicted class, and the probability of each class (`p_<class>`). No torch: a linear map in numpy."""

import argparse

import numpy as np

from stages.classifier import Classifier, load_classifier, log_probabilities
from stages.plumbing.errors import UserError, listing, printable
from stages.plumbing.files import StageArguments, open_input, write_outputs
from stages.plumbing.params import DELIMITERS
from stages.plumbing.tables import Table, read_csv, read_parquet

FIX = "give the path of a model file that `dvc repro` trained, e.g. models/high_level.safetensors"


def read_rows(model: Classifier, path: str, delimiter: str | None, encoding: str) -> Table:
    """The table's rows, with the columns the model reads; a missing value is an error unless the model
    fills it in."""
    pre = model.preprocessing
    missing = None
    if pre.missing != "mean":
        missing = f"the model was trained with data.missing: {pre.missing}, so it needs every value; fill it in"
    with open_input(path, "table", "check the path") as f:
        parquet = f.read(4) == b"PAR1"  # a Parquet file's first bytes, whatever its name
    if parquet:
        return read_parquet(path, None, pre.numeric, pre.text_columns, missing)
    return read_csv(path, None, pre.numeric, delimiter, encoding, pre.text_columns, missing)


def predict(model: Classifier, rows: Table, table: str = "the table") -> tuple[np.ndarray, int, int]:
    """The probability of each class for each row (float64), and how many rows held a category the
    training split never had, and how many had a value filled in."""
    x, unknown = model.preprocessing.inputs(rows)
    filled = int(np.isnan(x).any(axis=1).sum())
    return np.exp(log_probabilities(model, model.preprocessing.apply(x, table))), unknown, filled


def predictions_csv(model: Classifier, probabilities: np.ndarray) -> bytes:
    """One line per row: its number, the predicted class and each class's probability (as float32)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pa_csv

    classes = np.array(model.classes, dtype=object)
    columns = {"row": pa.array(np.arange(1, len(probabilities) + 1)), "predicted": classes[probabilities.argmax(1)]}
    columns |= {f"p_{c}": pa.array(probabilities[:, i].astype(np.float32)) for i, c in enumerate(model.classes)}
    sink = io.BytesIO()
    pa_csv.write_csv(pa.table(columns), sink)
    return sink.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("predict", __doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_input("model", help="a trained model, e.g. models/high_level.safetensors")
    parser.add_input("table", help="the rows to classify: a CSV or Parquet file")
    parser.add_output("out", help="where to write the predictions (CSV), e.g. predictions.csv")
    delimiters = ", ".join(map(repr, DELIMITERS))
    parser.add_argument(
        "--delimiter", choices=DELIMITERS, metavar="D", help=f"{delimiters} (default: the header line's)"
    )
    parser.add_argument("--encoding", default="utf-8", help="a CSV's text encoding (default: utf-8)")
    args = parser.parse_args(argv)
    try:
        "".encode(args.encoding)
    except (LookupError, ValueError):
        raise UserError(f"--encoding {printable(args.encoding)}: not a text encoding; e.g. utf-8, latin-1") from None
    model = load_classifier(args.model, FIX)
    rows = read_rows(model, args.table, args.delimiter, args.encoding)
    probabilities, unknown, filled = predict(model, rows, args.table)
    counts = np.bincount(probabilities.argmax(1), minlength=len(model.classes))
    found = listing([f"{name}: {count}" for name, count in zip(model.classes, counts.tolist(), strict=True)])
    notes = [f"{unknown} with a category new to the model"] * bool(unknown) + [f"{filled} filled in"] * bool(filled)
    rows = f"{len(probabilities)} row{'s' * (len(probabilities) != 1)}"
    summary = f"predict: {rows} of {args.table} classified by {model.info['impl']} as {found}"
    summary += "".join(f"; {note}" for note in notes)
    write_outputs({args.out: predictions_csv(model, probabilities)}, summary, args.inputs)
