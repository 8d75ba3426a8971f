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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages import evaluate, predict, prepare, train
from stages.classifier import load_classifier, log_probabilities
from stages.data import PreparedFile, split
from stages.features import Preprocessing, fit
from stages.plumbing.params import DataParams
from stages.plumbing.process import boundary
from stages.plumbing.tables import Table
from tests.stage_runs import TRAIN_ARGS


def survey_csv(rows: int = 344, seed: int = 0) -> str:
    """A table like a well-known penguin survey: a text label, two text columns among four measurements,
    and missing values written NA (about 3 % of the measurements, 4 % of one text column)."""
    rng = np.random.default_rng(seed)
    species, names = rng.integers(0, 3, rows), ("Adelie", "Chinstrap", "Gentoo")
    centres = np.array([[39, 18, 190, 3700], [49, 18, 196, 3730], [47, 15, 217, 5080]], dtype=float)
    spread = np.array([3, 1.2, 7, 450])
    measured = centres[species] + rng.normal(size=(rows, 4)) * spread
    islands = np.array(["Biscoe", "Dream", "Torgersen"])
    island = np.where(species == 2, "Biscoe", islands[rng.integers(0, 3, rows)])
    sex = np.array(["female", "male"])[rng.integers(0, 2, rows)]
    lines = ["species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex"]
    for i in range(rows):
        values = [f"{v:.1f}" if rng.random() > 0.03 else "NA" for v in measured[i]]
        lines.append(",".join([names[species[i]], island[i], *values, sex[i] if rng.random() > 0.04 else "NA"]))
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
        evaluate.main(["prepared", "model", "metrics.json", "confusion"])
        predict.main(["model", "new.csv", "out.csv"])
    return paths


@pytest.fixture
def survey(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "survey.csv").write_text(survey_csv())
    return tmp_path


