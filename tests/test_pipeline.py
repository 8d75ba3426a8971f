"""End to end: the real `dvc repro` in a fresh copy of the repository, as a user who cloned it runs it."""

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filelock import FileLock

from scripts import verify
from scripts.pipeline_copy import copy_pipeline
from stages.models import IMPLEMENTATIONS
from tests.waiting import importing_torch, wait_for

REPO = Path(__file__).resolve().parent.parent
PLOTS = [("cost", "tsv"), ("test_cost", "tsv"), ("confusion", "csv")]
RESULTS = [
    "dvc.lock",
    *(f"metrics/{impl}.json" for impl in IMPLEMENTATIONS),
    *(f"plots/{kind}/{impl}.{ext}" for impl in IMPLEMENTATIONS for kind, ext in PLOTS),
    *(f"predictions/{impl}.csv" for impl in IMPLEMENTATIONS),
]

pytestmark = pytest.mark.slow


ENV = {
    **os.environ,
    # The stages' `python` must be this interpreter, with torch; DVC must not phone home.
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    "DVC_NO_ANALYTICS": "1",
    **dict.fromkeys(["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"], "test"),
    **dict.fromkeys(["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"], "test@example.com"),
}


def sh(cwd: Path, *args: str, env: dict[str, str] = ENV) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(cwd: Path, *args: str, env: dict[str, str] = ENV) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, env=env)


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, worker_id: str) -> Path:
    """The pipeline committed in a new git repository, reproduced and its results committed: once per session,
    by the first xdist worker that needs it (the others wait for its lock), where the workers share files."""
    shared = tmp_path_factory.getbasetemp()
    shared = shared if worker_id == "master" else shared.parent
    root = shared / "reproduced"
    with FileLock(shared / "reproduced.lock"):
        if not root.exists():
            building = shared / "reproduced.building"
            shutil.rmtree(building, ignore_errors=True)  # what a failed build left
            copy_pipeline(building)
            sh(building, "git", "add", "-A")
            sh(building, "git", "commit", "-q", "-m", "pipeline")
            dvc(building, "repro")
            sh(building, "git", "add", "-A")
            sh(building, "git", "commit", "-q", "-m", "results")
            building.rename(root)  # whole or not at all: a failed build leaves no half a repository
    return root


@pytest.fixture
def clone(reproduced: Path, tmp_path: Path) -> Path:
    """A copy of the reproduced repository for this test alone: what one test breaks cannot reach another."""
    copy = tmp_path / "repo"
    # .dvc/tmp is DVC's state for the repository it lies in (locks, the experiments' queue).
    shutil.copytree(
        reproduced, copy, symlinks=True, ignore=lambda folder, names: ["tmp"] if folder.endswith(".dvc") else []
    )
    return copy


def metrics(root: Path) -> dict[str, dict]:
    return {impl: json.loads((root / f"metrics/{impl}.json").read_text()) for impl in IMPLEMENTATIONS}


def test_repro_reproduces_the_committed_results_which_are_the_lessons(clone):
    for name in RESULTS:
        assert (clone / name).read_bytes() == (REPO / name).read_bytes(), f"{name} differs from the committed one"
    results = metrics(clone)
    for impl in IMPLEMENTATIONS:
        assert set(results[impl]) == {"final_cost", "train", "device"}  # no test split: no `test` figures
        assert set(results[impl]["train"]) == {"accuracy", "cost", "f1_macro"}
        assert results[impl]["train"]["accuracy"] >= 7 / 8
        assert results[impl]["device"] == "cpu"
    # The lab's last printed costs: F.cross_entropy's, and nn.Module's from the lab's own initial weights.
    assert f"{results['functional']['final_cost']:.6f}" == "0.399962"
    assert f"{results['high_level']['final_cost']:.6f}" == "0.241922"
    assert abs(results["low_level"]["final_cost"] - results["functional"]["final_cost"]) < 1e-6
    shown = json.loads(dvc(clone, "metrics", "show", "--json"))
    assert json.dumps(shown).count("final_cost") == 3


