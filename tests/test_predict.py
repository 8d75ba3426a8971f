"""From a table with gaps and text columns to predictions: the preprocessing fitted on the training
split, predict against evaluate (one computation), the ONNX file against predict, and the quality bar
against scikit-learn on the same split and features."""

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from stages import evaluate, predict, prepare, train
from stages.classifier import load_classifier, log_probabilities
from stages.data import load_prepared
from stages.features import Preprocessing, fit
from stages.plumbing.params import DataParams
from stages.plumbing.process import boundary
from stages.plumbing.tables import Table, read_csv

SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def survey_csv(rows: int = 344, seed: int = 0) -> str:
    """A table like a well-known penguin survey: a text label, two text columns among four measurements,
    and missing values written NA (about 3 % of the measurements, 4 % of one text column)."""
    rng = np.random.default_rng(seed)
    species = rng.integers(0, 3, rows)
    centres = np.array([[39, 18, 190, 3700], [49, 18, 196, 3730], [47, 15, 217, 5080]], dtype=float)
    spread = np.array([3, 1.2, 7, 450])
    measured = centres[species] + rng.normal(size=(rows, 4)) * spread
    islands = np.array(["Biscoe", "Dream", "Torgersen"])
    island = np.where(species == 2, "Biscoe", islands[rng.integers(0, 3, rows)])
    sex = np.array(["female", "male"])[rng.integers(0, 2, rows)]
    lines = ["species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex"]
    for i in range(rows):
        values = [f"{v:.1f}" if rng.random() > 0.03 else "NA" for v in measured[i]]
        lines.append(",".join([SPECIES[species[i]], island[i], *values, sex[i] if rng.random() > 0.04 else "NA"]))
    return "\n".join(lines) + "\n"


SURVEY = {"source": "csv", "path": "datasets/survey.csv", "label": "species", "test_size": 0.25, "standardize": True}
TRAIN = "train:\n  epochs: 300\n  lr: 0.5\n  seed: 1\n  device: cpu\n  log_every: 100\n  double_softmax: false\n"


def params_yaml(train: str = TRAIN, **data) -> str:
    return "data:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in data.items()) + train


def run_pipeline(workdir: Path, impl: str = "high_level") -> dict[str, Path]:
    """prepare, train, evaluate and predict (on prepare's new rows) in `workdir`, as dvc repro runs them."""
    paths = {name: workdir / name for name in ("prepared", "new.csv", "model", "onnx", "confusion", "out.csv")}
    with (
        contextlib.chdir(workdir),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        prepare.main(["prepared", "new.csv"])
        train.main([impl, "prepared", "model", "costs.tsv", "test_costs.tsv", "onnx"])
        evaluate.main(["prepared", "model", "costs.tsv", "metrics.json", "confusion"])
        predict.main(["model", "new.csv", "out.csv"])
    return paths


@pytest.fixture
def survey(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "survey.csv").write_text(survey_csv())
    return tmp_path


CASES = {  # the data section (beyond the survey's), the implementation
    "categorical, gaps filled": ({"categorical": ["island", "sex"], "missing": "mean"}, "high_level"),
    "categorical, gaps dropped": ({"categorical": ["island", "sex"], "missing": "drop"}, "functional"),
    "iris, no gaps": ({"source": "iris"}, "high_level"),
    "numbers only, gaps filled, scalar b": (
        {"features": ["bill_length_mm", "body_mass_g"], "missing": "mean"},
        "low_level",
    ),
}


@pytest.mark.parametrize("data, impl", CASES.values(), ids=CASES.keys())
def test_predict_evaluate_and_onnx_agree_on_the_evaluation_rows(survey, data, impl):
    (survey / "params.yaml").write_text(params_yaml(**(SURVEY | data)))
    paths = run_pipeline(survey, impl)
    model, prepared = load_classifier(paths["model"]), load_prepared(paths["prepared"])
    rows = list(csv.DictReader(io.StringIO(paths["out.csv"].read_text())))
    confusion = list(csv.DictReader(io.StringIO(paths["confusion"].read_text())))
    assert [row["row"] for row in rows] == [str(i) for i in range(1, len(prepared.eval.y) + 1)]
    assert [row["predicted"] for row in rows] == [row["predicted"] for row in confusion]
    expected = np.exp(log_probabilities(model, prepared.eval.x)).astype(np.float32)
    written = np.array([[float(row[f"p_{c}"]) for c in model.classes] for row in rows], dtype=np.float32)
    assert np.array_equal(written, expected)  # one computation: the same float32 numbers
    # The ONNX file, from the raw input vectors (NaN where missing), in onnxruntime.
    table = read_csv(
        "new.csv", None, model.preprocessing.numeric, categorical=tuple(model.preprocessing.categories), missing=None
    )
    inputs, _ = model.preprocessing.inputs(table)
    session = onnxruntime.InferenceSession(paths["onnx"].read_bytes(), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"inputs": inputs})
    np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
    assert np.array_equal(probabilities.argmax(1), expected.argmax(1))
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["inputs"]) == model.preprocessing.features
    assert json.loads(metadata["classes"]) == list(model.classes)


