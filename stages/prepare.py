"""Stage `prepare`: turn the dataset named by `data.source` into tensors under data/."""

import sys

from stages.data import Prepared, check_table, load_table, prepare_table, prepared_bytes
from stages.plumbing.errors import listing, printable
from stages.plumbing.files import StageArguments, write_outputs
from stages.plumbing.params import TABLES, DataParams, data_params, load_params


def prepare(params: DataParams) -> Prepared:
    table = load_table(params)
    if params.source in TABLES:
        check_table(table, params.path, params.label)
    else:
        check_table(table, f"data.source={params.source}")
    return prepare_table(table, params)


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("prepare", __doc__)
    parser.add_output("out", help="where to write the prepared tensors, e.g. data/prepared.safetensors")
    args = parser.parse_args(argv)
    params = data_params(load_params())
    prepared = prepare(params)
    classes = list(enumerate(prepared.classes))
    print(
        f"{params.source}: {len(prepared.train.y)} training rows, "
        + (f"{len(prepared.eval.y)} test rows, " if prepared.has_test else "evaluated on the training rows, ")
        + f"{prepared.n_features} features, classes {printable(listing([f'{i}={c}' for i, c in classes]))}",
        file=sys.stderr,
    )
    write_outputs({args.out: prepared_bytes(prepared)})  # last: a closed stderr ends the stage before it