def test_a_queued_sweep_on_iris_then_the_best_applied(clone):
    """docs/data.md's sweep: queued experiments on iris with a test split, side by side in `dvc exp show`; one
    applied is what `dvc metrics diff` compares with the commit. (high_level's chain alone: the queue is tested.)"""
    iris = ["-S", "data.source=iris", "-S", "data.test_size=0.2", "-S", "data.standardize=true"]
    dvc(clone, "exp", "run", "--queue", "-S", "train.lr=0.05,0.2", *iris, "evaluate@high_level")
    dvc(clone, "exp", "run", "--run-all")
    shown = json.loads(dvc(clone, "exp", "show", "--json"))
    experiments = {
        rev["data"]["params"]["params.yaml"]["data"]["train"]["lr"]: rev
        for entry in shown for exp in entry.get("experiments") or [] for rev in exp["revs"]
    }  # fmt: skip
    assert sorted(experiments) == [0.05, 0.2]
    for rev in experiments.values():
        assert set(rev["data"]["metrics"]) == {f"metrics/{impl}.json" for impl in IMPLEMENTATIONS}  # side by side
        test = rev["data"]["metrics"]["metrics/high_level.json"]["data"]["test"]
        assert set(test) == {"accuracy", "cost", "f1_macro"}
    best = experiments[0.2]
    assert best["data"]["metrics"]["metrics/high_level.json"]["data"]["test"]["accuracy"] >= 0.9  # docs/data.md
    dvc(clone, "exp", "apply", best["name"])
    diff = json.loads(dvc(clone, "metrics", "diff", "--json"))
    assert set(diff) == {"metrics/high_level.json"}
    test_costs = (clone / "plots/test_cost/high_level.tsv").read_text().splitlines()
    assert test_costs[0] == "epoch\ttest_cost" and len(test_costs) == 1 + 11


def test_each_stage_is_stale_exactly_when_a_file_it_reads_changes(clone):
    def stale_after(edit: str) -> set[str]:
        path = clone / edit
        original = path.read_bytes()
        try:
            path.write_bytes(original + b"\n# edited\n")
            return set(json.loads(dvc(clone, "status", "--json")))
        finally:
            path.write_bytes(original)

    trains, evaluates, predicts = ({f"{s}@{i}" for i in IMPLEMENTATIONS} for s in ("train", "evaluate", "predict"))
    assert stale_after("datasets/README.md") == set()
    assert stale_after("stages/__init__.py") == {"prepare"} | trains | evaluates | predicts
    assert stale_after("stages/models.py") == trains
    assert stale_after("stages/evaluate.py") == evaluates
    assert stale_after("stages/predict.py") == predicts


