"""Each user mistake gets one line that names the parameter or file and the fix, exit status 1,
and no output written."""

import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from ruamel.yaml import YAML

from stages import evaluate, prepare, train
from stages.data import Prepared, Split, load_prepared, load_table, prepare_table, prepared_bytes, toy
from stages.plumbing.errors import UserError
from stages.plumbing.files import read_tensors, tensors_bytes, write_outputs
from stages.plumbing.params import DataParams, train_params
from stages.plumbing.process import boundary
from stages.plumbing.tables import Table
from tests.waiting import importing_torch, wait_for

REPO = Path(__file__).resolve().parent.parent
GOOD_PARAMS = YAML(typ="safe").load((REPO / "params.yaml").read_text())
TRAIN_ARGS = [
    "low_level", "data/prepared.safetensors", "models/low_level.safetensors", "plots/cost/low_level.tsv",
    "plots/test_cost/low_level.tsv",
]  # fmt: skip
EVALUATE_ARGS = [
    "data/prepared.safetensors", "models/low_level.safetensors", "plots/cost/low_level.tsv", "metrics/low_level.json",
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
    """Run a stage in-process as its __main__ does; return the line it ends with, on stderr after any
    progress line, before exiting with status 1 (the last tests here check that for a real process)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert boundary("stage", lambda: stage_main(argv)) == 1
    assert stderr.getvalue().endswith("\n")
    return stderr.getvalue().splitlines()[-1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_outputs({"data/prepared.safetensors": prepared_bytes(prepare_table(toy(), DataParams(source="toy")))})
    return tmp_path


@pytest.fixture
def trained(workdir):
    """The working directory after a train stage with the good parameters."""
    write_params(workdir)
    train.main(TRAIN_ARGS)
    return workdir


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
            "params.yaml: data.source must be one of toy, iris, digits, csv, parquet, synthetic, got 'mnist'",
        ),
        (
            "data",
            "pathh",
            "x.csv",
            "params.yaml: unknown key 'data.pathh'; allowed in 'data': source, test_size, "
            "standardize, seed, path, label, features, delimiter, encoding, n_samples, n_features, n_classes",
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
        (
            "data",
            "delimiter",
            ":",
            "params.yaml: data.delimiter must be null (detect it) or one of ',', ';', '\\t', '|', got ':'",
        ),
        (
            "data",
            "encoding",
            "klingon",
            "params.yaml: data.encoding must be a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16, "
            "got 'klingon'",
        ),
    ],
)
def test_bad_data_param(tmp_path, monkeypatch, section, key, value, expected):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, section, key, value)
    assert run(prepare.main, ["data/prepared.safetensors"]) == f"stage: error: {expected}"
    assert not (tmp_path / "data").exists()


def test_csv_source_without_a_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: csv\n  path: datasets/t.csv\n")
    message = run(prepare.main, ["data/prepared.safetensors"])
    assert message == "stage: error: params.yaml: data.label must be the label column when data.source is csv, got None"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x,y\n1,a\n2,b\n", "datasets/t.csv: no label column 'label' (data.label); columns: x, y"),
        ("x,label\n1,a\nnan,b\n", "datasets/t.csv, line 3: column 'x' is nan; only finite float32 numbers are allowed"),
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
    assert run(prepare.main, ["data/prepared.safetensors"]).startswith(f"stage: error: {expected}")
    assert not (tmp_path / "data").exists()


def test_params_naming_a_source_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: iris\n")
    prepare.main(["data/prepared.safetensors"])
    assert (tmp_path / "data" / "prepared.safetensors").is_file()


def test_params_file_that_is_not_yaml(workdir):
    write_params(workdir, text="train: [epochs: 1\n")
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: params.yaml: not valid YAML: ")
    assert "(line 2)" in message and message.endswith("; fix it")
    assert no_train_outputs(workdir)


def test_no_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = run(prepare.main, ["data/prepared.safetensors"])
    assert (
        message
        == "stage: error: params.yaml: parameters file not found; run the stage from the repository root, where "
        "params.yaml is"
    )


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
    assert message == "stage: error: data/prepared.safetensors: prepared data not found; run `dvc repro prepare` first"
    assert no_train_outputs(tmp_path)


def test_prepared_data_that_is_not_a_tensor_file(workdir):
    write_params(workdir)
    (workdir / "data" / "prepared.safetensors").write_text("x,y\n1,2\n")
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: data/prepared.safetensors: not a readable prepared data (")
    assert message.endswith("); run `dvc repro prepare` first")
    assert no_train_outputs(workdir)


def test_a_model_in_place_of_the_prepared_data(trained):
    message = run(evaluate.main, ["models/low_level.safetensors", *EVALUATE_ARGS[1:]])
    assert message == (
        "stage: error: models/low_level.safetensors: not a prepared data (another file in its place?); "
        "run `dvc repro prepare` first"
    )
    assert not (trained / "metrics").exists()


def test_a_model_without_its_device(trained):
    model = trained / "models" / "low_level.safetensors"
    state, info, _ = read_tensors(model, "trained model", (), "")
    del info["device"]
    model.write_bytes(tensors_bytes(state, info))
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == (
        "stage: error: models/low_level.safetensors: not a trained model (another file in its place?); "
        "run `dvc repro` to train it"
    )
    assert not (trained / "metrics").exists()


def test_a_truncated_model(trained):
    model = trained / "models" / "low_level.safetensors"
    model.write_bytes(model.read_bytes()[:100])
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message.startswith("stage: error: models/low_level.safetensors: not a readable trained model (")
    assert not (trained / "metrics").exists()


def test_missing_model(workdir):
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == "stage: error: models/low_level.safetensors: trained model not found; run `dvc repro` to train it"
    assert not (workdir / "metrics").exists()


def test_missing_costs(workdir):
    write_params(workdir)
    train.main([*TRAIN_ARGS[:3], "elsewhere/cost.tsv", "elsewhere/test.tsv"])
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == ("stage: error: plots/cost/low_level.tsv: training costs not found; run `dvc repro` to train it")
    assert not (workdir / "metrics").exists()


def test_diverging_training_writes_nothing(workdir):
    write_params(workdir, "train", "lr", 1e38)
    message = run(train.main, TRAIN_ARGS)
    assert message == (
        "stage: error: the cost became nan at epoch 1 with train.lr=1e+38; lower train.lr "
        "(or standardize the data: data.standardize: true)"
    )
    assert no_train_outputs(workdir)


def test_a_real_stage_process_prints_one_line_and_no_traceback(workdir):
    write_params(workdir, "train", "lr", -1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "stages", "train", *TRAIN_ARGS], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert result.stderr == "train: error: params.yaml: train.lr must be a number > 0, got -1\n"
    assert no_train_outputs(workdir)


@pytest.mark.parametrize(
    "stage, args, mistake, expected",
    [
        ("prepare", ["data/p.safetensors"], ("data", "source", "nope"), "data.source"),
        ("train", TRAIN_ARGS, ("train", "lr", -1), "params.yaml: train.lr must be a number > 0, got -1"),
        ("evaluate", [a.replace("models/low_level", "models/none") for a in EVALUATE_ARGS], None, "models/none"),
    ],
)
def test_every_stage_reports_mistakes_alike(workdir, stage, args, mistake, expected):
    """Exit status 2 for a wrong command line (argparse's), 1 for a parameter or file; one line each."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def stage_process(*argv: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "stages", stage, *argv]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    write_params(workdir)
    wrong = stage_process(*args, "extra")
    assert wrong.returncode == 2
    assert wrong.stderr.startswith(f"{stage}: error: unrecognized arguments: extra; usage: python -m stages {stage} ")
    assert wrong.stderr.count("\n") == 1
    if mistake is not None:
        write_params(workdir, *mistake)
    result = stage_process(*args)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{stage}: error: ") and expected in result.stderr, result.stderr


# Hostile and accidental input ------------------------------------------------------------------


def csv_params(directory: Path, text: str | bytes, extra: str = "") -> None:
    (directory / "datasets").mkdir(exist_ok=True)
    path = directory / "datasets" / "t.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    (directory / "params.yaml").write_text(f"data:\n  source: csv\n  path: datasets/t.csv\n  label: y\n{extra}")


@pytest.mark.parametrize(
    "text, extra, expected",
    [
        ("x,y\n1,1\n2,1.0\n3,2\n", "", "datasets/t.csv, column 'y': the labels '1' and '1.0' are the same number"),
        ("x,x,y\n1,2,a\n3,4,b\n", "", "datasets/t.csv: the header names column 'x' more than once; give every"),
        ("x,y\n1,a\n2,\n", "", "datasets/t.csv, line 3: the label column 'y' is empty; every row needs its class"),
        ("x,y\n1,a\n2,b\n", "  features: [x, y]\n", "data.features names the label column 'y'; a model must not"),
        ("x,z,y\n1,2,a\n2,3,b\n", "  features: [x, z, x]\n", "data.features names 'x' more than once; list each"),
        (
            b"x,y\n1,a\n2,b\xe9\n",
            "",
            "datasets/t.csv, line 3: bytes that are not utf-8 (b'\\xe9\\n'); set data.encoding",
        ),
        (f"x,y\n1,a\n{'9' * 200_000},b\n", "", "datasets/t.csv: not a readable CSV (field larger than field limit"),
        ("x,y\n1,a\n2,b\n" + "3,c" * 100, "", "datasets/t.csv, line 4: 101 fields, but the header has 2"),
        ("x,y\n1,a\n2,b\x00\n", "", "datasets/t.csv, line 3: a NUL character: not a text table in utf-8; UTF-16"),
        ("x,y\n".encode("utf-16-le"), "", "datasets/t.csv, line 1: a NUL character: not a text table in utf-8; UTF-16"),
        ("x,y\n\n\n", "", "datasets/t.csv: the table is empty; it needs a header row and at least one data row"),
    ],
)
def test_hostile_csv(tmp_path, monkeypatch, text, extra, expected):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, text, extra)
    assert run(prepare.main, ["data/prepared.safetensors"]).startswith(f"stage: error: {expected}")
    assert not (tmp_path / "data").exists()


def test_a_spreadsheet_csv_with_a_byte_order_mark_and_crlf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, '\ufeff"y",x\r\na,1\r\nb,2\r\n'.encode())
    prepare.main(["data/prepared.safetensors"])
    assert load_prepared("data/prepared.safetensors").classes == ("a", "b")


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "x,y\n1,a\n\n2,b\n\n")
    prepare.main(["data/prepared.safetensors"])
    assert load_prepared("data/prepared.safetensors").train.x.tolist() == [[1.0], [2.0]]
    csv_params(tmp_path, "x,y\n1,a\n\nseven,b\n")
    assert run(prepare.main, ["o.st"]) == "stage: error: datasets/t.csv, line 4: column 'x' is not a number: 'seven'"


