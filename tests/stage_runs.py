"""What the tests of the stages share: their command lines, params.yaml with one value changed, a stage run in
this process as its own process would run it, and a stage run as a process."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from stages import evaluate, predict, prepare, train
from stages.plumbing.process import boundary

REPO = Path(__file__).resolve().parent.parent
GOOD_PARAMS = YAML(typ="safe").load((REPO / "params.yaml").read_text())
TRAIN_ARGS = ["low_level", "data/prepared.safetensors", "models/low_level.safetensors", "plots/cost/low_level.tsv",
              "plots/test_cost/low_level.tsv", "models/low_level.onnx"]  # fmt: skip
EVALUATE_ARGS = ["data/prepared.safetensors", "models/low_level.safetensors", "metrics/low_level.json",
                 "plots/confusion/low_level.csv"]  # fmt: skip
PREDICT_ARGS = ["models/low_level.safetensors", "new.csv", "predictions.csv"]
ARGS = {"prepare": ["out.safetensors", "new_rows.csv"], "train": TRAIN_ARGS, "evaluate": EVALUATE_ARGS,
        "predict": PREDICT_ARGS}  # fmt: skip
MAINS = {"prepare": prepare.main, "train": train.main, "evaluate": evaluate.main, "predict": predict.main}
RAW = "__raw__"


def params_text(section: str | None = None, key: str | None = None, value: object = None, raw: str = "") -> str:
    """params.yaml as committed, with section.key set to `value` (or to the YAML text `raw`); with a
    section and no key, without that section."""
    params = {name: dict(values) for name, values in GOOD_PARAMS.items()}
    if key is not None:
        params[section][key] = RAW if raw else value
    elif section is not None:
        del params[section]
    yaml, text = YAML(typ="safe"), io.StringIO()
    yaml.default_flow_style = False
    yaml.dump(params, text)
    return text.getvalue().replace(RAW, raw)


def run(stage: str, argv: list[str] | None = None, status: int = 1) -> str:
    """Run a stage in this process inside its error boundary, as its process does; return the line it
    ends with, once it ended with `status`."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert boundary("stage", lambda: MAINS[stage](ARGS[stage] if argv is None else argv)) == status
    assert stderr.getvalue().endswith("\n")
    return stderr.getvalue().splitlines()[-1]


def stage_process(workdir: Path, stage: str, args: list[str] | None = None, env: dict | None = None, **popen):
    """The stage as its own process, `python -m stages STAGE ARGS`, in `workdir`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    command = [sys.executable, "-m", "stages", stage, *(ARGS[stage] if args is None else args)]
    return subprocess.Popen(command, cwd=workdir, env=env, text=True, **popen)


def files(directory: Path) -> dict[str, bytes]:
    """Every file under `directory`, by its path, with its bytes."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()}