def mixed_csv(columns: list[str], gaps: bool, rows: int = 200, seed: int = 0) -> str:
    """A table of two numeric and three text columns and a label `y` that depends on all of them,
    its columns in the order `columns` lists them; with `gaps`, about 4 % of the values written NA."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    values = {
        "n1": [f"{v:.2f}" for v in rng.normal(label * 1.5, 1.0)],
        "n2": [f"{v:.2f}" for v in rng.normal(-label, 2.0)],
        "zone": np.array(["west", "north", "south"])[(label + rng.integers(0, 2, rows)) % 3],
        "grade": np.array(["D", "A", "C", "B"])[(label + rng.integers(0, 3, rows)) % 4],
        "colour": np.array(["red", "blue"])[(label % 2) ^ (rng.random(rows) < 0.2)],
    }
    values = {c: [v if not gaps or rng.random() > 0.04 else "NA" for v in vs] for c, vs in values.items()}
    values["y"] = [f"k{v}" for v in label]
    rows = [columns, *zip(*(values[c] for c in columns), strict=True)]
    return "".join(",".join(map(str, row)) + "\n" for row in rows)


def onnx_probabilities(onnx_file: Path, table: Path) -> np.ndarray:
    """The ONNX file run as another runtime's user runs it: the table's columns by name, as float32 or text."""
    session = onnxruntime.InferenceSession(onnx_file.read_bytes(), providers=["CPUExecutionProvider"])
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    feed = {}
    for column in session.get_inputs():
        values = [row[column.name] for row in rows]
        if column.type == "tensor(string)":
            feed[column.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            feed[column.name] = np.array([float(v) if v else np.nan for v in values], np.float32).reshape(-1, 1)
    return session.run(None, feed)[0]


MIXED = {"source": "csv", "path": "datasets/mixed.csv", "label": "y", "test_size": 0.25}
# The configurations a user's table meets: (its columns in file order, the data section beyond MIXED, gaps)
CONFIGURATIONS = {
    "two text columns, not alphabetical": (["n1", "zone", "colour", "n2", "y"], {"categorical": ["zone", "colour"], "standardize": False}, False),
    "three before the numbers, standardized": (["zone", "grade", "colour", "n1", "n2", "y"], {"categorical": ["zone", "colour", "grade"], "standardize": True}, False),
    "three after the numbers, gaps filled": (["n1", "n2", "colour", "zone", "grade", "y"], {"categorical": ["grade", "zone", "colour"], "missing": "mean"}, True),
    "label first, gaps dropped, not standardized": (["y", "grade", "n2", "zone", "n1"], {"categorical": ["zone", "grade"], "missing": "drop", "standardize": False}, True),
    "text columns named in data.features": (["n1", "n2", "zone", "grade", "y"], {"features": ["n2", "zone", "n1"], "categorical": ["zone", "grade"], "missing": "mean"}, True),
    "a category the training split never had": (["n1", "zone", "grade", "y"], {"categorical": ["zone", "grade"]}, "rare"),
}  # fmt: skip


@pytest.mark.parametrize("impl", ["low_level", "functional", "high_level"])
@pytest.mark.parametrize("columns, data, gaps", CONFIGURATIONS.values(), ids=CONFIGURATIONS.keys())
def test_predict_evaluate_and_onnx_agree_on_the_evaluation_rows(survey, columns, data, gaps, impl):
    """The invariant a user relies on: predict on the evaluation rows gives evaluate's classes and
    probabilities, whatever the order of the columns (in the file, in data.categorical, in predict's
    input), and the ONNX file, fed the raw columns by name, gives predict's probabilities."""
    table = mixed_csv(columns, gaps is True)
    if gaps == "rare":  # one evaluation row gets a category that no training row has
        lines = table.splitlines(keepends=True)
        y = np.array([int(line.split(",")[-1].strip()[1]) for line in lines[1:]])
        rows = Table(np.arange(len(y), dtype=np.float32)[:, None], y, ("k0", "k1", "k2"))
        row = int(split(rows, MIXED["test_size"], 0)[1].x[0, 0]) + 1
        lines[row] = lines[row].replace(lines[row].split(",")[1], "rare", 1)
        table = "".join(lines)
    (survey / "datasets" / "mixed.csv").write_text(table)
    (survey / "params.yaml").write_text(params_yaml(**(MIXED | data)))
    paths = run_pipeline(survey, impl)
    model, prepared = load_classifier(paths["model"]), PreparedFile(paths["prepared"]).load()
    assert [c for c, _ in model.preprocessing.categories] == data["categorical"]
    assert ("rare" in paths["new.csv"].read_text()) == (gaps == "rare")
    rows = list(csv.DictReader(io.StringIO(paths["out.csv"].read_text())))
    confusion = list(csv.DictReader(io.StringIO(paths["confusion"].read_text())))
    assert [row["row"] for row in rows] == [str(i) for i in range(1, len(prepared.eval.y) + 1)]
    assert [row["predicted"] for row in rows] == [row["predicted"] for row in confusion]
    expected = np.exp(log_probabilities(model, prepared.eval.x)).astype(np.float32)
    written = np.array([[float(row[f"p_{c}"]) for c in model.classes] for row in rows], dtype=np.float32)
    assert np.array_equal(written, expected)  # one computation: the same float32 numbers
    # predict's input with its columns in reverse order: the same bytes out.
    new_rows = list(csv.reader(io.StringIO(paths["new.csv"].read_text())))
    with (survey / "reversed.csv").open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(row[::-1] for row in new_rows)
    with contextlib.redirect_stderr(io.StringIO()):
        predict.main(["model", "reversed.csv", "reversed_out.csv"])
    assert (survey / "reversed_out.csv").read_bytes() == paths["out.csv"].read_bytes()
    np.testing.assert_allclose(onnx_probabilities(paths["onnx"], paths["new.csv"]), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["low_level", "high_level"])
def test_a_model_worse_than_the_commonest_class_says_so(survey, impl):
    """A feature that tells nothing and a class four times as common as the other: the lesson's scalar bias
    cannot learn that, nn.Linear's can; evaluate says when a model scores below the commonest class."""
    rows = "".join(f"{'ab'[i % 5 == 0]},{(i * 7) % 11}\n" for i in range(50))
    (survey / "datasets" / "t.csv").write_text("y,x\n" + rows)
    (survey / "params.yaml").write_text(params_yaml(source="csv", path="datasets/t.csv", label="y"))
    run_pipeline(survey, impl)
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        evaluate.main(["prepared", "model", "metrics.json", "confusion"])
    accuracy = json.loads((survey / "metrics.json").read_text())["train"]["accuracy"]
    if impl == "low_level":
        assert stderr.getvalue() == (
            f"evaluate: note: accuracy {accuracy:.3g} is below 0.8, the share of class a; the lesson's one scalar bias"
            " cannot learn how common a class is (high_level's nn.Linear can)\n"
        )
    else:
        assert (accuracy, stderr.getvalue()) == (0.8, "")


