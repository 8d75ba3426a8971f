"""dvc.yaml's dependencies are exactly what each stage reads: every project file its command imports,
found here from the code itself, and the data files named on its command line or in its params."""

import ast
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
STAGES = YAML(typ="safe", pure=True).load((REPO / "dvc.yaml").read_text())["stages"]


def module_file(module: str) -> Path | None:
    """The project file of a module named `stages...`, or None for any other module."""
    path = REPO / module.replace(".", "/")
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return path if (module == "stages" or module.startswith("stages.")) and path.exists() else None


def imported_files(path: Path) -> set[Path]:
    """The project files that the module at `path` imports anywhere in it (functions included), each
    with the package __init__.py that Python runs first."""
    files = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from stages import train` imports the module stages.train; `from stages.x import f` stages.x.
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # stages, stages.data, ...: each package on the way runs
                if found := module_file(".".join(parts[:i])):
                    files.add(found)
    return files


def import_closure(module: str) -> set[str]:
    """Every project file that `python -m <module>` runs, as paths relative to the repository."""
    seen, todo = set(), [module_file(module), module_file("stages")]
    assert todo[0], module
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imported_files(path) - seen)
    return {str(path.relative_to(REPO)) for path in seen}


@pytest.mark.parametrize("name", STAGES)
def test_deps_are_the_commands_import_closure_and_the_files_it_reads(name):
    stage = STAGES[name]
    words = stage["cmd"].split()
    assert words[:4] == ["exec", "python", "-m", "stages"]  # exec: no shell stays between DVC and the stage
    code_deps = {dep for dep in stage["deps"] if dep.endswith(".py")}
    # stages/__main__.py imports the stage's module by its name (words[4]) once the process is set up
    assert code_deps == import_closure("stages.__main__") | import_closure(f"stages.{words[4]}")
    assert all((REPO / dep).stat().st_size for dep in code_deps)  # DVC warns about an empty one at every run
    declared = stage.get("outs", []) + stage.get("metrics", [])
    outputs = [next(iter(out)) if isinstance(out, dict) else out for out in declared]
    inputs = [arg for arg in words[5:] if ("/" in arg or arg == "${predict.path}") and arg not in outputs]
    data_deps = [dep for dep in stage["deps"] if not dep.endswith(".py")]
    # prepare reads the table data.path names (csv, parquet; the other sources read no file), none on its command line
    assert data_deps == (["${data.path}"] if name == "prepare" else inputs)


def test_the_closure_follows_every_kind_of_import():
    closure = import_closure("stages.train")
    packages = {"stages/__init__.py", "stages/plumbing/__init__.py"}
    assert packages | {"stages/plumbing/distributed.py", "stages/plumbing/params.py"} <= closure
    assert "stages/evaluate.py" not in closure and "stages/prepare.py" not in closure
