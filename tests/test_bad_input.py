"""Each user mistake gets one line that names the parameter or file and the fix, exit status 1,
and no output written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from stages import evaluate, prepare, train
from stages.data import prepare_table, save_prepared, toy
from stages.errors import run_stage
from stages.params import DataParams

REPO = Path(__file__).resolve().parent.parent
GOOD_PARAMS = YAML(typ="safe").load((REPO / "params.yaml").read_text())
TRAIN_ARGS = [
    "low_level", "data/prepared.pt", "models/low_level.pt", "plots/cost/low_level.tsv", "plots/test_cost/low_level.tsv"
]  # fmt: skip
EVALUATE_ARGS = [
    "data/prepared.pt", "models/low_level.pt", "plots/cost/low_level.tsv", "metrics/low_level.json",
    "plots/confusion/low_level.csv",
]  # fmt: skip


def write_params(directory: Path, section: str | None = None, key: str | None = None, value=None, text=None):
    params = {name: dict(values) for name, values in GOOD_PARAMS.items()}
    if key is not None:
        params[section][key] = value
    elif section is not None:
        del params[section]
    if text is None:
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        with open(directory / "params.yaml", "w") as f:
            yaml.dump(params, f)
    else:
        (directory / "params.yaml").write_text(text)


def run(stage_main, argv: list[str]) -> str:
    """Run a stage in-process as its __main__ does; return the one line it exits with.

    sys.exit("message") exits with status 1 after printing the message: the last test here checks
    that for a real process."""
    with pytest.raises(SystemExit) as exit_info:
        run_stage("stage", lambda: stage_main(argv))
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message
    return message


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_prepared(prepare_table(toy(), DataParams(source="toy")), tmp_path / "data" / "prepared.pt")
    return tmp_path


def no_train_outputs(directory: Path) -> bool:
    return not (directory / "models").exists() and not (directory / "plots").exists()


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("device", "tpu", "train.device must be one of auto, cpu, cuda, got 'tpu'"),
        ("lr", 0, "train.lr must be a number > 0, got 0"),
        ("lr", -0.1, "train.lr must be a number > 0, got -0.1"),
        ("lr", "fast", "train.lr must be a number > 0, got 'fast'"),
        ("lr", float("nan"), "train.lr must be a number > 0, got nan"),
        ("epochs", 0, "train.epochs must be a positive integer, got 0"),
        ("epochs", 1.5, "train.epochs must be a positive integer, got 1.5"),
        ("epochs", "ten", "train.epochs must be a positive integer, got 'ten'"),
        ("epochs", True, "train.epochs must be a positive integer, got True"),
        ("seed", -1, "train.seed must be an integer from 0 to 2**63 - 1, got -1"),
        ("log_every", 0, "train.log_every must be a positive integer, got 0"),
        ("double_softmax", "yes please", "train.double_softmax must be true or false, got 'yes please'"),
        (
            "lrr",
            0.1,
            "unknown key 'train.lrr'; allowed in 'train': epochs, lr, seed, device, log_every, double_softmax, "
            "batch_size, optimizer, momentum, betas, weight_decay",
        ),
    ],
)
def test_bad_train_param(workdir, key, value, expected):
    write_params(workdir, "train", key, value)
    assert run(train.main, TRAIN_ARGS) == f"stage: error: params.yaml: {expected}"
    assert no_train_outputs(workdir)


def test_missing_train_section(workdir):
    write_params(workdir, "train")
    message = run(train.main, TRAIN_ARGS)
    assert message == (
        "stage: error: params.yaml: missing section 'train'; "
        "add it with keys epochs, lr, seed, device, log_every, double_softmax"
    )
    assert no_train_outputs(workdir)


def test_missing_train_key(workdir):
    params = {name: dict(values) for name, values in GOOD_PARAMS.items()}
    del params["train"]["lr"]
    (workdir / "params.yaml").write_text(
        "data:\n  source: toy\ntrain:\n" + "".join(f"  {k}: {str(v).lower()}\n" for k, v in params["train"].items())
    )
    assert run(train.main, TRAIN_ARGS).endswith("missing key 'train.lr'; add it to section 'train'")
    assert no_train_outputs(workdir)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (
            "data",
            "source",
            "mnist",
            "params.yaml: data.source must be one of toy, iris, digits, csv, synthetic, got 'mnist'",
        ),
        (
            "data",
            "pathh",
            "x.csv",
            "params.yaml: unknown key 'data.pathh'; allowed in 'data': source, test_size, "
            "standardize, seed, path, label, features, n_samples, n_features, n_classes",
        ),
        ("data", None, None, "params.yaml: missing section 'data'; add it with keys source"),
        ("data", "test_size", 1, "params.yaml: data.test_size must be a number from 0 up to 1, got 1"),
        ("data", "test_size", -0.2, "params.yaml: data.test_size must be a number from 0 up to 1, got -0.2"),
        ("data", "standardize", "yes", "params.yaml: data.standardize must be true or false, got 'yes'"),
        (
            "data",
            "features",
            "alcohol",
            "params.yaml: data.features must be a list of column names, or null for all, got 'alcohol'",
        ),
        ("data", "n_classes", 1, "params.yaml: data.n_classes must be an integer >= 2, got 1"),
    ],
)
def test_bad_data_param(tmp_path, monkeypatch, section, key, value, expected):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, section, key, value)
    assert run(prepare.main, ["data/prepared.pt"]) == f"stage: error: {expected}"
    assert not (tmp_path / "data").exists()


def test_csv_source_without_a_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: csv\n  path: datasets/t.csv\n")
    message = run(prepare.main, ["data/prepared.pt"])
    assert message == "stage: error: params.yaml: data.label must be the label column when data.source is csv, got None"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x,y\n1,a\n2,b\n", "datasets/t.csv: no label column 'label' (data.label); columns: x, y"),
        ("x,label\n1,a\nnan,b\n", "datasets/t.csv, line 3: column 'x' is nan; only finite numbers are allowed"),
        ("x,label\n1,a\n2,a\n", "datasets/t.csv: fewer than two classes (a); a classifier needs two or more"),
        ("x,label\n1,a\n2,b\n3,b\n", "data.test_size=0.6 leaves class 'a' (1 rows) without training rows; lower"),
    ],
)
def test_bad_csv_through_the_stage(tmp_path, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "t.csv").write_text(text)
    (tmp_path / "params.yaml").write_text(
        "data:\n  source: csv\n  path: datasets/t.csv\n  label: label\n  test_size: 0.6\n"
    )
    assert run(prepare.main, ["data/prepared.pt"]).startswith(f"stage: error: {expected}")
    assert not (tmp_path / "data").exists()


def test_params_naming_a_source_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: iris\n")
    prepare.main(["data/prepared.pt"])
    assert (tmp_path / "data" / "prepared.pt").is_file()


def test_params_file_that_is_not_yaml(workdir):
    write_params(workdir, text="train: [epochs: 1\n")
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: params.yaml: not valid YAML (")
    assert message.endswith("); fix its syntax")
    assert no_train_outputs(workdir)


def test_no_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = run(prepare.main, ["data/prepared.pt"])
    assert message == "stage: error: params.yaml: file not found; run the stage from the repository root"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(workdir):
    write_params(workdir, "train", "device", "cuda")
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: train.device is 'cuda' but CUDA is not available here (torch ")
    assert message.endswith("use 'auto' or 'cpu'")
    assert no_train_outputs(workdir)


def test_missing_prepared_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    message = run(train.main, TRAIN_ARGS)
    assert message == "stage: error: data/prepared.pt: prepared data not found; run `dvc repro prepare` first"
    assert no_train_outputs(tmp_path)


def test_prepared_data_that_is_not_a_torch_file(workdir):
    write_params(workdir)
    (workdir / "data" / "prepared.pt").write_text("x,y\n1,2\n")
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: data/prepared.pt: not a readable prepared data (")
    assert message.endswith("); run `dvc repro prepare` first")
    assert no_train_outputs(workdir)


def test_a_model_in_place_of_the_prepared_data(workdir):
    write_params(workdir)
    train.main(TRAIN_ARGS)
    message = run(evaluate.main, ["models/low_level.pt", *EVALUATE_ARGS[1:]])
    assert message == (
        "stage: error: models/low_level.pt: not a prepared data (another file in its place?); "
        "run `dvc repro prepare` first"
    )
    assert not (workdir / "metrics").exists()


def test_a_model_without_its_device(workdir):
    write_params(workdir)
    train.main(TRAIN_ARGS)
    model = workdir / "models" / "low_level.pt"
    checkpoint = torch.load(model, weights_only=True)
    del checkpoint["device"]
    torch.save(checkpoint, model)
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == (
        "stage: error: models/low_level.pt: not a trained model (another file in its place?); "
        "run `dvc repro` to train it"
    )
    assert not (workdir / "metrics").exists()


def test_a_truncated_model(workdir):
    write_params(workdir)
    train.main(TRAIN_ARGS)
    model = workdir / "models" / "low_level.pt"
    model.write_bytes(model.read_bytes()[:100])
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message.startswith("stage: error: models/low_level.pt: not a readable trained model (")
    assert not (workdir / "metrics").exists()


def test_missing_model(workdir):
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == "stage: error: models/low_level.pt: trained model not found; run `dvc repro` to train it"
    assert not (workdir / "metrics").exists()


def test_missing_costs(workdir):
    write_params(workdir)
    train.main(["low_level", "data/prepared.pt", "models/low_level.pt", "elsewhere/cost.tsv", "elsewhere/test.tsv"])
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == (
        "stage: error: plots/cost/low_level.tsv: training costs not found; run `dvc repro` to train the model"
    )
    assert not (workdir / "metrics").exists()


def test_diverging_training_writes_nothing(workdir):
    write_params(workdir, "train", "lr", 1e38)
    message = run(train.main, TRAIN_ARGS)
    assert message == "stage: error: the cost became nan at epoch 1 with train.lr=1e+38; lower train.lr"
    assert no_train_outputs(workdir)


def test_a_real_stage_process_prints_one_line_and_no_traceback(workdir):
    write_params(workdir, "train", "lr", -1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "stages.train", *TRAIN_ARGS], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert result.stderr == "train: error: params.yaml: train.lr must be a number > 0, got -1\n"
    assert no_train_outputs(workdir)
