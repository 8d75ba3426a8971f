"""The data sources, the split, standardization, and the errors bad data gets."""

import csv
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stages.data import TOY_X, TOY_Y, load_table, prepare_table, split, synthetic
from stages.plumbing.params import DataParams
from stages.plumbing.process import UserError
from stages.plumbing.tables import MISSING_FIX, Table, detect_delimiter, read_table


@pytest.mark.parametrize("source, shape, classes", [
    ("toy", (8, 4), ("0", "1", "2")),
    ("iris", (150, 4), ("setosa", "versicolor", "virginica")),
    ("digits", (1797, 64), tuple("0123456789")),
])  # fmt: skip
def test_the_lessons_and_scikit_learns_sources(source, shape, classes):
    table = load_table(DataParams(source=source))
    assert tuple(table.x.shape) == shape and table.x.dtype == np.float32
    assert table.classes == classes and np.bincount(table.y).min() > 0
    assert source != "toy" or (table.x.tolist(), table.y.tolist()) == (TOY_X, TOY_Y)


def test_synthetic_is_seeded_and_balanced():
    first, again, other = synthetic(300, 5, 3, seed=0), synthetic(300, 5, 3, seed=0), synthetic(300, 5, 3, seed=1)
    assert np.array_equal(first.x, again.x) and np.array_equal(first.y, again.y)
    assert not np.array_equal(first.x, other.x)
    assert np.bincount(first.y).tolist() == [100, 100, 100]
    assert first.classes == ("0", "1", "2")


def test_synthetic_handles_a_million_rows():
    # Ten features keep it to a few hundred MB: the rows are what is tested (split, standardization).
    params = DataParams(source="synthetic", n_samples=1_000_000, n_features=10, n_classes=10, test_size=0.2)
    prepared = prepare_table(load_table(params), dataclasses.replace(params, standardize=True))
    assert tuple(prepared.train.x.shape) == (800_000, 10) and tuple(prepared.eval.x.shape) == (200_000, 10)
    assert len(prepared.classes) == 10


def test_split_is_stratified_seeded_and_complete():
    table = load_table(DataParams(source="iris"))
    train, test = split(table, 0.2, seed=3)
    assert np.bincount(test.y).tolist() == [10, 10, 10]
    assert np.bincount(train.y).tolist() == [40, 40, 40]
    rows = np.concatenate([train.x, test.x])
    assert np.array_equal(np.sort(rows, axis=0), np.sort(table.x, axis=0))  # every row exactly once
    again, other = split(table, 0.2, seed=3)[0], split(table, 0.2, seed=4)[0]
    assert np.array_equal(train.x, again.x) and not np.array_equal(train.x, other.x)


@pytest.mark.parametrize(("test_size", "counts", "expected"), [
    (0.2, [416_667, 416_667, 416_666], [83_334, 83_333, 83_333]),  # 250,000 of 1,250,000, not 249,999
    (0.7, [5, 5], [4, 3]),  # 7 of 10, although 0.7 * 10 == 7.000000000000001 in floats
    (0.1, [10, 10, 10], [1, 1, 1]),  # 3 of 30: 0.1 * 30 == 3.0000000000000004
    (0.1, [2, 2], [1, 0]),  # ceil(0.4): at least one test row; the tie goes to the first class
    (0.25, [6, 3, 3], [1, 1, 1]),  # 3 rows: shares 1.5, 0.75, 0.75 round down, the two largest remainders get one more
])  # fmt: skip
def test_split_counts_test_rows_as_scikit_learn_does(test_size, counts, expected):
    y = np.repeat(np.arange(len(counts)), counts)
    table = Table(np.zeros((len(y), 1), np.float32), y, tuple(map(str, range(len(counts)))))
    train, test = split(table, test_size, seed=0)
    assert np.bincount(test.y, minlength=len(counts)).tolist() == expected
    assert len(test.y) == math.ceil(round(test_size * len(y), 9))
    assert len(train.y) + len(test.y) == len(y)


