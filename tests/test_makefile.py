"""The Makefile: `make -n` (a dry run: nothing is installed) shows what reaches pip."""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The image has no make: its `test` service skips these.
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make here (the image has none)")
TORCH = re.search(r"^torch==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE).group(1)


def make(*args: str) -> subprocess.CompletedProcess:
    """`make ARGS` as a user types it, also under `make test` (whose flags a make inside it would inherit)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    return subprocess.run(["make", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)


def dry_run(*args: str) -> list[str]:
    result = make("-n", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def pip_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "-m pip install" in line]


def test_torch_cpu_installs_torch_from_pytorchs_cpu_index_then_the_pins(tmp_path):
    venv = tmp_path / "venv"
    torch_line, requirements_line = pip_lines(dry_run(f"VENV={venv}", "TORCH=cpu", f"{venv}/.installed"))
    assert f"--index-url https://download.pytorch.org/whl/cpu --no-deps torch=={TORCH}" in torch_line
    assert torch_line.startswith(f'"{venv}/bin/python" -m pip install')
    # The rest from the usual index; the CPU build's torch==X+cpu satisfies requirements.txt's torch==X.
    assert requirements_line.endswith("-r requirements.txt") and "index-url" not in requirements_line


def test_a_repository_whose_path_has_a_space_is_one_word_to_the_shell(tmp_path):
    clone = tmp_path / "with space"
    clone.mkdir()
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(REPO / name, clone)
    result = make("-C", str(clone), "-n", ".venv/.installed")
    assert result.returncode == 0, result.stderr
    (line,) = pip_lines(result.stdout.splitlines())
    assert shlex.split(line)[:4] == [f"{clone}/.venv/bin/python", "-m", "pip", "install"]


@pytest.mark.parametrize("target, installs", [
    ("repro", ["requirements.txt"]),
    ("s3", ["requirements.txt", "requirements-s3.txt"]),
    ("test", ["requirements.txt", "requirements-s3.txt", "requirements-dev.txt"]),
])  # fmt: skip
def test_each_target_installs_only_what_it_needs(tmp_path, target, installs):
    """By default from the usual index alone."""
    lines = pip_lines(dry_run(f"VENV={tmp_path / 'venv'}", target))
    assert [line.split(" -r ")[-1] for line in lines] == installs and not any("index-url" in line for line in lines)


def test_test_runs_the_whole_suite_on_every_core_and_test_quick_leaves_out_the_slow_tests(tmp_path):
    venv = tmp_path / "venv"
    assert dry_run(f"VENV={venv}", "test")[-1] == "python -m pytest -n auto --dist worksteal"
    quick = dry_run(f"VENV={venv}", "test-quick")
    assert any(line.endswith("-r requirements-dev.txt") for line in pip_lines(quick))
    assert quick[-1] == 'python -m pytest -n auto -m "not slow"'


def made_venv(path: Path, torch: str | None) -> Path:
    """A .venv as `make` leaves it (nothing in it but the marks), made with TORCH=`torch`; None: no .venv yet."""
    if torch is not None:
        path.mkdir()
        (path / ".installed").touch()
        (path / ".torch").write_text(f"{torch}\n")
    return path


def test_a_venv_remembers_torch_cpu(tmp_path):
    venv = made_venv(tmp_path / "venv", "cpu")
    lines = dry_run(f"VENV={venv}", "repro")  # no TORCH: the venv's own choice, nothing to install
    assert pip_lines(lines) == [] and "dvc repro" in lines


@pytest.mark.parametrize("made_with, asked, expected", [
    (None, "TORCH=cuda", "TORCH=cuda: the choices are TORCH=cpu"),
    ("", "TORCH=cpu", "TORCH=cpu, but {venv} was made without TORCH=cpu: rm -rf {venv} first to switch"),
    ("cpu", "TORCH=", "TORCH=, but {venv} was made with TORCH=cpu: rm -rf {venv} first to switch"),
])  # fmt: skip
def test_a_torch_the_venv_cannot_take_is_one_line(tmp_path, made_with, asked, expected):
    venv = made_venv(tmp_path / "venv", made_with)
    result = make("-n", f"VENV={venv}", asked, "repro")
    assert result.returncode != 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and expected.format(venv=venv) in result.stderr


def test_help_lists_every_target():
    result = make("help")
    assert result.returncode == 0
    phony = re.search(r"^\.PHONY: (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE).group(1).split()
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert listed == set(phony)


def test_runtime_and_developer_pins_do_not_overlap_and_stages_need_no_developer_tool():
    def names(path: str) -> set[str]:
        lines = (REPO / path).read_text().splitlines()
        return {line.split("==")[0].lower() for line in lines if "==" in line}

    pins = [names(path) for path in ("requirements.txt", "requirements-s3.txt", "requirements-dev.txt")]
    assert sum(map(len, pins)) == len(set().union(*pins))
    for module in (REPO / "stages").glob("*.py"):
        imports = set(re.findall(r"^\s*(?:import|from) (\w+)", module.read_text(), re.MULTILINE))
        assert imports.isdisjoint({"pytest", "ruff", "vl_convert", "threadpoolctl"}), module
