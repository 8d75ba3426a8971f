"""Reading and writing the stages' files, so that no fault leaves a stage half done.

A stage computes everything first and then writes all of its outputs in one go (write_outputs): each
to a temporary file beside it, and only when every one of them is complete are they renamed into
place. A write that fails (disk full, read-only directory) leaves every output as it was; a rename
cannot fail for want of space, and if one fails anyway the message names the outputs already
replaced. Temporary files that a killed run left (SIGKILL gives no chance to clean up) are removed
by the next run of the stage. Reading an earlier stage's file ends in one line naming the file and
`dvc repro` when it is missing or damaged.

Tensors are stored as safetensors: a JSON header and the raw bytes, readable with numpy alone (so
`evaluate` needs no torch), with nothing in it that changes from run to run.
"""

import contextlib
import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from stages.plumbing import process
from stages.plumbing.errors import UserError, first_line

# A float64 below this in magnitude rounds to a finite float32 (float32's largest is 2**128 - 2**104;
# from the midpoint to the next power on, it rounds to infinity).
FLOAT32_LIMIT = float(2**128 - 2**103)

# What each output is, keyed by path; bytes or text, written together by write_outputs.
Outputs = dict[str, bytes | str]


def write_outputs(outputs: Outputs) -> None:
    """Write every output: each to a temporary file beside it, renamed into place once all are written.
    A failure is a UserError naming the file, the cause, and what was written; it leaves no temporary
    file, and no directory it made."""
    temporary: list[tuple[str, Path]] = []
    replaced: list[str] = []
    made = [parent for path in outputs for parent in Path(path).absolute().parents if not parent.exists()]
    try:
        for path, data in outputs.items():
            content = data.encode("utf-8") if isinstance(data, str) else data
            temporary.append((path, _write_temporary(Path(path), content)))
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
    return output if Path(failed).name.startswith(f"{_temporary_stem(Path(output))}.") else failed


def _temporary_stem(path: Path) -> str:
    """How the temporaries of an output begin: its name, cut short (a name has at most 255 bytes)."""
    return f".{path.name[:100]}"


def _write_temporary(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null, /dev/stdout): never replaced
        raise OSError(0, "a device or a pipe, not a regular file; write the output elsewhere", str(path))
    # A temporary is named by its output and the process writing it; one whose process is gone was
    # left by a killed run, and is removed.
    stem = _temporary_stem(path)
    for left in path.parent.glob(f"{glob.escape(stem)}.*.tmp"):
        if not _running(left.name.removeprefix(f"{stem}.").removesuffix(".tmp")):
            left.unlink(missing_ok=True)
    tmp = path.parent / f"{stem}.{os.getpid()}.tmp"
    # Mode 0666 less the umask, as open() gives: others (a container's user, a colleague) read the results.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    except BaseException:
        tmp.unlink()
        raise
    return tmp


def _running(pid: str) -> bool:
    """Whether another process, `pid` (as a temporary's name holds it), is running."""
    if not (pid.isascii() and pid.isdigit()) or int(pid) in (0, os.getpid()):
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
    return save(contiguous, metadata={"info": json.dumps(info, sort_keys=True)})


def read_tensors(path: str | Path, what: str, keys: tuple[str, ...], fix: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the info of a file written by tensors_bytes, its info holding `keys`; a UserError
    naming `what` the file should be and the `fix` when it is missing, damaged or another file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not the {what}; remove it and {fix}")
    if not path.exists():
        raise UserError(f"{path}: {what} not found; {fix}")
    try:
        with safe_open(path, framework="np") as f:
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
            info = json.loads((f.metadata() or {})["info"])
    except OSError as error:
        raise UserError(f"{path}: cannot read the {what} ({error.strerror}); {fix}") from None
    except (SafetensorError, ValueError, KeyError, TypeError, RecursionError) as error:  # TypeError: bfloat16
        raise UserError(f"{path}: not a readable {what} ({first_line(error)}); {fix}") from None
    if not isinstance(info, dict) or not set(keys) <= info.keys():
        raise UserError(f"{path}: not a {what} (another file in its place?); {fix}")
    # No stage writes a NaN or an infinity: one found here was put there by hand or by a fault.
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UserError(f"{path}: {name} holds NaN or infinite values; {fix}")
    return arrays, info


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, read a block at a time (a prepared file may be gigabytes)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def float32_text(value: float) -> str:
    """`value` as a float32, in the shortest decimal that reads back as that float32: numpy's repr of
    a float32 (Dragon4 with unique=True), so the bytes are stable and carry no noise digits."""
    return str(np.float32(value))