def test_standardization_uses_the_training_split_only():
    params = DataParams(source="iris", test_size=0.2, standardize=True)
    prepared = prepare_table(load_table(params), params)
    np.testing.assert_allclose(prepared.train.x.mean(axis=0), np.zeros(4), atol=1e-5, rtol=0)
    np.testing.assert_allclose(prepared.train.x.std(axis=0), np.ones(4), atol=1e-5, rtol=0)
    raw_train, raw_test = split(load_table(params), 0.2, seed=0)
    mean, std = prepared.preprocessing.mean, prepared.preprocessing.std
    scaled = (raw_test.x.astype(np.float64) - mean) / std  # with the stored statistics
    np.testing.assert_array_equal(prepared.eval.x, scaled.astype(np.float32))
    # The statistics in float64, then stored as float32.
    assert np.array_equal(mean, raw_train.x.astype(np.float64).mean(axis=0).astype(np.float32))


FINITE = {  # features that standardization could turn into an infinity or a NaN: (the features, labels, test_size)
    "near float32's largest": ([[3.0e38, 1.0], [3.2e38, 2.0], [-1e38, 3.0], [3.3e38, 4.0]], [0, 1, 0, 1], 0),  # a float32 sum overflows
    "a spread that is 0 once in float32": ([[0, 1], [0, 2], [1e-45, 3]], [0, 0, 1], 0),
    "one value far from the rest": ([[1e-30]] * 20 + [[1e30]], [i % 2 for i in range(20)] + [0], 0.1),
}  # fmt: skip


@pytest.mark.parametrize("x, y, test_size", FINITE.values(), ids=FINITE.keys())
def test_standardization_of_finite_values_stays_finite(x, y, test_size):
    table = Table(np.array(x, np.float32), np.array(y), ("a", "b"))
    prepared = prepare_table(table, DataParams(source="csv", standardize=True, test_size=test_size))
    pre = prepared.preprocessing
    assert all(np.isfinite(a).all() for a in (prepared.train.x, prepared.eval.x, pre.mean, pre.std))
    np.testing.assert_allclose(prepared.train.x.mean(axis=0), 0, atol=1e-6)


def test_a_constant_feature_is_left_unscaled():
    params = DataParams(source="digits", standardize=True)  # some pixels are 0 in every image
    prepared = prepare_table(load_table(params), params)
    assert np.isfinite(prepared.train.x).all()
    assert (prepared.preprocessing.std == 1).any()


def test_without_test_size_evaluation_is_on_the_training_data():
    prepared = prepare_table(load_table(DataParams(source="toy")), DataParams(source="toy"))
    assert not prepared.has_test and prepared.eval is prepared.train


@pytest.fixture
def datasets(workdir):
    return workdir / "datasets"


def test_csv_string_labels_and_chosen_features(datasets):
    (datasets / "t.csv").write_text("a,b,kind,c\n1,2,dog,3\n4,5,cat,6\n7,8,dog,9\n")
    table = read_table("datasets/t.csv", "kind", ("c", "a"))
    assert (table.classes, table.y.tolist(), table.x.tolist()) == (("cat", "dog"), [1, 0, 1], [[3, 1], [6, 4], [9, 7]])


# Tables as spreadsheets and databases export them -------------------------------------------------

ROWS = [["größe", "wert; mit Semikolon", "klasse"], ["1.5", "2", "Äpfel"], ["3", "4.25", "Birnen"], ["5", "6", "Äpfel"]]


def write_table(path: Path, encoding: str, **dialect) -> None:
    """The rows through Python's csv module, as an export in that dialect and encoding writes them."""
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f, **dialect).writerows(ROWS)


@pytest.mark.parametrize("encoding, dialect", [
    ("utf-8", {"dialect": "excel"}),  # comma, CRLF, quotes where needed
    ("utf-8-sig", {"dialect": "excel"}),  # a spreadsheet's "CSV UTF-8": a byte-order mark
    ("utf-8", {"dialect": "excel", "delimiter": ";"}),  # the semicolon of locales with a decimal comma
    ("utf-8", {"dialect": "excel-tab"}),
    ("utf-8", {"dialect": "unix"}),  # every field quoted, LF
    ("utf-8", {"delimiter": "|", "quoting": csv.QUOTE_NONNUMERIC}),
    ("latin-1", {"dialect": "excel", "delimiter": ";"}),
    ("cp1252", {"dialect": "excel"}),
    ("utf-16", {"dialect": "excel-tab"}),  # "Unicode text"
])  # fmt: skip
def test_exported_dialects_and_encodings(datasets, encoding, dialect):
    write_table(datasets / "t.csv", encoding, **dialect)
    table = read_table("datasets/t.csv", "klasse", None, encoding="utf-8" if encoding == "utf-8-sig" else encoding)
    assert table.classes == ("Birnen", "Äpfel")
    assert table.y.tolist() == [1, 0, 1]
    assert table.x.tolist() == [[1.5, 2.0], [3.0, 4.25], [5.0, 6.0]]


