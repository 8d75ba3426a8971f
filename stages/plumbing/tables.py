"""User tables: CSV and Parquet files under datasets/, read into a Table, each mistake in one line
that names the file and, for a CSV, the line (read_csv says how)."""

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

import numpy as np

from stages.plumbing.errors import DATASETS_DIR, UserError, abbreviate, first_line, listing
from stages.plumbing.files import FLOAT32_LIMIT
from stages.plumbing.params import DELIMITERS


@dataclass(frozen=True)
class Table:
    x: np.ndarray  # float32, (samples, features)
    y: np.ndarray  # int64 class indices, (samples,)
    classes: tuple[str, ...]  # classes[i] is the name of class index i


def _classes(labels: list[str], where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes, sorted (numerically when every label is a number, so "10" comes after "9"), and
    the class index of each label. A label that reads as NaN or infinity is a missing value (as pandas
    writes one), not a class; "1" and "1.0" are refused: one class or two? Only the user knows."""
    names = sorted(set(labels))
    by_value: dict[Decimal, str] = {}
    for name in names:
        try:  # exact, as decimals: 9007199254740993 is not ...992 as floats would have it; 1e999999999 is quick
            value = Decimal(name)
        except InvalidOperation:
            continue
        if not value.is_finite():
            raise UserError(f"{where}: the label {abbreviate(name)} is a missing value (NaN or infinite), not a "
                            "class; give every row its class")  # fmt: skip
        if value in by_value:
            raise UserError(f"{where}: the labels {by_value[value]!r} and {name!r} are the same number written two "
                            "ways; write each class one way")  # fmt: skip
        by_value[value] = name
    if len(by_value) == len(names):
        names.sort(key=Decimal)
    index = {name: i for i, name in enumerate(names)}
    return tuple(names), np.array([index[name] for name in labels], dtype=np.int64)


def _check_dataset_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != DATASETS_DIR:
        raise UserError(f"data.path: {path} is not under {DATASETS_DIR}/; put the file there (or `dvc add` it there) "
                        "so that DVC tracks it as a dependency of prepare")  # fmt: skip
    if Path(path).is_dir():
        raise UserError(f"data.path: {path} is a directory; name a table file in it")
    if not Path(path).exists():
        raise UserError(f"data.path: {path} not found; check the path (relative to the repository root)")
    if not Path(path).is_file():  # a pipe would keep the stage waiting for a writer
        raise UserError(f"data.path: {path} is not a regular file; name a table file")


def detect_delimiter(header: str) -> str:
    """The most frequent of comma, semicolon, tab and bar in the header line (a comma on a tie or
    when there is none): predictable, unlike guessing from the data."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def _columns(path: str, header: list[str], label: str, features: tuple[str, ...] | None) -> list[str]:
    """The feature columns, checked against the header: no repeated name, the label not a feature."""
    for names, what, fix in ((header, f"{path}: the header names column", "give every column its own name"),
                             (features or [], "data.features names", "list each column once")):  # fmt: skip
        twice = [name for name, count in Counter(names).items() if count > 1]  # linear in the width
        if twice:
            raise UserError(f"{what} {abbreviate(twice[0])} more than once; {fix}")
    if label not in header:
        raise UserError(f"{path}: no label column {abbreviate(label)} (data.label); columns: {listing(header)}")
    if features and label in features:
        raise UserError(f"data.features names the label column {abbreviate(label)}; a model must not see the "
                        "answer: remove it from data.features")  # fmt: skip
    missing = set(features or []) - set(header)
    if missing:
        name = next(name for name in features if name in missing)
        raise UserError(f"{path}: no column {abbreviate(name)} (data.features); columns: {listing(header)}")
    names = list(features) if features else [name for name in header if name != label]
    if not names:
        raise UserError(f"{path}: no feature columns besides the label {abbreviate(label)}")
    return names


def read_csv(
    path: str, label: str, features: tuple[str, ...] | None, delimiter: str | None = None, encoding: str = "utf-8"
) -> Table:
    """A CSV table with a header row; the label column may hold strings.

    A UTF-8 table is read by pyarrow's streaming CSV reader, column by column in C: as fast as
    numpy.loadtxt, and the features plus a constant in memory (bench/run.py). Whatever that reader
    refuses or finds wrong (a field that is not a number, NaN, an empty label, a NUL byte, another
    encoding) is read again row by row with Python's csv module, which accepts the same tables and
    says which line is wrong: pyarrow's own errors name a column but no row ("In CSV column #1: CSV
    conversion error to double: invalid value 'abc'"), so one reader cannot do both."""
    _check_dataset_path(path)
    try:
        table = _read_csv_columns(path, label, features, delimiter) if codecs.lookup(encoding).name == "utf-8" else None
        return table or _read_csv_rows(path, label, features, delimiter, encoding)
    except OSError as error:  # unreadable: permissions, a failing disk
        raise UserError(f"{path}: cannot read it ({error.strerror or type(error).__name__})") from None


def _read_csv_columns(path: str, label: str, features: tuple[str, ...] | None, delimiter: str | None) -> Table | None:
    """The table by pyarrow, or None where it needs the row-by-row reader's judgement."""
    import pyarrow as pa  # imported only here: a third of a second
    import pyarrow.csv as pa_csv

    with open(path, "rb") as f:
        header_line = f.readline().decode("utf-8", errors="replace").removeprefix("\ufeff")
        f.seek(0)
        n_lines = 0  # an upper bound on the rows, so that the features are filled in place, not copied
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if b"\0" in chunk:
                return None  # a NUL byte: not text (the row reader says where)
            n_lines += chunk.count(b"\n")
    delimiter = delimiter or detect_delimiter(header_line)
    try:  # a blank first line, a quoted name spanning lines, lines ending in CR alone: the row reader's
        header = next(csv.reader([header_line], delimiter=delimiter), [])
    except csv.Error:
        return None
    if not header or any("\n" in name for name in header):
        return None
    names = _columns(path, header, label, features)
    options = pa_csv.ConvertOptions(column_types={name: pa.float64() for name in names} | {label: pa.string()},
                                    include_columns=[*names, label], null_values=[], strings_can_be_null=False,
                                    quoted_strings_can_be_null=False)  # fmt: skip
    x = np.empty((n_lines + 1, len(names)), dtype=np.float32)
    rows, labels = 0, []
    try:
        parse = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True)  # quoted, as the csv module reads
        reader = pa_csv.open_csv(path, parse_options=parse, convert_options=options)
        for batch in reader:  # float64 as Python's float() reads it, then float32, a block at a time
            for j, name in enumerate(names):
                column = batch.column(name).to_numpy()
                if not (np.abs(column) < FLOAT32_LIMIT).all():
                    return None
                x[rows : rows + len(column), j] = column
            rows += batch.num_rows
            labels.append(batch.column(label))
    except (pa.ArrowException, OSError, ValueError):
        return None
    encoded = pa.chunked_array(labels, pa.string()).combine_chunks().dictionary_encode()
    names_found = [str(name).strip() for name in encoded.dictionary.to_pylist()]
    if rows == 0 or "" in names_found:
        return None
    classes, class_of = _classes(names_found, f"{path}, column '{label}'")  # of each distinct label
    return Table(x[:rows], class_of[encoded.indices.to_numpy(zero_copy_only=False)], classes)


