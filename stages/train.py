"""Stage `train`: fit one implementation with the lesson's full-batch SGD loop; save the model and
its cost at every epoch."""

import argparse

import torch

from stages.data import Split, load_prepared
from stages.device import make_deterministic, resolve_device
from stages.errors import UserError, run_stage
from stages.files import float32_str, save_torch_atomic, write_text_atomic
from stages.models import IMPLEMENTATIONS, Model, build_model, cost_function
from stages.params import TrainParams, load_params, train_params


def train(
    impl: str, data: Split, n_classes: int, params: TrainParams, device: torch.device
) -> tuple[Model, list[float]]:
    """Train `impl` on `data`; return the model and the cost of every epoch 0..epochs.

    As in the lesson, an epoch's cost is computed before that epoch's update, and there are
    epochs + 1 of them, so the last cost printed is that of the model after `epochs` updates.
    """
    torch.manual_seed(params.seed)
    model = build_model(impl, data.x.shape[1], n_classes, device)
    cost_of = cost_function(impl, params.double_softmax)
    optimizer = torch.optim.SGD(model.parameters(), lr=params.lr)
    x, y = data.x.to(device), data.y.to(device)
    # Costs stay on the device and are read back only when printed: no host sync on every epoch.
    costs = torch.empty(params.epochs + 1, device=device)
    checked = 0
    for epoch in range(params.epochs + 1):
        cost = cost_of(model(x), y)
        optimizer.zero_grad()
        cost.backward()
        optimizer.step()
        costs[epoch] = cost.detach()
        if epoch % params.log_every == 0 or epoch == params.epochs:
            _stop_if_not_finite(costs[checked : epoch + 1], checked, params.lr)
            checked = epoch + 1
            if epoch % params.log_every == 0:
                print(f"Epoch {epoch:4d}/{params.epochs} Cost: {costs[epoch].item():.6f}", flush=True)
    return model, costs.tolist()


def _stop_if_not_finite(costs: torch.Tensor, first_epoch: int, lr: float) -> None:
    bad = (~torch.isfinite(costs)).nonzero()
    if len(bad):
        epoch = first_epoch + int(bad[0])
        value = costs[int(bad[0])].item()
        raise UserError(f"the cost became {value} at epoch {epoch} with train.lr={lr}; lower train.lr")


def costs_tsv(costs: list[float]) -> str:
    rows = [f"{epoch}\t{float32_str(cost)}\n" for epoch, cost in enumerate(costs)]
    return "epoch\tcost\n" + "".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("impl", choices=IMPLEMENTATIONS)
    parser.add_argument("data", help="prepared tensors, e.g. data/prepared.pt")
    parser.add_argument("model", help="where to save the trained model, e.g. models/low_level.pt")
    parser.add_argument("costs", help="where to write the cost per epoch (TSV), e.g. plots/cost/low_level.tsv")
    args = parser.parse_args(argv)
    params = train_params(load_params())
    make_deterministic()
    device = resolve_device(params.device)
    prepared = load_prepared(args.data)
    model, costs = train(args.impl, prepared.train, prepared.n_classes, params, device)
    state = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    checkpoint = {"impl": args.impl, "n_features": prepared.n_features, "n_classes": prepared.n_classes,
                  "device": device.type, "state": state}  # fmt: skip
    write_text_atomic(args.costs, costs_tsv(costs))
    save_torch_atomic(checkpoint, args.model)


if __name__ == "__main__":
    run_stage("train", main)