@pytest.mark.parametrize("missing", ["mean", "drop"])
def test_the_quality_bar_against_scikit_learn(survey, missing):
    """On the survey table, its text columns one-hot and its gaps filled in or dropped, high_level's test
    accuracy is within 0.02 of LogisticRegression's on the same split and input vectors (docs/data.md)."""
    from sklearn.linear_model import LogisticRegression

    data = SURVEY | {"categorical": ["island", "sex"], "missing": missing}
    (survey / "params.yaml").write_text(params_yaml(TRAIN.replace("300", "1000"), **data))
    paths = run_pipeline(survey)
    prepared = PreparedFile(paths["prepared"]).load()
    reference = LogisticRegression(max_iter=5000).fit(prepared.train.x, prepared.train.y)
    theirs = reference.score(prepared.eval.x, prepared.eval.y)
    ours = json.loads((survey / "metrics.json").read_text())["test"]["accuracy"]
    assert ours >= theirs - 0.02 and theirs > 0.95, (ours, theirs)


def test_the_preprocessing_comes_from_the_training_split_only():
    x, text = np.array([[1.0], [np.nan], [3.0]], dtype=np.float32), {"c": np.array(["q", "p", None], dtype=object)}
    made = fit(Table(x, np.array([0, 1, 0]), ("a", "b"), ("x",), text), "mean", standardize=False)
    assert made.features == ["x", "c=p", "c=q"]  # the categories sorted
    np.testing.assert_array_equal(made.fill, np.float32([2.0, 0.5, 0.5]))  # each category's share
    new = Table(np.array([[np.nan], [5.0]], np.float32), np.zeros(2), (), ("x",), {"c": np.array(["r", None])})
    inputs, unknown = made.inputs(new)
    assert unknown == 1  # "r": a category the training split never had: all 0
    np.testing.assert_array_equal(made.apply(inputs), np.float32([[2, 0, 0], [5, 0.5, 0.5]]))


# data.missing, and the training rows prepare keeps and those it leaves out (data.missing: error, and what
# either setting cannot mend, are lines of test_bad_input's TABLES)
@pytest.mark.parametrize("missing, kept", [("drop", (3, 3)), ("mean", (5, 1))])  # mean keeps rows, not labels
def test_missing_values_as_data_missing_says(survey, missing, kept):
    (survey / "datasets" / "t.csv").write_text("x,y\n1,a\nNA,b\n3,b\n,a\n5,\n6,a\n")
    params = DataParams(source="csv", path="datasets/t.csv", label="y", missing=missing)
    prepared, _, left_out = prepare.prepare(params)
    assert (len(prepared.train.y), left_out) == kept and np.isfinite(prepared.train.x).all()


def test_the_model_file_alone_carries_the_preprocessing(survey):
    (survey / "params.yaml").write_text(params_yaml(**SURVEY, categorical=["island", "sex"], missing="mean"))
    run_pipeline(survey)
    model = load_classifier("model")
    assert str(model.preprocessing) == str(PreparedFile("prepared").load().preprocessing)
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    islands = ["island=Biscoe", "island=Dream", "island=Torgersen"]
    assert model.preprocessing.features == [*numeric, *islands, "sex=female", "sex=male"]
    assert isinstance(model.preprocessing, Preprocessing) and model.info["impl"] == "high_level"
    # Columns in another order, extra columns, no label: the same predictions.
    (survey / "datasets" / "shuffled.csv").write_text(
        "note,sex,body_mass_g,island,flipper_length_mm,bill_depth_mm,bill_length_mm\n"
        "x,male,3700,Dream,190,18,39\ny,,5080,Biscoe,217,15,47\nz,female,NA,Atlantis,196,18,49\n"
    )
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        predict.main(["model", "datasets/shuffled.csv", "p.csv"])
    assert stderr.getvalue().endswith("; 1 with a category new to the model; 2 filled in\n")
    predicted = [row["predicted"] for row in csv.DictReader(io.StringIO(Path("p.csv").read_text()))]
    assert predicted[:2] == ["Adelie", "Gentoo"]
    (survey / "out").mkdir()  # a write that fails: its one line, and no summary line
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        assert boundary("predict", lambda: predict.main(["model", "new.csv", "out"])) == 1
    assert stderr.getvalue().count("\n") == 1 and "out: cannot write (a directory," in stderr.getvalue()


