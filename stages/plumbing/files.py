"""Reading and writing the stages' files, so that no fault leaves a stage half done
(docs/reliability.md says what each mechanism promises).

- A stage's command line declares which of its paths are inputs and which outputs (StageArguments):
  no output may be an input, params.yaml, another output or a user's table.
- Every input is opened by open_input: a regular file (a pipe would block the stage forever), whose
  identity (device, inode, size, modification time) is noted; before the outputs are renamed into
  place, each input must still be that file, or the stage writes nothing: its outputs would claim
  inputs they were not made from (prepare run by hand under a training, params.yaml saved meanwhile).
- write_outputs writes every output to a temporary file beside it, and renames them into place only
  once all are complete; the temporaries a killed run left are removed by the next run.
- Tensors are safetensors files: a JSON header and the raw bytes, readable with numpy alone (so
  `evaluate` needs no torch), with nothing in them that changes from run to run.
"""

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import signal
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from stages.plumbing import process
from stages.plumbing.errors import DATASETS_DIR, UserError, first_line, printable

# A float64 below this in magnitude rounds to a finite float32 (float32's largest is 2**128 - 2**104;
# from the midpoint to the next power on, it rounds to infinity).
FLOAT32_LIMIT = float(2**128 - 2**103)

# What each output is, keyed by path: bytes or text, or blocks of bytes made as they are written (in
# the order of the keys), so that an output need not be held whole; written together by write_outputs.
Outputs = dict[str, bytes | str | Iterable[bytes]]

