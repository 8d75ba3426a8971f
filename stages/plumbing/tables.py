"""User tables: CSV and Parquet files under datasets/, read by pyarrow into a Table; each mistake is one
line that names the file and, for a CSV, the line.

pyarrow reads every CSV, in any encoding, a block at a time in C. Its errors name a column but no row
("CSV conversion error to double: invalid value 'abc'"), so when it fails, or when what it read is
wrong (NaN, an empty label), Python's csv module reads the file once more only to say where: the first
row that is wrong, by the physical line it starts on (a quoted field may span lines)."""

import codecs
import contextlib
import csv
import functools
import io
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np

from stages.plumbing.errors import DATASETS_DIR, UserError, abbreviate, first_line, listing
from stages.plumbing.files import FLOAT32_LIMIT, open_input
from stages.plumbing.params import DELIMITERS


@dataclass(frozen=True)
class Table:
    x: np.ndarray  # float32, (samples, numeric features); NaN where a value is missing
    y: np.ndarray  # int64 class indices, (samples,); -1 where the label is missing
    classes: tuple[str, ...]  # classes[i] is the name of class index i
    columns: tuple[str, ...] = ()  # the names of x's columns
    categorical: dict[str, np.ndarray] = field(default_factory=dict)  # a text column's values (None: missing)
    row_names: bool = False  # whether its first column, unnamed, held row names (left out)


# What prepare says of a missing value when data.missing is error (predict says what the model needs).
MISSING_FIX = "set data.missing: drop (leave such rows out) or mean (fill in the training mean)"
LABEL_FIX = "every row needs its class (data.missing: drop or mean leaves such rows out)"
TEXT_FIX = "list it in data.categorical, or in data.exclude to leave it out"


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


def check_dataset_path(path: str) -> None:
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != DATASETS_DIR:
        fix = "put the file there (or `dvc add` it there) so that DVC tracks it as a dependency of prepare"
        raise UserError(f"data.path: {path} is not under {DATASETS_DIR}/; {fix}")
    open_input(path, "table data.path names", "check data.path (relative to the repository root)").close()