def test_verify_names_an_output_that_differs_from_dvc_lock(clone):
    """`make verify` of one stage's chain where dvc.lock records another MD5 for one output: that one is named,
    exit 1, the workspace untouched. (A clean clone's `make verify` of every stage, exit 0, is CI's.)"""
    recorded = verify.read_lock(clone / "dvc.lock")["evaluate@functional"]["outs"]["metrics/functional.json"]
    (clone / "dvc.lock").write_text((clone / "dvc.lock").read_text().replace(recorded, "0" * 32))
    before = outputs_of(clone) | {"dvc.lock": (clone / "dvc.lock").read_bytes()}
    command = [sys.executable, str(REPO / "scripts/verify.py"), str(clone), "evaluate@functional"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    *stages, last = result.stdout.splitlines()[1:]
    assert outputs_of(clone) | {"dvc.lock": (clone / "dvc.lock").read_bytes()} == before
    assert result.returncode == 1 and last.startswith("verify: FAILED: 1 of 8 outputs differ from dvc.lock")
    assert "evaluate@functional  1 of 2 outputs differ: metrics/functional.json" in stages
    assert sum(" outputs match" in line for line in stages) == 2  # prepare, train@functional
    scratch = Path(last.rsplit("; ", 1)[1].removesuffix(" is kept"))
    assert (scratch / "metrics/functional.json").read_bytes() == (clone / "metrics/functional.json").read_bytes()
    shutil.rmtree(scratch)


# What verify is pointed at, and its one line on stderr (exit status 2).
VERIFY_MISTAKES = {
    "no repository": ({}, "no dvc.yaml here; run it in the repository"),
    "no dvc.lock": ({"dvc.yaml": "stages: {}\n"}, "no dvc.lock here; run `dvc repro` first"),
    "broken YAML": ({"dvc.yaml": "", "dvc.lock": "stages: ["}, "dvc.lock is not a lock file DVC wrote (ParserError"),
    "another YAML file": ({"dvc.yaml": "", "dvc.lock": "x: 1\n"}, "dvc.lock is not a lock file DVC wrote (KeyError"),
}  # fmt: skip


@pytest.mark.parametrize("files, message", VERIFY_MISTAKES.values(), ids=VERIFY_MISTAKES.keys())
def test_verify_of_what_is_no_pipeline_is_one_line(tmp_path, capsys, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert verify.main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"verify: error: {tmp_path}: ") and message in err
    assert len(err.splitlines()) == 1


STAGE = {"deps": {"stages/train.py": "a"}, "params": {"train": {"lr": 0.1}}, "outs": {"model": "b", "costs": "c"}}
# How a recorded dvc.lock can disagree with the rerun's, and the line verify prints for the stage.
LOCK_CASES = {
    "the same": ({}, "2 of 2 outputs match", []),
    "an output": ({"outs": {"model": "x", "costs": "c"}}, "1 of 2 outputs differ: model", []),
    "a stale lock": ({"deps": {"stages/train.py": "x"}}, "inputs dvc.lock records: stages/train.py;", ["train"]),
    "other params": ({"params": {"train": {"lr": 0.2}}}, "(not from the inputs dvc.lock records: params;", ["train"]),
    "no such stage": (None, "not in dvc.lock: dvc.lock and dvc.yaml disagree", []),
}  # fmt: skip


@pytest.mark.parametrize("change, line, stale", LOCK_CASES.values(), ids=LOCK_CASES.keys())
def test_verify_names_what_differs(change, line, stale):
    """A stage whose outputs differ fails verify, and so does one whose recorded inputs are not the rerun's."""
    recorded = {} if change is None else {"train": STAGE | change}
    lines, differ, found = verify.compare(recorded, {"train": STAGE})
    assert line in lines[0] and found == stale and (differ or stale or line.endswith("outputs match"))


class S3(NamedTuple):
    endpoint: str
    bucket: str
    key_id: str
    secret: str

    def objects(self) -> list[str]:
        import boto3

        client = boto3.client("s3", **self.credentials())
        return [item["Key"] for item in client.list_objects_v2(Bucket=self.bucket).get("Contents", [])]

    def credentials(self) -> dict[str, str]:
        return dict(endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=self.key_id,
                    aws_secret_access_key=self.secret)  # fmt: skip


@pytest.fixture
def s3(monkeypatch) -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 (as dvc-s3's tests run it), a bucket and a user whose key signs every request:
    after the set-up's four requests it checks signatures as AWS does. (moto loads here, not for every test.)"""
    import boto3
    import moto.settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto keeps its buckets, users and request count per process, not per server: start afresh.
        urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"))
        monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 4)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        anyone = S3(f"http://{host}:{port}", "team-results", "set-up", "set-up")
        boto3.client("s3", **anyone.credentials()).create_bucket(Bucket=anyone.bucket)
        iam = boto3.client("iam", **anyone.credentials())
        iam.create_user(UserName="teammate")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="teammate", PolicyName="results", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="teammate")["AccessKey"]
        yield anyone._replace(key_id=key["AccessKeyId"], secret=key["SecretAccessKey"])
    finally:
        server.stop()


def use_s3(repo: Path, s3: S3, secret: str | None = None, endpoint: str | None = None) -> None:
    """What docs/remote.md tells a team: the remote in .dvc/config (in git), the key in .dvc/config.local."""
    dvc(repo, "remote", "add", "-f", "-d", "team", f"s3://{s3.bucket}/softmax-three-ways")
    dvc(repo, "remote", "modify", "team", "endpointurl", endpoint or s3.endpoint)
    dvc(repo, "remote", "modify", "--local", "team", "access_key_id", s3.key_id)
    dvc(repo, "remote", "modify", "--local", "team", "secret_access_key", secret or s3.secret)