def test_a_very_long_value_is_abbreviated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, f"x,y\n1,a\n{'z' * 100_000},b\n")
    message = run(prepare.main, ["data/prepared.safetensors"])
    assert message.startswith("stage: error: datasets/t.csv, line 3: column 'x' is not a number: 'zzz")
    assert len(message) < 200


def test_numeric_labels_in_any_row_order_give_one_class_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    orders = set()
    for rows in (["1,10", "2,9", "3,2.5"], ["3,2.5", "1,10", "2,9"]):
        csv_params(tmp_path, "x,y\n" + "\n".join(rows) + "\n")
        prepare.main(["data/prepared.safetensors"])
        orders.add(load_prepared("data/prepared.safetensors").classes)
    assert orders == {("2.5", "9", "10")}


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("train", "epochs", 10**15, "train.epochs=1000000000000000 needs about 55,879,354 GiB for the cost of every"),
        (
            "data",
            "n_samples",
            10**12,
            "data.n_samples x data.n_features=1000000000000 x 20 needs about 320,375 GiB for the table",
        ),
        ("data", "n_features", 10**9, "data.n_samples x data.n_features=1000 x 1000000000 needs about 14,901 GiB for"),
        ("data", "n_classes", 5000, "data.n_classes must be at most data.n_samples (1000), got 5000"),
    ],
)
def test_sizes_that_cannot_fit_are_refused_before_allocating(workdir, section, key, value, expected):
    write_params(workdir, section, key, value)
    if section == "data":
        params = YAML(typ="safe").load((workdir / "params.yaml").read_text())
        params["data"]["source"] = "synthetic"
        with open(workdir / "params.yaml", "w") as f:
            YAML(typ="safe").dump(params, f)
    stage, argv = (prepare.main, ["out.safetensors"]) if section == "data" else (train.main, TRAIN_ARGS)
    message = run(stage, argv)
    assert message.startswith(f"stage: error: params.yaml: {expected}")
    assert not (workdir / "out.safetensors").exists() and no_train_outputs(workdir)