@pytest.mark.parametrize("missing", ["mean", "drop"])
def test_the_quality_bar_against_scikit_learn(survey, missing):
    """On the survey table, with its text columns one-hot and its gaps filled in or dropped, high_level's
    test accuracy is within 0.02 of LogisticRegression's on the same split and input vectors. (low_level
    and functional keep the lesson's scalar b, which cannot learn a class's prior: docs/data.md.)"""
    from sklearn.linear_model import LogisticRegression

    data = SURVEY | {"categorical": ["island", "sex"], "missing": missing}
    (survey / "params.yaml").write_text(params_yaml(TRAIN.replace("300", "1000"), **data))
    paths = run_pipeline(survey)
    prepared = load_prepared(paths["prepared"])
    reference = LogisticRegression(max_iter=5000).fit(prepared.train.x, prepared.train.y)
    theirs = reference.score(prepared.eval.x, prepared.eval.y)
    ours = json.loads((survey / "metrics.json").read_text())["test"]["accuracy"]
    assert ours >= theirs - 0.02 and theirs > 0.95, (ours, theirs)


def test_the_preprocessing_comes_from_the_training_split_only():
    train = Table(
        np.array([[1.0], [np.nan], [3.0]], dtype=np.float32),
        np.array([0, 1, 0]),
        ("a", "b"),
        ("x",),
        {"c": np.array(["q", "p", None], dtype=object)},
    )
    made = fit(train, "mean", standardize=False)
    assert made.features == ["x", "c=p", "c=q"]  # the categories sorted
    np.testing.assert_array_equal(made.fill, np.float32([2.0, 0.5, 0.5]))  # each category's share
    new = Table(np.array([[np.nan], [5.0]], np.float32), np.zeros(2), (), ("x",), {"c": np.array(["r", None])})
    inputs, unknown = made.inputs(new)
    assert unknown == 1  # "r": a category the training split never had: all 0
    np.testing.assert_array_equal(made.apply(inputs), np.float32([[2, 0, 0], [5, 0.5, 0.5]]))


MISSING = {  # a table, data.missing, what prepare keeps (training rows, left out) or the line it ends with
    "drop": ("x,y\n1,a\nNA,b\n3,b\n,a\n5,\n6,a\n", "drop", (3, 3)),
    "mean keeps rows, not labels": ("x,y\n1,a\nNA,b\n3,b\n,a\n5,\n6,a\n", "mean", (5, 1)),
    "error": ("x,y\n1,a\nN/A,b\n", "error", "datasets/t.csv, line 3: column 'x' is missing ('N/A'); set data.missing"),
    "label, error": ("x,y\n1,a\n2,null\n", "error", "line 3: the label column 'y' is missing ('null'); every row needs its class"),
    "dropped to nothing": ("x,y\n1,a\nNA,b\n", "drop", "fewer than two classes (a)"),
    "all missing, mean": ("x,z,y\nNA,1,a\nNA,2,b\n", "mean", "data.missing: column 'x' has no value in the training"),
    "text, not categorical": ("x,y\nDream,a\n", "error", "'Dream'; list it in data.categorical, or leave it out of data.features"),
}  # fmt: skip


@pytest.mark.parametrize("text, missing, expected", MISSING.values(), ids=MISSING.keys())
def test_missing_values_as_data_missing_says(survey, text, missing, expected):
    from stages.plumbing.errors import UserError

    (survey / "datasets" / "t.csv").write_text(text)
    params = DataParams(source="csv", path="datasets/t.csv", label="y", missing=missing)
    if isinstance(expected, str):
        with pytest.raises(UserError) as error:
            prepare.prepare(params)
        assert expected in str(error.value)
    else:
        prepared, _, left_out = prepare.prepare(params)
        assert (len(prepared.train.y), left_out) == expected
        assert np.isfinite(prepared.train.x).all()


