"""Outputs are written all together or not at all, readable as any file the user writes, and tensor
files have the same bytes on every run."""

import os
import resource
import stat
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save

from stages.plumbing.files import Tensors, float32_text, tensors_bytes, write_outputs
from stages.plumbing.process import UserError
from tests.stage_runs import REPO


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_an_output_gets_the_mode_open_would_give_it(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_outputs({str(tmp_path / "metrics" / "low_level.json"): "{}\n"})
        (tmp_path / "reference").write_text("{}\n")  # as open() makes a file
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "metrics" / "low_level.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "reference").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_changes_no_output(tmp_path):
    """write_outputs in a process that may write no file larger than 1000 bytes: a full disk, as the writer
    meets it (Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    (tmp_path / "small.txt").write_text("old small\n")
    (tmp_path / "large.txt").write_text("old large\n")
    outputs = {"small.txt": "new\n", "large.txt": "x" * 5000}
    code = (
        "import sys; from stages.plumbing.process import boundary; from stages.plumbing.files import write_outputs; "
        f"sys.exit(boundary('t', lambda: write_outputs({outputs!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)))  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "t: error: large.txt: cannot write (File too large); nothing was written\n"
    assert (tmp_path / "small.txt").read_text() == "old small\n"  # written first, yet not renamed into place
    assert (tmp_path / "large.txt").read_text() == "old large\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.txt", "small.txt"]  # no temporary file left


def test_a_read_only_directory(tmp_path, monkeypatch):
    # As root (CI) permission bits do not stop a write: the refusal is simulated where it happens.
    os_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", str(path))
        return os_open(path, *args, **kwargs)

    monkeypatch.setattr("os.open", refuse)
    with pytest.raises(UserError, match=r"^.*/m.json: cannot write \(Permission denied\); nothing was written$"):
        write_outputs({str(tmp_path / "m.json"): "{}"})


def test_tensor_files_have_the_same_bytes_on_every_run(tmp_path):
    arrays = {"W": np.arange(12, dtype=np.float32).reshape(3, 4).T, "b": np.zeros(1, np.float32)}  # W not contiguous
    info = {"format": "f", "impl": "low_level", "n_features": 4, "classes": ["a", "b", "c"], "z": 1, "y": 2}
    first = tensors_bytes(arrays, info)
    assert all(tensors_bytes(arrays, info) == first for _ in range(20))  # a Rust HashMap would reorder keys
    (tmp_path / "m.safetensors").write_bytes(first)
    tensors = Tensors(tmp_path / "m.safetensors", "trained model", "f", "fix")
    read, read_info = {name: tensors.rows(name) for name in tensors.shapes}, tensors.info
    assert read_info == info
    np.testing.assert_array_equal(read["W"], arrays["W"])


@pytest.mark.parametrize("content", [b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", b"x,y\n1,2\n"])
def test_damaged_tensor_files(tmp_path, content):
    (tmp_path / "m.safetensors").write_bytes(content)
    with pytest.raises(UserError, match=r"m.safetensors: not a readable trained model \(.*\); run it$"):
        Tensors(tmp_path / "m.safetensors", "trained model", "f", "run it")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_tensor_file_holding_a_non_finite_number(tmp_path, bad):
    W = np.ones((4, 3), np.float32)
    W[2, 1] = bad
    with pytest.raises(ValueError, match="a tensor to write holds NaN or infinite values"):
        tensors_bytes({"W": W}, {"impl": "low_level"})  # no stage writes one
    (tmp_path / "m.safetensors").write_bytes(save({"W": W}, metadata={"info": '{"format": "f"}'}))  # by hand
    with pytest.raises(UserError, match=r"^.*m.safetensors: W holds NaN or infinite values; run it$"):
        Tensors(tmp_path / "m.safetensors", "trained model", "f", "run it").rows("W")


def test_ctrl_c_while_writing_leaves_no_temporary_file(tmp_path, monkeypatch):
    from stages.plumbing import files

    write_temporary = files._write_temporary
    calls = []

    def interrupted_on_the_second(path, content):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write_temporary(path, content)

    monkeypatch.setattr(files, "_write_temporary", interrupted_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        write_outputs({str(tmp_path / "a.tsv"): "a", str(tmp_path / "b.tsv"): "b"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("names", [
    ["a" * 100 + "_model", "a" * 100 + "_costs"],  # alike in their first 100 characters
    ["é" * 120 + ".bin", "é" * 120 + ".tsv"],  # 244 bytes each: a valid name, cut by bytes
    ["a" * 250],  # its temporary's name is cut short: within 255 bytes
])  # fmt: skip
def test_outputs_with_long_names_alike_get_temporaries_of_their_own(tmp_path, names):
    write_outputs({str(tmp_path / name): name for name in names})
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == {name: name for name in names}


def test_a_rename_that_fails_after_others_says_what_was_written(tmp_path, monkeypatch):
    renames = []

    def replace(source, target):
        if renames:
            raise OSError(5, "Input/output error", str(target))
        renames.append(target)
        os.rename(source, target)

    monkeypatch.setattr("stages.plumbing.files.os.replace", replace)
    outputs = {str(tmp_path / "a.tsv"): "new a", str(tmp_path / "b.tsv"): "new b"}
    with pytest.raises(UserError, match=r"b.tsv: cannot write \(Input/output error\); only .*a.tsv written$"):
        write_outputs(outputs)
    assert (tmp_path / "a.tsv").read_text() == "new a" and not (tmp_path / "b.tsv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tsv"]  # no temporary left


@pytest.mark.parametrize("value, text", [(-0.0, "0.0"), (0.1, "0.1"), (1e-45, "1e-45"), (3.4028235e38, "3.4028235e+38"),
                                         (float("nan"), None), (float("inf"), None), (3.5e38, None)])  # fmt: skip
def test_a_number_is_written_as_the_shortest_float32_text_and_none_beyond_float32(value, text):
    if text is None:
        with pytest.raises(UserError, match=r"^x is .*, beyond float32"):
            float32_text(value, "x")
    else:
        assert float32_text(value, "x") == text