def _read_rows(path: str, delimiter: str | None, encoding: str) -> list[list[str]]:
    """The CSV's rows, as spreadsheets and databases export them: a byte-order mark is dropped, lines
    end in LF, CRLF or CR, fields may be quoted; the delimiter is `delimiter`, or else detected."""
    content = Path(path).read_bytes()
    fix = "set data.encoding to the file's encoding (e.g. latin-1, cp1252, utf-16) or save it as UTF-8"
    try:
        text = content.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        bad = content[error.start : error.start + 4]
        raise UserError(f"{path}, line {line}: bytes that are not {encoding} ({bad!r}); {fix}") from None
    except UnicodeError as error:  # some codecs (punycode) do not say where
        raise UserError(f"{path}: not text in {encoding} ({first_line(error)}); {fix}") from None
    if "\0" in text:  # decoded, but no table holds it: a binary file, or UTF-16 read as another encoding
        line = text[: text.index("\0")].count("\n") + 1
        raise UserError(f"{path}, line {line}: a NUL character: not a text table in {encoding}; "
                        "UTF-16 text (\"Unicode text\") needs data.encoding: utf-16")  # fmt: skip
    delimiter = delimiter or detect_delimiter(next((line for line in text.splitlines() if line.strip()), ""))
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise UserError(f"{path}: not a readable CSV ({error})") from None