def test_params_that_are_not_utf8(workdir):
    (workdir / "params.yaml").write_bytes(b"data:\n  source: toy\ntrain:\n  lr: 0.1 # caf\xe9\n")
    message = run(train.main, TRAIN_ARGS)
    assert message == "stage: error: params.yaml, line 4: bytes that are not UTF-8; save it as UTF-8"


def test_a_yaml_alias_bomb_gives_a_short_line(workdir):
    levels = ['&a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb = f"[{', '.join(levels)}]"  # its last element holds 9**9 strings, if the aliases were expanded
    text = "data:\n  source: toy\ntrain:\n" + "".join(
        f"  {k}: {bomb if k == 'lr' else str(v).lower()}\n" for k, v in GOOD_PARAMS["train"].items()
    )
    (workdir / "params.yaml").write_text(text)
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: params.yaml: train.lr must be a number > 0, got [[")
    assert len(message) < 200


def test_an_enormous_value_is_abbreviated(workdir):
    write_params(workdir, "train", "device", "x" * 1_000_000)
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: params.yaml: train.device must be one of auto, cpu, cuda, got 'xxx")
    assert len(message) < 200


def test_a_repeated_params_key_names_it_and_both_lines(workdir):
    write_params(workdir, text="data:\n  source: toy\ntrain:\n  lr: 0.1\n  epochs: 10\n  lr: 0.2\n")
    message = run(train.main, TRAIN_ARGS)
    assert message == (
        'stage: error: params.yaml: not valid YAML: found duplicate key "lr" with value "0.2" (original value: '
        '"0.1") (line 6), while constructing a mapping (line 4); fix it'
    )


def test_divergence_from_weight_decay_names_it(workdir):
    write_params(workdir, "train", "weight_decay", 1e6)
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: the cost became ")
    assert "with train.lr=0.1, train.weight_decay=1000000.0; lower train.lr or train.weight_decay" in message
    assert no_train_outputs(workdir)


@pytest.mark.parametrize("where", ["params.yaml", "data/prepared.safetensors", "datasets/t.csv"])
def test_a_directory_where_a_file_is_expected(tmp_path, monkeypatch, where):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "x,y\n1,a\n2,b\n")
    if where == "data/prepared.safetensors":
        write_params(tmp_path)
    write_outputs({"data/prepared.safetensors": prepared_bytes(prepare_table(toy(), DataParams(source="toy")))})
    target = tmp_path / where
    target.unlink()
    target.mkdir()
    stage, argv = (train.main, TRAIN_ARGS) if where == "data/prepared.safetensors" else (prepare.main, ["o.st"])
    assert "is a directory" in run(stage, argv)
    assert not (tmp_path / "o.st").exists() and no_train_outputs(tmp_path)


def test_a_directory_where_an_output_goes(workdir):
    write_params(workdir)
    (workdir / "models" / "low_level.safetensors").mkdir(parents=True)
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: models/low_level.safetensors: cannot write (Is a directory;")
    assert not [p for p in (workdir / "plots").rglob("*") if p.is_file()]  # no cost curves without their model


# Inputs from an earlier stage that do not belong together ----------------------------------------


def test_a_model_trained_on_another_dataset(trained):
    digits = prepare_table(load_table(DataParams(source="digits")), DataParams(source="digits"))
    write_outputs({"data/prepared.safetensors": prepared_bytes(digits)})
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == (
        "stage: error: models/low_level.safetensors: trained on 4 features and classes 0, 1, 2, but the prepared "
        "data has 64 features and classes 0, 1, 2, 3, 4 ... (10); run `dvc repro` to train it"
    )
    assert not (trained / "metrics").exists()


def test_a_model_with_another_class_list(trained):
    renamed = prepare_table(Table(toy().x, toy().y, ("a", "b", "c")), DataParams(source="toy"))
    write_outputs({"data/prepared.safetensors": prepared_bytes(renamed)})
    message = run(evaluate.main, EVALUATE_ARGS)
    assert (
        "trained on 4 features and classes 0, 1, 2, but the prepared data has 4 features and classes a, b, c" in message
    )


def test_prepared_labels_outside_the_class_list(workdir):
    arrays, info, _ = read_tensors("data/prepared.safetensors", "prepared data", (), "")
    info["classes"] = ["0", "1"]
    Path("data/prepared.safetensors").write_bytes(tensors_bytes(arrays, info))
    write_params(workdir)
    message = run(train.main, TRAIN_ARGS)
    assert message == (
        "stage: error: data/prepared.safetensors: train_y holds class 2 but the file names 2 classes; "
        "run `dvc repro prepare` first"
    )


@pytest.mark.parametrize("text", ["", "epoch\tcost\n0\t1.0\n1\tnan\n", "epoch\tcost\n0\tinf\n"])
def test_costs_file_that_is_empty_or_not_finite(trained, text):
    (trained / "plots" / "cost" / "low_level.tsv").write_text(text)
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message == (
        "stage: error: plots/cost/low_level.tsv: not the training costs written with this model; "
        "run `dvc repro` to train it"
    )


@pytest.mark.parametrize(
    "signum, status, line",
    [
        (signal.SIGINT, 130, "train: interrupted; its outputs were not written\n"),  # Ctrl-C
        (signal.SIGTERM, 143, "train: terminated; its outputs were not written\n"),  # kill, or DVC died
        (signal.SIGHUP, 129, "train: terminated; its outputs were not written\n"),  # the terminal closed
    ],
)
@pytest.mark.parametrize("times", [1, 3])  # Ctrl-C pressed again while the stage cleans up: nothing more
def test_a_signal_while_importing_torch_is_one_line(workdir, signum, status, line, times):
    write_params(workdir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "stages", "train", *TRAIN_ARGS], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_for(lambda: importing_torch(process.pid) or process.poll() is not None, "the stage to import torch")
    for _ in range(times):
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (status, line)
    assert no_train_outputs(workdir)


def test_a_bug_is_one_line_with_its_own_status_and_the_traceback_on_request(workdir, monkeypatch):
    def broken(*args):
        raise RuntimeError("something the code did not expect\nsecond line")

    monkeypatch.setattr(train, "train", broken)
    write_params(workdir)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert boundary("train", lambda: train.main(TRAIN_ARGS)) == 70
    assert stderr.getvalue().splitlines()[-1] == (
        "train: bug: RuntimeError: something the code did not expect (not your mistake: please report it with "
        "params.yaml; SOFTMAX_TRACEBACK=1 shows the traceback)"
    )
    monkeypatch.setenv("SOFTMAX_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="something the code did not expect"):
        boundary("train", lambda: train.main(TRAIN_ARGS))


def test_running_out_of_memory_is_one_line(workdir, monkeypatch):
    def too_big(*args):
        raise MemoryError

    monkeypatch.setattr(train, "train", too_big)
    write_params(workdir)
    assert run(train.main, TRAIN_ARGS).startswith("stage: error: out of memory; lower the data's or the run's size")


def test_a_closed_output_pipe_ends_the_stage_quietly(workdir):
    """`python -m stages train ... | head -2`: the stage ends as any Unix tool does, no traceback."""
    write_params(workdir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "stages", "train", *TRAIN_ARGS], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert process.stdout.readline().startswith("Epoch    0/1000")
    process.stdout.close()  # as `head -1` does once it has its line
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == -signal.SIGPIPE
    assert "Traceback" not in stderr and no_train_outputs(workdir)


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set, but torchrun did not start this process; unset WORLD_SIZE"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a number of processes; unset it or use torchrun"),
    ],
)
def test_distributed_variables_left_in_a_shell_are_one_line_at_once(workdir, monkeypatch, variables, expected):
    write_params(workdir)
    for name, value in {**variables, "RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(name, value)
    assert run(train.main, TRAIN_ARGS).startswith(f"stage: error: {expected}")
    assert no_train_outputs(workdir)


# Every value YAML can produce: taken with its obvious meaning, or one line ------------------------


@pytest.mark.parametrize("text", ["1000.0", "1e3", "1.0e+3"])  # as `dvc exp run -S train.epochs=1e3` writes it
def test_an_integral_float_is_that_integer(text):
    params = YAML(typ="safe", pure=True).load(f"train: {{epochs: {text}, lr: 0.1, seed: 1.0, device: cpu, "
                                              "log_every: 100, double_softmax: false}")  # fmt: skip
    assert train_params(params).epochs == 1000 and train_params(params).seed == 1


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("epochs", "7" * 400, "train.epochs must be a positive integer up to 9,223,372,036,854,775,807, got 7777"),
        ("epochs", "1000.5", "train.epochs must be a positive integer, got 1000.5"),
        ("epochs", "2024-01-01", "train.epochs must be a positive integer, got datetime.date(2024, 1, 1)"),
        ("lr", "!!binary aGVsbG8=", "train.lr must be a number > 0, got b'hello'"),
        ("lr", ".inf", "train.lr must be a number > 0, got inf"),
        ("betas", "{0.9: 1, 0.99: 2}", "train.betas must be two numbers from 0 up to 1, e.g. [0.9, 0.999], got {"),
        ("device", "[cpu]", "train.device must be one of auto, cpu, cuda, got ['cpu']"),
        ("optimizer", "!!python/name:os.system", "not valid YAML: could not determine a constructor for the tag"),
    ],
)
def test_any_yaml_value_is_taken_or_one_line(workdir, key, text, expected):
    lines = [f"  {k}: {text if k == key else str(v).lower()}" for k, v in GOOD_PARAMS["train"].items()]
    (workdir / "params.yaml").write_text("data:\n  source: toy\ntrain:\n" + "\n".join(lines) + "\n")
    assert run(train.main, TRAIN_ARGS).startswith(f"stage: error: params.yaml: {expected}")
    assert no_train_outputs(workdir)


