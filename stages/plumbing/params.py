"""params.yaml: read it and check every value a stage needs before the stage does any work.

Each parameter is a dataclass field whose metadata holds its check: a function that takes what the
YAML parser produced (any type: a huge integer, a date, a list) and returns the value the stage uses,
or raises ValueError saying what the parameter must be. One loop applies them all, so every value
YAML can produce is either taken with its obvious meaning or refused in one line.

Not pydantic (measured, 2.14): in strict mode it refuses the lists YAML gives for tuples ("Input should
be a valid tuple" for betas [0.9, 1.0], hiding which number is wrong), in lax mode it takes "10" and
true as numbers, and its import adds 0.12 s to every stage process, as long as prepare takes in all.
"""

import contextlib
import math
import os
import resource  # Unix: the stages run on Linux (and in its container)
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from stages.plumbing.errors import UserError, abbreviate, first_line
from stages.plumbing.files import open_input

PARAMS_FILE = "params.yaml"
SOURCES = ("toy", "iris", "digits", "csv", "parquet", "synthetic")
TABLES = ("csv", "parquet")  # the sources read from data.path
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adam")
DELIMITERS = (",", ";", "\t", "|")
LARGEST_INT = 2**63 - 1  # what numpy and torch hold
MAX_PARAMS_BYTES = 1 << 20  # a params.yaml is a few hundred bytes; a larger one is a mistake

Check = Callable[[Any], Any]


def integer(low: int, must: str, high: int = LARGEST_INT) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():  # `dvc exp run -S train.epochs=1e3` writes 1000.0
            value = int(value)
        if type(value) is not int or value < low:  # bool is an int subclass: refused too
            raise ValueError(must)
        if value > high:
            raise ValueError(f"{must} up to {high:,}")
        return value

    return check


def number(must: str, ok: Callable[[float], bool]) -> Check:
    def check(value: Any) -> float:
        try:
            if type(value) not in (int, float) or not (math.isfinite(float(value)) and ok(float(value))):
                raise ValueError(must)
        except OverflowError:  # an integer of hundreds of digits
            raise ValueError(must) from None
        return float(value)

    return check


def one_of(options: tuple, must: str = "") -> Check:
    def check(value: Any) -> Any:
        if not any(type(value) is type(option) and value == option for option in options):
            raise ValueError(must or f"one of {', '.join(map(str, options))}")
        return value

    return check


def names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise ValueError("a list of column names, or null for all")
    return tuple(value)


def text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    try:  # a lone surrogate ("\ud800" in YAML) is no text a file name or a column can hold
        if not isinstance(value, str) or value == "" or "\0" in value.encode("utf-8").decode():
            raise ValueError
    except (ValueError, UnicodeError):
        raise ValueError("a non-empty string of text without NUL characters") from None
    return value


def encoding(value: Any) -> str:
    try:
        "".encode(value)  # a text encoding; codecs such as base64 or rot13 raise LookupError here
    except (LookupError, TypeError, ValueError):  # ValueError: UnicodeError, as the 'undefined' codec raises
        raise ValueError("a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16") from None
    return value


def betas(value: Any) -> tuple[float, float]:
    try:
        if not isinstance(value, list | tuple):
            raise TypeError
        first, second = (FRACTION(b) for b in value)
    except (TypeError, ValueError):
        raise ValueError("two numbers from 0 up to 1, e.g. [0.9, 0.999]") from None
    return first, second


FRACTION = number("a number from 0 up to 1", lambda v: 0 <= v < 1)
BOOLEAN = one_of((True, False), "true or false")
SEED = integer(0, "an integer from 0 to 2**63 - 1")
POSITIVE = integer(1, "a positive integer")


def param(check: Check, default: Any = MISSING) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class DataParams:
    source: str = param(one_of(SOURCES))
    test_size: float = param(FRACTION, 0.0)  # 0: evaluate on the training data
    standardize: bool = param(BOOLEAN, False)  # statistics from the training split only
    seed: int = param(SEED, 0)  # the split, and the synthetic data
    path: str | None = param(text_or_none, None)  # csv, parquet: the file
    label: str | None = param(text_or_none, None)  # csv, parquet: the label column
    features: tuple[str, ...] | None = param(names, None)  # None: every other column
    delimiter: str | None = param(one_of((None, *DELIMITERS), "null (detect it) or one of ',', ';', '\\t', '|'"), None)
    encoding: str = param(encoding, "utf-8")  # csv: the text encoding (a byte-order mark is dropped)
    n_samples: int = param(integer(2, "an integer >= 2"), 1000)  # synthetic
    n_features: int = param(POSITIVE, 20)  # synthetic
    n_classes: int = param(integer(2, "an integer >= 2"), 3)  # synthetic


@dataclass(frozen=True)
class TrainParams:
    epochs: int = param(POSITIVE)  # counted as the lesson does: range(epochs + 1), so epochs + 1 passes
    lr: float = param(number("a number > 0", lambda v: v > 0))
    seed: int = param(SEED)
    device: str = param(one_of(DEVICES))
    log_every: int = param(POSITIVE)
    double_softmax: bool = param(BOOLEAN)  # low_level only: reproduce the lesson's published (buggy) costs
    batch_size: int = param(integer(0, "0 (full batch) or a positive integer"), 0)  # 0: full batch
    optimizer: str = param(one_of(OPTIMIZERS), "sgd")
    momentum: float = param(FRACTION, 0.0)  # sgd only
    betas: tuple[float, float] = param(betas, (0.9, 0.999))  # adam only
    weight_decay: float = param(number("a number >= 0", lambda v: v >= 0), 0.0)