def _read_csv_rows(
    path: str, label: str, features: tuple[str, ...] | None, delimiter: str | None, encoding: str
) -> Table:
    """The table row by row, with Python's csv module: every problem is reported with its line."""
    rows = [(line, row) for line, row in enumerate(_read_rows(path, delimiter, encoding), start=1) if row]
    if len(rows) < 2:  # blank lines, as spreadsheets often leave at the end, are no rows
        hint = "" if codecs.lookup(encoding).name == "utf-8" else f" (or data.encoding {encoding} is not the file's)"
        raise UserError(f"{path}: the table is empty; it needs a header row and at least one data row{hint}")
    header = rows.pop(0)[1]
    position = {name: i for i, name in enumerate(header)}
    columns = [position[name] for name in _columns(path, header, label, features)]
    values = np.empty((len(rows), len(columns)), dtype=np.float32)
    labels = []
    for i, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} fields, but the header has {len(header)}")
        for j, c in enumerate(columns):
            try:
                value = float(row[c])
            except ValueError:
                raise UserError(f"{path}, line {line}: column '{header[c]}' is not a number: "
                                f"{abbreviate(row[c])}") from None  # fmt: skip
            if not abs(value) < FLOAT32_LIMIT:  # NaN fails it too
                raise UserError(f"{path}, line {line}: column '{header[c]}' is {row[c][:60]}; only finite "
                                "float32 numbers are allowed")  # fmt: skip
            values[i, j] = value
        labels.append(row[position[label]].strip())
        if not labels[-1]:
            raise UserError(f"{path}, line {line}: the label column '{label}' is empty; every row needs its class")
    classes, y = _classes(labels, f"{path}, column '{label}'")
    return Table(values, y, classes)


def read_parquet(path: str, label: str, features: tuple[str, ...] | None) -> Table:
    """A Parquet file: numeric feature columns, and a label column of strings or numbers. Rows are
    counted from 1 in the messages (a Parquet file has no lines)."""
    import pyarrow as pa  # only for this source: its import takes a third of a second
    import pyarrow.parquet as pq

    _check_dataset_path(path)
    try:  # the schema first, to check the columns; then only the columns used are read
        names = _columns(path, pq.read_schema(path).names, label, features)
        table = pq.read_table(path, columns=[*names, label])
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty; it needs at least one row")
    for name in [*names, label]:  # the label last: `kind` is its type after the loop
        column = table.column(name)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type  # pandas' categories
        numbers = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if name != label and not numbers:
            raise UserError(f"{path}: column '{name}' holds {kind}, not numbers; convert it or leave it out of "
                            "data.features")  # fmt: skip
        if name == label and not (numbers or pa.types.is_boolean(kind) or pa.types.is_string(kind)
                                  or pa.types.is_large_string(kind)):  # fmt: skip
            raise UserError(f"{path}: the label column '{label}' holds {kind}; each label must be one string or number")
        if column.null_count:
            row = column.is_valid().to_pylist().index(False) + 1
            raise UserError(f"{path}, row {row}: column '{name}' is empty (null); every row needs a value")
    columns = []
    for name in names:
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: reported below
            columns.append(table.column(name).to_numpy().astype(np.float32))
        bad = np.flatnonzero(~np.isfinite(columns[-1]))
        if len(bad):
            raise UserError(f"{path}, row {bad[0] + 1}: column '{name}' is {table.column(name)[int(bad[0])]}; only "
                            "finite float32 numbers are allowed")  # fmt: skip
    labels = [str(value).strip() for value in table.column(label).to_pylist()]
    missing = [("", "is empty")]
    if pa.types.is_floating(kind):  # the label's: NaN is how pandas stores a missing label
        missing.insert(0, ("nan", "is NaN (missing)"))
    for value, what in missing:
        if value in labels:
            raise UserError(f"{path}, row {labels.index(value) + 1}: the label column '{label}' {what}; every row "
                            "needs its class")  # fmt: skip
    classes, y = _classes(labels, f"{path}, column '{label}'")
    return Table(np.column_stack(columns), y, classes)