def test_a_text_codec_that_is_not_a_text_encoding(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, "data", "encoding", "base64")
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: params.yaml: data.encoding must be a text encoding Python knows, e.g. utf-8, latin-1, cp1252, "
        "utf-16, got 'base64'"
    )


def test_a_misspelt_section_does_not_pass_silently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("data:\n  source: toy\ntrian:\n  epochs: 10\n")
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: params.yaml: unknown section 'trian'; the sections are data and train"
    )


def test_a_params_file_that_is_not_a_regular_file_or_is_huge(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "params.yaml")  # reading it would wait for a writer forever
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: params.yaml: is not a regular file, not the parameters file; run the stage from the repository "
        "root, where params.yaml is"
    )
    (tmp_path / "params.yaml").unlink()
    (tmp_path / "params.yaml").write_text("data:\n  source: toy\n" + "#" * 2_000_000 + "\n")
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: params.yaml: over 1,048,576 bytes, not a parameters file; it holds a few lines"
    )


def test_sizes_are_weighed_against_the_memory_the_process_may_use(tmp_path):
    """Under `ulimit -v` (or a container's cgroup limit) with less than the machine has."""
    (tmp_path / "params.yaml").write_text("data:\n  source: synthetic\n  n_samples: 10000000\n  n_features: 100\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "stages", "prepare", "out.safetensors"]

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            preexec_fn=limit_address_space)  # fmt: skip
    assert (result.returncode, result.stderr) == (1, (
        "prepare: error: params.yaml: data.n_samples x data.n_features=10000000 x 100 needs about 15 GiB for the "
        "table, but this process may use 8 GiB; lower data.n_samples or data.n_features\n"
    ))  # fmt: skip


@pytest.mark.parametrize(
    "stage, args, expected",
    [
        ("train", [*TRAIN_ARGS[:2], "data/prepared.safetensors", *TRAIN_ARGS[3:]],
         "the output model (data/prepared.safetensors) is the same file as the data"),
        ("train", [*TRAIN_ARGS[:4], "plots/cost/low_level.tsv"],
         "the output test_costs (plots/cost/low_level.tsv) is the same file as the costs"),
        ("train", [*TRAIN_ARGS[:2], "./params.yaml", *TRAIN_ARGS[3:]],
         "the output model (./params.yaml) is the same file as the params.yaml"),
        ("evaluate", [*EVALUATE_ARGS[:3], "metrics/x.json", "metrics/../metrics/x.json"],
         "the output confusion (metrics/../metrics/x.json) is the same file as the metrics"),
        ("evaluate", [*EVALUATE_ARGS[:3], "models/low_level.safetensors", EVALUATE_ARGS[4]],
         "the output metrics (models/low_level.safetensors) is the same file as the model"),
    ],
)  # fmt: skip
def test_an_output_that_is_an_input_or_another_output_is_refused_before_any_work(trained, stage, args, expected):
    before = {path: path.read_bytes() for path in trained.rglob("*") if path.is_file()}
    main = train.main if stage == "train" else evaluate.main
    assert run(main, args) == f"stage: error: {expected}; give each its own path"
    assert {path: path.read_bytes() for path in trained.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("source", ["csv", "toy"])  # with toy too: dvc.yaml's prepare depends on data.path
def test_prepare_writes_nothing_under_datasets(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "x,y\n1,a\n2,b\n")
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text().replace("csv", source, 1))
    assert run(prepare.main, ["datasets/t.csv"]) == (
        "stage: error: the output out (datasets/t.csv) is under datasets/, where the tables live; write it elsewhere"
    )
    assert (tmp_path / "datasets" / "t.csv").read_text() == "x,y\n1,a\n2,b\n"


