"""Each user mistake gets one line that names the parameter or file and the fix, exit status 1, and no
output written: one table of cases per class of mistake, a case's id says which broke."""

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML
from safetensors import safe_open

from stages import evaluate, prepare, train
from stages.data import Prepared, PreparedFile, Split, load_table, prepare_table, prepared_bytes, toy
from stages.features import Preprocessing
from stages.plumbing.files import tensors_bytes, write_outputs
from stages.plumbing.params import DataParams, section
from stages.plumbing.process import boundary
from stages.plumbing.tables import MISSING_FIX, TEXT_FIX, Table
from tests.stage_runs import ARGS, EVALUATE_ARGS, MAINS, TRAIN_ARGS, files, params_text, run


def csv_params(extra: str = "") -> str:
    """params.yaml for datasets/t.csv and its label y, with `extra` lines (each replaces a default it names)."""
    defaults = {"path": "datasets/t.csv", "label": "y", "standardize": "false"}  # features read as they are
    lines = "".join(f"  {key}: {value}\n" for key, value in defaults.items() if f"  {key}:" not in extra)
    return f"data:\n  source: csv\n{lines}{extra}"


# params.yaml: (the stage, params.yaml's text, the line's beginning) ---------------------------------
PARAMS = {
    "lr 0": ("train", params_text("train", "lr", 0), "train.lr must be greater than 0, got 0"),
    "lr text": ("train", params_text("train", "lr", "fast"), "train.lr must be a valid number, got 'fast'"),
    "lr inf": ("train", params_text("train", "lr", raw=".inf"), "train.lr must be a finite number, got inf"),
    "epochs 0": ("train", params_text("train", "epochs", 0), "train.epochs must be greater than or equal to 1, got 0"),
    "epochs 1000.5": ("train", params_text("train", "epochs", raw="1000.5"), "train.epochs must be a valid integer, got 1000.5"),
    "epochs text": ("train", params_text("train", "epochs", "ten"), "train.epochs must be a valid integer, got 'ten'"),
    "epochs bool": ("train", params_text("train", "epochs", True), "train.epochs must be a valid integer, got True"),
    "epochs 7**400": ("train", params_text("train", "epochs", raw="7" * 400), "train.epochs must be less than or equal to 9223372036854775807, got 7777"),
    "double_softmax": ("train", params_text("train", "double_softmax", "yes please"), "train.double_softmax must be a valid boolean, got 'yes please'"),
    "betas mapping": ("train", params_text("train", "betas", raw="{0.9: 1, 0.99: 2}"), "train.betas must be a list, got {"),
    "betas 10**400": ("train", params_text("train", "betas", raw=f"[1{'0' * 400}, 0.9]"), "train.betas.0 must be a valid number, got 1000"),
    "betas one": ("train", params_text("train", "betas", [0.9]), "train.betas.1 is wrong: field required, got [0.9]"),
    "device list": ("train", params_text("train", "device", ["cpu"]), "train.device must be 'auto', 'cpu' or 'cuda', got ['cpu']"),
    "device huge": ("train", params_text("train", "device", "x" * 1_000_000), "train.device must be 'auto', 'cpu' or 'cuda', got 'xxx"),
    "unknown key": ("train", params_text("train", "lrr", 0.1), "unknown key 'train.lrr'; allowed in 'train': epochs, lr, seed, device, log_every, double_softmax, batch_size, optimizer, momentum, betas, weight_decay"),
    "no train": ("train", params_text("train"), "section 'train' must be a mapping with keys epochs, lr, seed, device, log_every, double_softmax"),
    "no train.lr": ("train", params_text().replace("  lr: 0.1\n", ""), "missing key 'train.lr'; add it to section 'train'"),
    "source": ("prepare", params_text("data", "source", "mnist"), "data.source must be 'toy', 'iris', 'digits', 'csv', 'parquet' or 'synthetic', got 'mnist'"),
    "test_size 1": ("prepare", params_text("data", "test_size", 1), "data.test_size must be less than 1, got 1"),
    "test_size<0": ("prepare", params_text("data", "test_size", -0.2), "data.test_size must be greater than or equal to 0, got -0.2"),
    "standardize": ("prepare", params_text("data", "standardize", "yes"), "data.standardize must be 'auto', True or False, got 'yes'"),
    "features text": ("prepare", params_text("data", "features", "alcohol"), "data.features must be a valid list, got 'alcohol'"),
    "n_classes 1": ("prepare", params_text("data", "n_classes", 1), "data.n_classes must be greater than or equal to 2, got 1"),
    "delimiter": ("prepare", params_text("data", "delimiter", ":"), "data.delimiter must be ',', ';', '\\t' or '|', got ':'"),
    "encoding": ("prepare", params_text("data", "encoding", "klingon"), "data.encoding must be a text encoding Python knows, e.g. utf-8, latin-1, cp1252, utf-16, got 'klingon'"),
    "encoding base64": ("prepare", params_text("data", "encoding", "base64"), "data.encoding must be a text encoding Python knows"),
    "encoding undefined": ("prepare", params_text("data", "encoding", "undefined"), "data.encoding must be a text encoding Python knows"),
    "csv without label": ("prepare", "data:\n  source: csv\n  path: datasets/t.csv\n", "data.label must be the label column when data.source is csv, got None"),
    "misspelt section": ("prepare", "data:\n  source: toy\ntrian:\n  epochs: 10\n", "unknown section 'trian'; the sections are data, train, predict"),
    "not yaml": ("train", "train: [epochs: 1\n", "not valid YAML: "),
    "repeated key": ("train", "data:\n  source: toy\ntrain:\n  lr: 0.1\n  epochs: 10\n  lr: 0.2\n", 'not valid YAML: found duplicate key "lr" with value "0.2" (original value: "0.1") (line 6); fix it'),
    "not utf-8": ("train", b"data:\n  source: toy\ntrain:\n  lr: 0.1 # caf\xe9\n", "not valid YAML: 'utf-8' codec can't decode byte 0xe9 in position 42: invalid continuation byte; fix it"),
}  # fmt: skip