def test_a_named_delimiter_wins_over_detection(datasets):
    (datasets / "t.csv").write_text("x|y,z\n1|a,b\n2|c,d\n")  # one of each in the header: a comma, by default
    with pytest.raises(UserError, match=r"text, not numbers, in column\(s\) x\|y; "):
        read_table("datasets/t.csv", "z", None)
    table = read_table("datasets/t.csv", "y,z", None, delimiter="|")
    assert table.x.tolist() == [[1], [2]] and table.classes == ("a,b", "c,d")


@pytest.mark.parametrize(
    "header, expected",
    [("a,b,c", ","), ("a;b;c", ";"), ("a\tb\tc", "\t"), ("a|b", "|"), ("a", ","), ("a;b,c", ","), ("a;b;c,d", ";")],
)
def test_delimiter_detection(header, expected):
    assert detect_delimiter(header) == expected


# Parquet ------------------------------------------------------------------------------------------


def write_parquet(path: Path, columns: dict | pa.Table) -> None:
    pq.write_table(columns if isinstance(columns, pa.Table) else pa.table(columns), path)


def test_parquet_reads_as_the_same_table_as_csv(datasets):
    write_table(datasets / "t.csv", "utf-8", dialect="excel")
    from_csv = read_table("datasets/t.csv", "klasse", None)
    write_parquet(datasets / "t.parquet", {"größe": [1.5, 3.0, 5.0], "wert; mit Semikolon": pa.array([2, 4.25, 6],
                  pa.float32()), "klasse": ["Äpfel", "Birnen", "Äpfel"]})  # fmt: skip
    from_parquet = read_table("datasets/t.parquet", "klasse", None)
    assert np.array_equal(from_parquet.x, from_csv.x) and from_parquet.x.dtype == np.float32
    assert np.array_equal(from_parquet.y, from_csv.y) and from_parquet.classes == from_csv.classes


PARQUET_LABELS = {  # (the columns, data.features, the classes, the labels, the features read)
    "integers, in order as numbers": ({"a": [1, 2, 3], "b": [4, 5, 6], "y": [10, 9, 10]}, ("b",), ("9", "10"), [1, 0, 1], [[4], [5], [6]]),
    "pandas' categorical": ({"x": [1.0, 2.0, 3.0], "y": pa.array(["cat", "dog", "cat"]).dictionary_encode()}, None, ("cat", "dog"), [0, 1, 0], [[1], [2], [3]]),
    "float32, named as float32 writes them": ({"a": [1.0, 2.0], "y": pa.array([0.1, 0.25], pa.float32())}, None, ("0.1", "0.25"), [0, 1], [[1], [2]]),
}  # fmt: skip


@pytest.mark.parametrize("columns, features, classes, y, x", PARQUET_LABELS.values(), ids=PARQUET_LABELS.keys())
def test_parquet_labels_and_chosen_features(datasets, columns, features, classes, y, x):
    write_parquet(datasets / "t.parquet", columns)
    table = read_table("datasets/t.parquet", "y", features)
    assert (table.classes, table.y.tolist(), table.x.tolist()) == (classes, y, x)


