"""params.yaml: read it and check every value a stage needs before the stage does any work.

Each section is a pydantic dataclass in strict mode: a value is taken only when it is what its field says, and otherwise
refused in one line that names the field (`train.betas.1` for a list's element), what it must be and what it got. Beyond
pydantic's own checks: an integral float is that integer (`dvc exp run -S train.epochs=1e3` writes 1000.0), and a list
stands for a tuple (YAML has none)."""

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from stages.plumbing.files import open_input
from stages.plumbing.process import UserError, abbreviate

TABLES = ("csv", "parquet")  # the sources read from data.path
DELIMITERS = (",", ";", "\t", "|")


def text_encoding(value: str) -> str:
    try:
        "".encode(value)  # a text encoding; codecs such as base64 or rot13 raise LookupError here
    except (LookupError, ValueError):  # ValueError: UnicodeError, as the 'undefined' codec raises
        raise ValueError("a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16") from None
    return value


Int = Annotated[  # an integral float is that integer (the module's docstring); le: what numpy and torch hold
    int, BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v), Field(le=2**63 - 1)
]
Fraction = Annotated[float, Strict(), Field(ge=0, lt=1)]
# A column named 2020 is written `label: 2020` (and `dvc exp run -S data.label=2020` writes it so).
Text = Annotated[str, BeforeValidator(lambda v: str(v) if type(v) is int else v), Strict(), Field(min_length=1)]
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True, config=STRICT)
class DataParams:
    source: Literal["toy", "iris", "digits", "csv", "parquet", "synthetic"]
    test_size: Fraction = 0.0  # 0: evaluate on the training data
    standardize: Literal["auto", True, False] = "auto"  # statistics from the training split; auto: tables only
    seed: Annotated[Int, Field(ge=0)] = 0  # the split, and the synthetic data
    path: Text | None = None  # csv, parquet: the file
    label: Text | None = None  # csv, parquet: the label column
    features: Annotated[list[Text], Field(min_length=1)] | None = None  # None: every column but the label
    categorical: list[Text] = Field(default_factory=list)  # csv, parquet: text columns, one-hot encoded
    exclude: list[Text] = Field(default_factory=list)  # csv, parquet: columns never used as inputs (an ID)
    missing: Literal["error", "drop", "mean"] = "error"  # csv, parquet: what a missing value does
    delimiter: Literal[",", ";", "\t", "|"] | None = None  # csv: None detects it from the header line
    encoding: Annotated[str, AfterValidator(text_encoding)] = "utf-8"  # csv (a byte-order mark is dropped)
    n_samples: Annotated[Int, Field(ge=2)] = 1000  # synthetic
    n_features: Annotated[Int, Field(ge=1)] = 20  # synthetic
    n_classes: Annotated[Int, Field(ge=2)] = 3  # synthetic


@dataclass(frozen=True, config=STRICT)
class TrainParams:
    epochs: Annotated[Int, Field(ge=1)]  # counted as the lesson does: range(epochs + 1), so epochs + 1 passes
    lr: Annotated[float, Field(gt=0, le=1e6)]  # beyond, an update can overflow float32
    seed: Annotated[Int, Field(ge=0)]
    device: Literal["auto", "cpu", "cuda"]
    log_every: Annotated[Int, Field(ge=1)]
    double_softmax: bool  # low_level only: reproduce the lesson's published (buggy) costs
    batch_size: Annotated[Int, Field(ge=0)] = 0  # 0: full batch
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: Fraction = 0.0  # sgd only
    betas: Annotated[tuple[Fraction, Fraction], Field(strict=False)] = (0.9, 0.999)  # adam
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    processes: Annotated[Int, Field(ge=1, le=1024)] = 1  # 1: one plain process; more: torchrun on this machine


SECTIONS = {"data": DataParams, "train": TrainParams}
NAMES = (*SECTIONS, "predict")  # predict's values reach its command line (dvc.yaml), checked there by argparse


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    with open_input(path, "parameters file", "run the stage from the repository root, where params.yaml is") as f:
        content = f.read()
    try:
        # YAML 1.2, as DVC reads it: `dvc exp run -S train.lr=1e-3` writes 1e-3, a float in 1.2
        # but a string in the YAML 1.1 of PyYAML. A repeated key is an error, as it is for DVC.
        params = YAML(typ="safe", pure=True).load(content.decode("utf-8"))
    except (YAMLError, UnicodeDecodeError) as error:
        mark = getattr(error, "problem_mark", None)  # where ruamel found it, counted from 0
        where = f"{error.problem} (line {mark.line + 1})" if mark else " ".join(str(error).split())[:200]
        raise UserError(f"{path}: not valid YAML: {where}; fix it") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections 'data' and 'train', got {abbreviate(params)}")
    if unknown := [str(name) for name in params if name not in NAMES]:
        raise UserError(f"{path}: unknown section {abbreviate(unknown[0])}; the sections are {', '.join(NAMES)}")
    return params


def section(params: dict[str, Any], name: str) -> Any:
    """The section's dataclass, every value checked; a missing optional key takes its default."""
    fields = SECTIONS[name].__pydantic_fields__
    required = [key for key, field in fields.items() if field.is_required()]
    if not isinstance(params.get(name), dict):
        raise UserError(f"params.yaml: section '{name}' must be a mapping with keys {', '.join(required)}")
    if unknown := [str(key) for key in params[name] if key not in fields]:
        allowed = f"allowed in '{name}': {', '.join(fields)}"
        raise UserError(f"params.yaml: unknown key '{name}.{unknown[0][:60]}'; {allowed}")
    try:
        return SECTIONS[name](**params[name])
    except ValidationError as error:
        problem = error.errors()[0]  # the first, as every check names one problem
    where = ".".join(map(str, (name, *problem["loc"])))
    if problem["type"] in ("missing", "missing_argument") and len(problem["loc"]) == 1:
        raise UserError(f"params.yaml: missing key '{where}'; add it to section '{name}'")
    message = problem["msg"].replace("a valid tuple", "a list")  # YAML has lists, no tuples
    must, shaped = re.subn(r"^(Input should be|Value error,) ", "must be ", message)  # pydantic's, and ours above
    must = must if shaped else f"is wrong: {message[0].lower()}{message[1:]}"  # "Tuple should have at most 2 items"
    raise UserError(f"params.yaml: {where} {must}, got {abbreviate(problem['input'])}")


def data_params(params: dict[str, Any]) -> DataParams:
    data = section(params, "data")
    for key, what in (("path", "the table's path"), ("label", "the label column")):
        if data.source in TABLES and getattr(data, key) is None:
            raise UserError(f"params.yaml: data.{key} must be {what} when data.source is {data.source}, got None")
    return data
