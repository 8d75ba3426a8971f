"""Stage `train`: fit one implementation with the lesson's loop; save the model, its training cost
at every epoch and, when there is a test split, its test cost every `log_every` epochs."""

import os
import sys
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stages.classifier import model_bytes, onnx_bytes
from stages.data import Prepared, PreparedFile
from stages.models import IMPLEMENTATIONS, Model, build_model, cost_function, lesson_weights
from stages.plumbing import distributed
from stages.plumbing.files import StageArguments, float32_text, write_outputs
from stages.plumbing.params import TrainParams, load_params, section
from stages.plumbing.process import UserError, say


class Trained(NamedTuple):
    model: Model
    costs: list[float]  # training cost of every epoch 0..epochs
    test_costs: list[tuple[int, float]]  # (epoch, test cost) every log_every epochs, when there is a test split


# Training that runs longer than this shows its progress on stderr, at most this often (tqdm): only on
# stderr and only by the clock, so stdout (the lesson's lines) and every output file stay the same.
PROGRESS_SECONDS = 10.0

# `auto` takes CUDA from this many FLOP a run: a second of CI's CPU (8 GFLOP/s) beyond CUDA's start-up and slower steps
# (0.4 s, then 0.8 ms a step against the CPU's 0.3 ms on an H200: bench/run.py). The lesson's 2e5 FLOP stay on the CPU.
AUTO_CUDA_FLOP = 1e10


def flop(rows: int, features: int, classes: int, epochs: int) -> float:
    """A training run's arithmetic: the forward product and two for the gradients, range(epochs + 1) passes."""
    return 6.0 * rows * features * classes * (epochs + 1)


def resolve_device(requested: str, run_flop: float) -> torch.device:
    """`auto` takes CUDA when there is one and the run does at least AUTO_CUDA_FLOP, and says what it
    chose and why; `cuda` without CUDA is an error."""
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        build = f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}"
        raise UserError(f"train.device is 'cuda' but CUDA is not available here ({build}); use 'auto' or 'cpu'")
    if requested != "auto":
        return torch.device(requested)
    if not available:
        say("device: auto -> cpu (CUDA not available, falling back to the CPU)")
    elif run_flop >= AUTO_CUDA_FLOP:
        say(f"device: auto -> cuda ({torch.cuda.get_device_name(0)}; the run's {run_flop:.2g} FLOP are over 1e+10)")
        return torch.device("cuda")
    else:  # not naming the GPU: asking its name would start CUDA, the cost this choice avoids
        why = "CUDA's start-up costs more than it saves; train.device: cuda forces CUDA"
        say(f"device: auto -> cpu (CUDA is available, but the run's {run_flop:.2g} FLOP are under 1e+10, where {why})")
    return torch.device("cpu")


def make_deterministic(device: torch.device) -> None:
    """Same inputs, same bits: one CPU thread, because how a float sum is split between threads changes
    its rounding; on a GPU, deterministic kernels too (the CPU kernels training uses are deterministic
    already, and the switch costs a second: it imports torch._inductor.config)."""
    torch.set_num_threads(1)
    if device.type == "cuda":
        # cuBLAS needs this before its first call to be deterministic (PyTorch's reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def make_optimizer(parameters: Iterable[torch.Tensor], params: TrainParams) -> torch.optim.Optimizer:
    if params.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=params.lr, betas=params.betas, weight_decay=params.weight_decay)
    return torch.optim.SGD(parameters, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)


