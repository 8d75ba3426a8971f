"""User tables: CSV and Parquet files, read by pyarrow into a Table. A file pyarrow cannot parse is
pyarrow's own error, prefixed with the file; what the stages need of a table (its columns, numbers within
float32, a value where data.missing asks for one) is one line naming the column and the data row."""

import contextlib
import io
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np

from stages.plumbing.files import open_input
from stages.plumbing.params import DELIMITERS
from stages.plumbing.process import UserError, abbreviate, first_line, listing


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
TEXT_FIX = "list each in data.categorical, or in data.exclude to leave it out"


def detect_delimiter(header: str) -> str:
    """The most frequent of comma, semicolon, tab and bar in the header line (a comma on a tie or
    when there is none): predictable, unlike guessing from the data."""
    return max(DELIMITERS, key=header.count) if any(d in header for d in DELIMITERS) else ","


def nameless(column: str) -> bool:
    """A header field without a name: R's write.csv and pandas' to_csv write their row names (index) so,
    and pandas reads such a column back as "Unnamed: 0"."""
    return not column or re.fullmatch(r"Unnamed: [0-9]+", column) is not None


def _columns(
    path: str, header: list[str], label: str | None, features: Sequence[str] | None, categorical: Sequence[str],
    exclude: Sequence[str], index: list[str]
) -> list[str]:  # fmt: skip
    """The numeric feature columns, checked against the header: the label is no feature, and by default every column is
    one but the label, the categorical ones, the excluded ones, the index (the columns the file says are one) and a
    first column without a name (row names). A column both in `features` and in `categorical` is a categorical one."""
    used = None if features is None else {*features, *categorical, label}  # None: all (a name read must be one column)
    if twice := [column for column, count in Counter(header).items() if count > 1 and (not used or column in used)]:
        raise UserError(f"{path}: the header names column {abbreviate(twice[0])} more than once; name each once")
    columns = f"columns: {listing(header)}"
    if label is not None and label not in header:
        raise UserError(f"{path}: no label column {abbreviate(label)} (data.label); {columns}")
    if label is not None and label in [*(features or []), *categorical]:
        fix = "a model must not see the answer: remove it from data.features and data.categorical"
        raise UserError(f"data.features or data.categorical names the label column {abbreviate(label)}; {fix}")
    if absent := [column for column in [*(features or []), *categorical, *exclude] if column not in set(header)]:
        if label is None:  # predict's table
            fix = "give a table with the model's columns (under dvc repro, predict.path names it)"
            raise UserError(f"{path}: no column {abbreviate(absent[0])}, which the model reads; {columns}; {fix}")
        key = "features" if absent[0] in (features or ()) else "categorical" if absent[0] in categorical else "exclude"
        raise UserError(f"{path}: no column {abbreviate(absent[0])} (data.{key}); {columns}")
    if features is not None:
        return [column for column in features if column not in {*categorical, *exclude}]
    unnamed = [i for i, column in enumerate(header, 1) if nameless(column)]
    if unnamed not in ([], [1]):  # a first column without a name holds row names
        raise UserError(f"{path}: column {unnamed[-1]} has no name; name it, or list data.features")
    left_out = {*index, *categorical, *exclude, label, *(header[:1] if unnamed else [])}
    names = [column for column in header if column not in left_out]
    if not names and not categorical:
        raise UserError(f"{path}: no feature columns besides the label {abbreviate(label)}")
    return names