@pytest.mark.parametrize("columns, expected", [
    ({"x": [1.0, None], "y": ["a", "b"]}, f"datasets/t.parquet, row 2: column 'x' has no value; {MISSING_FIX}"),
    ({"x": [1.0, 2.0], "y": ["a", None]}, "datasets/t.parquet, row 2: column 'y' has no value; every row needs its class"),
    ({"x": [1.0, float("nan")], "y": ["a", "b"]}, "datasets/t.parquet, row 2: column 'x' has no value; set data.missing"),
    ({"x": [1.0, 1e300], "y": ["a", "b"]}, "datasets/t.parquet, row 2: column 'x' is beyond float32's range"),
    ({"x": ["1", "z"], "y": ["a", "b"]}, "datasets/t.parquet: column 'x' holds string, not numbers; list each in data.categorical"),
    ({"x": [1.0, 2.0], "y": ["a", " "]}, "datasets/t.parquet, row 2: column 'y' has no value"),
    ({"x": pa.array([], pa.float64()), "y": pa.array([], pa.string())}, "datasets/t.parquet: the table is empty"),
    ({"x": [1.0], "z": ["a"]}, "datasets/t.parquet: no label column 'y' (data.label); columns: x, z"),
    # pandas stores a missing label of a float column as NaN, not as null
    ({"x": [1.0, 2.0], "y": [1.0, float("nan")]}, "datasets/t.parquet, row 2: column 'y' has no value"),
    (pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0]), pa.array(["a"])], ["x", "x", "y"]), "datasets/t.parquet: the header names column 'x' more than once"),
])  # fmt: skip
def test_bad_parquet(datasets, columns, expected):
    write_parquet(datasets / "t.parquet", columns)
    with pytest.raises(UserError) as error:
        read_table("datasets/t.parquet", "y", None)
    assert str(error.value).startswith(expected)


def test_a_damaged_parquet_file(datasets):
    (datasets / "t.parquet").write_bytes(b"PAR1 and then not Parquet")  # a table's format is its first bytes
    with pytest.raises(UserError, match=r"^datasets/t.parquet: not a readable Parquet file \(.+\)$"):
        read_table("datasets/t.parquet", "y", None)


@pytest.mark.parametrize("value, problem", [
    (".5", None), ("5.", None), ("+.5", None), (" 1 ", None), ("1e-400", None), ("-0", None),
    ("3.4028235e38", None), ("1_000", ": text, not numbers, in column(s) a"), ("١٢", ": text, not numbers"),
    ("1.5e", ": text, not numbers"), ("0x10", ": not a readable CSV (column 'a'"), ("", ", row 2: column 'a' has no value"),
    ("Infinity", ", row 2: column 'a' is beyond float32"), ("NaN", ", row 2: column 'a' has no value"),
    ("1e39", ", row 2: column 'a' is beyond float32"),
])  # fmt: skip
def test_a_number_is_read_as_float_reads_it_or_its_row_is_named(datasets, value, problem):
    (datasets / "t.csv").write_text(f"a,y\n2,z\n\n{value},x\n")
    if problem is None:
        assert read_table("datasets/t.csv", "y", None).x[1, 0] == np.float32(value)
    else:
        with pytest.raises(UserError, match=f"^datasets/t.csv{re.escape(problem)}"):
            read_table("datasets/t.csv", "y", None)


@pytest.mark.parametrize("text, features", [
    (",a,y\n0,1,p\n1,2,q\n", None),
    ('"","a","y"\n"1",1,"p"\n"2",2,"q"\n', None),
    ("Unnamed: 0,a,y\n0,1,p\n1,2,q\n", None),
    (",a,y\n0,1,p\n1,2,q\n", ("a",)),
])  # fmt: skip
def test_row_names_as_files_write_them_are_no_feature(datasets, text, features):
    """R's write.csv() and pandas' to_csv() write row names as a nameless first column."""
    (datasets / "t.csv").write_text(text)
    assert read_table("datasets/t.csv", "y", features).x.tolist() == [[1.0], [2.0]]


INDEX = json.dumps({"index_columns": ["__index_level_0__"], "columns": []}).encode()


@pytest.mark.parametrize("metadata", [INDEX, b"{bad", b'{"index_columns": 5}', b"[1, 2]"])
def test_the_index_pandas_stored_in_parquet_is_no_feature(datasets, metadata):
    """pandas writes a filtered frame's index as __index_level_0__ and names it in the schema's metadata;
    malformed metadata names no index."""
    index = {"__index_level_0__": [7, 9]} if metadata == INDEX else {}
    table = pa.table({"a": [1.0, 2.0], "y": ["p", "q"], **index}).replace_schema_metadata({b"pandas": metadata})
    pq.write_table(table, datasets / "t.parquet")
    read = read_table("datasets/t.parquet", "y", None)
    assert read.x.tolist() == [[1.0], [2.0]] and read.classes == ("p", "q")
