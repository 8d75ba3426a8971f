"""The whole pipeline in one process: what `dvc repro` runs as ten stage processes, run here as
function calls. For the latency floor (bench/) and for trying another device (scripts/).

    python -m scripts.run_all DIR     (DIR holds params.yaml; outputs are written there)
"""

import contextlib
import json
import sys
from pathlib import Path

from stages import evaluate, predict, prepare, train
from stages.models import IMPLEMENTATIONS


def run_all(workdir: str | Path) -> dict[str, dict]:
    """prepare, then train, evaluate and predict with each implementation, in `workdir`; returns the metrics."""
    metrics = {}
    with contextlib.chdir(workdir):
        prepare.main(["prepared.safetensors", "new_rows.csv"])
        for impl in IMPLEMENTATIONS:
            model, onnx, costs = f"{impl}.safetensors", f"{impl}.onnx", f"{impl}.tsv"
            train.main([impl, "prepared.safetensors", model, costs, f"{impl}_test.tsv", onnx])
            evaluate.main(["prepared.safetensors", model, f"{impl}.json", f"{impl}.csv"])
            predict.main([model, "new_rows.csv", f"{impl}_predictions.csv"])
            metrics[impl] = json.loads(Path(f"{impl}.json").read_text())
    return metrics


if __name__ == "__main__":
    run_all(sys.argv[1])
