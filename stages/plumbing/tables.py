"""User tables: CSV and Parquet files under datasets/, read by pyarrow into a Table. A file pyarrow
cannot parse is pyarrow's own error, prefixed with the file; what the stages need of a table (its
columns, numbers within float32, a value where data.missing asks for one) is one line naming the column
and the data row, counted from 1."""

import functools
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath

import numpy as np

from stages.plumbing.errors import DATASETS_DIR, UserError, abbreviate, first_line, listing
from stages.plumbing.files import open_input
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
TEXT_FIX = "list each in data.categorical, or in data.exclude to leave it out"


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
    """A CSV table with a header row, read as spreadsheets and databases export tables (pyarrow's
    reader: a byte-order mark dropped, LF, CRLF or CR line ends, quoted fields with line breaks, blank
    lines skipped). The delimiter is `delimiter`, or else the header line's most frequent. A field is
    missing where pyarrow finds one by default (empty, NA, N/A, NaN, null, ...): with `missing` (a fix to
    name) that is an error, without it NaN, None or the class -1. `label` None: a table without classes
    (predict's rows)."""
    import pyarrow as pa  # imported only here: a third of a second
    import pyarrow.csv as pa_csv

    with open_input(path, "table", "check the path") as f:
        start = f.read(1 << 16)
    try:  # a codec that cannot skip bad bytes (idna) raises even so
        header_line = next((line for line in start.decode(encoding, "ignore").splitlines() if line.strip()), "")
    except UnicodeError:
        header_line = ""
    option = "data." if label is not None else "--"  # prepare's parameters, or predict's options
    if "\0" in header_line:  # UTF-16 read as UTF-8: what Excel saves as "Unicode text"
        raise UserError(f"{path}: a NUL character in the header: UTF-16 text needs {option}encoding utf-16")
    hint = f" (or {option}encoding {encoding} is not the file's)" if encoding.lower() not in ("utf-8", "utf8") else ""
    if delimiter and delimiter not in header_line:
        hint += f" (or {option}delimiter {delimiter!r} is not the file's)"
    label, features = label and name(label), features and tuple(map(name, features))
    categorical = tuple(map(name, categorical))
    read = pa_csv.ReadOptions(encoding=encoding, use_threads=False)  # a block at a time: the least memory
    parse = pa_csv.ParseOptions(delimiter=delimiter or detect_delimiter(header_line), newlines_in_values=True)
    header: list[str] = []
    try:
        inferred = pa_csv.open_csv(path, read, parse).schema  # the types pyarrow infers from a first block
        spelled = inferred.names
        header = [name(column) for column in spelled]
        names = _columns(path, header, label, features, [], hint, categorical, exclude)
        as_written = dict(zip(header, spelled, strict=True))
        kinds = {c: inferred.field(as_written[c]).type for c in names}
        numbers = (pa.types.is_integer, pa.types.is_floating, pa.types.is_null)
        if label is not None and (words := [c for c, kind in kinds.items() if not any(f(kind) for f in numbers)]):
            raise UserError(f"{path}: text, not numbers, in column(s) {listing(words)}; {TEXT_FIX}")
        texts = [*categorical, *([label] if label is not None else [])]
        types = {as_written[c]: pa.float32() for c in names} | {as_written[c]: pa.string() for c in texts}
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(types), strings_can_be_null=True)
        table = pa_csv.read_csv(path, read, parse, convert)
    except (pa.ArrowException, UnicodeError) as error:
        problem = first_line(error)
        if where := re.match(r"In CSV column #([0-9]+): ", problem):  # the file's column, counted from 0
            problem = f"column {abbreviate(header[int(where[1])])}: {problem[where.end() :]}"
        fix = f"set {option}encoding to the file's encoding (e.g. latin-1, cp1252, utf-16) or save it as UTF-8"
        if "UTF8" not in problem and "decod" not in problem:
            fix = (TEXT_FIX if label is not None else "the model reads it as a number") if "to float" in problem else ""
        raise UserError(f"{path}: not a readable CSV ({problem})" + f"; {fix}" * bool(fix)) from None
    return _table(path, table, names, texts, label, missing, features is None and nameless(header[0]))