@pytest.mark.parametrize("remote", ["local folder", "S3"])
def test_push_then_a_fresh_clone_pulls_and_runs_nothing(clone, tmp_path, remote, request):
    """A team's day: push after repro; a teammate's clone pulls and reruns nothing; the model registry serves a
    model. Through the default remote (.dvc/config) and through an S3 API configured as docs/remote.md says."""
    env = {**ENV, "HOME": str(tmp_path / "home")}
    if remote == "S3":
        s3 = request.getfixturevalue("s3")
        use_s3(clone, s3)
        sh(clone, "git", "commit", "-q", "-am", "the team's remote")
        assert "config.local" in (clone / ".dvc/.gitignore").read_text()  # the key stays out of git
    assert "8 files pushed" in dvc(clone, "push", env=env)  # the prepared data, its new rows, 3 models, 3 ONNX files
    if remote == "S3":
        assert len(s3.objects()) == 8
    else:
        assert (tmp_path / "home/dvc-storage/softmax-three-ways").is_dir()
    teammate = tmp_path / "teammate"
    sh(tmp_path, "git", "clone", "-q", str(clone), str(teammate))
    assert not (teammate / "models/functional.safetensors").exists()
    if remote == "S3":  # the teammate's own copy of the key
        dvc(teammate, "remote", "modify", "--local", "team", "access_key_id", s3.key_id)
        dvc(teammate, "remote", "modify", "--local", "team", "secret_access_key", s3.secret)
    dvc(teammate, "pull", env=env)
    for name in ["data/prepared.safetensors", *(f"models/{impl}.safetensors" for impl in IMPLEMENTATIONS)]:
        assert (teammate / name).read_bytes() == (clone / name).read_bytes(), name
    assert "Data and pipelines are up to date." in dvc(teammate, "repro", env=env)
    assert "up to date" in dvc(teammate, "status", env=env)
    assert sh(teammate, "git", "status", "--porcelain") == ""
    # DVC's model registry: a version registered with a git tag (GTO's format), then the model by its
    # artifact name, from the repository and its remote alone (the key in the environment, as in a container).
    sh(clone, "git", "tag", "-a", "high_level@v1.0.0", "-m", "the lesson's model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if remote == "S3":
        env |= {"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret}
    dvc(elsewhere, "artifacts", "get", str(clone), "high_level", env=env)
    assert (elsewhere / "high_level.safetensors").read_bytes() == (clone / "models/high_level.safetensors").read_bytes()


# What the remote is given, and what DVC's error then names.
S3_FAULTS = {
    "wrong secret": ("secret", "wrong", "SignatureDoesNotMatch|Forbidden"),  # S3 says no more to a HEAD request
    "unreachable endpoint": ("endpoint", "http://127.0.0.1:{closed_port}", "Could not connect to the endpoint"),
}


@pytest.mark.parametrize("fault", S3_FAULTS)
def test_an_s3_remote_that_refuses_loses_nothing(clone, s3, fault):
    """DVC's own error, a non-zero exit, and every local result still there: for push and for pull."""
    setting, value, cause = S3_FAULTS[fault]
    with socket.socket() as closed:  # a port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        value = value.format(closed_port=closed.getsockname()[1])
    use_s3(clone, s3, **{setting: value})
    # botocore retries a refused connection with back-off (6 s in all); one attempt ends in the same error.
    env = {**ENV, "AWS_MAX_ATTEMPTS": "1"}
    before = outputs_of(clone)
    for command in ("push", "pull"):
        dvc_command = [sys.executable, "-m", "dvc", command]
        result = subprocess.run(dvc_command, cwd=clone, env=env, capture_output=True, text=True)
        assert result.returncode != 0
        assert result.stderr.startswith("ERROR: ") and re.search(cause, result.stderr), result.stderr
        assert "Traceback" not in result.stderr
        assert outputs_of(clone) == before
    assert s3.objects() == []


def test_a_spreadsheet_export_end_to_end(clone):
    # Semicolons, CRLF, quoted fields and Latin-1, as a spreadsheet in a German locale saves "CSV"; trained
    # by two processes (train.processes: DVC reruns train under torchrun with nothing else edited).
    table = clone / "datasets" / "export.csv"
    with open(table, "w", newline="", encoding="latin-1") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["Länge", "Breite", "Sorte"])
        writer.writerows([[i % 5 + 1, i % 5 + 10, "sauer"] for i in range(20)])
        writer.writerows([[f"{i % 5 + 10}.5", i % 5 + 1, "süß"] for i in range(20)])
    try:
        # One implementation's chain (a stage name, as `dvc repro` takes one): the table is what is tested.
        dvc(clone, "exp", "run", "-S", "data.source=csv", "-S", "data.path=datasets/export.csv",
            "-S", "data.label=Sorte", "-S", "data.encoding=latin-1", "-S", "train.processes=2",
            "evaluate@functional")  # fmt: skip
        assert metrics(clone)["functional"]["train"]["accuracy"] >= 0.9
        confusion = (clone / "plots/confusion/functional.csv").read_text(encoding="utf-8").splitlines()
        assert {row.split(",")[0] for row in confusion[1:]} == {"sauer", "süß"}
        assert sh(clone, "git", "status", "--porcelain", "dvc.yaml") == ""
    finally:
        table.unlink()


def stage_processes(root: Path) -> list[psutil.Process]:
    """The stage processes (python -m stages STAGE) running in `root`."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        with contextlib.suppress(psutil.Error):
            if process.info["cwd"] == str(root) and "-m stages " in " ".join(process.info["cmdline"] or []):
                found.append(process)
    return found


def outputs_of(root: Path) -> dict[str, tuple[int, bytes]]:
    files = [p for d in ("data", "models", "plots", "metrics") for p in (root / d).rglob("*") if p.is_file()]
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


# A SIGKILL to DVC's process group, and a terminal's Ctrl-C (SIGINT to the foreground process group: DVC and
# its stage), as soon as the first train stage is running; and the stage's line then.
STOPS = {"SIGKILL": (signal.SIGKILL, ""), "Ctrl-C": (signal.SIGINT, "train: interrupted; its outputs were not written")}


@pytest.mark.parametrize("signum, line", STOPS.values(), ids=STOPS.keys())
def test_a_stopped_stage_leaves_nothing_behind(clone, signum, line):
    dvc_process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-f"], cwd=clone, env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)  # fmt: skip

    def train_stages() -> list[psutil.Process]:
        assert dvc_process.poll() is None, "DVC ended before a train stage started"
        # the command line as listed: a stage that ended since (prepare) is a zombie to ask again
        return [p for p in stage_processes(clone) if "-m stages train " in " ".join(p.info["cmdline"] or [])]

    train = wait_for(train_stages, "a train stage to start")
    wait_for(lambda: importing_torch(train[0].pid), "the train stage to import torch")
    before = outputs_of(clone)
    os.killpg(dvc_process.pid, signum)
    # The stage ends too, and writes nothing on its way out (a stage that outlived DVC would finish
    # training a few seconds later and write its model).
    _, alive = psutil.wait_procs([train[0]], timeout=60)
    assert alive == [], "the train stage lives on"
    assert outputs_of(clone) == before, "the killed run's stage wrote outputs"
    output, _ = dvc_process.communicate(timeout=60)
    assert dvc_process.returncode != 0 and "Traceback" not in output and line in output, output
    assert stage_processes(clone) == []  # so nothing of the killed run can write later
    dvc(clone, "repro")
    assert "Data and pipelines are up to date." in dvc(clone, "status")
    for name in RESULTS:
        assert (clone / name).read_bytes() == (REPO / name).read_bytes(), f"{name} differs after the rerun"


def test_a_table_too_big_for_git_under_dvc_add(tmp_path):
    """docs/data.md's flow for a large table: `dvc add` it under datasets/; prepare is stale when it changes."""
    root = copy_pipeline(tmp_path / "repo")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 5)).astype(np.float32)  # the flow, not the size, is what is tested
    labels = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    table = pa.table({**{f"f{i}": x[:, i] for i in range(5)}, "label": labels})
    pq.write_table(table, root / "datasets" / "big.parquet")
    dvc(root, "add", "datasets/big.parquet")
    assert (root / "datasets" / ".gitignore").read_text() == "/big.parquet\n"
    params = (root / "params.yaml").read_text().replace("source: toy ", "source: parquet ")
    params = params.replace("datasets/wine.csv", "datasets/big.parquet").replace("label: cultivar", "label: label")
    (root / "params.yaml").write_text(params)
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "a table under DVC")
    tracked = sh(root, "git", "ls-files", "datasets").split()
    assert "datasets/big.parquet.dvc" in tracked and "datasets/big.parquet" not in tracked  # DVC holds the table
    assert "parquet: 20000 training rows" in dvc(root, "repro", "prepare")  # prepare read the table DVC holds
    pq.write_table(table.slice(0, 10_000), root / "datasets" / "big.parquet")  # the table changes
    dvc(root, "add", "datasets/big.parquet")
    assert "prepare" in dvc(root, "status")  # DVC sees the new table: `dvc repro` would rerun from prepare on