def detect_delimiter(header: str) -> str:
    """The most frequent of comma, semicolon, tab and bar in the header line (a comma on a tie or
    when there is none): predictable, unlike guessing from the data."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def nameless(column: str) -> bool:
    """A header field without a name: R's write.csv and pandas' to_csv write their row names (index) so,
    and pandas reads such a column back as "Unnamed: 0"."""
    return not column or re.fullmatch(r"Unnamed: [0-9]+", column) is not None


def _columns(
    path: str,
    header: list[str],
    label: str | None,
    features: tuple[str, ...] | None,
    index: list[str],
    hint: str = "",
    categorical: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
) -> list[str]:
    """The numeric feature columns, checked against the header with the categorical ones: no repeated
    name, the label not a feature, and by default every column but the label, the categorical ones, the
    excluded ones, the index (`index`: the columns the file says are one) and a first column without a
    name (row names). A column both in `features` and in `categorical` is a categorical one."""
    used = None if features is None else {*features, *categorical, label}  # None: every column
    for names, what, fix in (
        (header, f"{path}: the header names column", "give every column its own name"),
        (features or [], "data.features names", "list each column once"),
        (categorical, "data.categorical names", "list each column once"),
    ):  # linear in the width; a column read by name must be one column
        twice = [column for column, count in Counter(names).items() if count > 1 and (not used or column in used)]
        if twice:
            raise UserError(f"{what} {abbreviate(twice[0])} more than once; {fix}")
    if label is not None and label not in header:
        raise UserError(f"{path}: no label column {abbreviate(label)} (data.label); columns: {listing(header)}{hint}")
    if label is not None and label in [*(features or []), *categorical]:
        fix = "a model must not see the answer: remove it from data.features and data.categorical"
        raise UserError(f"data.features or data.categorical names the label column {abbreviate(label)}; {fix}")
    present = set(header)  # linear in the width, as the checks above
    missing = [column for column in [*(features or []), *categorical, *exclude] if column not in present]
    if missing and label is None:  # predict's table
        fix = "give a table with the model's columns (under dvc repro, predict.path names it)"
        raise UserError(
            f"{path}: no column {abbreviate(missing[0])}, which the model reads; columns: {listing(header)}; {fix}"
        )
    if missing:
        where = (
            "features" if missing[0] in (features or ()) else "categorical" if missing[0] in categorical else "exclude"
        )
        raise UserError(f"{path}: no column {abbreviate(missing[0])} (data.{where}); columns: {listing(header)}")
    if features is not None:
        return [column for column in features if column not in {*categorical, *exclude}]
    unnamed = [i for i, column in enumerate(header, 1) if nameless(column)]
    if unnamed[1:] or unnamed not in ([], [1]):  # a first column without a name holds row names
        raise UserError(f"{path}: column {unnamed[-1]} has no name; name it, or list data.features")
    left_out = {*index, *categorical, *exclude, label, *(header[:1] if unnamed else [])}
    names = [column for column in header if column not in left_out]
    if not names and not categorical:
        raise UserError(f"{path}: no feature columns besides the label {abbreviate(label)}")
    return names


def read_csv(
    path: str,
    label: str | None,
    features: tuple[str, ...] | None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    categorical: tuple[str, ...] = (),
    missing: str | None = MISSING_FIX,
    exclude: tuple[str, ...] = (),
) -> Table:
    """A CSV table with a header row; the label column may hold strings, and so may the `categorical`
    columns. Read as spreadsheets and databases export tables: a byte-order mark is dropped, lines end
    in LF, CRLF or CR, fields may be quoted (line breaks inside them too), blank lines are skipped; the
    delimiter is `delimiter`, or else detected from the header line. A field is missing where pyarrow's
    reader finds one by default (empty, NA, N/A, NaN, null, ...); with `missing` (a fix to name) such a
    field is an error, without it a missing value is read as NaN, None or the class -1. The features are
    filled into float32 a block at a time. `label` None: the table has no classes (new rows to predict)."""
    import pyarrow as pa  # imported only here: a third of a second
    import pyarrow.csv as pa_csv

    open_input(path, "table", "check the path").close()
    label, features = label and name(label), features and tuple(map(name, features))
    categorical = tuple(map(name, categorical))
    with open(path, "rb") as f:  # the header line, and about as many rows as line ends (to fill x in place)
        start = f.read(1 << 16)
        f.seek(0)
        n_lines = sum(chunk.count(b"\n") + chunk.count(b"\r") for chunk in iter(lambda: f.read(1 << 20), b""))
    try:  # a codec that cannot skip bad bytes (idna) raises even so: then a comma
        header_line = next((s for s in start.decode(encoding, errors="ignore").splitlines() if s.strip()), "")
    except UnicodeError:
        header_line = ""
    option = "data." if label is not None else "--"  # prepare's parameters, or predict's options
    hint = "" if codecs.lookup(encoding).name == "utf-8" else f" (or {option}encoding {encoding} is not the file's)"
    if delimiter and len(header_line.split(delimiter)) == 1 and detect_delimiter(header_line) != delimiter:
        hint += f" (or {option}delimiter {delimiter!r} is not the file's)"
    dialect = Dialect(encoding, delimiter or detect_delimiter(header_line), hint, option)
    wanted = Wanted(label, features, categorical, missing, exclude)
    # pyarrow's 1 MiB blocks, but when no line ends in the first 64 KiB: the header must fit in the first.
    block = 1 << 20 if b"\n" in start or b"\r" in start else 1 << 26
    read = pa_csv.ReadOptions(encoding=encoding, block_size=block)
    parse = pa_csv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=True)
    try:
        header = pa_csv.open_csv(path, read, parse).schema.names
        if any("\0" in column for column in header):  # UTF-16 read as UTF-8: where, and which encoding
            raise ValueError("a NUL in the header")
        names = _columns(path, [name(column) for column in header], label, features, [], hint, categorical, exclude)
        spelled = {name(column): column for column in header}
        texts = [*categorical, *([label] if label is not None else [])]
        types = {spelled[c]: pa.float64() for c in names} | {spelled[c]: pa.string() for c in texts}
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(types), strings_can_be_null=True)
        # At most a row per line end, and per len(names) bytes (blank lines and quoted line breaks count
        # as line ends): as many rows as there may be, without asking for more memory than the file's.
        n_rows = min(n_lines, Path(path).stat().st_size // max(len(types), 1)) + 1
        x, rows, read_texts = np.empty((n_rows, len(names)), dtype=np.float32), 0, {c: [] for c in texts}
        for batch in pa_csv.open_csv(path, read, parse, convert):
            if rows + batch.num_rows > len(x):  # other line ends (EBCDIC's), or a file that grows as it is read
                x = np.concatenate([x, np.empty((len(x) + batch.num_rows, len(names)), dtype=np.float32)])
            for j in range(len(names)):
                column = batch.column(j)
                values = column.to_numpy(zero_copy_only=False)
                bad = ~(np.abs(values) < FLOAT32_LIMIT)  # NaN too: a missing value, or "nan" written out
                if bad.any() and (missing or (bad & ~column.is_null().to_numpy(zero_copy_only=False)).any()):
                    raise ValueError("a missing value, or a number that is not a finite float32")
                x[rows : rows + batch.num_rows, j] = values
            rows += batch.num_rows
            for j, c in enumerate(texts, len(names)):
                read_texts[c].append(batch.column(j))
    except (UserError, MemoryError):
        raise
    except Exception as error:  # pyarrow's, or what a codec raises inside pyarrow's decoding (punycode's)
        raise _where(path, dialect, wanted) or _unreadable(path, error) from None
    nulls = missing_values()
    values = {c: _texts(pa.chunked_array(read_texts[c], pa.string()), nulls) for c in texts}
    # No rows, a NUL, an empty or a missing value, or a line break inside a value: a field a quote
    # never closed takes in the rest of the file (the csv module's strict reading says where).
    suspect = any((v is None and missing) or (v is not None and _suspect(v)) for c in texts for v in set(values[c]))
    if (not rows or suspect) and (problem := _where(path, dialect, wanted)):
        raise problem
    if label is None:
        return Table(x[:rows], np.zeros(rows, np.int64), (), tuple(names), values)
    classes, y = _labels(values.pop(label), f"{path}, column '{label}'")
    return Table(x[:rows], y, classes, tuple(names), values, features is None and nameless(name(header[0])))


def csv_bytes(table: Table, label: str | None = None) -> bytes:
    """The table's feature columns (and its classes as the column `label`) as CSV, as read_csv reads
    them back: UTF-8, LF line ends, floats in their shortest form, a missing value as an empty field;
    the header and text fields quoted."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    columns = {c: pa.array(table.x[:, j], from_pandas=True) for j, c in enumerate(table.columns)}
    columns |= {c: pa.array(values, pa.string()) for c, values in table.categorical.items()}
    if label is not None:  # a row with a class is never blank, even when its only feature is missing
        columns[label] = pa.array(np.array(table.classes, dtype=object)[table.y], pa.string())
    sink = io.BytesIO()
    pa_csv.write_csv(pa.table(columns), sink)
    return sink.getvalue()


