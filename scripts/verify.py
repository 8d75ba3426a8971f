"""`make verify`: prove that this repository's results reproduce. Reruns the whole pipeline (`dvc repro
-f`) in a scratch copy of the repository's code, parameters and datasets (the workspace is not
touched), then compares, stage by stage, every file the rerun made with the MD5 that this repository's
dvc.lock records for it. Ends in one line, and exits 0 when all match, 1 when any differs or when
dvc.lock records inputs (code, data, params) that are not the rerun's, so that it describes another run
(the scratch copy is then kept for a look), 2 when the rerun itself fails. Named stages (and the stages
they depend on) are rerun and compared alone.

    python scripts/verify.py [REPOSITORY [STAGE ...]]     # the current directory, every stage, by default
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # scripts/ run as a file: the project's root
from scripts.pipeline_copy import copy_pipeline

Lock = dict[str, dict]


def read_lock(path: Path) -> Lock:
    """dvc.lock's stages: {stage: {"deps": {path: md5}, "params": {...}, "outs": {path: md5}}}."""
    stages = YAML(typ="safe").load(path.read_text())["stages"]  # KeyError, TypeError: not a lock file
    return {
        name: {
            "deps": {item["path"]: item["md5"] for item in stage.get("deps", [])},
            "params": stage.get("params", {}),
            "outs": {item["path"]: item["md5"] for item in stage.get("outs", [])},
        }
        for name, stage in stages.items()
    }


def differing(recorded: dict, rerun: dict) -> list[str]:
    return sorted(key for key in recorded.keys() | rerun.keys() if recorded.get(key) != rerun.get(key))


def compare(recorded: Lock, rerun: Lock, every: bool = True) -> tuple[list[str], list[str], list[str]]:
    """A line per stage (`every` one, or those rerun), every output that does not match the MD5 recorded,
    and every stage whose inputs (code, data, params) are not those recorded: its lock describes another
    run, not this code."""
    lines, differ, stale = [], [], []
    names = [name for name in recorded if every or name in rerun] + [name for name in rerun if name not in recorded]
    width = max(map(len, names))
    for name in names:
        if name not in rerun or name not in recorded:
            where = "dvc.lock" if name not in recorded else "the rerun"
            lines.append(f"{name:<{width}}  not in {where}: dvc.lock and dvc.yaml disagree; run `dvc repro`")
            differ.append(name)
            continue
        was, now = recorded[name], rerun[name]
        bad = differing(was["outs"], now["outs"])
        differ += bad
        n = len(was["outs"])
        line = f"{len(bad)} of {n} outputs differ: {', '.join(bad)}" if bad else f"{n} of {n} outputs match"
        if changed := differing(was["deps"], now["deps"]) + ["params"] * (was["params"] != now["params"]):
            line += f" (not from the inputs dvc.lock records: {', '.join(changed)}; run `dvc repro`, commit dvc.lock)"
            stale.append(name)
        lines.append(f"{name:<{width}}  {line}")
    return lines, differ, stale


def stopped(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signum)


def main(argv: list[str]) -> int:
    repository, targets = Path(argv[0] if argv else ".").resolve(), argv[1:]
    problem = None
    if not (repository / "dvc.yaml").is_file():
        problem = "no dvc.yaml here; run it in the repository (or name it: python scripts/verify.py REPOSITORY)"
    elif not (repository / "dvc.lock").is_file():
        problem = "no dvc.lock here; run `dvc repro` first, and commit dvc.lock"
    else:
        try:
            recorded = read_lock(repository / "dvc.lock")
        except (OSError, YAMLError, KeyError, TypeError, AttributeError) as error:
            detail = (
                f"{type(error).__name__}: {str(error).splitlines()[0][:80]}" if str(error) else type(error).__name__
            )
            problem = f"dvc.lock is not a lock file DVC wrote ({detail}); `git checkout dvc.lock` restores it"
    if problem:
        print(f"verify: error: {repository}: {problem}", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="verify-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    print(f"verify: rerunning every stage (dvc repro -f) in {scratch}", flush=True)
    start = time.monotonic()
    for stop in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: DVC stopped, the scratch copy removed
        signal.signal(stop, stopped)
    dvc = None
    try:
        copy_pipeline(scratch, repository)
        command = [sys.executable, "-m", "dvc", "repro", "-f", *targets]
        dvc = subprocess.Popen(command, cwd=scratch, env=env | {"DVC_NO_ANALYTICS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
        output, _ = dvc.communicate()
    except KeyboardInterrupt as interrupt:
        if dvc is not None and dvc.poll() is None:
            dvc.terminate()  # its stage ends with it (stages/plumbing/process.py)
            dvc.wait()
        shutil.rmtree(scratch, ignore_errors=True)
        print("verify: interrupted; nothing was checked", file=sys.stderr)
        return 128 + (interrupt.args[0] if interrupt.args else signal.SIGINT)
    if dvc.returncode != 0:
        print(output, end="")
        print(
            f"verify: error: the rerun failed (dvc repro -f exited {dvc.returncode}); {scratch} is kept",
            file=sys.stderr,
        )
        return 2
    rerun = read_lock(scratch / "dvc.lock")  # the stages rerun (the scratch copy had no dvc.lock)
    lines, differ, stale = compare(recorded, rerun, every=not targets)
    print("\n".join(lines))
    outputs = sum(len(recorded[name]["outs"]) for name in rerun if name in recorded)
    took = f"{time.monotonic() - start:.0f} s"
    if differ or stale:
        what = f"{len(differ)} of {outputs} outputs differ from dvc.lock" if differ else ""
        what += "; " * bool(differ and stale) + f"dvc.lock records other inputs for {', '.join(stale)}" * bool(stale)
        print(f"verify: FAILED: {what} ({took}); {scratch} is kept")
        return 1
    shutil.rmtree(scratch)
    print(f"verify: OK: all {outputs} outputs of {len(rerun)} stages match dvc.lock ({took})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
