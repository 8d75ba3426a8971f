"""params.yaml: read it and check every value a stage needs before the stage does any work."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML, YAMLError

from stages.data import SOURCES
from stages.errors import UserError

PARAMS_FILE = "params.yaml"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DataParams:
    source: str


@dataclass(frozen=True)
class TrainParams:
    epochs: int  # counted as the lesson does: range(epochs + 1), so epochs + 1 updates
    lr: float
    seed: int
    device: str
    log_every: int
    double_softmax: bool  # low_level only: reproduce the lesson's published (buggy) costs


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found; run the stage from the repository root") from None
    try:
        # YAML 1.2, as DVC reads it: `dvc exp run -S train.lr=1e-3` writes 1e-3, a float in 1.2
        # but a string in the YAML 1.1 of PyYAML.
        params = YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        problem = str(error).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({problem}); fix its syntax") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected sections 'data' and 'train', got {params!r}")
    return params


def _section(params: dict[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if name not in params:
        raise UserError(f"params.yaml: missing section '{name}'; add it with keys {', '.join(keys)}")
    section = params[name]
    if not isinstance(section, dict):
        raise UserError(f"params.yaml: section '{name}' must be a mapping of {', '.join(keys)}, got {section!r}")
    for key in section:
        if key not in keys:
            raise UserError(f"params.yaml: unknown key '{name}.{key}'; allowed in '{name}': {', '.join(keys)}")
    for key in keys:
        if key not in section:
            raise UserError(f"params.yaml: missing key '{name}.{key}'; add it to section '{name}'")
    return section


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UserError(f"params.yaml: {name} must be {allowed}, got {value!r}")


def data_params(params: dict[str, Any]) -> DataParams:
    section = _section(params, "data", ("source",))
    source = section["source"]
    _check(isinstance(source, str) and source in SOURCES, "data.source", source, f"one of {', '.join(SOURCES)}")
    return DataParams(source=source)


def train_params(params: dict[str, Any]) -> TrainParams:
    section = _section(params, "train", ("epochs", "lr", "seed", "device", "log_every", "double_softmax"))
    epochs, lr, seed = section["epochs"], section["lr"], section["seed"]
    device, log_every, double_softmax = section["device"], section["log_every"], section["double_softmax"]
    _check(_is_int(epochs) and epochs >= 1, "train.epochs", epochs, "a positive integer")
    is_number = (_is_int(lr) or isinstance(lr, float)) and math.isfinite(lr)
    _check(is_number and lr > 0, "train.lr", lr, "a number > 0")
    _check(_is_int(seed) and 0 <= seed < 2**63, "train.seed", seed, "an integer from 0 to 2**63 - 1")
    _check(device in DEVICES, "train.device", device, f"one of {', '.join(DEVICES)}")
    _check(_is_int(log_every) and log_every >= 1, "train.log_every", log_every, "a positive integer")
    _check(isinstance(double_softmax, bool), "train.double_softmax", double_softmax, "true or false")
    return TrainParams(epochs, float(lr), seed, device, log_every, double_softmax)
