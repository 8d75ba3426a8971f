"""The stages' files, so that no fault leaves a stage half done (docs/reliability.md): a stage's command line declares
its inputs and outputs (StageArguments), and write_outputs writes every output beside its place and renames them into
place together, once all are complete and every input is still the file the stage read. Tensors are safetensors files,
readable with numpy alone (evaluate needs no torch)."""

import argparse
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from stages.plumbing.process import UserError, abbreviate, ending, first_line, say

DATASETS_DIR = "datasets"  # the user's tables (data.path), which dvc.yaml declares; no stage writes in it

# What each output is, keyed by path: bytes or text, or blocks of bytes made as they are written (in
# the order of the keys), so that an output need not be held whole; written together by write_outputs.
Outputs = dict[str, bytes | str | Iterable[bytes]]
# What each input was when the stage began, keyed by path (None: absent): see identities.
Inputs = dict[str, tuple[int, ...] | None]


def identities(paths: Iterable[str | Path]) -> Inputs:
    stats = {str(path): os.stat(path) if os.path.exists(path) else None for path in paths}
    return {path: info and (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) for path, info in stats.items()}


def open_input(path: str | Path, what: str, fix: str) -> BinaryIO:
    """`path` open for reading; when there is no such file a UserError names `what` it should be and the `fix`."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found; {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not the {what}; {fix}") from None


class StageArguments(argparse.ArgumentParser):
    """argparse for a stage's command line, whose mistakes are one line, `<stage>: error: <what>; usage:
    ...`, exit status 2. Its paths are inputs or outputs, and must name distinct files: an output that
    is an input (or params.yaml, or a user's table) would overwrite it; two outputs, one of them."""

    def __init__(self, stage: str, description: str | None) -> None:
        super().__init__(prog=f"python -m stages {stage}", description=description)
        self.stage, self.inputs, self.outputs = stage, [], []  # the inputs' and outputs' names

    def add_input(self, name: str, help: str) -> None:
        self.inputs.append(self.add_argument(name, help=help).dest)

    def add_output(self, name: str, help: str) -> None:
        self.outputs.append(self.add_argument(name, help=help).dest)

    def parse_args(self, args: Sequence[str] | None = None) -> argparse.Namespace:  # type: ignore[override]
        """The arguments, the outputs checked; `inputs` holds the identities of params.yaml and the inputs."""
        parsed = super().parse_args(args)
        seen = {os.path.realpath("params.yaml"): "params.yaml"}
        seen |= {os.path.realpath(getattr(parsed, name)): name for name in self.inputs}
        tables = os.path.realpath(DATASETS_DIR)
        for name in self.outputs:
            path = getattr(parsed, name)
            if os.path.commonpath([os.path.realpath(path), tables]) == tables:
                where = f"under {DATASETS_DIR}/, where the tables live"
                raise UserError(f"the output {name} ({path}) is {where}; write it elsewhere")
            if (other := seen.setdefault(os.path.realpath(path), name)) != name:
                raise UserError(f"the output {name} ({path}) is the same file as the {other}; give each its own path")
        parsed.inputs = identities(["params.yaml", *(getattr(parsed, name) for name in self.inputs)])
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.stage}: error: {message}; {' '.join(self.format_usage().split())}\n")


def write_outputs(outputs: Outputs, summary: str = "", inputs: Inputs | None = None) -> None:
    """Write every output to a temporary file beside it, then rename all into place if every one of `inputs` is still
    what it was. A failure is a UserError naming the file and the cause; it leaves no temporary file. `summary`, the
    stage's line on stderr, is printed once they are in place: a stage that says what it did has done it."""
    temporary, renamed = [], 0
    try:
        for path, data in outputs.items():
            temporary.append(_write_temporary(Path(path), data.encode("utf-8") if isinstance(data, str) else data))
        if changed := [path for path, identity in identities(inputs or {}).items() if identity != inputs[path]]:
            raise UserError(f"{changed[0]} changed while the stage ran, so nothing was written; run the stage again")
        ending()  # no signal ends the renames halfway
        for path, tmp in zip(outputs, temporary, strict=True):
            os.replace(tmp, path)
            renamed += 1
        say(summary)
    except BaseException as error:  # Ctrl-C too: no temporary file is left behind
        for tmp in temporary:
            tmp.unlink(missing_ok=True)
        if not isinstance(error, OSError):
            raise
        name = path if error.filename is None or str(error.filename).endswith(".tmp") else error.filename
        written = f"only {', '.join(list(outputs)[:renamed])} written" if renamed else "nothing was written"
        raise UserError(f"{name}: cannot write ({error.strerror or first_line(error)}); {written}") from None


def _write_temporary(path: Path, content: bytes | Iterable[bytes]) -> Path:
    """`content` in a new file beside `path`, named at random (one a killed run left is a dot-file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only a regular file is replaced: never a directory, a device, a pipe or a link (/dev/null, /dev/stdout
    # even when it leads to a log file): the rename would put a file where the system keeps its link.
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(0, "a directory, a device, a pipe or a link, not a regular file; write it elsewhere", str(path))
    tmp = path.parent / f".{path.name[:100]}.{secrets.token_hex(8)}.tmp"
    # Mode 0666 less the umask, as open() gives: others (a container's user, a colleague) read the results.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines([content] if isinstance(content, bytes) else content)
    except BaseException:
        tmp.unlink()
        raise
    return tmp


def tensors_bytes(arrays: dict[str, np.ndarray], info: dict[str, Any]) -> bytes:
    """A safetensors file of `arrays`, with `info` (plain JSON values) in its metadata; a NaN or an
    infinity, which the stages check for first, is a bug. safetensors writes its metadata map in the
    random order of a Rust HashMap: `info` goes in as one key holding JSON, its keys sorted."""
    if not all(np.isfinite(array).all() for array in arrays.values() if array.dtype.kind == "f"):
        raise ValueError("a tensor to write holds NaN or infinite values")
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    return save(contiguous, metadata={"info": json.dumps(info, sort_keys=True)})


class Tensors:
    """A tensors file written by tensors_bytes in the given `format`, checked and open for reading: its
    info, the SHA-256 of its bytes, its tensors' shapes, and their rows when asked for (safetensors' slice
    reading: a process holds the rows it asked for). A NaN or an infinity is a damaged file."""

    def __init__(self, path: str | Path, what: str, format: str, fix: str) -> None:
        self.path, self.fix = path, fix
        with open_input(path, what, fix) as file:
            self.sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        try:
            with safe_open(path, framework="np") as f:
                self.info = json.loads((f.metadata() or {})["info"])
                self.shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        except (SafetensorError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path}: not a readable {what} ({first_line(error)}); {fix}") from None
        if (got := self.info.get("format") if isinstance(self.info, dict) else None) != format:
            problem = f"not a {what} of this version of the project ({abbreviate(got)}, not {format!r})"
            raise UserError(f"{path}: {problem}; {fix}")

    def rows(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        with safe_open(self.path, framework="np") as f:  # opened for each read: no mapping outlives it
            array = f.get_slice(name)[start:stop] if self.shapes[name] else f.get_tensor(name)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise UserError(f"{self.path}: {name} holds NaN or infinite values; {self.fix}")
        return array


def float32_text(value: float, what: str) -> str:
    """`value` as a float32, in the shortest decimal that reads back as that float32: numpy's repr of
    a float32 (Dragon4 with unique=True), so the bytes are stable and carry no noise digits. Every number
    a stage writes as text passes here, and none is NaN or infinite: `what` it is names it in the line."""
    with np.errstate(over="ignore"):
        number = np.float32(value) + np.float32(0)  # + 0: -0.0 is 0.0, as every reader takes it
    if not np.isfinite(number):
        fix = "training diverged or the data's scale overflows; lower train.lr (or set data.standardize: true)"
        raise UserError(f"{what} is {value:.3g}, beyond float32: {fix}")
    return str(number)
