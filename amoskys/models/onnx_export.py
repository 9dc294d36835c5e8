"""ONNX export of a detector's score function, and the parity check that keeps it honest.

An exported file takes the detector's filled, robustly scaled matrix (float32, ``input``,
shape rows x features) and gives one float32 ``score`` per row: the number
``score_samples`` returns. Filling and scaling stay out of the graph: they are a few
numbers per feature (``fill_``, ``center_``, ``scale_``) that any serving code applies
first, and keeping them out lets one graph builder serve every converter.

Converters (skl2onnx, onnxmltools) emit the model's own outputs (a label, a decision
function, class probabilities); ``score_output`` rewires such a graph so that its only
output is the detector's score, an affine function of one column of a converter output.

Every export must pass ``check_parity``: ONNX Runtime's scores against the native ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from amoskys.errors import ModelError
from amoskys.models.base import Detector

INPUT, OUTPUT = "input", "score"
OPSET = 15  # the highest default-domain opset every converter used here supports (onnxmltools stops at 15)
ML_OPSET = 3  # ai.onnx.ml 3: the TreeEnsemble operators with double attributes, which skl2onnx's IsolationForest needs


def score_output(model: onnx.ModelProto, source: str, column: int, scale: float = 1.0,
                 shift: float = 0.0) -> onnx.ModelProto:  # fmt: skip
    """model rewired so that its only output is ``score = scale * source[:, column] + shift``."""
    graph = model.graph
    if source not in {output.name for output in graph.output}:
        raise ModelError(f"the converted ONNX graph has no output {source!r}")
    constants = {"score_column": np.array(column, dtype=np.int64), "score_scale": np.array(scale, dtype=np.float32),
                 "score_shift": np.array(shift, dtype=np.float32)}  # fmt: skip
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    graph.node.extend([
        helper.make_node("Gather", [source, "score_column"], ["score_raw"], axis=1),  # a scalar index drops the axis
        helper.make_node("Mul", ["score_raw", "score_scale"], ["score_scaled"]),
        helper.make_node("Add", ["score_scaled", "score_shift"], [OUTPUT]),
    ])  # fmt: skip
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None]))
    if not any(opset.domain in ("", "ai.onnx") for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", OPSET))  # a pure ai.onnx.ml graph imports no default ops
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Check model and write it to path."""
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def check_parity(detector: Detector, onnx_path: Path, matrix: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime's scores and the detector's own on matrix.

    matrix is the filled, scaled matrix (``detector._matrix(X)``). The native score is
    computed from it directly, so this holds for score-function exports (``INPUT`` in,
    ``OUTPUT`` out) of detectors whose score needs only the matrix, not the host and time
    of each row; a file of another shape is refused with a ModelError.
    """
    import onnxruntime as ort  # loaded here: only exports need it

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [put.name for put in session.get_inputs()], [put.name for put in session.get_outputs()]
    if names != ([INPUT], [OUTPUT]):
        raise ModelError(f"{onnx_path} is not a score-function export ({INPUT!r} in, {OUTPUT!r} out): it has {names}")
    if not len(matrix):
        return 0.0
    (onnx_scores,) = session.run([OUTPUT], {INPUT: np.ascontiguousarray(matrix, dtype=np.float32)})
    native = np.asarray(detector._score(matrix, None), dtype=np.float64)
    if onnx_scores.shape != native.shape:
        raise ModelError(f"{onnx_path} gives scores of shape {onnx_scores.shape}, the detector {native.shape}")
    return float(np.max(np.abs(onnx_scores.astype(np.float64) - native)))
