"""params.yaml: read it and check every value a stage needs before the stage does any work."""

import codecs
import math
import os
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.error import MarkedYAMLError

from stages.errors import UserError, abbreviate

PARAMS_FILE = "params.yaml"
SOURCES = ("toy", "iris", "digits", "csv", "parquet", "synthetic")
TABLES = ("csv", "parquet")  # the sources read from data.path
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adam")
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class DataParams:
    source: str
    test_size: float = 0.0  # 0: evaluate on the training data, as the lesson does
    standardize: bool = False  # statistics from the training split only
    seed: int = 0  # the split, and the synthetic data
    path: str | None = None  # csv: the file
    label: str | None = None  # csv: the label column
    features: tuple[str, ...] | None = None  # csv: the feature columns; None: every other column
    delimiter: str | None = None  # csv: one of DELIMITERS; None: the header line's most frequent of them
    encoding: str = "utf-8"  # csv: the text encoding (a byte-order mark is dropped)
    n_samples: int = 1000  # synthetic
    n_features: int = 20  # synthetic
    n_classes: int = 3  # synthetic


@dataclass(frozen=True)
class TrainParams:
    epochs: int  # counted as the lesson does: range(epochs + 1), so epochs + 1 passes over the data
    lr: float
    seed: int
    device: str
    log_every: int
    double_softmax: bool  # low_level only: reproduce the lesson's published (buggy) costs
    batch_size: int = 0  # 0: full batch, as in the lesson
    optimizer: str = "sgd"
    momentum: float = 0.0  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam only
    weight_decay: float = 0.0


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; params.yaml must be a file in the repository root")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; run the stage from the repository root") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise UserError(f"{path}, line {line}: bytes that are not UTF-8; save it as UTF-8") from None
    try:
        # YAML 1.2, as DVC reads it: `dvc exp run -S train.lr=1e-3` writes 1e-3, a float in 1.2
        # but a string in the YAML 1.1 of PyYAML. A repeated key is an error, as it is for DVC.
        params = YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as error:
        raise UserError(f"{path}: not valid YAML: {_yaml_problem(error)}; fix it") from None
    except YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({abbreviate(str(error))}); fix its syntax") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to read; fix its syntax") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections 'data' and 'train', got {abbreviate(params)}")
    return params


def _yaml_problem(error: MarkedYAMLError) -> str:
    """What ruamel found and where (lines counted from 1), with where the clash began if it says."""
    problem = f"{error.problem} (line {error.problem_mark.line + 1})" if error.problem_mark else str(error.problem)
    if error.context and error.context_mark and error.context_mark.line != getattr(error.problem_mark, "line", None):
        problem += f", {error.context} (line {error.context_mark.line + 1})"
    return problem.replace("\n", " ")


def _section(params: dict[str, Any], name: str, params_class: type) -> dict[str, Any]:
    """The section's values, checked for unknown and missing keys. The dataclass's fields are the keys;
    those with a default are optional, and the default fills in when the key is left out."""
    required = tuple(field.name for field in fields(params_class) if field.default is MISSING)
    optional = {field.name: field.default for field in fields(params_class) if field.default is not MISSING}
    allowed = (*required, *optional)
    if name not in params:
        raise UserError(f"params.yaml: missing section '{name}'; add it with keys {', '.join(required)}")
    section = params[name]
    if not isinstance(section, dict):
        raise UserError(
            f"params.yaml: section '{name}' must be a mapping of {', '.join(allowed)}, got {abbreviate(section)}"
        )
    for key in section:
        if key not in allowed:
            raise UserError(
                f"params.yaml: unknown key '{name}.{str(key)[:60]}'; allowed in '{name}': {', '.join(allowed)}"
            )
    for key in required:
        if key not in section:
            raise UserError(f"params.yaml: missing key '{name}.{key}'; add it to section '{name}'")
    return {**optional, **section}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_encoding(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"params.yaml: {name} must be {allowed}, got {abbreviate(value)}")