def test_the_model_file_alone_carries_the_preprocessing(survey):
    data = SURVEY | {"categorical": ["island", "sex"], "missing": "mean"}
    (survey / "params.yaml").write_text(params_yaml(**data))
    run_pipeline(survey)
    model = load_classifier("model")
    assert model.preprocessing.same(load_prepared("prepared").preprocessing)
    assert model.preprocessing.features[:4] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    assert model.preprocessing.features[4:] == [
        "island=Biscoe",
        "island=Dream",
        "island=Torgersen",
        "sex=female",
        "sex=male",
    ]
    assert isinstance(model.preprocessing, Preprocessing) and model.info["impl"] == "high_level"
    # Columns in another order, extra columns, no label: the same predictions.
    (survey / "datasets" / "shuffled.csv").write_text(
        "note,sex,body_mass_g,island,flipper_length_mm,bill_depth_mm,bill_length_mm\n"
        "x,male,3700,Dream,190,18,39\ny,,5080,Biscoe,217,15,47\nz,female,NA,Atlantis,196,18,49\n"
    )
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        predict.main(["model", "datasets/shuffled.csv", "p.csv"])
    assert stderr.getvalue().endswith("; 1 with a category new to the model; 2 filled in\n")
    assert [row["predicted"] for row in csv.DictReader(io.StringIO(Path("p.csv").read_text()))][:2] == [
        "Adelie",
        "Gentoo",
    ]


def parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


ROUND_TRIPS = {  # a table (CSV text, or Parquet columns), its data section: prepare's new rows read back as prepared
    "blank and NA-like categories": ("y,c,v\nA,x,1\nB,y,2\nA, ,3\nB,y,4\nA,x,5\nB,NA ,6\n", {"categorical": ["c"], "missing": "mean"}),
    "NA-like text in Parquet": ({"y": ["A", "B"] * 30, "c": ["NA", "null", "N/A", "ok"] * 15, "v": [float(i) for i in range(60)]}, {"categorical": ["c"], "missing": "mean"}),
    "one column with gaps": ("y,v\n" + "".join(f"{'AB'[i % 2]},{'NA' if i % 4 == 0 else i}\n" for i in range(20)), {"missing": "mean", "standardize": True}),
    "whole floats as categories": ({"y": ["A", "B"] * 4, "year": [2007.0, None] * 4, "v": [1.0, 2.0] * 4}, {"categorical": ["year"], "missing": "mean"}),
}  # fmt: skip


@pytest.mark.parametrize("table, data", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_new_rows_read_back_as_the_table_was_read(survey, table, data):
    """prepare's new rows (the evaluation rows, as the table had them) are read by predict as prepare read
    the table: the same rows, in order, and evaluate's probabilities to the bit."""
    path = "datasets/t.csv" if isinstance(table, str) else "datasets/t.parquet"
    if isinstance(table, str):
        (survey / path).write_text(table)
    else:
        parquet(survey / path, table)
    source = {"source": "csv" if isinstance(table, str) else "parquet", "path": path, "label": "y"}
    (survey / "params.yaml").write_text(params_yaml(**source, **data))
    paths = run_pipeline(survey, "functional")
    model, prepared = load_classifier(paths["model"]), load_prepared(paths["prepared"])
    written = np.loadtxt(paths["out.csv"], delimiter=",", skiprows=1, usecols=range(2, 4), dtype=np.float32)
    assert np.array_equal(written, np.exp(log_probabilities(model, prepared.eval.x)).astype(np.float32))


def test_a_failing_predict_says_one_line_and_no_summary(survey):
    (survey / "params.yaml").write_text(params_yaml(**SURVEY, categorical=["island", "sex"], missing="mean"))
    run_pipeline(survey)
    (survey / "out").mkdir()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert boundary("predict", lambda: predict.main(["model", "new.csv", "out"])) == 1
    assert stderr.getvalue().count("\n") == 1 and "out: cannot write (Is a directory" in stderr.getvalue()


def test_the_onnx_file_computes_as_predict_does_near_float32s_limits(survey):
    """predict scales and multiplies in float64: so does the graph, where float32 would overflow."""
    rows = "".join(f"{'pq'[i % 2]},{1.6e38 + i * 3.5e36},{i * 1e-5}\n" for i in range(40))
    (survey / "datasets" / "t.csv").write_text("y,big,small\n" + rows)
    (survey / "params.yaml").write_text(params_yaml(source="csv", path="datasets/t.csv", label="y", standardize=True))
    paths = run_pipeline(survey, "high_level")
    (survey / "huge.csv").write_text("big,small\n3.4e38,0\n-3.4e38,0\n")
    with contextlib.redirect_stderr(io.StringIO()):
        predict.main(["model", "huge.csv", "huge_out.csv"])
    ours = np.loadtxt(survey / "huge_out.csv", delimiter=",", skiprows=1, usecols=(2, 3), dtype=np.float32)
    session = onnxruntime.InferenceSession(paths["onnx"].read_bytes(), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"inputs": np.float32([[3.4e38, 0], [-3.4e38, 0]])})
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


