"""A fresh copy of the pipeline: its code, parameters and datasets without any result, in a new git
repository, as a user who cloned the project has it. The end-to-end tests and the benchmark run in one."""

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore", ".gitignore", "stages",
                  "datasets", "plots/offline-template.html")  # fmt: skip


def copy_pipeline(root: Path, repository: Path = REPO) -> Path:
    """Copy the pipeline of `repository` into `root` (created) and `git init` it; nothing is committed."""
    for name in PIPELINE_FILES:
        source, target = repository / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def params_for_device(device: str) -> str:
    """params.yaml's text with train.device set to `device` (the committed file says `auto`)."""
    params = (REPO / "params.yaml").read_text().replace("device: auto", f"device: {device}")
    assert f"device: {device}" in params, "params.yaml has no `device: auto` line to replace"
    return params