ROUND_TRIPS = {  # a table (CSV text, or Parquet columns), its data section: prepare's new rows read back as prepared
    "blank and NA-like categories": ("y,c,v\nA,x,1\nB,y,2\nA, ,3\nB,y,4\nA,x,5\nB,NA ,6\n", {"categorical": ["c"], "missing": "mean"}),
    "NA-like text in Parquet": ({"y": ["A", "B"] * 30, "c": ["NA", "null", "N/A", "ok"] * 15, "v": [float(i) for i in range(60)]}, {"categorical": ["c"], "missing": "mean"}),
    "one column with gaps": ("y,v\n" + "".join(f"{'AB'[i // 10]},{'NA' if i % 4 == 0 else i}\n" for i in range(20)), {"missing": "mean", "standardize": True}),
    "whole floats as categories": ({"y": ["A", "B"] * 4, "year": [2007.0, None] * 4, "v": [1.0, 2.0] * 4}, {"categorical": ["year"], "missing": "mean"}),
}  # fmt: skip


@pytest.mark.parametrize("table, data", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_new_rows_read_back_as_the_table_was_read(survey, table, data):
    """prepare's new rows (the evaluation rows, as the table had them) give evaluate's probabilities to the bit."""
    source = "csv" if isinstance(table, str) else "parquet"
    if source == "csv":
        (survey / "datasets/t.csv").write_text(table)
    else:
        pq.write_table(pa.table(table), survey / "datasets/t.parquet")
    (survey / "params.yaml").write_text(params_yaml(source=source, path=f"datasets/t.{source}", label="y", **data))
    paths = run_pipeline(survey, "functional")
    model, prepared = load_classifier(paths["model"]), PreparedFile(paths["prepared"]).load()
    written = np.loadtxt(paths["out.csv"], delimiter=",", skiprows=1, usecols=range(2, 4), dtype=np.float32)
    assert np.array_equal(written, np.exp(log_probabilities(model, prepared.eval.x)).astype(np.float32))


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
    theirs = onnx_probabilities(paths["onnx"], survey / "huge.csv")
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


PREDICT_TABLES = {  # a table for the toy model (columns x1..x4), predict's options, the line it ends with (None: it classifies)
    "UTF-16 without --encoding": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16"), [], "a NUL character in the header: UTF-16 text needs --encoding utf-16"),
    "UTF-16 without its mark": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16-le"), [], "a NUL character in the header: UTF-16 text needs --encoding utf-16"),
    "UTF-16 with it": ("x1,x2,x3,x4\n1,2,3,4\n".encode("utf-16"), ["--encoding", "utf-16"], None),
    "Latin-1 in a column it does not read": ("x1,x2,x3,x4,n\n1,2,3,4,é\n".encode("latin-1"), [], None),
    "Latin-1 in a column it reads": ("x1,x2,x3,x4\n1,2,3,é\n".encode("latin-1"), [], "invalid value '\ufffd'); the model reads it as a number"),
    "a repeated column it does not read": (b"x1,z,x2,x3,x4,z\n1,a,2,3,4,b\n", [], None),
    "a repeated column it reads": (b"x1,x2,x3,x4,x1\n1,2,3,4,5\n", [], "the header names column 'x1' more than once"),
    "Parquet named .csv": ("parquet", [], None),
}  # fmt: skip


@pytest.mark.parametrize("content, options, expected", PREDICT_TABLES.values(), ids=PREDICT_TABLES.keys())
def test_predict_reads_tables_as_prepare_does(trained, content, options, expected):
    if content == "parquet":
        pq.write_table(pa.table({"x1": [1], "x2": [2], "x3": [3], "x4": [4]}), trained / "rows.csv")
    else:
        (trained / "rows.csv").write_bytes(content)
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        status = boundary("predict", lambda: predict.main([TRAIN_ARGS[2], "rows.csv", "out.csv", *options]))
    assert stderr.getvalue().count("\n") == 1, stderr.getvalue()
    if expected is None:
        assert status == 0 and Path("out.csv").read_text().count("\n") == 2
    else:
        assert status == 1 and expected in stderr.getvalue() and not Path("out.csv").exists(), stderr.getvalue()