def read_table(path: str, label: str | None, features: Sequence[str] | None, categorical: Sequence[str] = (),
               exclude: Sequence[str] = (), missing: str | None = MISSING_FIX, delimiter: str | None = None,
               encoding: str = "utf-8") -> Table:  # fmt: skip
    """A table with a header row: Parquet (by its first bytes, whatever its name) or CSV, read as spreadsheets and
    databases export it (pyarrow's reader: a byte-order mark dropped, LF, CRLF or CR line ends, quoted fields with line
    breaks, blank lines skipped; the delimiter is `delimiter`, or else the header's most frequent). A value is missing
    where pyarrow finds one (CSV: empty, NA, N/A, NaN, null, ...; Parquet: a null, or NaN): with `missing` (a fix to
    name) that is an error, without it NaN, None or the class -1. Only the columns used are read. No label: predict."""
    import pyarrow as pa  # imported only here: a third of a second
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    features = features and tuple(dict.fromkeys(features))  # a column listed twice is read once
    categorical = tuple(dict.fromkeys(categorical))
    with open_input(path, "table", "check the path") as f:
        start = f.read(1 << 16)
    texts = [*categorical, *([label] if label is not None else [])]
    if start[:4] == b"PAR1":
        try:
            header = (schema := pq.read_schema(path)).names
            index = []  # the frame's index, as pandas' metadata names it (none when it is missing or malformed)
            with contextlib.suppress(TypeError, KeyError, ValueError):
                index = [column for column in schema.pandas_metadata["index_columns"] if isinstance(column, str)]
            names = _columns(path, header, label, features, categorical, exclude, index)
            table = pq.read_table(path, columns=[*names, *texts])
        except (pa.ArrowException, OSError) as error:
            raise UserError(f"{path}: not a readable Parquet file ({first_line(error)})") from None
    else:
        header_line = next((line for line in start.decode(encoding, "ignore").splitlines() if line.strip()), "")
        option = "data." if label is not None else "--"  # prepare's parameters, or predict's options
        if "\0" in header_line:  # UTF-16 read as UTF-8: what Excel saves as "Unicode text"
            raise UserError(f"{path}: a NUL character in the header: UTF-16 text needs {option}encoding utf-16")
        read = pa_csv.ReadOptions(encoding=encoding, use_threads=False)  # a block at a time: the least memory
        parse = pa_csv.ParseOptions(delimiter=delimiter or detect_delimiter(header_line), newlines_in_values=True)
        header: list[str] = []
        try:
            inferred = pa_csv.open_csv(path, read, parse).schema  # the types pyarrow infers from a first block
            header = inferred.names
            names = _columns(path, header, label, features, categorical, exclude, [])
            words = [c for c in names if inferred.field(c).type not in (pa.int64(), pa.float64(), pa.null())]
            if label is not None and words:
                raise UserError(f"{path}: text, not numbers, in column(s) {listing(words)}; {TEXT_FIX}")
            types = {c: pa.float32() for c in names} | {c: pa.string() for c in texts}
            convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(types), strings_can_be_null=True)
            table = pa_csv.read_csv(path, read, parse, convert)
        except (pa.ArrowException, UnicodeError) as error:
            problem = first_line(error)
            if where := re.match(r"In CSV column #([0-9]+): ", problem):  # the file's column, counted from 0
                problem = f"column {abbreviate(header[int(where[1])])}: {problem[where.end() :]}"
            problem = re.sub(r"Row #([0-9]+)", lambda m: f"row {int(m[1]) - 1}", problem)  # pyarrow counts the header
            fix = ("to float" in problem) * (TEXT_FIX if label is not None else "the model reads it as a number")
            if "UTF8" in problem or "decod" in problem:
                fix = f"set {option}encoding to the file's encoding (e.g. latin-1, cp1252, utf-16) or save it as UTF-8"
            raise UserError(f"{path}: not a readable CSV ({problem})" + f"; {fix}" * bool(fix)) from None
    result = _table(path, table, names, label, missing, features is None and nameless(header[0]))
    del table  # the memory pyarrow read the file with goes back to the system: the stage has other uses for it
    pa.default_memory_pool().release_unused()
    return result


def _table(path: str, table, names: list[str], label: str | None, missing: str | None, row_names: bool) -> Table:
    """The Table of the columns read (`names`, then text ones): numbers as float32, text as text, each row's class."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

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
        if len(bad := np.flatnonzero(np.isinf(x[:, j]) | (np.isnan(x[:, j]) & bool(missing)))):
            what = f"has no value; {missing}" if np.isnan(x[bad[0], j]) else "is beyond float32's range; fix that value"
            raise UserError(f"{path}, row {bad[0] + 1}: column {abbreviate(column)} {what}")
    values = {}
    for column, data in list(zip(table.column_names, table.columns, strict=True))[len(names) :]:
        # Any type as text (2007.0 is 2007, a float32's 0.1 is 0.1; pandas' categories), stripped, and null
        # where missing, however the file stores it: what the CSV reader reads as missing is missing.
        text = pc.utf8_trim_whitespace(data.cast(pa.string()))
        values[column] = pc.if_else(pc.is_in(text, value_set=pa.array(pa_csv.ConvertOptions().null_values)), None, text)
        if missing and values[column].null_count:
            row = pc.index(values[column].is_null(), True).as_py() + 1
            fix = "every row needs its class (data.missing: drop or mean leaves such rows out)" * (column == label)
            raise UserError(f"{path}, row {row}: column {abbreviate(column)} has no value; {fix or missing}")
    labels = values.pop(label).combine_chunks().dictionary_encode() if label is not None else None
    categorical = {column: value.to_numpy(zero_copy_only=False) for column, value in values.items()}
    if labels is None:
        return Table(x, np.zeros(len(x), np.int64), (), tuple(names), categorical)
    # The classes sorted: as numbers when every one is a number (so "10" comes after "9"), compared
    # exactly as decimals (9007199254740993 is not ...992, as floats would have it).
    found = labels.dictionary.to_pylist()
    classes = sorted(found)
    with contextlib.suppress(InvalidOperation):  # not every one a number
        classes = sorted(classes, key=Decimal)
    rank = {name: i for i, name in enumerate(classes)}
    lookup = np.array([rank[name] for name in found] + [-1])  # -1: the label is missing
    y = lookup[labels.indices.fill_null(-1).to_numpy(zero_copy_only=False)]
    return Table(x, y, tuple(classes), tuple(names), categorical, row_names)


def csv_blocks(columns: dict[str, np.ndarray], rows: int = 1 << 16) -> Iterator[bytes]:
    """Columns as CSV, as read_table reads them back, `rows` rows at a time (the CSV need not be held whole): UTF-8,
    LF line ends, floats in their shortest form, a missing value as an empty field; header and text fields quoted."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa.table({column: pa.array(values, from_pandas=True) for column, values in columns.items()})
    for start in range(0, max(table.num_rows, 1), rows):
        sink = io.BytesIO()
        pa_csv.write_csv(table.slice(start, rows), sink, pa_csv.WriteOptions(include_header=start == 0))
        yield sink.getvalue()
