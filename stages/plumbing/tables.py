"""User tables: CSV and Parquet files under datasets/, read by pyarrow into a Table; each mistake is one
line that names the file and, for a CSV, the line.

pyarrow reads every CSV, in any encoding, a block at a time in C. Its errors name a column but no row
("CSV conversion error to double: invalid value 'abc'"), so when it fails, or when what it read is
wrong (NaN, an empty label), Python's csv module reads the file once more only to say where: the first
row that is wrong, by the physical line it starts on (a quoted field may span lines)."""

import codecs
import contextlib
import csv
import io
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from stages.plumbing.errors import DATASETS_DIR, UserError, abbreviate, first_line, listing
from stages.plumbing.files import FLOAT32_LIMIT, open_input
from stages.plumbing.params import DELIMITERS


@dataclass(frozen=True)
class Table:
    x: np.ndarray  # float32, (samples, features)
    y: np.ndarray  # int64 class indices, (samples,)
    classes: tuple[str, ...]  # classes[i] is the name of class index i


def name(text: str) -> str:
    """A column's or a class's name as the stages compare it: NFC, so that "café" typed one way or the
    other is one name; a label also loses the spaces around it (a header keeps them, shown quoted)."""
    return unicodedata.normalize("NFC", text)


def _classes(labels: list[str], where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes, sorted (numerically when every label is a number, so "10" comes after "9"), and
    the class index of each label. A label that reads as NaN or infinity is a missing value (as pandas
    writes one), not a class; "1" and "1.0" are refused: one class or two? Only the user knows."""
    labels = [name(label.strip()) for label in labels]
    names = sorted(set(labels))
    by_value: dict[Decimal, str] = {}
    for label in names:
        try:  # exact, as decimals: 9007199254740993 is not ...992 as floats would have it; 1e999999999 is quick
            value = Decimal(label)
        except InvalidOperation:
            continue
        if not value.is_finite():
            fix = "give every row its class"
            raise UserError(
                f"{where}: the label {abbreviate(label)} is a missing value (NaN or infinite), not a class; {fix}"
            )
        if value in by_value:
            fix = "write each class one way"
            raise UserError(
                f"{where}: the labels {by_value[value]!r} and {label!r} are the same number written two ways; {fix}"
            )
        by_value[value] = label
    if len(by_value) == len(names):
        names.sort(key=Decimal)
    index = {label: i for i, label in enumerate(names)}
    return tuple(names), np.array([index[label] for label in labels], dtype=np.int64)


def _check_dataset_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != DATASETS_DIR:
        fix = "put the file there (or `dvc add` it there) so that DVC tracks it as a dependency of prepare"
        raise UserError(f"data.path: {path} is not under {DATASETS_DIR}/; {fix}")
    open_input(path, "table data.path names", "check data.path (relative to the repository root)").close()


def detect_delimiter(header: str) -> str:
    """The most frequent of comma, semicolon, tab and bar in the header line (a comma on a tie or
    when there is none): predictable, unlike guessing from the data."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def _columns(
    path: str, header: list[str], label: str, features: tuple[str, ...] | None, index: list[str], hint: str = ""
) -> list[str]:
    """The feature columns, checked against the header: no repeated name, the label not a feature, and
    by default every column but the label and the index (`index`: the columns the file says are one)."""
    for names, what, fix in (
        (header, f"{path}: the header names column", "give every column its own name"),
        (features or [], "data.features names", "list each column once"),
    ):
        twice = [column for column, count in Counter(names).items() if count > 1]  # linear in the width
        if twice:
            raise UserError(f"{what} {abbreviate(twice[0])} more than once; {fix}")
    if label not in header:
        raise UserError(f"{path}: no label column {abbreviate(label)} (data.label); columns: {listing(header)}{hint}")
    if features and label in features:
        fix = "a model must not see the answer: remove it from data.features"
        raise UserError(f"data.features names the label column {abbreviate(label)}; {fix}")
    present = set(header)  # linear in the width, as the checks above
    missing = [column for column in features or [] if column not in present]
    if missing:
        raise UserError(f"{path}: no column {abbreviate(missing[0])} (data.features); columns: {listing(header)}")
    if features:
        return list(features)
    nameless = [i for i, column in enumerate(header, 1) if not column or re.fullmatch(r"Unnamed: [0-9]+", column)]
    if nameless:  # pandas' to_csv() writes its index so, by default, and reads it back as "Unnamed: 0"
        fix = "an index (pandas' to_csv(index=False) leaves it out)? Name it, or list data.features"
        raise UserError(f"{path}: column {nameless[0]} has no name: {fix}")
    names = [column for column in header if column != label and column not in index]
    if not names:
        raise UserError(f"{path}: no feature columns besides the label {abbreviate(label)}")
    return names


