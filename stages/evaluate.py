"""Stage `evaluate`: score one trained implementation on the evaluation data; write its metrics."""

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from stages.data import Split, load_prepared
from stages.errors import UserError, run_stage
from stages.files import float32_str, write_text_atomic
from stages.models import Model, build_model


def evaluate(model: Model, data: Split) -> dict[str, float]:
    """Accuracy, and cross-entropy (by PyTorch's reference op, whatever the implementation)."""
    with torch.no_grad():
        logits = model(data.x)
        accuracy = (logits.argmax(dim=1) == data.y).float().mean()
        eval_cost = F.cross_entropy(logits, data.y)
    return {"accuracy": accuracy.item(), "eval_cost": eval_cost.item()}


def load_model(path: str | Path) -> tuple[Model, dict]:
    if not Path(path).is_file():
        raise UserError(f"{path}: trained model not found; run `dvc repro` to train it")
    checkpoint = torch.load(path, weights_only=True)
    model = build_model(checkpoint["impl"], checkpoint["n_features"], checkpoint["n_classes"])
    model.load_state_dict(checkpoint["state"])
    return model, checkpoint


def final_cost(costs_path: str | Path) -> float:
    """The training cost at the last epoch: the last number the lesson prints."""
    if not Path(costs_path).is_file():
        raise UserError(f"{costs_path}: training costs not found; run `dvc repro` to train the model")
    last_row = Path(costs_path).read_text(encoding="utf-8").splitlines()[-1]
    return float(last_row.split("\t")[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", help="prepared tensors, e.g. data/prepared.pt")
    parser.add_argument("model", help="a trained model, e.g. models/low_level.pt")
    parser.add_argument("costs", help="its training costs (TSV), e.g. plots/cost/low_level.tsv")
    parser.add_argument("metrics", help="where to write the metrics (JSON), e.g. metrics/low_level.json")
    args = parser.parse_args(argv)
    prepared = load_prepared(args.data)
    model, checkpoint = load_model(args.model)
    scores = evaluate(model, prepared.eval)
    metrics = {
        "accuracy": scores["accuracy"],
        "final_cost": final_cost(args.costs),
        "eval_cost": scores["eval_cost"],
        "device": checkpoint["device"],  # where it was trained; evaluation itself runs on the CPU
    }
    # float32 values written as the shortest decimals that read back exactly: stable bytes.
    text = json.dumps({k: float(float32_str(v)) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2)
    write_text_atomic(args.metrics, text + "\n")


if __name__ == "__main__":
    run_stage("evaluate", main)
