"""The whole pipeline in one process: what `dvc repro` runs as seven stage processes, run here as
function calls. For the latency floor (bench/) and for trying another device (scripts/).

    python -m scripts.run_all DIR     (DIR holds params.yaml; outputs are written there)
"""

import contextlib
import json
import sys
from pathlib import Path

from stages import evaluate, prepare, train
from stages.models import IMPLEMENTATIONS


def run_all(workdir: str | Path) -> dict[str, dict]:
    """prepare, then train and evaluate each implementation, in `workdir`; returns the metrics."""
    metrics = {}
    with contextlib.chdir(workdir):
        prepare.main(["prepared.safetensors"])
        for impl in IMPLEMENTATIONS:
            train.main([impl, "prepared.safetensors", f"{impl}.safetensors", f"{impl}.tsv", f"{impl}_test.tsv"])
            evaluate.main(["prepared.safetensors", f"{impl}.safetensors", f"{impl}.tsv", f"{impl}.json", f"{impl}.csv"])
            metrics[impl] = json.loads(Path(f"{impl}.json").read_text())
    return metrics


if __name__ == "__main__":
    run_all(sys.argv[1])
