"""Run the pipeline's stages on another device and compare with the committed (CPU) metrics.

On a CUDA machine, from the repository root:  python3 scripts/compare_devices.py --device cuda
Prints a Markdown table for the README: accuracy on both devices and the difference in final_cost.
Needs torch and ruamel.yaml, not DVC: it calls the stages as `dvc repro` would, in a temporary folder.
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.pipeline_copy import params_for_device  # noqa: E402
from scripts.run_all import run_all  # noqa: E402
from stages.models import IMPLEMENTATIONS  # noqa: E402


def run_stages(device: str, workdir: Path) -> dict[str, dict]:
    """The whole pipeline with params.yaml's values but `device`, in `workdir`."""
    (workdir / "params.yaml").write_text(params_for_device(device))
    if (REPO / "datasets").is_dir():
        shutil.copytree(REPO / "datasets", workdir / "datasets")
    return run_all(workdir)


def compare(device: str) -> tuple[str, float]:
    """The Markdown table, and the largest |final_cost difference| against the committed metrics."""
    committed = {impl: json.loads((REPO / f"metrics/{impl}.json").read_text()) for impl in IMPLEMENTATIONS}
    with tempfile.TemporaryDirectory() as tmp:
        measured = run_stages(device, Path(tmp))
    rows = [
        "| implementation | accuracy (CPU) | accuracy (device) | final_cost (CPU) | final_cost (device) | difference |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    largest = 0.0
    for impl in IMPLEMENTATIONS:
        cpu, dev = committed[impl], measured[impl]
        difference = abs(cpu["final_cost"] - dev["final_cost"])
        largest = max(largest, difference)
        rows.append(
            f"| {impl} | {cpu['train']['accuracy']} | {dev['train']['accuracy']} | {cpu['final_cost']} "
            f"| {dev['final_cost']} | {difference:.2e} |"
        )
    return "\n".join(rows), largest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    table, largest = compare(args.device)
    print(f"\ndevice: {name}, torch {torch.__version__}\n\n{table}\n\nlargest final_cost difference: {largest:.2e}")


if __name__ == "__main__":
    main()