@pytest.mark.parametrize("stage, text, expected", PARAMS.values(), ids=PARAMS.keys())
def test_a_bad_parameter_is_one_line(workdir, stage, text, expected):
    (workdir / "params.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    before = files(workdir)
    message = run(stage)
    assert message.startswith("stage: error: params.yaml: " + expected) and len(message) < 400
    assert files(workdir) == before


def test_an_integral_float_is_that_integer():  # as `dvc exp run -S train.epochs=1e3` writes it
    params = section({"train": {"epochs": 1e3, "lr": 0.1, "seed": 1.0, "device": "cpu", "log_every": 100,
                                "double_softmax": False}}, "train")  # fmt: skip
    assert (params.epochs, params.seed) == (1000, 1)


HERE = "run the stage from the repository root, where params.yaml is"
PARAMS_FILES = {
    "none": f"parameters file not found; {HERE}",
    "a directory": f"is a directory, not the parameters file; {HERE}",
    "a symlink loop": "Too many levels of symbolic links; check that path, its permissions and the disk",
}


@pytest.mark.parametrize("kind, expected", PARAMS_FILES.items(), ids=PARAMS_FILES)
def test_a_params_file_that_cannot_be_read_is_one_line(workdir, kind, expected):
    (workdir / "params.yaml").unlink()
    if kind == "a directory":
        (workdir / "params.yaml").mkdir()
    elif kind == "a symlink loop":
        (workdir / "params.yaml").symlink_to("params.yaml")
    assert run("prepare") == f"stage: error: params.yaml: {expected}"
    assert not (workdir / "out.safetensors").exists()


LONG = "datasets/" + "a" * 300 + ".csv"
# Tables: (datasets/t.csv's bytes, or what stands in its place, what params.yaml adds to csv_params, the line's beginning) ---------
TABLES = {
    "no label": ("x,z\n1,a\n2,b\n", "", "datasets/t.csv: no label column 'y' (data.label); columns: x, z"),
    "nan": ("x,y\n1,a\nnan,b\n", "", f"datasets/t.csv, row 2: column 'x' has no value; {MISSING_FIX}"),
    "N/A": ("x,y\n1,a\nN/A,b\n", "", f"datasets/t.csv, row 2: column 'x' has no value; {MISSING_FIX}"),
    "dropped to one class": ("x,y\n1,a\nNA,b\n", "  missing: drop\n", "datasets/t.csv: fewer than two classes (a) once 1 rows with missing values are left out; a classifier needs two or more: fill in the gaps, or set data.missing: mean"),
    "no value, mean": ("x,z,y\nNA,1,a\nNA,2,b\n", "  missing: mean\n", "data.missing: column 'x' has no value in the training"),
    "one class": ("x,y\n1,a\n2,a\n", "", "datasets/t.csv: fewer than two classes (a); a classifier needs two or more"),
    "test_size": ("x,y\n1,a\n2,b\n3,b\n", "  test_size: 0.6\n", "data.test_size=0.6 leaves class 'a' (1 rows) without training rows; lower"),
    "NaN label": ("x,y\n0,1\n1,NaN\n2,2\n", "", "datasets/t.csv, row 2: column 'y' has no value; every row needs its class (data.missing: drop or mean leaves such rows out)"),
    "empty label": ("x,y\n1,a\n2,\n", "", "datasets/t.csv, row 2: column 'y' has no value; every row needs its class"),
    "null label": ("x,y\n1,a\n2,null\n", "", "datasets/t.csv, row 2: column 'y' has no value; every row needs its class"),
    "header twice": ("x,x,y\n1,2,a\n3,4,b\n", "", "datasets/t.csv: the header names column 'x' more than once; name each once"),
    "features label": ("x,y\n1,a\n2,b\n", "  features: [x, y]\n", "data.features or data.categorical names the label column 'y'; a model must not"),
    "not a number": ("x,y\n1,a\nseven,b\n", "", f"datasets/t.csv: text, not numbers, in column(s) x; {TEXT_FIX}"),
    "beyond float32": ("x,y\n1,a\n1e39,b\n", "", "datasets/t.csv, row 2: column 'x' is beyond float32's range; fix that value"),
    "not utf-8": (b"x,y\n1,a\n2,b\xe9\n", "", "datasets/t.csv: not a readable CSV (column 'y': row 2: CSV conversion error to string: invalid UTF8 data); set data.encoding to the file's encoding (e.g. latin-1, cp1252, utf-16)"),
    "utf-16 as utf-8": ("x,y\n1,a\n".encode("utf-16-le"), "", "datasets/t.csv: a NUL character in the header: UTF-16 text needs data.encoding utf-16"),
    "fields": ("x,y\n1,a\n2,b\n3,c,d\n", "", "datasets/t.csv: not a readable CSV (CSV parse error: row 3: Expected 2 columns, got 3: 3,c,d)"),
    "empty": ("x,y\n\n\n", "", "datasets/t.csv: the table is empty; it needs a header row and at least one data row"),
    "wrong delimiter": ("a,b,y\n1,2,x\n3,4,z\n", "  delimiter: ';'\n", "no label column 'y' (data.label); columns: a,b,y"),
    "utf-8 as utf-16": ("a,b,y\n1,2,x\n3,4,z\n", "  encoding: utf-16\n", "datasets/t.csv: not a readable CSV (UTF-16 stream does not start with BOM)"),
    "spaces around a name": ("a , y\n1,p\n2,q\n", "  label: a\n", "datasets/t.csv: no label column 'a' (data.label); columns: 'a ', ' y'"),  # kept, and shown
    "label a number": ("x,y\n1,a\n", "  label: 2020\n", "datasets/t.csv: no label column '2020' (data.label); columns: x, y"),  # a name
    "nameless second column": ("a,,y\n0,1,p\n1,2,q\n", "", "datasets/t.csv: column 2 has no name; name it, or list data.features"),
    "exclude a column it lacks": ("a,b,y\n0,1,p\n1,2,q\n", "  exclude: [id]\n", "datasets/t.csv: no column 'id' (data.exclude); columns: a, b, y"),
    "path too long": ("x,y\n1,a\n", f"  path: {LONG}\n", f"{LONG[:200]}: File name too long; check that path, its permissions and the disk"),
    "path outside": ("x,y\n1,a\n", "  path: t.csv\n", "data.path: t.csv is not under datasets/; put the file there"),
    "path missing": ("x,y\n1,a\n", "  path: datasets/none.csv\n", "datasets/none.csv: table data.path names not found; check data.path"),
    "path a directory": ("a directory", "", "datasets/t.csv: is a directory, not the table data.path names; check data.path"),
    "unreadable": ("unreadable", "", "datasets/t.csv: Permission denied; check that path, its permissions and the disk"),
    "path absolute": ("x,y\n1,a\n", "  path: /tmp/t.csv\n", "data.path: /tmp/t.csv is not under datasets/; put the file there"),
    "label alone": ("y\na\nb\n", "", "datasets/t.csv: no feature columns besides the label 'y'"),
    "feature not a column": ("x,y\n1,a\n", "  features: [z]\n", "datasets/t.csv: no column 'z' (data.features); columns: x, y"),
    "label an identifier": ("x,y\n" + "".join(f"{i},row{i}\n" for i in range(300)), "", "data.label: column 'y' gives 300 classes to 300 rows; is it an identifier? Name the column that holds the classes"),
    "category an identifier": ("y,id,v\n" + "".join(f"{'AB'[i % 2]},id-{i:05},{i}\n" for i in range(300)), "  categorical: [id]\n", "data.categorical: column 'id' has 300 categories in 300 rows; is it an identifier? List it in data.exclude instead"),
}  # fmt: skip


@pytest.mark.parametrize("text, extra, expected", TABLES.values(), ids=TABLES.keys())
def test_a_bad_table_is_one_line(workdir, monkeypatch, text, extra, expected):
    if text == "a directory":
        (workdir / "datasets" / "t.csv").unlink()
        (workdir / "datasets" / "t.csv").mkdir()
    elif text == "unreadable":  # what a user without the permission gets (root, who runs CI, may read anything)
        denied = PermissionError(13, "Permission denied", "datasets/t.csv")
        monkeypatch.setattr("stages.plumbing.files.open", lambda *args: (_ for _ in ()).throw(denied), raising=False)
    else:
        (workdir / "datasets" / "t.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    (workdir / "params.yaml").write_text(csv_params(extra))
    message = run("prepare")
    assert message.startswith("stage: error: ") and expected in message and len(message) < 400, message
    assert not (workdir / "out.safetensors").exists()


# Tables read as they are: (what params.yaml adds, datasets/t.csv's bytes, the classes, the features or None) --------------
READ = {
    "BOM and CRLF": ("", '\ufeff"y",x\r\na,1\r\nb,2\r\n'.encode(), ("a", "b"), [[1], [2]]),
    "blank lines": ("", "x,y\n1,a\n\n2,b\n\n", ("a", "b"), [[1], [2]]),
    "numeric labels": ("", "x,y\n3,2.5\n1,10\n2,9\n", ("2.5", "9", "10"), None),
    "CR alone": ("", "a,y\r1,x\r3,z\r5,x\r", ("x", "z"), [[1], [3], [5]]),
    "many blank lines, wide": ("", ",".join(f"f{i}" for i in range(2000)) + ",y\n" + ",".join(["1"] * 2000) + ",a\n" + "\n" * 4_000_000 + ",".join(["2"] * 2000) + ",b\n", ("a", "b"), None),  # not 32 GB of rows
    "EBCDIC": ("  encoding: cp037\n", "a,b,y\n1,2,x\n3,4,z\n5,6,x\n".encode("cp037"), ("x", "z"), [[1, 2], [3, 4], [5, 6]]),
    "large integers": ("", "a,y\n1,9007199254740992\n2,9007199254740993\n3,10\n", ("10", "9007199254740992", "9007199254740993"), None),
    "1e999999999": ("", "a,y\n1,1e999999999\n2,1\n", ("1", "1e999999999"), None),  # compared exactly, and at once
    "1/0": ("", "a,y\n1,1/0\n2,1\n", ("1", "1/0"), None),  # not a decimal: a name
    "name spanning lines": ("", '"a\nb",y\n1,p\n2,q\n', ("p", "q"), [[1], [2]]),
    "quote in a name": ("", 'a"b,"c\nd",y\n1,2,x\n3,4,z\n', ("x", "z"), [[1, 2], [3, 4]]),
    "blank first line": ("", "\na;b;y\n1;2;x\n3;4;z\n", ("x", "z"), [[1, 2], [3, 4]]),
    "labels as data": ("", 'x,y\n1,"two\nlines"\n2,\x1b[31mred\n3,plain\n', ("\x1b[31mred", "plain", "two\nlines"), None),
}  # fmt: skip


@pytest.mark.parametrize("extra, text, classes, x", READ.values(), ids=READ.keys())
def test_a_table_as_it_is_exported_is_read(workdir, capsys, extra, text, classes, x):
    (workdir / "datasets" / "t.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    (workdir / "params.yaml").write_text(csv_params(extra))
    prepare.main(ARGS["prepare"])
    prepared = PreparedFile("out.safetensors").load()
    assert prepared.classes == classes and (x is None or prepared.train.x.tolist() == x)
    assert capsys.readouterr().err.count("\n") == 1  # a class name cannot break or forge a line of the log


def test_a_source_alone_is_enough(workdir):
    (workdir / "params.yaml").write_text("data:\n  source: iris\n")
    prepare.main(ARGS["prepare"])
    assert PreparedFile("out.safetensors").load().classes == ("setosa", "versicolor", "virginica")


def test_a_quoted_line_break_where_pyarrow_starts_a_block(workdir):
    """pyarrow reads a CSV in 1 MiB blocks; a quoted line break at a block's edge is still one field."""
    filler = b"1,2,x\n" * ((1 << 20) // 6 - 1)
    (workdir / "datasets" / "t.csv").write_bytes(b"a,b,y\n" + filler + b'7,8,"q\n5,6,z"\n' + b"3,4,w\n" * 20)
    (workdir / "params.yaml").write_text(csv_params())
    prepare.main(ARGS["prepare"])
    prepared = PreparedFile("out.safetensors").load()
    assert prepared.classes == ("q\n5,6,z", "w", "x") and len(prepared.train.y) == len(filler) // 6 + 21


# The files of earlier stages: (the stage, what is done to the trained directory, the line) ----------
def rewrite(path: str, arrays: dict | None = None, info: dict | None = None, drop: str = "") -> Callable[[Path], None]:
    """Rewrite the tensor file `path` with some arrays or info keys changed (or `drop` dropped)."""

    def change(workdir: Path) -> None:
        with safe_open(path, framework="np") as f:
            old_arrays, old_info = {name: f.get_tensor(name) for name in f.keys()}, json.loads(f.metadata()["info"])  # noqa: SIM118
        new_info = {k: v for k, v in (old_info | (info or {})).items() if k != drop}
        (workdir / path).write_bytes(tensors_bytes(old_arrays | (arrays or {}), new_info))

    return change


def both(*changes: Callable[[Path], None]) -> Callable[[Path], None]:
    return lambda workdir: [change(workdir) for change in changes] and None


def write(path: str, content: bytes | str) -> Callable[[Path], None]:
    def change(workdir: Path) -> None:
        (workdir / path).write_bytes(content.encode() if isinstance(content, str) else content)

    return change


def prepared(table: Table, **params) -> Callable[[Path], None]:
    data = prepare_table(table, DataParams(source="toy", **params))
    return lambda workdir: write_outputs({"data/prepared.safetensors": prepared_bytes(data)})


PREPARED, MODEL, COSTS = "data/prepared.safetensors", "models/low_level.safetensors", "plots/cost/low_level.tsv"
DVC_PREPARE, DVC_TRAIN = "run `dvc repro prepare` first", "run `dvc repro` to train it"
DIGITS = load_table(DataParams(source="digits"))
INPUTS = {
    "no prepared data": ("train", lambda w: (w / PREPARED).unlink(), f"{PREPARED}: prepared data not found; {DVC_PREPARE}"),
    "prepared data is a CSV": ("train", write(PREPARED, "x,y\n1,2\n"), f"{PREPARED}: not a readable prepared data ("),
    "prepared data a directory": ("train", both(lambda w: (w / PREPARED).unlink(), lambda w: (w / PREPARED).mkdir()), f"{PREPARED}: is a directory, not the prepared data; {DVC_PREPARE}"),
    "a model as prepared data": ("evaluate", lambda w: (w / PREPARED).write_bytes((w / MODEL).read_bytes()), f"{PREPARED}: not a prepared data of this version of the project ('softmax-three-ways model 3', not 'softmax-three-ways prepared data 2'); {DVC_PREPARE}"),
    "no model": ("evaluate", lambda w: (w / MODEL).unlink(), f"{MODEL}: trained model not found; {DVC_TRAIN}"),
    "model truncated": ("evaluate", lambda w: (w / MODEL).write_bytes((w / MODEL).read_bytes()[:100]), f"{MODEL}: not a readable trained model ("),
    "weights beyond float32": ("evaluate", rewrite(MODEL, {"W": np.float32([[-1e38, 1e38, 1e38]] * 4), "b": np.zeros(1, np.float32)}), "train.cost is "),  # finite; the cost, in float64, far beyond float32
    "another dataset": ("evaluate", lambda w: write_outputs({PREPARED: prepared_bytes(prepare_table(DIGITS, DataParams(source="digits")))}), f"{MODEL}: was trained on other prepared data than {PREPARED}; {DVC_TRAIN}"),
    "another class list": ("evaluate", prepared(Table(toy().x, toy().y, ("a", "b", "c"))), f"{MODEL}: was trained on other prepared data than {PREPARED}"),
    "another split": ("evaluate", prepared(toy(), standardize=True), f"{MODEL}: was trained on other prepared data than {PREPARED}; {DVC_TRAIN}"),
    # predict: new rows (new.csv) and the model file alone
    "new rows lack a column": ("predict", write("new.csv", "x1,x2,x4\n1,2,3\n"), "new.csv: no column 'x3', which the model reads; columns: x1, x2, x4; give a table with the model's columns (under dvc repro, predict.path names it)"),
    "new rows, text": ("predict", write("new.csv", "x1,x2,x3,x4\n1,2,3,4\n1,abc,3,4\n"), "new.csv: not a readable CSV (column 'x2': row 2: CSV conversion error to float: invalid value 'abc'); the model reads it as a number"),
    "new rows, a gap": ("predict", write("new.csv", "x4,x3,x2,x1\n1,2,3,4\n1,NA,3,4\n"), "new.csv, row 2: column 'x3' has no value; the model was trained with data.missing: error, so it needs every value; fill it in"),
    "new rows, inf": ("predict", write("new.csv", "x1,x2,x3,x4\n1,2,3,inf\n"), "new.csv, row 1: column 'x4' is beyond float32's range; fix that value"),
    "new rows, none": ("predict", write("new.csv", "x1,x2,x3,x4\n"), "new.csv: the table is empty; it needs a header row and at least one data row"),
    "new rows missing": ("predict", lambda w: None, "new.csv: table not found; check the path"),
    "model is prepared data": ("predict", both(write("new.csv", "x1,x2,x3,x4\n1,2,3,4\n"), lambda w: (w / MODEL).write_bytes((w / PREPARED).read_bytes())), f"{MODEL}: not a trained model of this version of the project ('softmax-three-ways prepared data 2', not"),
    "model of another version": ("predict", both(write("new.csv", "x1\n1\n"), rewrite(MODEL, info={"format": "softmax-three-ways model 0"})), f"{MODEL}: not a trained model of this version of the project ('softmax-three-ways model 0', not 'softmax-three-ways model 3')"),
    # Files of format 1 kept the text columns in a mapping, read back in alphabetical order: never read.
    "model of format 1": ("predict", rewrite(MODEL, info={"format": "softmax-three-ways model 1", "preprocessing": {"numeric": ["x1", "x2"], "categories": {"x4": ["a"], "x3": ["b"]}, "missing": "error"}}), f"{MODEL}: not a trained model of this version of the project ('softmax-three-ways model 1', not 'softmax-three-ways model 3'); give the path"),
    "prepared data of format 1": ("train", rewrite(PREPARED, drop="format", info={"preprocessing": {"numeric": ["x1", "x2", "x3", "x4"], "categories": {}, "missing": "error"}}), f"{PREPARED}: not a prepared data of this version of the project (None, not 'softmax-three-ways prepared data 2'); {DVC_PREPARE}"),
}  # fmt: skip


@pytest.mark.parametrize("stage, change, expected", INPUTS.values(), ids=INPUTS.keys())
def test_an_input_that_is_missing_damaged_or_of_another_run_is_one_line(trained, stage, change, expected):
    change(trained)
    before = files(trained)
    message = run(stage)
    assert message.startswith("stage: error: ") and expected in message, message
    assert files(trained) == before


# Inputs that change while a stage works: (the stage, the function it is in then, the change, the input) --
def edit_params(workdir: Path) -> None:  # params.yaml edited in place, as an editor saves it
    with open(workdir / "params.yaml", "a") as f:
        f.write("# edited\n")


STANDARDIZED = prepared_bytes(prepare_table(toy(), DataParams(source="toy", standardize=True)))
CHANGES = {
    # prepare run by hand meanwhile, in another process: a new file renamed into place
    "prepared under train": (train, "train", both(write("new.safetensors", STANDARDIZED), lambda w: os.replace(w / "new.safetensors", w / PREPARED)), PREPARED),
    "params under train": (train, "train", edit_params, "params.yaml"),
    "params under prepare": (prepare, "prepare", edit_params, "params.yaml"),
    # the model replaced by a copy of itself: another file, the same bytes
    "model under evaluate": (evaluate, "confusion_csv", both(lambda w: os.replace(w / MODEL, w / "old.safetensors"), lambda w: (w / MODEL).write_bytes((w / "old.safetensors").read_bytes())), MODEL),
}  # fmt: skip


@pytest.mark.parametrize("stage, hooked, change, what", CHANGES.values(), ids=CHANGES.keys())
def test_an_input_changed_under_a_stage_leaves_nothing_written(trained, monkeypatch, stage, hooked, change, what):
    """Outputs would name inputs they were not made from (a model that evaluate accepts, a dvc.lock that
    DVC records after the command)."""
    original = getattr(stage, hooked)

    def changing(*args, **kwargs):
        change(trained)
        return original(*args, **kwargs)

    monkeypatch.setattr(stage, hooked, changing)
    name = stage.__name__.removeprefix("stages.")
    outputs = {"prepare": ARGS["prepare"], "train": TRAIN_ARGS[2:], "evaluate": EVALUATE_ARGS[2:]}[name]
    before = {path: (trained / path).read_bytes() for path in outputs if (trained / path).is_file()}
    assert run(name) == f"stage: error: {what} changed while the stage ran, so nothing was written; run the stage again"
    assert {path: (trained / path).read_bytes() for path in outputs if (trained / path).is_file()} == before


# Outputs: (the stage, its command line, the line) ---------------------------------------------------
OWN = "give each its own path"
ELSEWHERE = "is under datasets/, where the tables live; write it elsewhere"
OUTPUTS = {
    "model = data": ("train", [*TRAIN_ARGS[:2], PREPARED, *TRAIN_ARGS[3:]], f"the output model ({PREPARED}) is the same file as the data; {OWN}"),
    "test_costs = costs": ("train", [*TRAIN_ARGS[:4], COSTS, TRAIN_ARGS[5]], f"the output test_costs ({COSTS}) is the same file as the costs; {OWN}"),
    "model = params.yaml": ("train", [*TRAIN_ARGS[:2], "./params.yaml", *TRAIN_ARGS[3:]], f"the output model (./params.yaml) is the same file as the params.yaml; {OWN}"),
    "confusion = metrics": ("evaluate", [*EVALUATE_ARGS[:2], "metrics/x.json", "metrics/../metrics/x.json"], f"the output confusion (metrics/../metrics/x.json) is the same file as the metrics; {OWN}"),
    "metrics = model": ("evaluate", [*EVALUATE_ARGS[:2], MODEL, EVALUATE_ARGS[3]], f"the output metrics ({MODEL}) is the same file as the model; {OWN}"),
    "prepare under datasets": ("prepare", ["datasets/t.csv", "new.csv"], f"the output out (datasets/t.csv) {ELSEWHERE}"),
    "train under datasets": ("train", [*TRAIN_ARGS[:2], "datasets/t.csv", *TRAIN_ARGS[3:]], f"the output model (datasets/t.csv) {ELSEWHERE}"),
    "evaluate under datasets": ("evaluate", [*EVALUATE_ARGS[:3], "datasets/sub/../t.csv"], f"the output confusion (datasets/sub/../t.csv) {ELSEWHERE}"),
    "a directory": ("train", [*TRAIN_ARGS[:2], "models", *TRAIN_ARGS[3:]], "models: cannot write (a directory, a device, a pipe or a link, not a regular file; write it elsewhere); nothing was written"),
    "a file where a folder goes": ("train", [*TRAIN_ARGS[:3], "log/costs.tsv", *TRAIN_ARGS[4:]], "log: cannot write (File exists); nothing was written"),
    "a pipe": ("train", [*TRAIN_ARGS[:4], "pipe", TRAIN_ARGS[5]], "pipe: cannot write (a directory, a device, a pipe or a link, not a regular file; write it elsewhere); nothing was written"),
    "predictions = new rows": ("predict", [MODEL, "new.csv", "./new.csv"], f"the output out (./new.csv) is the same file as the table; {OWN}"),
    "predictions = model": ("predict", [MODEL, "new.csv", MODEL], f"the output out ({MODEL}) is the same file as the model; {OWN}"),
    "a link to a file": ("train", [*TRAIN_ARGS[:4], "link", TRAIN_ARGS[5]], "link: cannot write (a directory, a device, a pipe or a link, not a regular file; write it elsewhere); nothing was written"),
}  # fmt: skip


@pytest.mark.parametrize("stage, argv, expected", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_an_output_that_would_lose_a_file_is_refused(trained, stage, argv, expected):
    """A link is never replaced: /dev/stdout is one, to the log file when stdout is redirected."""
    os.mkfifo(trained / "pipe")
    (trained / "link").symlink_to("log")
    (trained / "log").write_text("a log\n")
    before = files(trained)
    assert run(stage, argv) == f"stage: error: {expected}"
    assert files(trained) == before and (trained / "pipe").is_fifo() and (trained / "link").is_symlink()


# Training that cannot go on: (params.yaml's text, the environment, the line) ------------------------
def huge_test_row(workdir: Path) -> None:
    """One finite but huge test row: its cost overflows, though every training cost is fine."""
    training = Split(np.array([[0.0], [1.0]], dtype=np.float32), np.array([0, 1]))
    huge = Split(np.array([[3e38]], dtype=np.float32), np.array([0]))
    write_outputs({PREPARED: prepared_bytes(Prepared(training, huge, ("p", "q"), True, Preprocessing(("x",))))})


DIVERGED = "standardize the data (data.standardize: true), or lower train.lr"
TRAINING = {
    "lr 1e38": (params_text("train", "lr", 1e38), {}, "params.yaml: train.lr must be less than or equal to 1000000, got 1e+38"),
    "weight decay": (params_text("train", "weight_decay", 1e6), {}, "with train.lr=0.1, train.weight_decay=1000000.0; standardize the data (data.standardize: true), or lower train.lr or train.weight_decay"),
    "test cost": (params_text(), {"prepared": huge_test_row}, "the test_cost at epoch 100 is "),
    "last update": ("data:\n  source: toy\ntrain:\n  epochs: 1\n  lr: 3\n  seed: 1\n  device: cpu\n  log_every: 1\n  double_softmax: false\n  weight_decay: 3.0e+38\n", {}, "the weights became infinite or NaN at epoch 1 with train.lr=3.0, train.weight_decay=3e+38; standardize the data (data.standardize: true), or lower train.lr or train.weight_decay"),
    "cost rose": (params_text("train", "lr", 0.9), {}, f"the cost rose from 1.099 to 5.719 at epoch 1000 with train.lr=0.9; {DIVERGED}"),
    "a RANK and a run id left in a shell": (params_text("train", "lr", -1), {"RANK": "1", "TORCHELASTIC_RUN_ID": "x"}, "params.yaml: train.lr must be greater than 0, got -1"),
}  # fmt: skip
if not torch.cuda.is_available():
    TRAINING["cuda"] = (params_text("train", "device", "cuda"), {}, "train.device is 'cuda' but CUDA is not available here (torch ")  # fmt: skip


@pytest.mark.parametrize("text, environment, expected", TRAINING.values(), ids=TRAINING.keys())
def test_training_that_cannot_go_on_is_one_line(workdir, monkeypatch, text, environment, expected):
    (workdir / "params.yaml").write_text(text)
    for name, value in environment.items():
        if name == "prepared":
            value(workdir)
        elif value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    message = run("train")
    assert message.startswith("stage: error: ") and expected in message, message
    assert not (workdir / "models").exists() and not (workdir / "plots").exists()


# A line that names a fix, and that fix applied as written: (the table, its data section, a part of the
# line, the fix). Applied, the fix makes prepare and train pass, or moves them on to another line.
GAPS, TEXT = "x,y\n1,a\nNA,b\n3,b\n4,a\n", "x,c,y\n1,p,a\n2,q,b\n3,p,b\n4,q,a\n"
UNSCALED = "x,z,y\n" + "".join(f"{1000 + i * 37 % 101},{i % 7},{'ab'[i % 2]}\n" for i in range(40))  # far from 0
FIXES = {
    "missing: drop": (GAPS, {}, "set data.missing: drop", {"data.missing": "drop"}),
    "missing: mean": (GAPS, {}, "or mean", {"data.missing": "mean"}),
    "text: categorical": (TEXT, {}, "list each in data.categorical", {"data.categorical": ["c"]}),
    "text: exclude": (TEXT, {}, "or in data.exclude", {"data.exclude": ["c"]}),
    "text in features: categorical": (TEXT, {"features": ["x", "c"]}, "list each in data.categorical", {"data.categorical": ["c"]}),
    "text in several columns": ("x,c,d,y\n1,p,u,a\n2,q,v,b\n3,p,v,b\n4,q,u,a\n", {}, "text, not numbers, in column(s) c, d; list each", {"data.categorical": ["c", "d"]}),
    "text in features: exclude": (TEXT, {"features": ["x", "c"]}, "or in data.exclude", {"data.exclude": ["c"]}),
    "no value at all": ("x,z,y\n1,NA,a\n2,NA,b\n3,NA,b\n", {"missing": "mean"}, "list it in data.exclude", {"data.exclude": ["z"]}),
    "label a feature": ("x,y\n1,a\n2,b\n", {"features": ["x", "y"]}, "remove it from data.features", {"data.features": ["x"]}),
    "second column nameless": ("x,,y\n1,2,a\n2,3,b\n", {}, "list data.features", {"data.features": ["x"]}),
    "test_size": ("x,y\n1,a\n2,b\n3,b\n", {"test_size": 0.6}, "lower data.test_size", {"data.test_size": 0.3}),
    "unscaled: standardize": (UNSCALED, {"standardize": False}, "data.standardize: true", {"data.standardize": True}),
    "unscaled: lower lr": (UNSCALED, {"standardize": False}, "lower train.lr", {"train.lr": 1e-6}),
}  # fmt: skip


@pytest.mark.parametrize("table, data, fix_named, fix", FIXES.values(), ids=FIXES.keys())
def test_a_fix_a_line_names_works_as_written(workdir, table, data, fix_named, fix):
    (workdir / "datasets" / "t.csv").write_text(table)
    params = YAML(typ="safe").load(params_text())
    params["data"] = {"source": "csv", "path": "datasets/t.csv", "label": "y", **data}

    def line() -> str:
        YAML(typ="safe").dump(params, workdir / "params.yaml")
        for stage, args in (("prepare", ["data/prepared.safetensors", "new.csv"]), ("train", TRAIN_ARGS)):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as stderr:
                if boundary(stage, lambda: MAINS[stage](args)):  # noqa: B023 (called at once)
                    return stderr.getvalue()
        return ""

    before = line()
    assert fix_named in before, before
    for key, value in fix.items():
        section, name = key.split(".")
        params[section][name] = value
    assert line() != before


@pytest.mark.parametrize("error, status, line", [
    (MemoryError(), 1, "train: error: out of memory; lower the data's or the run's size, or give it more"),
    (RuntimeError("something the code did not expect\nsecond line"), 70, "train: bug: RuntimeError: something the code did not expect (not your mistake: please report it with params.yaml; SOFTMAX_TRACEBACK=1 shows the traceback)"),
])  # fmt: skip
def test_out_of_memory_and_a_bug_are_one_line_each(workdir, monkeypatch, capsys, error, status, line):
    monkeypatch.setattr(train, "train", Mock(side_effect=error))
    assert boundary("train", lambda: train.main(TRAIN_ARGS)) == status
    assert capsys.readouterr().err.splitlines()[-1] == line
    monkeypatch.setenv("SOFTMAX_TRACEBACK", "1")  # the traceback on request: the exception, as Python shows it
    with pytest.raises(type(error)):
        boundary("train", lambda: train.main(TRAIN_ARGS))
