"""ONNX export, parity checks and int8 quantization of trained models.

Importing this module imports numpy only: torch, onnx and onnxruntime are imported inside the
functions that need them, and :class:`OnnxClassifier` (serving, onnxruntime only) lives in
:mod:`ml.serving` and is re-exported here.

An exported model has one input ``input`` and two outputs: ``probs`` (softmax, ``(N, C)`` or
``(N, P, C)`` for segmentation) and ``embedding`` (``(N, D)``). The batch axis is dynamic, and so
are audio frames (axis 3) and cloud points (axis 1). The model's metadata (``looplab.*``) records
modality, task, n_classes, arch, input shape and precision.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ml import modalities
from ml.errors import EmptyData, InvalidInput
from ml.serving import METADATA_PREFIX, OnnxClassifier, RuntimeChoice, choose_runtime, measure_latency, runtime_decision

if TYPE_CHECKING:  # pragma: no cover
    from ml.training import TrainedModel

__all__ = [
    "export_onnx",
    "OnnxClassifier",
    "ParityReport",
    "parity_report",
    "compare_runtimes",
    "RuntimeComparison",
    "quantize_dynamic_int8",
    "quantize_static_int8",
    "cpu_has_vnni",
    "measure_latency",
    "choose_runtime",
    "runtime_decision",
    "RuntimeChoice",
]

DEFAULT_OPSET = 17


def _dynamic_axes(model: "TrainedModel") -> dict[str, dict[int, str]]:
    inp: dict[int, str] = {0: "batch"}
    probs: dict[int, str] = {0: "batch"}
    mod = modalities.get(model.modality)
    inp.update(mod.variable_axes)
    if mod.point_axis is not None and model.task == "segmentation":
        probs[mod.point_axis] = "points"  # one row of class probabilities per point
    return {"input": inp, "probs": probs, "embedding": {0: "batch"}}


def _set_metadata(path: str | os.PathLike, values: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(os.fspath(path))
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        full = METADATA_PREFIX + key
        if full in existing:
            existing[full].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = full, value
    onnx.save(proto, os.fspath(path))


def _read_metadata(path: str | os.PathLike) -> dict[str, str]:
    import onnx

    proto = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key[len(METADATA_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)}


def export_onnx(model: "TrainedModel", path: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> None:
    """Export ``model`` to an ONNX file with outputs ``probs`` and ``embedding``.

    Uses torch's TorchScript-based exporter, which writes the requested opset exactly; if that
    exporter is unavailable it falls back to the ``torch.export`` one (opset >= 18). Check the
    result with :func:`parity_report`.
    """
    import torch

    if opset < 13:
        raise InvalidInput("opset must be >= 13", details={"opset": opset})
    net = copy.deepcopy(model.net).cpu().eval()  # leave the model's own module where it is (GPU)
    task = model.task

    class _Export(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if task == "segmentation":
                logits, emb = self.net.forward_with_embedding(x)
            else:
                emb = self.net.forward_features(x)
                logits = self.net.logits_from_embedding(emb)
            return torch.softmax(logits, dim=-1), emb

    wrapper = _Export().eval()
    example = torch.zeros((2, *model.input_shape), dtype=torch.float32)
    axes = _dynamic_axes(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=["input"],
                output_names=["probs", "embedding"],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except (TypeError, RuntimeError, NotImplementedError) as legacy_error:
        # TorchScript exporter gone (future torch): use the torch.export-based one.
        dims = {0: torch.export.Dim("batch", min=1)}
        for axis, name in axes["input"].items():
            if axis:
                dims[axis] = torch.export.Dim(name, min=1)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    wrapper,
                    (example,),
                    input_names=["input"],
                    output_names=["probs", "embedding"],
                    dynamic_shapes={"x": dims},
                    opset_version=max(opset, 18),
                    dynamo=True,
                )
                program.save(str(path), external_data=False)
        except Exception as exc:
            raise RuntimeError(f"ONNX export failed: {exc} (TorchScript exporter: {legacy_error})") from exc
    _set_metadata(
        path,
        {
            "modality": model.modality,
            "task": model.task,
            "n_classes": str(model.n_classes),
            "arch": json.dumps(model.arch, sort_keys=True),
            "input_shape": json.dumps(list(model.input_shape)),
            "embed_dim": str(model.embed_dim),
            "precision": "fp32",
        },
    )


# --------------------------------------------------------------------------------------------
# parity


@dataclass(frozen=True)
class ParityReport:
    n: int
    top1_agreement: float
    max_abs_diff: float  # on probabilities
    passed: bool  # top-1 agreement 1.0 and max_abs_diff <= atol
    embedding_max_abs_diff: float = 0.0
    atol: float = 1e-4

    def to_dict(self) -> dict:
        return asdict(self)


def _compare(ref_probs: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    if ref_probs.shape != probs.shape:
        raise InvalidInput(
            "outputs to compare differ in shape",
            code="shape_mismatch",
            details={"reference": list(ref_probs.shape), "other": list(probs.shape)},
        )
    agree = float(np.mean(ref_probs.argmax(axis=-1) == probs.argmax(axis=-1)))
    diff = float(np.max(np.abs(ref_probs.astype(np.float64) - probs))) if ref_probs.size else 0.0
    return agree, diff


def parity_report(model: "TrainedModel", onnx_path, X: np.ndarray, *, atol: float = 1e-4) -> ParityReport:
    """Compare torch (``model``) and onnxruntime (``onnx_path``, fp32) on ``X``.

    For segmentation models top-1 agreement is over all points.
    """
    probs_t, emb_t = model.predict_and_embed(X)
    probs_o, emb_o = OnnxClassifier(onnx_path).run(X)
    agree, diff = _compare(probs_t, probs_o)
    _, emb_diff = _compare(emb_t, emb_o)
    return ParityReport(
        n=int(len(X)),
        top1_agreement=agree,
        max_abs_diff=diff,
        passed=bool(agree == 1.0 and diff <= atol),
        embedding_max_abs_diff=emb_diff,
        atol=atol,
    )


@dataclass(frozen=True)
class RuntimeComparison:
    """Outputs of several runtimes against a reference (torch), with accuracy when labels are given."""

    n: int
    reference: str
    runtimes: dict  # {name: {"top1_agreement", "max_abs_diff", "accuracy"?}}
    reference_accuracy: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _accuracy(probs: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    return float(np.mean(probs.argmax(axis=-1) == np.asarray(y)))


def compare_runtimes(
    model: "TrainedModel",
    onnx_paths: dict[str, str | os.PathLike],
    X: np.ndarray,
    y: np.ndarray | None = None,
    *,
    threads: int | None = None,
) -> RuntimeComparison:
    """Torch vs each ONNX model (e.g. ``{"ort_fp32": ..., "ort_int8_static": ...}``) on ``X``.

    Reports top-1 agreement with torch, max abs difference of probabilities, and accuracy against
    ``y`` (class per sample, or per point for segmentation) when given.
    """
    ref = model.predict_proba(X)
    out: dict[str, dict] = {}
    for name, path in onnx_paths.items():
        probs = OnnxClassifier(path, threads=threads).predict_proba(X)
        agree, diff = _compare(ref, probs)
        out[name] = {"top1_agreement": agree, "max_abs_diff": diff, "accuracy": _accuracy(probs, y)}
    return RuntimeComparison(n=int(len(X)), reference="torch", runtimes=out, reference_accuracy=_accuracy(ref, y))


# --------------------------------------------------------------------------------------------
# int8 quantization (onnxruntime.quantization)


def _preprocessed(onnx_path: str | os.PathLike, workdir: str) -> str:
    """Shape inference + graph optimisation recommended before quantization; falls back to the input."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = os.path.join(workdir, "pre.onnx")
    try:
        quant_pre_process(os.fspath(onnx_path), out, skip_symbolic_shape=False)
        return out
    except Exception:  # pragma: no cover - pre-processing is an optimisation only
        return os.fspath(onnx_path)


