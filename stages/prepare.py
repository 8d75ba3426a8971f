"""Stage `prepare`: turn the dataset named by `data.source` into tensors under data/, and write the rows that
predict classifies in the pipeline: the toy's new rows, or else the evaluation rows as the table had them."""

import numpy as np

from stages import data
from stages.plumbing.files import StageArguments, identities, write_outputs
from stages.plumbing.params import TABLES, DataParams, data_params, load_params
from stages.plumbing.process import listing
from stages.plumbing.tables import Table, csv_blocks


def prepare(params: DataParams) -> tuple[data.Prepared, Table, int]:
    """The prepared data, the rows to predict, and how many rows were left out for missing values."""
    table, left_out = data.without_missing(data.load_table(params), params.missing)  # the built-in sources have no gaps
    name = params.path if params.source in TABLES else f"data.source={params.source}"
    data.check_table(table, name, params.label, left_out)
    train, evaluation = data.split(table, params.test_size, params.seed)
    toy_new = Table(np.float32(data.TOY_NEW), np.zeros(len(data.TOY_NEW), np.int64), (), data.TOY_COLUMNS)
    return data.prepare_split(train, evaluation, params), toy_new if params.source == "toy" else evaluation, left_out


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("prepare", __doc__)
    parser.add_output("out", help="where to write the prepared tensors, e.g. data/prepared.safetensors")
    parser.add_output("new_rows", help="where to write the rows to predict (CSV), e.g. data/new_rows.csv")
    args = parser.parse_args(argv)
    params = data_params(load_params())
    if params.source in TABLES:  # what it is before it is read
        args.inputs |= identities([params.path])
    prepared, new_rows, left_out = prepare(params)
    summary = (
        f"{params.source}: {len(prepared.train.y)} training rows, "
        + (f"{len(prepared.eval.y)} test rows, " if prepared.has_test else "evaluated on the training rows, ")
        + (f"{left_out} left out for missing values (data.missing: {params.missing}), " if left_out else "")
        + ("column 1 (no name) read as row names and left out, " if new_rows.row_names else "")
        + f"{prepared.train.x.shape[1]} features, classes "
        + listing([f"{i}={c}" for i, c in enumerate(prepared.classes)])
    )
    # The rows as the table had them (and, from a table, their classes: a row is never blank then).
    columns = {column: new_rows.x[:, j] for j, column in enumerate(new_rows.columns)} | new_rows.categorical
    if params.source in TABLES:
        columns[params.label] = np.array(new_rows.classes, dtype=object)[new_rows.y]
    write_outputs({args.out: data.prepared_bytes(prepared), args.new_rows: csv_blocks(columns)}, summary, args.inputs)