PREDICT_TABLES = {  # a table for the toy model (columns x1..x4), predict's options, the line it ends with (None: it classifies)
    "UTF-16 without --encoding": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16"), [], "bytes that are not utf-8 (b'\\xff\\xfex\\x00'); set --encoding to the file's encoding"),
    "UTF-16 without its mark": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16-le"), [], "a NUL character: not a text table in utf-8; UTF-16 text (\"Unicode text\") needs --encoding utf-16"),
    "UTF-16 with it": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16"), ["--encoding", "utf-16"], None),
    "Latin-1 in a column it does not read": ("x1,x2,x3,x4,n\n1,2,3,4,é\n".encode("latin-1"), [], None),
    "Latin-1 in a column it reads": ("x1,x2,x3,x4\n1,2,3,é\n".encode("latin-1"), [], "set --encoding to the file's encoding"),
    "a repeated column it does not read": (b"x1,z,x2,x3,x4,z\n1,a,2,3,4,b\n", [], None),
    "a repeated column it reads": (b"x1,x2,x3,x4,x1\n1,2,3,4,5\n", [], "the header names column 'x1' more than once"),
    "Parquet named .csv": ("parquet", [], None),
    "a wrong encoding": (b"x1,x2,x3,x4\n1,2,3,4\n", ["--encoding", "nope"], "--encoding nope: not a text encoding"),
}  # fmt: skip


@pytest.mark.parametrize("content, options, expected", PREDICT_TABLES.values(), ids=PREDICT_TABLES.keys())
def test_predict_reads_tables_as_prepare_does(survey, content, options, expected):
    (survey / "params.yaml").write_text(params_yaml(source="toy"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        prepare.main(["prepared", "new.csv"])
        train.main(["low_level", "prepared", "model", "costs.tsv", "test_costs.tsv", "onnx"])
    if content == "parquet":
        parquet(survey / "rows.csv", {"x1": [1], "x2": [2], "x3": [3], "x4": [4]})
    else:
        (survey / "rows.csv").write_bytes(content)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = boundary("predict", lambda: predict.main(["model", "rows.csv", "out.csv", *options]))
    assert stderr.getvalue().count("\n") == 1, stderr.getvalue()
    if expected is None:
        assert status == 0 and Path("out.csv").read_text().count("\n") == 2
    else:
        assert status == 1 and expected in stderr.getvalue() and not Path("out.csv").exists(), stderr.getvalue()


def test_an_identifier_as_a_categorical_column_is_one_line(survey, monkeypatch):
    from stages import features
    from stages.plumbing.errors import UserError

    monkeypatch.setattr(features, "MAX_NAMES_BYTES", 2_000)  # as 1,100 categories of 100 KB each would be
    (survey / "datasets" / "t.csv").write_text(
        "y,id,v\n" + "".join(f"{'AB'[i % 2]},id-{i:05},{i}\n" for i in range(300))
    )
    with pytest.raises(
        UserError,
        match=r"^data.categorical: column 'id' has 300 categories in 300 training rows, too many to encode .*; is it an identifier\? Leave it out$",
    ):
        prepare.prepare(DataParams(source="csv", path="datasets/t.csv", label="y", categorical=["id"]))
    (survey / "datasets" / "t.csv").write_text("y,c,c=a\nA,a,1\nB,b,2\n")
    with pytest.raises(
        UserError, match=r"^data.categorical: the input 'c=a' is a column and a category; rename the column$"
    ):
        prepare.prepare(DataParams(source="csv", path="datasets/t.csv", label="y", categorical=["c"]))