@pytest.mark.parametrize(
    "stage, args, name",
    [("train", [*TRAIN_ARGS[:2], "datasets/t.csv", *TRAIN_ARGS[3:]], "model"),
     ("evaluate", [*EVALUATE_ARGS[:4], "datasets/sub/../t.csv"], "confusion")],
)  # fmt: skip
def test_train_and_evaluate_write_nothing_under_datasets(trained, stage, args, name):
    (trained / "datasets").mkdir()
    (trained / "datasets" / "t.csv").write_text("x,y\n1,a\n")
    main = train.main if stage == "train" else evaluate.main
    assert run(main, args) == (
        f"stage: error: the output {name} ({args[-1] if stage == 'evaluate' else args[2]}) is under datasets/, where "
        "the tables live; write it elsewhere"
    )
    assert (trained / "datasets" / "t.csv").read_text() == "x,y\n1,a\n"


def test_class_names_from_a_file_are_printed_as_data(tmp_path, monkeypatch, capsys):
    """A label with a line break or a terminal escape cannot break or forge a line of the log."""
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, 'x,y\n1,"two\nlines"\n2,\x1b[31mred\n3,plain\n')
    prepare.main(["out.safetensors"])
    assert capsys.readouterr().err == (
        "csv: 3 training rows, evaluated on the training rows, 1 features, classes 0=\\x1b[31mred, 1=plain, "
        "2=two\\nlines\n"
    )


@pytest.mark.parametrize("kind", ["a pipe", "unreadable"])
def test_a_table_that_is_a_pipe_or_cannot_be_read(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "x,y\n1,a\n2,b\n")
    table = tmp_path / "datasets" / "t.csv"
    if kind == "a pipe":
        table.unlink()
        os.mkfifo(table)  # reading it would wait for a writer forever
        expected = (
            "datasets/t.csv: is not a regular file, not the table data.path names; check data.path (relative to the "
            "repository root)"
        )
    else:  # what a user without the permission gets (root, who runs CI, may read anything)

        def denied(*args) -> None:
            raise PermissionError(13, "Permission denied", "datasets/t.csv")

        monkeypatch.setattr("stages.plumbing.tables.open", denied, raising=False)
        expected = "datasets/t.csv: Permission denied; check that path, its permissions and the disk"
    assert run(prepare.main, ["out.safetensors"]) == f"stage: error: {expected}"


# A second hostile test's failures, each a case of its class ------------------------------------


def test_weights_blown_up_by_the_last_update_are_one_line_and_no_model(workdir):
    """The last update comes after the last printed cost: weight decay at 3e38 pushes W past float32."""
    write_params(workdir, text="data:\n  source: toy\ntrain:\n  epochs: 1\n  lr: 3\n  seed: 1\n  device: cpu\n"
                 "  log_every: 1\n  double_softmax: false\n  weight_decay: 3.0e+38\n")  # fmt: skip
    assert run(train.main, TRAIN_ARGS) == (
        "stage: error: the weights became infinite or NaN at epoch 1 with train.lr=3.0, train.weight_decay=3e+38; "
        "lower train.lr or train.weight_decay (or standardize the data: data.standardize: true)"
    )
    assert no_train_outputs(workdir)


def test_metrics_beyond_float32_are_one_line_and_no_json(trained):
    W = np.full((4, 3), 1e38, np.float32)
    W[:, 0] = -1e38  # finite weights whose cost, in float64, is far beyond float32
    _, info, _ = read_tensors("models/low_level.safetensors", "trained model", (), "")  # it belongs to the files
    write_outputs({"models/low_level.safetensors": tensors_bytes({"W": W, "b": np.zeros(1, np.float32)}, info)})
    message = run(evaluate.main, EVALUATE_ARGS)
    assert message.startswith("stage: error: train.cost is ") and "beyond float32: training diverged" in message
    assert not (trained / "metrics").exists()


def test_a_csv_whose_lines_end_in_cr_alone_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "a,y\r1,x\r3,z\r5,x\r")
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").train.x.tolist() == [[1.0], [3.0], [5.0]]


@pytest.mark.parametrize(
    "encoding, expected",
    [
        ("punycode", "datasets/t.csv: not text in punycode (decoding with 'punycode' codec failed"),
        ("undefined", "params.yaml: data.encoding must be a text encoding Python knows, e.g. utf-8, latin-1, "),
    ],
)
def test_codecs_that_fail_as_text_are_one_line(tmp_path, monkeypatch, encoding, expected):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "a,y\n1,x\n3,z\n", extra=f"  encoding: {encoding}\n")
    assert run(prepare.main, ["out.safetensors"]).startswith(f"stage: error: {expected}")


@pytest.mark.parametrize(
    "key, text, expected",
    [
        ("lr", "1" + "0" * 400, "params.yaml: train.lr must be a number > 0, got 1000"),
        ("betas", f"[1{'0' * 400}, 0.9]", "params.yaml: train.betas must be two numbers from 0 up to 1"),
        ("seed", '!!int "abc"', "params.yaml: not valid YAML (invalid literal for int() with base 10: 'abc'"),
        ("seed", '!!bool "x"', "params.yaml: not valid YAML ('x'); fix it"),
        ("seed", "9" * 5000, "params.yaml: not valid YAML (Exceeds the limit (4300 digits) for integer string"),
    ],
)
def test_yaml_values_that_break_parsing_or_floats_are_one_line(workdir, key, text, expected):
    lines = [f"  {k}: {text if k == key else str(v).lower()}" for k, v in GOOD_PARAMS["train"].items()]
    (workdir / "params.yaml").write_text("data:\n  source: toy\ntrain:\n" + "\n".join(lines) + "\n")
    assert run(train.main, TRAIN_ARGS).startswith(f"stage: error: {expected}")


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["1", "NaN", "2"], "the label 'NaN' is a missing value (NaN or infinite), not a class"),
        (["1", "inf", "2"], "the label 'inf' is a missing value (NaN or infinite), not a class"),
        (["1", "1.0", "cat"], "the labels '1' and '1.0' are the same number written two ways"),
    ],
)
def test_csv_labels_that_are_missing_values_or_one_number_twice(tmp_path, monkeypatch, labels, expected):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "a,y\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels)))
    assert run(prepare.main, ["out.safetensors"]) == f"stage: error: datasets/t.csv, column 'y': {expected}" + (
        "; give every row its class" if "missing" in expected else "; write each class one way"
    )