@functools.cache  # read once per process: the explain pass asks for every row
def missing_values() -> frozenset[str]:
    """The fields pyarrow's CSV reader reads as missing by default (empty, NA, N/A, NaN, null, ...)."""
    import pyarrow.csv as pa_csv

    return frozenset(pa_csv.ConvertOptions().null_values)


def text(value: object, nulls: frozenset[str]) -> str | None:
    """A text value (a label, a category) as the stages compare it: stripped, in NFC, and None where it
    is missing: None, NaN, blank or one of `nulls` once stripped, however the file stores it (so that a
    CSV written from it reads back the same). A whole float is written as an integer (2007.0 is 2007,
    as pandas stores an integer column with gaps); a float32 as float32 writes it (0.1)."""
    if value is None or value != value:
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, np.float32):
        value = str(value)
    stripped = str(value).strip()
    return None if stripped in nulls else name(stripped)


def _texts(column, nulls: frozenset[str]) -> np.ndarray:
    """A text column's values as text() makes them, as an object array."""
    encoded = column.combine_chunks().dictionary_encode()
    names = np.array([text(v, nulls) for v in encoded.dictionary.to_pylist()] + [None], dtype=object)
    return names[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


def _labels(labels: np.ndarray, where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes and the class index of each label (-1 where missing)."""
    known = labels != None  # noqa: E711 (elementwise)
    classes, _ = _classes(list(set(labels[known])), where)
    y = np.full(len(labels), -1, dtype=np.int64)
    lookup = dict(zip(classes, range(len(classes)), strict=True))
    y[known] = [lookup[v] for v in labels[known]]
    return classes, y


class Wanted(NamedTuple):
    """The columns a table is read for, and the fix a line with a missing value names (None: allowed)."""

    label: str | None
    features: tuple[str, ...] | None
    categorical: tuple[str, ...]
    missing: str | None
    exclude: tuple[str, ...] = ()


class Dialect(NamedTuple):
    encoding: str
    delimiter: str
    hint: str  # what to say after a header that is not the table's (another encoding, another delimiter)
    option: str = "data."  # how the reader's settings are named: data.encoding, or predict's --encoding


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


def _suspect(value: str) -> bool:
    return _missing(value) or "\n" in value or "\r" in value


def _where(path: str, dialect: Dialect, wanted: Wanted) -> UserError | None:
    """What is wrong with a table, and on which line, or None: the file read again by Python's csv
    module, strictly (a quote never closed is an error), each row checked as pyarrow reads it."""
    content = Path(path).read_bytes()
    fix = f"set {dialect.option}encoding to the file's encoding (e.g. latin-1, cp1252, utf-16) or save it as UTF-8"
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
        setting = "data.encoding: utf-16" if dialect.option == "data." else "--encoding utf-16"
        utf16 = f'UTF-16 text ("Unicode text") needs {setting}'
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
                names = _columns(path, header, *wanted[:2], [], dialect.hint, wanted.categorical, wanted.exclude)
                position = {column: i for i, column in enumerate(header)}
                columns = [[position[column] for column in names], [position[c] for c in wanted.categorical]]
                label = position.get(wanted.label)  # type: ignore[arg-type]
            elif row:
                rows += 1
                if problem := _problem(row, header, *columns, label, wanted):
                    return UserError(f"{path}, line {start}: {problem}")
    except csv.Error as bad:
        return UserError(f"{path}, line {line}: not a readable CSV row ({bad}); check its quotes")
    if not rows:  # blank lines, as spreadsheets often leave at the end, are no rows
        return UserError(f"{path}: the table is empty; it needs a header row and at least one data row{dialect.hint}")
    return None


def _problem(
    row: list[str], header: list[str], numeric: list[int], categorical: list[int], label: int | None, wanted: Wanted
) -> str | None:
    """What is wrong with a row of the table, as pyarrow reads it, or None."""
    if len(row) != len(header):
        return f"{len(row)} fields, but the header has {len(header)}"
    nulls = missing_values()
    for c in [*numeric, *categorical]:
        gap = row[c] in nulls or (c in categorical and text(row[c], nulls) is None)
        if gap and wanted.missing:
            return f"column '{header[c]}' is missing ({row[c]!r}); {wanted.missing}"
        if gap or c in categorical:
            continue
        try:
            if not row[c].isascii() or "_" in row[c]:  # float() reads "1_000" and other digits, pyarrow does not
                raise ValueError
            value = float(row[c])
        except ValueError:
            fix = TEXT_FIX if label is not None else "the model reads it as a number"
            return f"column '{header[c]}' is not a number: {abbreviate(row[c])}; {fix}"
        if not abs(value) < FLOAT32_LIMIT:  # NaN fails it too
            return f"column '{header[c]}' is {row[c][:60]}; only finite float32 numbers are allowed"
    absent = label is not None and text(row[label], nulls) is None
    if label is None or (absent and not wanted.missing):
        return None
    if absent:
        what = "empty" if not row[label].strip() else f"missing ({row[label]!r})"
        return f"the label column '{header[label]}' is {what}; {LABEL_FIX}"
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


def read_parquet(
    path: str,
    label: str | None,
    features: tuple[str, ...] | None,
    categorical: tuple[str, ...] = (),
    missing: str | None = MISSING_FIX,
    exclude: tuple[str, ...] = (),
) -> Table:
    """A Parquet file: numeric feature columns, text (or any) `categorical` columns, and a label column
    of strings or numbers; the columns pandas stored as its index are no features. A null, or a NaN (as
    pandas writes a missing number), is a missing value: as read_csv takes one. Rows are counted from 1
    in the messages (a Parquet file has no lines)."""
    import pyarrow as pa  # only for this source: its import takes a third of a second
    import pyarrow.parquet as pq

    open_input(path, "table", "check the path").close()
    label, features = label and name(label), features and tuple(map(name, features))
    categorical = tuple(map(name, categorical))
    texts = [*categorical, *([label] if label is not None else [])]
    try:  # the schema first, to check the columns; then only the columns used are read
        schema = pq.read_schema(path)
        index = _pandas_index(schema)
        header = [name(column) for column in schema.names]
        names = _columns(path, header, label, features, index, "", categorical, exclude)
        spelled = {name(column): column for column in schema.names}
        table = pq.read_table(path, columns=[spelled[column] for column in [*names, *texts]])
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty; it needs at least one row")
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    values, nulls = {}, missing_values()
    for j, column_name in enumerate([*names, *texts]):
        column = table.column(j)
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type  # pandas' categories
        numbers = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        if j < len(names) and not (numbers or pa.types.is_boolean(kind)):
            fix = f"convert it, or {TEXT_FIX}" if label else "convert it"
            raise UserError(f"{path}: column '{column_name}' holds {kind}, not numbers; {fix}")
        textual = pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
        textual = textual or pa.types.is_string_view(kind)
        what = f"the label column '{column_name}'" if column_name == label else f"column '{column_name}'"
        if j >= len(names) and not (numbers or textual):
            raise UserError(f"{path}: {what} holds {kind}; each value must be one string or number")
        if j < len(names):
            with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: inf, reported below
                x[:, j] = column.cast(pa.float64(), safe=False).to_numpy()  # integers, decimals, booleans
            absent = np.isnan(x[:, j])
            bad = np.flatnonzero(np.isinf(x[:, j]) | absent & bool(missing))
            problem = "is {}; only finite float32 numbers are allowed"
        else:
            float32 = pa.types.is_float32(kind)
            read = [text(np.float32(v) if float32 and v is not None else v, nulls) for v in column.to_pylist()]
            values[column_name] = np.array(read, dtype=object)
            absent = values[column_name] == None  # noqa: E711 (elementwise)
            bad = np.flatnonzero(absent & bool(missing) | np.array(["\0" in (v or "") for v in read], dtype=bool))
            problem = "holds a NUL, not text; every row needs its class"
        if len(bad):
            fix = LABEL_FIX if column_name == label else missing
            shown = column[int(bad[0])].as_py()
            shown = "null" if shown is None else "NaN" if shown != shown else repr(shown)
            problem = f"is missing ({shown}); {fix}" if absent[bad[0]] else problem
            raise UserError(f"{path}, row {bad[0] + 1}: {what} {problem.format(shown)}")
    if label is None:
        return Table(x, np.zeros(len(x), np.int64), (), tuple(names), values)
    classes, y = _labels(values.pop(label), f"{path}, column '{label}'")
    return Table(x, y, classes, tuple(names), values, features is None and nameless(header[0]))