def train(impl: str, prepared: Prepared, params: TrainParams, device: torch.device) -> Trained:
    """Train `impl` on the prepared data's training split (its test split, if any, is scored too). As in the
    lesson there are epochs + 1 passes, and with full batches an epoch's cost is computed before that epoch's
    update: the last cost printed is that of the model after `epochs` updates. With mini-batches
    (train.batch_size > 0) an epoch's cost is the mean of its batches' costs, each before its own update."""
    # The lab seeds torch with 1, then draws torch.rand(3, 5) and torch.randint(5, (3,)) for its
    # cross-entropy examples before it builds nn.Linear. Drawing the same two here makes train.seed 1
    # start high_level from the lab's weights, and every other seed from weights drawn the same way.
    torch.manual_seed(params.seed)
    torch.rand(3, 5), torch.randint(5, (3,))
    data, standardized = prepared.train, prepared.preprocessing.mean is not None
    model = build_model(impl, data.x.shape[1], len(prepared.classes), device)
    cost_of = cost_function(impl, params.double_softmax)
    optimizer = make_optimizer(model.parameters(), params)
    # This process's rows: all of them alone; under torchrun, rows start..stop of the n_rows.
    x, y = torch.as_tensor(data.x, device=device), torch.as_tensor(data.y, device=device)
    n_rows, start, stop = data.total, data.start, data.start + len(data.y)
    batch_size = params.batch_size if 0 < params.batch_size < n_rows else n_rows
    shuffle = torch.Generator().manual_seed(params.seed)
    test = prepared.eval  # this process's share of the test rows
    test_x, test_y = (torch.as_tensor(a, device=device) for a in (test.x, test.y)) if prepared.has_test else (x, y)
    # Costs stay on the device and are read back only when printed: no host sync on every epoch.
    costs, test_costs = torch.empty(params.epochs + 1, device=device), []
    progress = dict(delay=PROGRESS_SECONDS, mininterval=PROGRESS_SECONDS, file=sys.stderr, unit="epoch")
    for epoch in tqdm(range(params.epochs + 1), f"train {impl}", disable=distributed.rank() != 0, **progress):
        if prepared.has_test and epoch % params.log_every == 0:
            with torch.no_grad():
                cost = F.cross_entropy(model(test_x), test_y) if len(test_y) else torch.zeros((), device=device)
                test_costs.append((epoch, distributed.mean(cost, len(test.y) / test.total)))
        if batch_size == n_rows:
            costs[epoch] = step(model, cost_of, optimizer, x, y, n_rows)
        else:
            total = torch.zeros((), device=device)
            for rows in batches(n_rows, batch_size, shuffle, device):
                mine = rows if len(y) == n_rows else rows[(rows >= start) & (rows < stop)] - start
                total += step(model, cost_of, optimizer, x[mine], y[mine], len(rows)) * len(rows)
            costs[epoch] = total / n_rows
        if epoch % params.log_every == 0 or epoch == params.epochs:
            if not torch.isfinite(costs[epoch]):  # NaN stays NaN: the first such epoch is the one to name
                bad = int((~torch.isfinite(costs[: epoch + 1])).nonzero()[0])
                raise diverged(f"the cost became {costs[bad].item()}", bad, params, standardized)
            if epoch % params.log_every == 0 and distributed.rank() == 0:
                print(f"Epoch {epoch:4d}/{params.epochs} Cost: {costs[epoch].item():.6f}", flush=True)
    if not all(torch.isfinite(tensor).all() for tensor in lesson_weights(model)):  # the update after the last cost
        raise diverged("the weights became infinite or NaN", params.epochs, params, standardized)
    first, last = costs[0].item(), costs[-1].item()
    if not last < first:  # finite, but training made the model worse (the steps overshoot), or no better
        what = f"the cost rose from {first:.4g} to {last:.4g}" if last > first else f"the cost stayed at {first:.4g}"
        raise diverged(what, params.epochs, params, standardized)
    return Trained(model, costs.tolist(), [(epoch, cost.item()) for epoch, cost in test_costs])


def batches(n_rows: int, batch_size: int, shuffle: torch.Generator, device: torch.device) -> tuple[torch.Tensor, ...]:
    """One epoch of mini-batches: the row indices of each, in an order drawn from `shuffle`."""
    return torch.randperm(n_rows, generator=shuffle).to(device).split(batch_size)