def _table(
    path: str, table, names: list[str], texts: list[str], label: str | None, missing: str | None, row_names: bool
) -> Table:
    """The Table of the columns pyarrow read (`names`, then `texts`): the numbers as float32, the text
    as text() makes it, each row's class."""
    import pyarrow as pa

    if table.num_rows == 0:
        raise UserError(f"{path}: the table is empty; it needs a header row and at least one data row")
    x = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, column in enumerate(names):
        try:
            with np.errstate(over="ignore"):  # beyond float32: infinite, and refused below
                x[:, j] = table.column(j).cast(pa.float32(), safe=False).to_numpy(zero_copy_only=False)
        except pa.ArrowException:  # a Parquet column of text
            fix = TEXT_FIX if label is not None else "the model reads it as a number"
            kind = table.column(j).type
            raise UserError(f"{path}: column {abbreviate(column)} holds {kind}, not numbers; {fix}") from None
        bad = np.flatnonzero(np.isinf(x[:, j]) | (np.isnan(x[:, j]) & bool(missing)))
        if len(bad):
            what = f"is missing; {missing}" if np.isnan(x[bad[0], j]) else "is beyond float32's range; fix that value"
            raise UserError(f"{path}, row {bad[0] + 1}: column {abbreviate(column)} {what}")
    values = {column: _texts(table.column(j)) for j, column in enumerate(texts, len(names))}
    for column, value in values.items():
        absent = np.flatnonzero(value == None)  # noqa: E711 (elementwise)
        if len(absent) and missing:
            fix = LABEL_FIX if column == label else missing
            raise UserError(f"{path}, row {absent[0] + 1}: column {abbreviate(column)} is missing; {fix}")
    if label is None:
        return Table(x, np.zeros(len(x), np.int64), (), tuple(names), values)
    classes, y = _labels(values.pop(label), f"{path}, column {abbreviate(label)}")
    return Table(x, y, classes, tuple(names), values, row_names)


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


@functools.cache
def missing_values() -> frozenset[str]:
    """The fields pyarrow's CSV reader reads as missing by default (empty, NA, N/A, NaN, null, ...)."""
    import pyarrow.csv as pa_csv

    return frozenset(pa_csv.ConvertOptions().null_values)


def text(value: object) -> str | None:
    """A text value (a label, a category) as the stages compare it: stripped, in NFC, and None where it
    is missing: None, NaN, blank or one of missing_values() once stripped, however the file stores it
    (so that a CSV written from it reads back the same). A whole float is written as an integer (2007.0
    is 2007, as pandas stores an integer column with gaps); a float32 as float32 writes it (0.1)."""
    if value is None or value != value:
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, np.float32):
        value = str(value)
    stripped = str(value).strip()
    return None if stripped in missing_values() else name(stripped)


def _texts(column) -> np.ndarray:
    """A text column's values (any pyarrow type: strings, numbers, pandas' categories) as text() makes
    them, as an object array."""
    import pyarrow as pa

    encoded = column.combine_chunks()
    if not pa.types.is_dictionary(encoded.type):
        encoded = encoded.dictionary_encode()
    float32 = pa.types.is_float32(encoded.type.value_type)
    names = [text(np.float32(v) if float32 and v is not None else v) for v in encoded.dictionary.to_pylist()]
    return np.array([*names, None], dtype=object)[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)]


def _labels(labels: np.ndarray, where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes and the class index of each label (-1 where missing)."""
    known = labels != None  # noqa: E711 (elementwise)
    classes, _ = _classes(list(set(labels[known])), where)
    y = np.full(len(labels), -1, dtype=np.int64)
    lookup = dict(zip(classes, range(len(classes)), strict=True))
    y[known] = [lookup[v] for v in labels[known]]
    return classes, y


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
    """A Parquet file: numeric feature columns (integers, floats, decimals, booleans), `categorical`
    columns of text (or numbers), and a label column of strings or numbers; the columns pandas stored as
    its index are no features. A null, or a NaN (as pandas writes a missing number), is a missing value,
    as read_csv takes one. Only the columns used are read."""
    import pyarrow as pa  # only for this source: its import takes a third of a second
    import pyarrow.parquet as pq

    open_input(path, "table", "check the path").close()
    label, features = label and name(label), features and tuple(map(name, features))
    categorical = tuple(map(name, categorical))
    try:
        schema = pq.read_schema(path)
        header = [name(column) for column in schema.names]
        names = _columns(path, header, label, features, _pandas_index(schema), "", categorical, exclude)
        texts = [*categorical, *([label] if label is not None else [])]
        as_written = dict(zip(header, schema.names, strict=True))
        table = pq.read_table(path, columns=[as_written[c] for c in [*names, *texts]])
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    return _table(path, table, names, texts, label, missing, features is None and nameless(header[0]))