def cpu_has_vnni() -> bool | None:
    """Whether this x86 CPU has VNNI int8 dot products (AVX512-VNNI or AVX-VNNI); None when it cannot tell
    (not Linux, or not x86)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        return None
    return None


def _reduce_range(reduce_range: bool | None) -> bool:
    """None = auto: 7-bit weights on x86 CPUs without VNNI. There onnxruntime's u8 x s8 kernels sum pairs of
    products in 16 bits, which saturate with full-range 8-bit weights (measured on an AVX2-only AMD EPYC:
    a static-int8 digits CNN agreed with fp32 on 87.8% of 997 digits with 8-bit weights, 98.8% with 7-bit)."""
    if reduce_range is not None:
        return bool(reduce_range)
    return cpu_has_vnni() is False


def quantize_dynamic_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    op_types: tuple[str, ...] = ("MatMul", "Gemm"),
    reduce_range: bool | None = None,
) -> None:
    """Dynamic int8 quantization: int8 weights, activations quantized on the fly per batch.

    Only ``op_types`` are quantized (default the fully-connected layers: onnxruntime's CPU
    ``ConvInteger`` kernels are slow or missing for int8 weights, so convolutions stay fp32; use
    :func:`quantize_static_int8` for conv-heavy models). ``reduce_range``: 7-bit weights; None = on x86
    CPUs without VNNI (see :func:`cpu_has_vnni`). Quantize on the kind of machine that will serve.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = _read_metadata(onnx_path)
    reduce = _reduce_range(reduce_range)
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocessed(onnx_path, tmp)
        quantize_dynamic(src, os.fspath(out_path), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types),
                         reduce_range=reduce)
    _set_metadata(out_path, {**meta, "precision": "int8-dynamic", "reduce_range": str(reduce).lower()})


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over an array, in fixed-size batches."""

    def __init__(self, input_name: str, X: np.ndarray, batch_size: int) -> None:
        self._input_name = input_name
        self._X = np.ascontiguousarray(X, dtype=np.float32)
        self._batch_size = batch_size
        self._it: Iterator[dict] = self._batches()

    def _batches(self) -> Iterator[dict]:
        for start in range(0, len(self._X), self._batch_size):
            yield {self._input_name: self._X[start : start + self._batch_size]}

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def quantize_static_int8(
    onnx_path: str | os.PathLike,
    out_path: str | os.PathLike,
    calibration_X: np.ndarray,
    *,
    per_channel: bool = True,
    batch_size: int = 32,
    reduce_range: bool | None = None,
) -> None:
    """Static int8 quantization in QDQ format, calibrated (min/max) on ``calibration_X``.

    Weights int8 (per channel by default), activations uint8. The final Softmax stays fp32 so the
    probabilities keep full resolution. ``calibration_X`` should be a few hundred real samples of
    the serving distribution (the training set is fine). ``reduce_range``: 7-bit weights; None = on x86
    CPUs without VNNI (see :func:`cpu_has_vnni`). Quantize on the kind of machine that will serve.
    """
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    X = np.asarray(calibration_X, dtype=np.float32)
    if X.ndim < 2 or len(X) == 0:
        raise EmptyData("calibration_X must be a non-empty batch", details={"shape": list(X.shape)})
    meta = _read_metadata(onnx_path)
    reduce = _reduce_range(reduce_range)
    input_name = onnxruntime.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    with tempfile.TemporaryDirectory() as tmp:
        src = _preprocessed(onnx_path, tmp)
        quantize_static(
            src,
            os.fspath(out_path),
            _CalibrationReader(input_name, X, batch_size),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Relu", "MaxPool", "GlobalAveragePool", "AveragePool", "Add", "Mul", "Concat"],
            reduce_range=reduce,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    _set_metadata(out_path, {**meta, "precision": "int8-static", "reduce_range": str(reduce).lower()})