SECTIONS = {"data": DataParams, "train": TrainParams}


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    with open_input(path, "parameters file", "run the stage from the repository root, where params.yaml is") as f:
        content = f.read(MAX_PARAMS_BYTES + 1)
    if len(content) > MAX_PARAMS_BYTES:
        raise UserError(f"{path}: over {MAX_PARAMS_BYTES:,} bytes, not a parameters file; it holds a few lines")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise UserError(f"{path}, line {line}: bytes that are not UTF-8; save it as UTF-8") from None
    try:
        # YAML 1.2, as DVC reads it: `dvc exp run -S train.lr=1e-3` writes 1e-3, a float in 1.2
        # but a string in the YAML 1.1 of PyYAML. A repeated key is an error, as it is for DVC.
        params = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as error:
        raise UserError(f"{path}: not valid YAML: {_yaml_problem(error)}; fix it") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to read; fix its syntax") from None
    except Exception as error:  # YAMLError, or what a tag's constructor raises: !!int "abc", 5,000 digits
        raise UserError(f"{path}: not valid YAML ({first_line(error)[:100]}); fix it") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections 'data' and 'train', got {abbreviate(params)}")
    unknown = [str(name) for name in params if name not in SECTIONS]
    if unknown:
        raise UserError(f"{path}: unknown section {abbreviate(unknown[0])}; the sections are data and train")
    return params


def _yaml_problem(error: MarkedYAMLError) -> str:
    """What ruamel found and where (lines counted from 1), with where the clash began if it says."""
    problem = f"{error.problem} (line {error.problem_mark.line + 1})" if error.problem_mark else str(error.problem)
    if error.context and error.context_mark and error.context_mark.line != getattr(error.problem_mark, "line", None):
        problem += f", {error.context} (line {error.context_mark.line + 1})"
    return problem.replace("\n", " ")


def _section(params: dict[str, Any], name: str) -> Any:
    """The section's dataclass, every value checked; a missing optional key takes its default."""
    params_class = SECTIONS[name]
    required = [f.name for f in fields(params_class) if f.default is MISSING]
    allowed = [f.name for f in fields(params_class)]
    if name not in params:
        raise UserError(f"params.yaml: missing section '{name}'; add it with keys {', '.join(required)}")
    section = params[name]
    if not isinstance(section, dict):
        raise UserError(f"params.yaml: section '{name}' must be a mapping of {', '.join(allowed)}, "
                        f"got {abbreviate(section)}")  # fmt: skip
    for key in section:
        if key not in allowed:
            raise UserError(f"params.yaml: unknown key '{name}.{str(key)[:60]}'; allowed in '{name}': "
                            f"{', '.join(allowed)}")  # fmt: skip
    values = {}
    for f in fields(params_class):
        if f.name not in section and f.default is MISSING:
            raise UserError(f"params.yaml: missing key '{name}.{f.name}'; add it to section '{name}'")
        try:
            if f.name in section:
                values[f.name] = f.metadata["check"](section[f.name])
        except ValueError as error:
            raise UserError(
                f"params.yaml: {name}.{f.name} must be {error}, got {abbreviate(section[f.name])}"
            ) from None
    return params_class(**values)


def memory_limit() -> int:
    """The bytes this process may use: the least of the machine's memory, its cgroup's limit (a
    container's) and its address-space limit (`ulimit -v`)."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):  # absent, or "max"
            limits.append(int(Path(cgroup_file).read_text()))
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        limits.append(address_space)
    return min(limits)


def _check_fits(names: str, values: str, needed: int, what: str) -> None:
    """Refuse sizes whose arrays cannot fit in the memory this process may use, before allocating them."""
    memory = memory_limit()
    if needed > memory:
        raise UserError(f"params.yaml: {names}={values} needs about {needed / 2**30:,.0f} GiB for {what}, but this "
                        f"process may use {memory / 2**30:,.0f} GiB; lower {names.replace(' x ', ' or ')}")  # fmt: skip


def data_params(params: dict[str, Any]) -> DataParams:
    data = _section(params, "data")
    if data.source in TABLES:
        for key, what in (("path", "the table's path"), ("label", "the label column")):
            if getattr(data, key) is None:
                raise UserError(f"params.yaml: data.{key} must be {what} when data.source is {data.source}, got None")
    if data.source == "synthetic":
        if data.n_classes > data.n_samples:
            raise UserError(f"params.yaml: data.n_classes must be at most data.n_samples ({data.n_samples}), "
                            f"got {data.n_classes}")  # fmt: skip
        # The features as drawn, as split and as standardized (float32), and their labels (int64).
        _check_fits("data.n_samples x data.n_features", f"{data.n_samples} x {data.n_features}",
                    data.n_samples * (4 * 4 * data.n_features + 3 * 8), "the table")  # fmt: skip
        _check_fits("data.n_classes x data.n_features", f"{data.n_classes} x {data.n_features}",
                    data.n_classes * 4 * 2 * data.n_features, "the class centres")  # fmt: skip
    return data


def train_params(params: dict[str, Any]) -> TrainParams:
    train = _section(params, "train")
    # Each epoch's cost: on the device, as a Python float, and as a line of the costs file.
    _check_fits("train.epochs", str(train.epochs), train.epochs * (4 + 32 + 24), "the cost of every epoch")
    return train
