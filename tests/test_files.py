"""Outputs are written all at once, and readable as any file the user writes."""

import os
import stat

import pytest

from stages.files import write_bytes_atomic, write_text_atomic


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_an_output_gets_the_mode_open_would_give_it(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "metrics" / "low_level.json", "{}\n")
        with open(tmp_path / "reference", "w") as f:
            f.write("{}\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "metrics" / "low_level.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "reference").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "cost.tsv"
    target.write_text("old\n")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["cost.tsv"]