def _check_fits(names: str, values: str, needed: int, what: str) -> None:
    """Refuse sizes whose arrays cannot fit in this machine's memory (`needed` bytes), before allocating them."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise UserError(f"params.yaml: {names}={values} needs about {needed / 2**30:,.0f} GiB for {what}, but this "
                        f"machine has {memory / 2**30:,.0f} GiB; lower {names.replace(' x ', ' or ')}")  # fmt: skip


def data_params(params: dict[str, Any]) -> DataParams:
    values = _section(params, "data", DataParams)
    source = values["source"]
    _check(isinstance(source, str) and source in SOURCES, "data.source", source, f"one of {', '.join(SOURCES)}")
    test_size, standardize, seed = values["test_size"], values["standardize"], values["seed"]
    _check(_is_number(test_size) and 0 <= test_size < 1, "data.test_size", test_size, "a number from 0 up to 1")
    _check(isinstance(standardize, bool), "data.standardize", standardize, "true or false")
    _check(_is_int(seed) and 0 <= seed < 2**63, "data.seed", seed, "an integer from 0 to 2**63 - 1")
    path, label, features = values["path"], values["label"], values["features"]
    if source in TABLES:
        _check(
            isinstance(path, str) and path != "", "data.path", path, f"the table's path when data.source is {source}"
        )
        _check(
            isinstance(label, str) and label != "",
            "data.label",
            label,
            f"the label column when data.source is {source}",
        )
    is_names = isinstance(features, list) and len(features) > 0 and all(isinstance(f, str) for f in features)
    _check(features is None or is_names, "data.features", features, "a list of column names, or null for all")
    delimiter, encoding = values["delimiter"], values["encoding"]
    _check(delimiter is None or delimiter in DELIMITERS, "data.delimiter", delimiter,
           "null (detect it) or one of " + ", ".join(map(repr, DELIMITERS)))  # fmt: skip
    _check(isinstance(encoding, str) and _is_encoding(encoding), "data.encoding", encoding,
           "a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16")  # fmt: skip
    n_samples, n_features, n_classes = values["n_samples"], values["n_features"], values["n_classes"]
    _check(_is_int(n_samples) and n_samples >= 2, "data.n_samples", n_samples, "an integer >= 2")
    _check(_is_int(n_features) and n_features >= 1, "data.n_features", n_features, "a positive integer")
    _check(_is_int(n_classes) and n_classes >= 2, "data.n_classes", n_classes, "an integer >= 2")
    if source == "synthetic":
        _check(n_classes <= n_samples, "data.n_classes", n_classes, f"at most data.n_samples ({n_samples})")
        # The features as drawn, as split and as standardized (float32), and their labels (int64).
        _check_fits("data.n_samples x data.n_features", f"{n_samples} x {n_features}",
                    n_samples * (4 * 4 * n_features + 3 * 8), "the table")  # fmt: skip
        _check_fits("data.n_classes x data.n_features", f"{n_classes} x {n_features}", n_classes * 4 * 2 * n_features,
                    "the class centres")  # fmt: skip
    return DataParams(
        source, float(test_size), standardize, seed, path, label,
        tuple(features) if features is not None else None, delimiter, encoding, n_samples, n_features, n_classes,
    )  # fmt: skip


def train_params(params: dict[str, Any]) -> TrainParams:
    values = _section(params, "train", TrainParams)
    epochs, lr, seed = values["epochs"], values["lr"], values["seed"]
    device, log_every, double_softmax = values["device"], values["log_every"], values["double_softmax"]
    _check(_is_int(epochs) and epochs >= 1, "train.epochs", epochs, "a positive integer")
    # Each epoch's cost: on the device, as a Python float, and as a line of the costs file.
    _check_fits("train.epochs", str(epochs), epochs * (4 + 32 + 24), "the cost of every epoch")
    _check(_is_number(lr) and lr > 0, "train.lr", lr, "a number > 0")
    _check(_is_int(seed) and 0 <= seed < 2**63, "train.seed", seed, "an integer from 0 to 2**63 - 1")
    _check(device in DEVICES, "train.device", device, f"one of {', '.join(DEVICES)}")
    _check(_is_int(log_every) and log_every >= 1, "train.log_every", log_every, "a positive integer")
    _check(isinstance(double_softmax, bool), "train.double_softmax", double_softmax, "true or false")
    batch_size, optimizer = values["batch_size"], values["optimizer"]
    momentum, betas, weight_decay = values["momentum"], values["betas"], values["weight_decay"]
    _check(
        _is_int(batch_size) and batch_size >= 0, "train.batch_size", batch_size, "0 (full batch) or a positive integer"
    )
    _check(optimizer in OPTIMIZERS, "train.optimizer", optimizer, f"one of {', '.join(OPTIMIZERS)}")
    _check(_is_number(momentum) and 0 <= momentum < 1, "train.momentum", momentum, "a number from 0 up to 1")
    betas_ok = isinstance(betas, list | tuple) and len(betas) == 2 and all(_is_number(b) and 0 <= b < 1 for b in betas)
    _check(betas_ok, "train.betas", betas, "two numbers from 0 up to 1, e.g. [0.9, 0.999]")
    _check(_is_number(weight_decay) and weight_decay >= 0, "train.weight_decay", weight_decay, "a number >= 0")
    return TrainParams(
        epochs, float(lr), seed, device, log_every, double_softmax,
        batch_size, optimizer, float(momentum), (float(betas[0]), float(betas[1])), float(weight_decay),
    )  # fmt: skip