def test_a_rank_left_in_a_shell_does_not_silence_errors(workdir, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # without torchrun (no TORCHELASTIC_RUN_ID) it means nothing
    write_params(workdir, "train", "lr", -1)
    assert run(train.main, TRAIN_ARGS) == "stage: error: params.yaml: train.lr must be a number > 0, got -1"


def test_incomplete_torchrun_variables_are_one_line(workdir, monkeypatch):
    write_params(workdir)
    for name, value in {"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RANK", raising=False)
    assert run(train.main, TRAIN_ARGS).startswith(
        "stage: error: Error initializing torch.distributed using env:// rendezvous: environment variable RANK "
        "expected, but not set; launch the stage with torchrun, or unset WORLD_SIZE"
    )


def test_sigterm_ends_a_stage_waiting_for_processes_that_never_come(workdir):
    """torchrun's variables left in a shell: the wait for the other processes is native code, which a
    Python handler cannot interrupt; the stage's signals end it at once there."""
    write_params(workdir)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WORLD_SIZE": "2", "RANK": "0", "TORCHELASTIC_RUN_ID": "x",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "stages", "train", *TRAIN_ARGS], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert process.stderr.readline().startswith("device: ")  # printed just before it joins the others
    wait_for(lambda: any(c.status() == psutil.STATUS_SLEEPING for c in [psutil.Process(process.pid)]), "the wait")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert no_train_outputs(workdir)


# A third round of hostile cases -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, extra",
    [
        ("a,b,y\n0,1,p\n0,2,p\n1e-45,3,q\n", ""),  # a spread that is 0 once in float32
        ("a,y\n" + "".join(f"1e-30,{'pq'[i % 2]}\n" for i in range(20)) + "1e30,p\n", "  test_size: 0.1\n"),
    ],
)
def test_standardization_never_writes_a_non_finite_feature(tmp_path, monkeypatch, text, extra):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, text, extra=f"  standardize: true\n{extra}")
    if boundary("prepare", lambda: prepare.main(["out.safetensors"])):  # refused in one line is fine
        assert not (tmp_path / "out.safetensors").exists()
    else:  # written with a NaN or an infinity is not
        assert all(np.isfinite(a).all() for a in read_tensors("out.safetensors", "prepared data", (), "")[0].values())


@pytest.mark.parametrize(
    "info, arrays, expected",
    [
        ({"classes": ["a", "a"], "has_test": False}, {}, "is not two or more distinct names"),
        ({"classes": ["", "b"], "has_test": False}, {}, "is not two or more distinct names"),
        ({"has_test": False}, {"classes": np.zeros(2, np.float32)}, "not a prepared data (another file in its"),
        ({"classes": ["a", "b"], "has_test": False}, {"train_x": np.zeros((4, 0), np.float32)}, "are not a table"),
    ],
)
def test_a_prepared_file_that_is_wrong_inside(workdir, info, arrays, expected):
    write_params(workdir)
    base = {"train_x": np.ones((4, 2), np.float32), "train_y": np.array([0, 1, 0, 1])}
    write_outputs({"data/prepared.safetensors": tensors_bytes(base | arrays, info)})
    assert expected in run(train.main, TRAIN_ARGS)
    assert no_train_outputs(workdir)


def test_a_prepared_file_with_bfloat16_or_deep_metadata(workdir):
    import struct

    header = json.dumps({"__metadata__": {"info": "[" * 100_000 + "]" * 100_000}}).encode()
    (workdir / "data" / "prepared.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    write_params(workdir)
    assert "not a readable prepared data" in run(train.main, TRAIN_ARGS)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"device": float("nan")}, "its device nan is not cpu or cuda"),
        ({"device": {"x": "\x1b[31m"}}, "its device {'x': '\\x1b[31m'} is not cpu or cuda"),
        ({"classes": 5}, "trained on 4 features and classes 5, but the prepared data has"),
    ],
)
def test_model_metadata_is_checked_before_it_reaches_the_metrics(trained, change, expected):
    state, info, _ = read_tensors("models/low_level.safetensors", "trained model", (), "")
    write_outputs({"models/low_level.safetensors": tensors_bytes(state, info | change)})
    assert expected in run(evaluate.main, EVALUATE_ARGS)
    assert not (trained / "metrics").exists()


def test_float64_model_weights_are_not_a_trained_model(trained):
    state, info, _ = read_tensors("models/low_level.safetensors", "trained model", (), "")
    state = {name: np.full(array.shape, 1e308) for name, array in state.items()}
    write_outputs({"models/low_level.safetensors": tensors_bytes(state, info)})
    assert "holds float64 weights, not the float32 ones training writes" in run(evaluate.main, EVALUATE_ARGS)


def test_a_nul_byte_in_a_path_parameter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text('data:\n  source: csv\n  path: "datasets/a\\0b"\n  label: y\n')
    assert "data.path must be a non-empty string of text without NUL characters" in run(
        prepare.main, ["out.safetensors"]
    )


def test_an_output_that_is_a_device_is_never_replaced(workdir, tmp_path):
    write_params(workdir)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    message = run(train.main, [*TRAIN_ARGS[:4], str(fifo)])
    assert message.endswith("pipe: cannot write (a device or a pipe, not a regular file; write the output elsewhere); "
                            "nothing was written")  # fmt: skip
    assert fifo.is_fifo()


def test_large_integer_labels_are_distinct_classes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "a,y\n1,9007199254740992\n2,9007199254740993\n3,10\n")
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").classes == ("10", "9007199254740992", "9007199254740993")


def test_a_quoted_header_name_that_spans_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, '"a\nb",y\n1,p\n2,q\n')
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").train.x.tolist() == [[1.0], [2.0]]


# A fourth hostile round: each case closed at its mechanism --------------------------------------------


def test_a_quoted_line_break_where_pyarrow_starts_a_block(tmp_path, monkeypatch):
    """pyarrow reads a CSV in 1 MiB blocks; a quoted line break at a block's edge is still one field."""
    monkeypatch.chdir(tmp_path)
    filler = b"1,2,x\n" * ((1 << 20) // 6 - 1)
    csv_params(tmp_path, b"a,b,y\n" + filler + b'7,8,"q\n5,6,z"\n' + b"3,4,w\n" * 20)
    prepare.main(["out.safetensors"])
    prepared = load_prepared("out.safetensors")
    assert prepared.classes == ("q\n5,6,z", "w", "x") and len(prepared.train.y) == len(filler) // 6 + 21


@pytest.mark.parametrize(
    "label, classes",
    [("1e999999999", ("1", "1e999999999")),  # a number, compared exactly and at once (no 10**999999999)
     ("1/0", ("1", "1/0"))],  # not a number as a decimal: a name
)  # fmt: skip
def test_labels_that_are_huge_numbers_or_fractions(tmp_path, monkeypatch, label, classes):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, f"a,y\n1,{label}\n2,1\n")
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").classes == classes