# The inputs this stage opened, and what each was when it was opened.
inputs_read: dict[str, tuple[int, int, int, int]] = {}


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def open_input(path: str | Path, what: str, fix: str) -> BinaryIO:
    """The input file `path` open for reading, once it is known to be a regular file; noted, so that
    write_outputs can tell whether it changed. A UserError names `what` it should be and the `fix`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe opens at once, and is refused below
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; {fix}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise UserError(f"{path}: is {kind}, not the {what}; {fix}")
    inputs_read[str(path)] = _identity(info)
    return os.fdopen(fd, "rb")


def _check_inputs() -> None:
    """Every input is still the file the stage read."""
    for path, identity in inputs_read.items():
        try:
            same = _identity(os.stat(path)) == identity
        except OSError:
            same = False
        if not same:
            raise UserError(f"{path} changed while the stage ran, so nothing was written; run the stage again")


class StageArguments(argparse.ArgumentParser):
    """argparse for a stage's command line; a wrong one is reported the way the stages report every
    mistake, in one line, `<stage>: error: <what>; usage: ...`, with argparse's exit status 2.

    Each path is declared an input or an output, and before any work the paths must name distinct
    files: an output that is an input (or params.yaml, or a user's table) would overwrite it, and two
    outputs that are one file would lose one of them."""

    def __init__(self, stage: str, description: str | None) -> None:
        super().__init__(prog=f"python -m stages {stage}", description=description)
        self.stage = stage
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def add_input(self, name: str, help: str) -> None:
        self.add_argument(name, help=help)
        self.inputs.append(name)

    def add_output(self, name: str, help: str) -> None:
        self.add_argument(name, help=help)
        self.outputs.append(name)

    def parse_args(self, args: Sequence[str] | None = None) -> argparse.Namespace:  # type: ignore[override]
        """The arguments, once every output is known to be neither an input, params.yaml, another
        output, nor a file under datasets/ (the user's tables: data.path among them)."""
        parsed = super().parse_args(args)
        inputs_read.clear()  # a stage begins: it has read nothing yet
        seen = {os.path.realpath("params.yaml"): "params.yaml"}
        seen |= {os.path.realpath(getattr(parsed, name)): name for name in self.inputs}
        tables = os.path.realpath(DATASETS_DIR)
        for name in self.outputs:
            path = getattr(parsed, name)
            real = os.path.realpath(path)
            if os.path.commonpath([real, tables]) == tables:
                raise UserError(
                    f"the output {name} ({path}) is under {DATASETS_DIR}/, where the tables live; write it elsewhere"
                )
            other = seen.setdefault(real, name)
            if other != name:
                raise UserError(f"the output {name} ({path}) is the same file as the {other}; give each its own path")
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.stage}: error: {message}; {' '.join(self.format_usage().split())}\n")


def write_outputs(outputs: Outputs, summary: str = "") -> None:
    """Write every output: each to a temporary file beside it, renamed into place once all are written.
    A failure is a UserError naming the file, the cause, and what was written; it leaves no temporary
    file, and no directory it made. `summary`, the stage's line on stderr, is printed once every output
    is written and before any is renamed: a stage that fails ends in one line, and one that says what
    it did has done it."""
    temporary: list[tuple[str, Path]] = []
    replaced: list[str] = []
    made = [parent for path in outputs for parent in Path(path).absolute().parents if not parent.exists()]
    try:
        for path, data in outputs.items():
            content = data.encode("utf-8") if isinstance(data, str) else data
            temporary.append((path, _write_temporary(Path(path), content)))
        _check_inputs()
        if summary:  # a closed stderr is an error here, not SIGPIPE: the temporaries are then removed
            piped = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            try:
                print(printable(summary), file=sys.stderr, flush=True)
            except OSError as error:
                raise OSError(error.errno, error.strerror, "standard error") from None
            finally:
                signal.signal(signal.SIGPIPE, piped)
        process.finishing()  # no signal ends the renames halfway
        for path, tmp in temporary:
            os.replace(tmp, path)
            replaced.append(path)
    except BaseException as error:  # Ctrl-C too: no temporary file is left behind
        for _, tmp in temporary:
            tmp.unlink(missing_ok=True)
        for directory in sorted(set(made), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: something else is in it now
                directory.rmdir()
        if not isinstance(error, OSError):
            raise
        name = error.filename if isinstance(error.filename, str) else path
        reason = error.strerror or type(error).__name__
        if isinstance(error, IsADirectoryError | FileExistsError | NotADirectoryError):
            reason += "; a directory stands where a file is written, or a file where a directory is needed"
        written = f"only {', '.join(replaced)} written" if replaced else "nothing was written"
        raise UserError(f"{_output_name(name, path)}: cannot write ({reason}); {written}") from None


def _output_name(failed: str, output: str) -> str:
    """The output the user named, rather than the temporary file beside it."""
    return output if Path(failed).name.startswith(_temporary_prefix(Path(output))) else failed


def _temporary_prefix(path: Path) -> str:
    """How the temporaries of an output begin: its name cut to 100 bytes (a name may have 255), and a
    hash of the whole name, so that no two outputs share a temporary, however alike their names."""
    name = path.name.encode("utf-8", "surrogateescape")
    return f".{name[:100].decode('utf-8', 'ignore')}.{hashlib.sha256(name).hexdigest()[:16]}."


def _write_temporary(path: Path, content: bytes | Iterable[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    # Only a regular file is replaced: never a device, a pipe or a link to one (/dev/null, /dev/stdout
    # even when it leads to a log file): the rename would put a file where the system keeps its link.
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(0, "a device, a pipe or a link, not a regular file; write the output elsewhere", str(path))
    # A temporary is named by its output and the process writing it; one whose process is gone was
    # left by a killed run, and is removed.
    prefix = _temporary_prefix(path)
    for left in os.listdir(path.parent):
        if (pid := re.fullmatch(rf"{re.escape(prefix)}([0-9]+)\.tmp", left)) and not _running(pid[1]):
            (path.parent / left).unlink(missing_ok=True)
    tmp = path.parent / f"{prefix}{os.getpid()}.tmp"
    # Mode 0666 less the umask, as open() gives: others (a container's user, a colleague) read the results.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for block in [content] if isinstance(content, bytes) else content:
                f.write(block)
    except BaseException:
        tmp.unlink()
        raise
    return tmp


def _running(pid: str) -> bool:
    """Whether another process, `pid` (as a temporary's name holds it), is running."""
    if int(pid) in (0, os.getpid()):
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only whether it exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def tensors_bytes(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> bytes:
    """A safetensors file of `arrays`, with `info` (plain JSON values) in its metadata. No stage writes
    a NaN or an infinity: the stages check their results first, and this refuses one that slipped by.

    safetensors writes its metadata map in the random order of a Rust HashMap, so a map of several
    keys changes its bytes from run to run: `info` goes in as one key holding sorted JSON."""
    if not all(np.isfinite(array).all() for array in arrays.values() if array.dtype.kind == "f"):
        raise ValueError("a tensor to write holds NaN or infinite values")
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    info = info | {"tensors_sha256": _tensors_sha256(contiguous)}
    return save(contiguous, metadata={"info": json.dumps(info, sort_keys=True)})


def _tensors_sha256(arrays: dict[str, np.ndarray]) -> str:
    """A checksum of the tensors (names, types, shapes, values), kept in the file's info: a flipped bit
    in a weight is a damaged file, not another model."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(_checksum_prefix(name, array.dtype, array.shape))
        digest.update(array.data)
    return digest.hexdigest()


def _checksum_prefix(name: str, dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    return f"{name}\0{dtype.str}\0{shape}\0".encode()


# The element types the stages write, by their safetensors names.
DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8")}
# What a read of many rows reads at a time: a process holds a block, not the whole file, beyond what it asked for.
BLOCK_BYTES = 1 << 24


class Tensors:
    """A tensors file written by tensors_bytes, checked and open for reading: its info, the SHA-256 of
    its bytes, and its tensors, whole or some of their rows at a time (read with pread, not through a
    memory map: a process holds only the rows it asked for, whatever the file's size)."""

    def __init__(self, path: str | Path, file: BinaryIO, layout: dict[str, tuple], info: dict, digest: str) -> None:
        self.path, self.file, self.info, self.sha256 = path, file, info, digest
        self.layout: dict[str, tuple[np.dtype, tuple[int, ...], int]] = layout  # name: type, shape, offset

    def shape(self, name: str) -> tuple[int, ...]:
        return self.layout[name][1]

    def rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows start..stop of a tensor (all of them by default), read from the file."""
        dtype, shape, offset = self.layout[name]
        row_bytes = dtype.itemsize * math.prod(shape[1:])
        if shape:
            stop = shape[0] if stop is None else min(stop, shape[0])
        array = np.empty((stop - start, *shape[1:]) if shape else (), dtype)
        buffer = memoryview(array.reshape(-1).view(np.uint8))
        done = 0
        while done < len(buffer):
            read = os.preadv(self.file.fileno(), [buffer[done:]], offset + start * row_bytes + done)
            if read == 0:
                raise UserError(f"{self.path}: it ended early: it changed while the stage read it; run the stage again")
            done += read
        return array

    def blocks(self, name: str, rows: int) -> Iterator[np.ndarray]:
        """The tensor `rows` rows at a time."""
        for start in range(0, self.shape(name)[0], rows):
            yield self.rows(name, start, start + rows)

    def block_rows(self, name: str) -> int:
        """How many rows of a tensor make a block of about BLOCK_BYTES."""
        dtype, shape, _ = self.layout[name]
        return max(1, BLOCK_BYTES // max(1, dtype.itemsize * math.prod(shape[1:])))

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: self.rows(name) for name in self.layout}


def open_tensors(path: str | Path, what: str, keys: tuple[str, ...], fix: str) -> Tensors:
    """The file written by tensors_bytes at `path`, its info holding `keys`, once its tensors match their
    checksum and hold no NaN nor infinity (read a block at a time); a UserError naming `what` the file
    should be and the `fix` when it is missing, damaged or another file."""
    file = open_input(path, what, fix)
    digest = hashlib.file_digest(file, "sha256").hexdigest()  # a block at a time
    try:
        # safetensors checks the header (types, shapes, offsets) of the file opened above, not of another
        # one renamed into its place since: the same file through its descriptor.
        with safe_open(f"/dev/fd/{file.fileno()}", framework="np") as f:
            info = json.loads((f.metadata() or {})["info"])
            dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118 (not a dict)
            if other := [f"{name} is {dtype}" for name, dtype in dtypes.items() if dtype not in DTYPES]:
                raise ValueError(f"{other[0]}, a type no stage writes")
        file.seek(0)
        header_bytes = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_bytes))  # the tensors' places, which safe_open does not tell
    except OSError as error:
        raise UserError(f"{path}: cannot read the {what} ({error.strerror}); {fix}") from None
    except (SafetensorError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise UserError(f"{path}: not a readable {what} ({first_line(error)}); {fix}") from None
    if not isinstance(info, dict) or not set(keys) <= info.keys():
        raise UserError(f"{path}: not a {what} (another file in its place?); {fix}")
    start = 8 + header_bytes
    layout = {
        n: (DTYPES[t], tuple(header[n]["shape"]), start + header[n]["data_offsets"][0]) for n, t in dtypes.items()
    }
    tensors = Tensors(path, file, layout, info, digest)
    checksum, not_finite = hashlib.sha256(), []
    for name in sorted(layout):
        checksum.update(_checksum_prefix(name, *layout[name][:2]))
        for block in tensors.blocks(name, tensors.block_rows(name)) if layout[name][1] else [tensors.rows(name)]:
            checksum.update(block.data)
            if block.dtype.kind == "f" and not np.isfinite(block).all() and name not in not_finite:
                not_finite.append(name)
    if info.pop("tensors_sha256", None) != checksum.hexdigest():
        raise UserError(f"{path}: a damaged {what}: its tensors do not match the checksum written with them; {fix}")
    # No stage writes a NaN or an infinity: one found here was put there by hand or by a fault.
    if not_finite:
        raise UserError(f"{path}: {not_finite[0]} holds NaN or infinite values; {fix}")
    return tensors


def read_tensors(
    path: str | Path, what: str, keys: tuple[str, ...], fix: str
) -> tuple[dict[str, np.ndarray], dict, str]:
    """The arrays, the info and the SHA-256 of a small tensors file (a model), as open_tensors checks it."""
    tensors = open_tensors(path, what, keys, fix)
    return tensors.arrays(), tensors.info, tensors.sha256


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def float32_text(value: float, what: str) -> str:
    """`value` as a float32, in the shortest decimal that reads back as that float32: numpy's repr of
    a float32 (Dragon4 with unique=True), so the bytes are stable and carry no noise digits. Every number
    a stage writes as text passes here, and none is NaN or infinite: `what` it is names it in the line."""
    if not abs(value) < FLOAT32_LIMIT:  # NaN fails it too
        fix = "lower train.lr (or standardize the data: data.standardize: true) and `dvc repro`"
        raise UserError(
            f"{what} is {value:.3g}, beyond float32: training diverged or the data's scale overflows; {fix}"
        )
    return str(np.float32(value) + np.float32(0))  # + 0: -0.0 is 0.0, as every reader takes it
