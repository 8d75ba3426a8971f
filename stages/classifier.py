"""A trained model file as numpy reads it: the linear map, the class names and the preprocessing that
turns a table's columns into the map's inputs; everything predict needs, in one file. Evaluate and
predict share `log_probabilities`, so that both score a row the same way."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.features import Preprocessing
from stages.plumbing.files import Tensors, tensors_bytes

FORMAT = "softmax-three-ways model 3"  # in every model file: a file without it is not one this code reads
IMPLEMENTATIONS = ("low_level", "functional", "high_level")  # stages/models.py's (which imports torch)
FIX = "run `dvc repro` to train it"


@dataclass(frozen=True)
class Classifier:
    W: np.ndarray  # float64 (inputs, classes): logits = x W + b
    b: np.ndarray  # float64 (classes,) or (1,): the lesson's scalar b
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    info: dict[str, Any]  # what train noted: the implementation, the device, the data's SHA-256, ...


def log_probabilities(model: Classifier, x: np.ndarray) -> np.ndarray:
    """log softmax(x W + b) of each row, in float64, from the model's inputs (preprocessed)."""
    logits = x.astype(np.float64) @ model.W + model.b
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def model_bytes(state: dict[str, np.ndarray], preprocessing: Preprocessing, info: dict[str, Any]) -> bytes:
    arrays, described = preprocessing.tensors()
    return tensors_bytes(state | arrays, {"format": FORMAT, **info, "preprocessing": described})


def load_classifier(path: str | Path, fix: str = FIX) -> Classifier:
    """The model in the file `path`: one line for a file that is not a model of this version."""
    tensors = Tensors(path, "trained model", FORMAT, fix)
    arrays, info = {name: tensors.rows(name) for name in tensors.shapes}, tensors.info
    W, b = (arrays[name].astype(np.float64) for name in "Wb")
    return Classifier(W, b, tuple(info["classes"]), Preprocessing.from_tensors(arrays, info["preprocessing"]), info)


def onnx_bytes(W: np.ndarray, b: np.ndarray, classes: list[str], preprocessing: Preprocessing) -> bytes:
    """The model as ONNX, taking the table's columns by name (docs/models.md describes the graph, and says why onnx's
    own helpers build it, not torch.onnx): in float64 as predict computes, the same bytes on every run. The graph's own
    names begin with "/", so that no column's name can clash with one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, constants = [], []

    def node(op: str, *inputs: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, list(inputs), [f"/{op}_{len(nodes)}"], **attributes))
        return nodes[-1].output[0]

    def constant(value: np.ndarray) -> str:
        constants.append(numpy_helper.from_array(value, f"/constant_{len(constants)}"))
        return constants[-1].name

    double = TensorProto.DOUBLE
    parts = [node("Cast", name, to=double) for name in preprocessing.numeric]
    for name, categories in preprocessing.categories:  # 0/1 per category, all NaN where missing
        one_hot = node("Cast", node("Equal", name, constant(np.array([categories], dtype=object))), to=double)
        missing = node("Equal", name, constant(np.array([[""]], dtype=object)))
        parts.append(node("Where", missing, constant(np.array(np.nan)), one_hot))
    x = node("Concat", *parts, axis=1)
    if preprocessing.fill is not None:
        x = node("Where", node("IsNaN", x), constant(preprocessing.fill.astype(np.float64)), x)
    if preprocessing.mean is not None:
        mean, std = (constant(v.astype(np.float64)) for v in (preprocessing.mean, preprocessing.std))
        scaled = node("Div", node("Sub", x, mean), std)
        x = node("Cast", node("Cast", scaled, to=TensorProto.FLOAT), to=double)  # rounded to float32, as predict's
    logits = node("Add", node("MatMul", x, constant(W.astype(np.float64))), constant(b.astype(np.float64)))
    nodes.append(helper.make_node("Cast", [node("Softmax", logits, axis=1)], ["probabilities"], to=TensorProto.FLOAT))
    typed = [(name, TensorProto.FLOAT) for name in preprocessing.numeric]
    typed += [(name, TensorProto.STRING) for name, _ in preprocessing.categories]
    inputs = [helper.make_tensor_value_info(name, kind, ["rows", 1]) for name, kind in typed]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["rows", len(classes)])]
    graph = helper.make_graph(nodes, "softmax_classifier", inputs, outputs, constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], producer_name="softmax-three-ways")
    helper.set_model_props(model, {"classes": json.dumps(classes)})
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(deterministic=True)
