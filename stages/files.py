"""Writing outputs all at once: a stage that fails leaves no half-written file behind; reading them back
with a one-line error when one is missing or is not what it should be."""

import io
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch

from stages.errors import UserError


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode open() would, so that others
        # (a container's user, a colleague) can read the results as they can any other file.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    umask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(umask)
    return umask


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    # torch.save names the zip's root folder after the file it writes to; saving to a buffer
    # always names it "archive", so the bytes do not depend on the (temporary) file name.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _as_float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def float32_str(value: float) -> str:
    """The shortest decimal that reads back as the same float32: byte-stable, without noise digits."""
    for digits in range(1, 9):
        text = f"{value:.{digits}g}"
        if _as_float32(float(text)) == _as_float32(value):
            return text
    return f"{value:.9g}"  # 9 significant digits always round-trip a float32


def load_torch(path: str | Path, what: str, keys: tuple[str, ...], fix: str) -> dict[str, Any]:
    """The dict a stage saved with save_torch_atomic, holding `keys`; a UserError naming `what` the file
    should be and the `fix` when it is missing, unreadable or another file."""
    if not Path(path).is_file():
        raise UserError(f"{path}: {what} not found; {fix}")
    try:
        saved = torch.load(path, weights_only=True)
    except Exception as error:  # torch.load raises whatever its unpickler or zip reader meets
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: not a readable {what} ({reason}); {fix}") from None
    if not isinstance(saved, dict) or not set(keys) <= saved.keys():
        raise UserError(f"{path}: not a {what} (another file in its place?); {fix}")
    return saved