def step(model: Model, cost_of, optimizer, x: torch.Tensor, y: torch.Tensor, batch_rows: int) -> torch.Tensor:
    """One update on a batch of batch_rows rows, of which x, y are this process's (all of them alone; under
    torchrun the processes' gradients are summed before the update); returns the batch's cost before it."""
    optimizer.zero_grad()
    cost = cost_of(model(x), y) if len(y) else torch.zeros((), device=x.device)  # a mean over no rows is nan
    if len(y):
        cost.backward()
    cost = distributed.sum_gradients(model.parameters(), cost.detach(), len(y) / batch_rows)
    optimizer.step()
    return cost


def diverged(what: str, epoch: int, params: TrainParams, standardized: bool) -> UserError:
    """The one line for a run that diverged (or ended worse than it began), naming only the settings
    that can have caused it, and first unscaled inputs, the likelier cause."""
    suspects = ["lr"] + ["weight_decay"] * (params.weight_decay > 0)
    suspects += ["momentum"] * (params.optimizer == "sgd" and params.momentum > 0)
    settings = ", ".join(f"train.{name}={getattr(params, name)}" for name in suspects)
    fix = "standardize the data (data.standardize: true), or " * (not standardized)
    lower = " or ".join(f"train.{name}" for name in suspects)
    return UserError(f"{what} at epoch {epoch} with {settings}; {fix}lower {lower}")


def costs_tsv(rows: list[tuple[int, float]], column: str = "cost") -> str:
    lines = (f"{epoch}\t{float32_text(cost, f'the {column} at epoch {epoch}')}\n" for epoch, cost in rows)
    return f"epoch\t{column}\n" + "".join(lines)


def numpy_state(model: Model) -> dict[str, np.ndarray]:
    """The model's W and b as numpy arrays on the CPU: what the model file holds and evaluate reads."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in zip("Wb", lesson_weights(model), strict=True)}


def main(argv: list[str] | None = None) -> None:
    parser = StageArguments("train", __doc__)
    parser.add_argument("impl", choices=IMPLEMENTATIONS)
    parser.add_input("data", help="prepared tensors, e.g. data/prepared.safetensors")
    parser.add_output("model", help="where to save the trained model, e.g. models/low_level.safetensors")
    parser.add_output("costs", help="where to write the cost per epoch (TSV), e.g. plots/cost/low_level.tsv")
    parser.add_output("test_costs", help="where to write the test cost (TSV), e.g. plots/test_cost/low_level.tsv")
    parser.add_output("onnx", help="where to write the model as ONNX, e.g. models/low_level.onnx")
    args = parser.parse_args(argv)
    params: TrainParams = section(load_params(), "train")
    data = PreparedFile(args.data)  # checked; its rows are read once this process knows its share
    if params.processes > 1 and not distributed.launched():
        distributed.launch(params.processes, ["train", *(sys.argv[1:] if argv is None else argv)])
    run_flop = flop(data.n_rows("train"), data.n_features, len(data.classes), params.epochs)
    device = resolve_device(params.device, run_flop)
    make_deterministic(device)
    rank = distributed.start(device)
    try:
        prepared = data.load(distributed.share)
        model, costs, test_costs = train(args.impl, prepared, params, device)
    finally:
        distributed.stop()
    if rank != 0:  # every process holds the same model: the first one writes it
        return
    state, classes = numpy_state(model), list(prepared.classes)
    # The prepared file it learnt from, for evaluate to check, and the lesson's last printed cost.
    info = dict(impl=args.impl, classes=classes, device=device.type, data_sha256=prepared.sha256, final_cost=costs[-1])
    outputs = {args.costs: costs_tsv(list(enumerate(costs))), args.test_costs: costs_tsv(test_costs, "test_cost")}
    outputs[args.model] = model_bytes(state, prepared.preprocessing, info)
    outputs[args.onnx] = onnx_bytes(state["W"], state["b"], classes, prepared.preprocessing)
    write_outputs(outputs, inputs=args.inputs)  # test costs without a test split: the header (DVC wants the file)
