"""Stage `prepare`: turn the dataset named by `data.source` into tensors under data/."""

import argparse

from stages.data import SOURCES, Prepared, save_prepared
from stages.errors import run_stage
from stages.params import DataParams, data_params, load_params


def prepare(params: DataParams) -> Prepared:
    return SOURCES[params.source]()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="where to write the prepared tensors, e.g. data/prepared.pt")
    args = parser.parse_args(argv)
    params = data_params(load_params())
    save_prepared(prepare(params), args.out)


if __name__ == "__main__":
    run_stage("prepare", main)