@pytest.mark.parametrize(
    "path, expected",
    [("datasets/" + "a" * 300 + ".csv", "File name too long; check that path, its permissions and the disk"),
     ('"datasets/\\ud800.csv"', "data.path must be a non-empty string of text without NUL characters")],
)  # fmt: skip
def test_a_data_path_the_system_refuses(tmp_path, monkeypatch, path, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "params.yaml").write_text(f"data:\n  source: csv\n  path: {path}\n  label: y\n")
    assert expected in run(prepare.main, ["out.safetensors"])


def test_a_params_file_that_is_a_symlink_loop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").symlink_to("params.yaml")
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: params.yaml: Too many levels of symbolic links; check that path, its permissions and the disk"
    )


def test_a_blank_first_line_and_a_wrong_encoding(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "\na;b;y\n1;2;x\n3;4;z\n")
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").classes == ("x", "z")
    csv_params(tmp_path, "a,b,y\n1,2,x\n3,4,z\n", "  encoding: utf-16\n")  # UTF-8 bytes read as UTF-16
    assert run(prepare.main, ["out.safetensors"]).endswith("(or data.encoding utf-16 is not the file's)")


def test_a_header_with_a_quote_inside_a_name_and_a_name_spanning_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, 'a"b,"c\nd",y\n1,2,x\n3,4,z\n')
    prepare.main(["out.safetensors"])
    assert load_prepared("out.safetensors").train.x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


# A fifth hostile round: processes and runs ---------------------------------------------------------


def stage_process(workdir: Path, args: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=workdir, env=env, text=True, **popen)