def read_csv(
    path: str, label: str, features: tuple[str, ...] | None, delimiter: str | None = None, encoding: str = "utf-8"
) -> Table:
    """A CSV table with a header row; the label column may hold strings. Read as spreadsheets and
    databases export tables: a byte-order mark is dropped, lines end in LF, CRLF or CR, fields may be
    quoted (line breaks inside them too), blank lines are skipped; the delimiter is `delimiter`, or
    else detected from the header line. The features are filled into float32 a block at a time."""
    import pyarrow as pa  # imported only here: a third of a second
    import pyarrow.csv as pa_csv

    _check_dataset_path(path)
    label, features = name(label), features and tuple(map(name, features))
    with open(path, "rb") as f:  # the header line, and about as many rows as line ends (to fill x in place)
        start = f.read(1 << 16)
        f.seek(0)
        n_lines = sum(chunk.count(b"\n") + chunk.count(b"\r") for chunk in iter(lambda: f.read(1 << 20), b""))
    try:  # a codec that cannot skip bad bytes (idna) raises even so: then a comma
        header_line = next((s for s in start.decode(encoding, errors="ignore").splitlines() if s.strip()), "")
    except UnicodeError:
        header_line = ""
    hint = "" if codecs.lookup(encoding).name == "utf-8" else f" (or data.encoding {encoding} is not the file's)"
    if delimiter and len(header_line.split(delimiter)) == 1 and detect_delimiter(header_line) != delimiter:
        hint += f" (or data.delimiter {delimiter!r} is not the file's)"
    dialect = Dialect(encoding, delimiter or detect_delimiter(header_line), hint)
    # pyarrow's 1 MiB blocks, but when no line ends in the first 64 KiB: the header must fit in the first.
    block = 1 << 20 if b"\n" in start or b"\r" in start else 1 << 26
    read = pa_csv.ReadOptions(encoding=encoding, block_size=block)
    parse = pa_csv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=True)
    try:
        header = pa_csv.open_csv(path, read, parse).schema.names
        if any("\0" in column for column in header):  # UTF-16 read as UTF-8: where, and which encoding
            raise ValueError("a NUL in the header")
        names = _columns(path, [name(column) for column in header], label, features, [], hint)
        spelled = {name(column): column for column in header}
        wanted = [spelled[column] for column in [*names, label]]
        types = dict.fromkeys(wanted[:-1], pa.float64()) | {wanted[-1]: pa.string()}
        no_nulls = {"null_values": [], "strings_can_be_null": False, "quoted_strings_can_be_null": False}
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=wanted, **no_nulls)
        # At most a row per line end, and per len(names) bytes (blank lines and quoted line breaks count
        # as line ends): as many rows as there may be, without asking for more memory than the file's.
        n_rows = min(n_lines, Path(path).stat().st_size // len(names)) + 1
        x, rows, labels = np.empty((n_rows, len(names)), dtype=np.float32), 0, []
        for batch in pa_csv.open_csv(path, read, parse, convert):
            if rows + batch.num_rows > len(x):  # other line ends (EBCDIC's), or a file that grows as it is read
                x = np.concatenate([x, np.empty((len(x) + batch.num_rows, len(names)), dtype=np.float32)])
            for j in range(len(names)):
                column = batch.column(j).to_numpy()
                if not (np.abs(column) < FLOAT32_LIMIT).all():  # NaN fails it too
                    raise ValueError("a number that is not a finite float32")
                x[rows : rows + batch.num_rows, j] = column
            rows += batch.num_rows
            labels.append(batch.column(len(names)))
    except (UserError, MemoryError):
        raise
    except Exception as error:  # pyarrow's, or what a codec raises inside pyarrow's decoding (punycode's)
        raise _where(path, dialect, label, features) or _unreadable(path, error) from None
    encoded = pa.chunked_array(labels, pa.string()).combine_chunks().dictionary_encode()
    found = encoded.dictionary.to_pylist()
    # No rows, a NUL, an empty or a missing label, or a line break inside a label: a field a quote
    # never closed takes in the rest of the file (the csv module's strict reading says where).
    suspect = any(_missing(v) or "\n" in v or "\r" in v for v in found)
    if (not rows or suspect) and (problem := _where(path, dialect, label, features)):
        raise problem
    classes, class_of = _classes(found, f"{path}, column '{label}'")  # of each distinct label
    return Table(x[:rows], class_of[encoded.indices.to_numpy(zero_copy_only=False)], classes)


class Dialect(NamedTuple):
    encoding: str
    delimiter: str
    hint: str  # what to say after a header that is not the table's (another encoding, another delimiter)


def _missing(label: str) -> bool:
    """An empty label, a NUL in it, or one that reads as NaN or infinity (as pandas writes a missing value)."""
    with contextlib.suppress(InvalidOperation):
        return not Decimal(label.strip()).is_finite()
    return not label.strip() or "\0" in label


def _lines(text: str) -> int:
    """The line breaks in `text`, as an editor counts them: LF, CRLF or CR alone."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _unreadable(path: str, error: Exception) -> UserError:
    return UserError(f"{path}: not a readable CSV ({first_line(error)})")


def _where(path: str, dialect: Dialect, label: str, features: tuple[str, ...] | None) -> UserError | None:
    """What is wrong with a table, and on which line, or None: the file read again by Python's csv
    module, strictly (a quote never closed is an error), each row checked as pyarrow reads it."""
    content = Path(path).read_bytes()
    fix = "set data.encoding to the file's encoding (e.g. latin-1, cp1252, utf-16) or save it as UTF-8"
    encoding = dialect.encoding
    try:
        text = content.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as bad:
        line = _lines(content[: bad.start].decode(encoding)) + 1  # the bytes before the bad ones decode
        return UserError(
            f"{path}, line {line}: bytes that are not {encoding} ({content[bad.start : bad.start + 4]!r}); {fix}"
        )
    except UnicodeError as bad:  # some codecs (punycode) do not say where
        return UserError(f"{path}: not text in {encoding} ({first_line(bad)}); {fix}")
    if "\0" in text:  # decoded, but no table holds it: a binary file, or UTF-16 read as another encoding
        utf16 = 'UTF-16 text ("Unicode text") needs data.encoding: utf-16'
        line = _lines(text[: text.index("\0")]) + 1
        return UserError(f"{path}, line {line}: a NUL character: not a text table in {encoding}; {utf16}")
    csv.field_size_limit(sys.maxsize)  # a field as long as the file: the table's own business
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=dialect.delimiter, strict=True)
    header: list[str] = []
    line, rows = 1, 0  # the physical line the next row starts on; the data rows
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if row and not header:
                header = [name(column) for column in row]
                names = _columns(path, header, label, features, [], dialect.hint)
                position = {column: i for i, column in enumerate(header)}
                columns = [position[column] for column in names]
            elif row:
                rows += 1
                if problem := _problem(row, header, columns, position[label]):
                    return UserError(f"{path}, line {start}: {problem}")
    except csv.Error as bad:
        return UserError(f"{path}, line {line}: not a readable CSV row ({bad}); check its quotes")
    if not rows:  # blank lines, as spreadsheets often leave at the end, are no rows
        return UserError(f"{path}: the table is empty; it needs a header row and at least one data row{dialect.hint}")
    return None


def _problem(row: list[str], header: list[str], columns: list[int], label: int) -> str | None:
    """What is wrong with a row of the table, as pyarrow reads it, or None."""
    if len(row) != len(header):
        return f"{len(row)} fields, but the header has {len(header)}"
    for c in columns:
        try:
            if not row[c].isascii() or "_" in row[c]:  # float() reads "1_000" and other digits, pyarrow does not
                raise ValueError
            value = float(row[c])
        except ValueError:
            return f"column '{header[c]}' is not a number: {abbreviate(row[c])}"
        if not abs(value) < FLOAT32_LIMIT:  # NaN fails it too
            return f"column '{header[c]}' is {row[c][:60]}; only finite float32 numbers are allowed"
    if not row[label].strip():
        return f"the label column '{header[label]}' is empty; every row needs its class"
    if _missing(row[label]):
        what = "a missing value (NaN or infinite), not a class" if "\0" not in row[label] else "not text (a NUL)"
        return (
            f"the label column '{header[label]}' is {abbreviate(row[label].strip())}, {what}; give every row its class"
        )
    return None


def _pandas_index(schema) -> list[str]:
    """The columns that pandas' metadata in a Parquet schema names as the frame's index (none when the
    metadata is missing or malformed: then every column is data)."""
    try:
        return [name(column) for column in schema.pandas_metadata["index_columns"] if isinstance(column, str)]
    except (TypeError, KeyError, ValueError):  # no metadata, no such key, not JSON, not a list of names
        return []


def read_parquet(path: str, label: str, features: tuple[str, ...] | None) -> Table:
    """A Parquet file: numeric feature columns, and a label column of strings or numbers; the columns
    pandas stored as its index are no features. Rows are counted from 1 in the messages (a Parquet
    file has no lines)."""
    import pyarrow as pa  # only for this source: its import takes a third of a second
    import pyarrow.parquet as pq

    _check_dataset_path(path)
    label, features = name(label), features and tuple(map(name, features))
    try:  # the schema first, to check the columns; then only the columns used are read
        schema = pq.read_schema(path)
        index = _pandas_index(schema)
        names = _columns(path, [name(column) for column in schema.names], label, features, index)
        spelled = {name(column): column for column in schema.names}
        table = pq.read_table(path, columns=[spelled[column] for column in [*names, label]])
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty; it needs at least one row")
    for j, column_name in enumerate([*names, label]):  # the label last: `kind` is its type after the loop
        column = table.column(j)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type  # pandas' categories
        numbers = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        if column_name != label and not numbers:
            fix = "convert it or leave it out of data.features"
            raise UserError(f"{path}: column '{column_name}' holds {kind}, not numbers; {fix}")
        text = pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if column_name == label and not (numbers or text):
            raise UserError(f"{path}: the label column '{label}' holds {kind}; each label must be one string or number")
        if column.null_count:
            row = column.is_valid().to_pylist().index(False) + 1
            raise UserError(f"{path}, row {row}: column '{column_name}' is empty (null); every row needs a value")
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, column_name in enumerate(names):
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: reported below
            x[:, j] = table.column(j).to_numpy()
        bad = np.flatnonzero(~np.isfinite(x[:, j]))
        if len(bad):
            value = table.column(j)[int(bad[0])]
            raise UserError(
                f"{path}, row {bad[0] + 1}: column '{column_name}' is {value}; only finite float32 numbers are allowed"
            )
    # A float32 label as float32 writes it (0.1, not the float64 0.10000000149011612 it is read as).
    as_text = (lambda v: str(np.float32(v))) if pa.types.is_float32(kind) else str
    labels = [as_text(value).strip() for value in table.column(len(names)).to_pylist()]
    missing = [("", "is empty")] + [("nan", "is NaN (missing)")] * pa.types.is_floating(kind)  # pandas' missing label
    for value, what in [*missing, (next((v for v in labels if "\0" in v), None), "holds a NUL, not text")]:
        if value in labels:
            row = labels.index(value) + 1
            raise UserError(f"{path}, row {row}: the label column '{label}' {what}; every row needs its class")
    classes, y = _classes(labels, f"{path}, column '{label}'")
    return Table(x, y, classes)