def test_a_signal_while_the_outputs_are_renamed_waits_for_all_of_them(workdir, tmp_path):
    """SIGTERM right after the first rename: the stage still renames the others and ends with 0."""
    write_params(workdir)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(
        "import os, signal\nreplace = os.replace\n"
        "def renamed_then_terminated(*args):\n    replace(*args)\n    os.kill(os.getpid(), signal.SIGTERM)\n"
        "os.replace = renamed_then_terminated\n"
    )
    env = {"PYTHONPATH": f"{tmp_path / 'hook'}{os.pathsep}{REPO}"}
    stage = stage_process(
        workdir, ["stages", "train", *TRAIN_ARGS], env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert stage.wait(timeout=120) == 0 and "terminated" not in stage.stderr.read()
    assert all((workdir / path).is_file() for path in TRAIN_ARGS[2:])


def test_two_signals_at_once_are_one_line(workdir):
    write_params(workdir, "train", "epochs", 10**6)
    stage = stage_process(workdir, ["stages", "train", *TRAIN_ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert stage.stdout.readline().startswith("Epoch    0/")  # training
    stage.send_signal(signal.SIGTERM)
    stage.send_signal(signal.SIGINT)
    status = stage.wait(timeout=60)  # Python runs pending handlers lowest signal first: SIGINT's
    how = {128 + signal.SIGINT: "interrupted", 128 + signal.SIGTERM: "terminated"}[status]
    assert stage.stderr.read().splitlines()[1:] == [f"train: {how}; its outputs were not written"]
    assert no_train_outputs(workdir)


def test_a_closed_stdout_after_a_complete_run_is_no_failure(workdir):
    write_params(workdir)
    stage = stage_process(workdir, ["stages", "train", *TRAIN_ARGS], stderr=subprocess.PIPE,
                          preexec_fn=lambda: os.close(1))  # fmt: skip
    assert stage.wait(timeout=120) == 0, stage.stderr.read()
    assert all((workdir / path).is_file() for path in TRAIN_ARGS[2:])


def test_prepare_says_what_it_read_before_it_writes(workdir):
    """A closed stderr ends prepare at its summary line (SIGPIPE, 141): then nothing was written."""
    write_params(workdir)
    stage = stage_process(workdir, ["stages", "prepare", "fresh.safetensors"], stderr=subprocess.PIPE)
    stage.stderr.close()
    assert stage.wait(timeout=60) == -signal.SIGPIPE
    assert not (workdir / "fresh.safetensors").exists()


def test_a_failed_import_is_one_line(workdir, tmp_path):
    (tmp_path / "fake" / "torch").mkdir(parents=True)
    (tmp_path / "fake" / "torch" / "__init__.py").write_text("raise ImportError('libtorch_cpu.so: failed to map')\n")
    write_params(workdir)
    env = {"PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{REPO}"}
    stage = stage_process(
        workdir, ["stages", "train", *TRAIN_ARGS], env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert stage.wait(timeout=60) == 1
    assert stage.stderr.read() == (
        "train: error: ImportError: libtorch_cpu.so: failed to map (SOFTMAX_TRACEBACK=1 shows the traceback)\n"
    )


def test_a_stray_torchelastic_run_id_does_not_silence_errors(workdir, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("RANK", "1")
    assert run(evaluate.main, ["data/none.safetensors", *EVALUATE_ARGS[1:]]).endswith(
        "prepared data not found; run `dvc repro prepare` first"
    )


def test_a_collective_that_fails_is_one_line(monkeypatch):
    """A process of torchrun's group that died: the others' all-reduce raises, as gloo does."""
    from stages.plumbing import distributed

    def reset(tensor):
        raise RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:5: Connection reset by peer")

    monkeypatch.setattr(distributed.dist, "all_reduce", reset)
    with pytest.raises(UserError, match=r"^another process of the group stopped \(\[gloo.*Connection reset by peer\)"):
        distributed.sum_gradients([torch.zeros(2, requires_grad=True)], torch.zeros(()), 0.5)


def test_evaluate_refuses_files_of_another_run(trained):
    train.main(["functional", *TRAIN_ARGS[1:2], "models/functional.safetensors", "plots/cost/functional.tsv",
                "plots/test_cost/functional.tsv"])  # fmt: skip
    other_costs = [*EVALUATE_ARGS[:2], "plots/cost/functional.tsv", *EVALUATE_ARGS[3:]]
    assert run(evaluate.main, other_costs).endswith("plots/cost/functional.tsv: not the training costs written with "
                                                    "this model; run `dvc repro` to train it")  # fmt: skip
    standardized = prepare_table(toy(), DataParams(source="toy", standardize=True))
    write_outputs({"std.safetensors": prepared_bytes(standardized)})
    assert run(evaluate.main, ["std.safetensors", *EVALUATE_ARGS[1:]]).endswith(
        "models/low_level.safetensors: was trained on other prepared data than std.safetensors; run `dvc repro` to "
        "train it"
    )


# The process a stage runs in ---------------------------------------------------------------------


@pytest.mark.parametrize("ignored", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_a_signal_ignored_before_the_stage_stays_ignored(workdir, ignored):
    """`nohup dvc repro &`: a closed terminal must not end training (a shell's `&` ignores SIGINT too)."""
    write_params(workdir, "train", "epochs", 10**6)
    stage = stage_process(workdir, ["stages", "train", *TRAIN_ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=lambda: signal.signal(ignored, signal.SIG_IGN))  # fmt: skip
    assert stage.stdout.readline().startswith("Epoch    0/")
    stage.send_signal(ignored)
    assert stage.stdout.readline().startswith("Epoch  100/")  # still training
    stop = next(other for other in (signal.SIGTERM, signal.SIGINT) if other != ignored)
    stage.send_signal(stop)
    assert stage.wait(timeout=60) == 128 + stop
    assert no_train_outputs(workdir)


def test_a_full_disk_under_stdout_is_named(workdir):
    write_params(workdir)
    with open("/dev/full", "w") as full:
        stage = stage_process(workdir, ["stages", "train", *TRAIN_ARGS], stdout=full, stderr=subprocess.PIPE)
        assert stage.wait(timeout=120) == 1
    assert stage.stderr.read().splitlines()[-1] == (
        "train: error: standard output: No space left on device; check that path, its permissions and the disk"
    )
    assert no_train_outputs(workdir)


@pytest.mark.parametrize("argv", [[], ["nope"], ["-h"]])
def test_a_stage_that_is_not_one_is_one_line(argv):
    result = subprocess.run([sys.executable, "-m", "stages", *argv], capture_output=True, text=True, cwd=REPO)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "stages: error: the stage must be one of prepare, train, evaluate; usage: python -m stages STAGE ARGS\n"
    )


# A third hostile round: inputs -------------------------------------------------------------------


def replace_prepared(workdir: Path) -> None:  # prepare run by hand meanwhile, in another process
    standardized = prepare_table(toy(), DataParams(source="toy", standardize=True))
    (workdir / "new.safetensors").write_bytes(prepared_bytes(standardized))
    os.replace(workdir / "new.safetensors", workdir / "data" / "prepared.safetensors")


def edit_params(workdir: Path) -> None:  # params.yaml edited in place, as an editor saves it
    with open(workdir / "params.yaml", "a") as f:
        f.write("# edited\n")


def replace_model(workdir: Path) -> None:
    os.replace(workdir / "models" / "low_level.safetensors", workdir / "old.safetensors")
    (workdir / "models" / "low_level.safetensors").write_bytes((workdir / "old.safetensors").read_bytes())


@pytest.mark.parametrize(
    "stage, hooked, change, changed",
    [
        (train, "train", replace_prepared, "data/prepared.safetensors"),
        (train, "train", edit_params, "params.yaml"),
        (prepare, "prepare_table", edit_params, "params.yaml"),
        (evaluate, "scores", replace_model, "models/low_level.safetensors"),
    ],
)
def test_an_input_that_changes_under_a_stage_leaves_nothing_written(
    trained, monkeypatch, stage, hooked, change, changed
):
    """An input replaced or edited while the stage works: its outputs would name inputs they were not
    made from (a model that evaluate accepts, a dvc.lock that DVC records after the command)."""
    original = getattr(stage, hooked)

    def changing(*args, **kwargs):
        change(trained)
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, hooked, changing)
    outputs = {train: TRAIN_ARGS[2:], prepare: ["fresh.safetensors"], evaluate: EVALUATE_ARGS[3:]}[stage]
    before = {path: (trained / path).read_bytes() for path in outputs if (trained / path).exists()}
    argv = {train: TRAIN_ARGS, prepare: ["fresh.safetensors"], evaluate: EVALUATE_ARGS}[stage]
    assert run(stage.main, argv) == (
        f"stage: error: {changed} changed while the stage ran, so nothing was written; run the stage again"
    )
    assert {path: (trained / path).read_bytes() for path in outputs if (trained / path).exists()} == before


@pytest.mark.parametrize(
    "stage, argv, pipe, what",
    [
        (train, TRAIN_ARGS, "data/prepared.safetensors", "prepared data"),
        (evaluate, EVALUATE_ARGS, "data/prepared.safetensors", "prepared data"),
        (evaluate, EVALUATE_ARGS, "models/low_level.safetensors", "trained model"),
        (evaluate, EVALUATE_ARGS, "plots/cost/low_level.tsv", "training costs"),
    ],
)
def test_an_input_that_is_a_pipe_is_refused_before_it_blocks(trained, stage, argv, pipe, what):
    (trained / pipe).unlink()
    os.mkfifo(trained / pipe)  # opening it to read would wait for a writer forever
    assert run(stage.main, argv).startswith(f"stage: error: {pipe}: is not a regular file, not the {what}; ")


def test_a_label_column_that_is_an_identifier_names_data_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    csv_params(tmp_path, "x,y\n" + "".join(f"{i},row{i}\n" for i in range(2000)))
    monkeypatch.setattr("stages.data.memory_limit", lambda: 2**26)  # 64 MiB: what a class per row cannot fit in
    assert run(prepare.main, ["out.safetensors"]) == (
        "stage: error: data.label: column 'y' gives 2,000 classes to 2,000 rows, which need 0.119 GiB to train; is "
        "it an identifier? Name the column that holds the classes"
    )


def test_a_test_cost_beyond_float32_is_one_line_and_nothing_written(tmp_path, monkeypatch):
    """One finite but huge test row: its cost overflows, though every training cost is fine."""
    monkeypatch.chdir(tmp_path)
    training = Split(np.array([[0.0], [1.0]], dtype=np.float32), np.array([0, 1]))
    huge = Split(np.array([[3e38]], dtype=np.float32), np.array([0]))
    write_outputs({"data/prepared.safetensors": prepared_bytes(Prepared(training, huge, ("p", "q"), True))})
    write_params(tmp_path)
    message = run(train.main, TRAIN_ARGS)
    assert message.startswith("stage: error: the test_cost at epoch 100 is ") and "beyond float32" in message
    assert no_train_outputs(tmp_path)
