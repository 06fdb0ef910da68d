"""Classification learners behind the contract (:mod:`ml.learners.base`): the per-modality networks of
:mod:`ml.nets`, trained by :func:`ml.training.train_classifier`, exported by :func:`ml.export.export_onnx`.

- :class:`ImageClassifier` (``"cnn"``), :class:`AudioClassifier` (``"cnn"``), :class:`PointCloudClassifier`
  (``"pointnet"``): one base class (:class:`NetClassifier`), three thin subclasses that only name the modality
  and the loader's input size.
- Contents (stored bytes) become the network input through the modality's batch loader
  (:func:`preprocess`, driven by a JSON-serialisable ``preprocessing`` dict that the ONNX manifest records).
- Decoding is one function, :func:`decode_probs`, used by the torch path and by :class:`ClassificationRunner`
  (onnxruntime): class probabilities → ``{"label", "scores": {label: p}}`` and the uncertainty.
- Uncertainty: the predictive entropy of the softmax, divided by ``log(C)`` (so in [0, 1]; 1 = uniform), the same
  quantity as :func:`ml.selection.scores.entropy`, scaled.
- Embedding: the network's penultimate layer (``TrainedModel.predict_and_embed``).

Importing this module imports numpy only; torch comes with :meth:`NetClassifier.fit` / :meth:`from_bytes`, and
:class:`ClassificationRunner` needs onnxruntime only (a serving process never imports torch).
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ml import modalities
from ml.errors import CorruptData, InvalidInput
from ml.learners.base import (Dataset, EvalReport, OnnxExport, ParityCheck, Predictions, ProgressFn,
                              check_dataset)

__all__ = ["NetClassifier", "ImageClassifier", "AudioClassifier", "PointCloudClassifier", "ClassificationRunner",
           "decode_probs", "preprocess", "target_indices", "classification_parity", "SAVE_FORMAT"]

SAVE_FORMAT = 1
PARITY_ATOL = 1e-4


# --------------------------------------------------------------------------- shared by torch, ONNX and plug-ins


def preprocess(contents: Sequence[bytes], preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Stored contents → the model input batch, as ``preprocessing`` says: ``{"modality", "loader": {kwargs of the
    modality's batch loader}, "features": None | "label_free"}`` (``label_free``: :func:`ml.features.
    label_free_embeddings` on top of the loader's batch, at ``features_version``)."""
    if len(contents) == 0:
        raise InvalidInput("no contents to predict on", code="empty_data")
    mod = modalities.get(preprocessing["modality"])
    X = getattr(mod.load_module(), mod.batch_loader)(list(contents), **dict(preprocessing.get("loader") or {}))
    features = preprocessing.get("features")
    if features is None:
        return X
    if features == "label_free":
        from ml.features import FEATURES_VERSION, label_free_embeddings

        if int(preprocessing.get("features_version", FEATURES_VERSION)) != FEATURES_VERSION:
            raise InvalidInput("the model was made with other label-free features; retrain it",
                               code="unsupported_model_format",
                               details={"features_version": preprocessing.get("features_version"),
                                        "current": FEATURES_VERSION})
        return label_free_embeddings(mod.name, X)
    raise InvalidInput(f"unknown features {features!r}", code="unsupported_model_format",
                       details={"features": features})


def decode_probs(probs: np.ndarray, labels: Sequence[str]) -> tuple[list[dict], np.ndarray]:
    """Class probabilities ``(N, C)`` → (results ``{"label", "scores": {label: p}}``, uncertainty (N,) float64).

    The label is the arg-max (the first on ties); the uncertainty is the normalised predictive entropy
    ``H(p) / log(C)`` in [0, 1]. The one decoding of every classification learner and runner."""
    from ml.selection.scores import entropy

    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != len(labels):
        raise InvalidInput("probabilities must be (N, C) with one column per label", code="invalid_input",
                           details={"shape": list(P.shape), "labels": len(labels)})
    top = P.argmax(axis=1)
    results = [{"label": labels[int(k)], "scores": {lab: float(p) for lab, p in zip(labels, row)}}
               for k, row in zip(top, P)]
    denom = math.log(len(labels)) if len(labels) > 1 else 1.0
    uncertainty = np.clip(entropy(P).astype(np.float64) / denom, 0.0, 1.0)
    return results, uncertainty


def target_indices(targets: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> np.ndarray:
    """Classification targets ``{"label": name}`` → class indices (N,) int64 (``invalid_input`` on anything
    else, with the sample's index)."""
    lookup = {name: i for i, name in enumerate(labels)}
    out = np.empty(len(targets), dtype=np.int64)
    for i, t in enumerate(targets):
        name = t.get("label") if isinstance(t, Mapping) else None
        if name not in lookup:
            raise InvalidInput(f"target {i} must be {{'label': one of the labels}}, got {t!r}", code="invalid_input",
                               details={"index": i, "labels": list(labels)})
        out[i] = lookup[name]
    return out


def classification_parity(ref_probs: np.ndarray, probs: np.ndarray, labels: Sequence[str], *,
                          atol: float = PARITY_ATOL) -> ParityCheck:
    """Raw outputs (probabilities) compared by max abs difference; decoded results by the share of equal labels."""
    a, b = np.asarray(ref_probs, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    if a.shape != b.shape:
        raise InvalidInput("outputs to compare differ in shape", code="invalid_input",
                           details={"reference": list(a.shape), "other": list(b.shape)})
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    ra, _ = decode_probs(a, labels)
    rb, _ = decode_probs(b, labels)
    agreement = float(np.mean([x["label"] == y["label"] for x, y in zip(ra, rb)])) if ra else 1.0
    return ParityCheck(n=int(len(a)), max_abs_diff=diff, agreement=agreement,
                       passed=bool(agreement == 1.0 and diff <= atol), tolerance=float(atol))


def linear_softmax_onnx(W: np.ndarray, b: np.ndarray, *, name: str, modality: str) -> bytes:
    """A linear softmax head on precomputed features as an ONNX graph in the classification runner's contract
    (input ``(batch, D)`` features, outputs ``probs`` and ``embedding`` = the features): what a probe on the
    label-free embeddings exports (the built-in ``probe`` learner, the example plug-in)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    c, d = W.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "W", "b"], ["logits"], transB=1),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
         helper.make_node("Identity", ["input"], ["embedding"])],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", c]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", d])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="looplab")
    model.ir_version = 8
    for key, value in {"modality": modality, "task": "classification", "n_classes": str(c)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"looplab.{key}", value
    onnx.checker.check_model(model)
    return model.SerializeToString()


class ClassificationRunner:
    """An exported classifier run by onnxruntime (:class:`ml.serving.OnnxClassifier`: outputs ``probs`` and
    ``embedding``) with the manifest's preprocessing and :func:`decode_probs`. No torch import."""

    def __init__(self, model: bytes, manifest: Mapping[str, Any], *, threads: int | None = None) -> None:
        from ml.serving import OnnxClassifier

        if manifest.get("task_type") != "classification":
            raise InvalidInput("not a classification model", code="unsupported_task_type",
                               details={"task_type": manifest.get("task_type")})
        self.labels: tuple[str, ...] = tuple(manifest["labels"])
        self.manifest = dict(manifest)
        self._session = OnnxClassifier(bytes(model), threads=threads)

    def raw(self, contents: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, embedding)`` straight from the graph."""
        return self._session.run(preprocess(contents, self.manifest["preprocessing"]))

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        probs, emb = self.raw(contents)
        results, unc = decode_probs(probs, self.labels)
        return Predictions(results=results, uncertainty=unc, embedding=np.ascontiguousarray(emb, dtype=np.float32),
                           extra={"probs": probs})


# --------------------------------------------------------------------------- the learners


class NetClassifier:
    """A classifier network for one modality behind the learner contract.

    Parameters (stored as given, scikit-learn style): ``epochs``, ``batch_size``, ``lr``, ``weight_decay``,
    ``patience`` (early stopping on the validation loss; without validation the epoch of lowest training loss is
    kept), ``augment``, ``class_weighting`` (see :class:`ml.training.TrainConfig`), ``arch`` (overrides of the
    default architecture, e.g. ``{"widths": [16, 32, 64]}``), ``device`` (``"auto"``: CUDA when present),
    ``random_state`` (the training seed: same seed, same data → same predictions on CPU).

    Learned attributes: ``labels_``, ``model_`` (:class:`ml.training.TrainedModel`), ``history_``,
    ``fit_seconds_``.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    task_type: ClassVar[str] = "classification"
    # the batch loader's keyword arguments (the network's input size); recorded in the export manifest
    loader: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, *, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4,
                 patience: int = 5, augment: bool = True, class_weighting: bool = True,
                 arch: Mapping[str, Any] | None = None, device: str = "auto", random_state: int = 0) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.augment = augment
        self.class_weighting = class_weighting
        self.arch = arch
        self.device = device
        self.random_state = random_state

    _PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "patience", "augment", "class_weighting", "arch",
               "device", "random_state")

    def get_params(self) -> dict:
        return {k: (dict(getattr(self, k)) if k == "arch" and getattr(self, k) is not None else getattr(self, k))
                for k in self._PARAMS}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    # ---- helpers

    @property
    def preprocessing(self) -> dict:
        return {"modality": self.modality, "loader": dict(self.loader), "features": None}

    def _inputs(self, contents: Sequence[bytes]) -> np.ndarray:
        return preprocess(contents, self.preprocessing)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InvalidInput(f"{type(self).__name__} is not fitted", code="invalid_input")

    # ---- contract

    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "NetClassifier":
        import time

        from ml.training import TrainConfig, train_classifier

        check_dataset(data, min_samples=2)
        if len(data.labels) < 2:
            raise InvalidInput("classification needs at least two labels", code="invalid_labels",
                               details={"labels": list(data.labels)})
        y = target_indices(data.targets, data.labels)
        X = self._inputs(data.contents)
        Xv = yv = None
        if validation is not None and len(validation):
            if tuple(validation.labels) != tuple(data.labels):
                raise InvalidInput("validation must have the training data's labels", code="invalid_input")
            yv = target_indices(validation.targets, data.labels)
            Xv = self._inputs(validation.contents)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             weight_decay=self.weight_decay, patience=self.patience, seed=int(self.random_state),
                             device=self.device, class_weighting=self.class_weighting, augment=self.augment)
        t0 = time.perf_counter()
        model = train_classifier(self.modality, X, y, Xv, yv, n_classes=len(data.labels), config=config,
                                 sample_weight=data.sample_weight, progress=progress,
                                 arch=dict(self.arch) if self.arch else None)
        self.model_ = model
        self.labels_ = tuple(data.labels)
        self.history_ = list(model.history)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _probs_and_embedding(self, contents: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return self.model_.predict_and_embed(self._inputs(contents))

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        probs, emb = self._probs_and_embedding(contents)
        results, unc = decode_probs(probs, self.labels_)
        return Predictions(results=results, uncertainty=unc, embedding=np.ascontiguousarray(emb, dtype=np.float32),
                           extra={"probs": probs})

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport:
        from ml.metrics import evaluate

        predictions = predictions if predictions is not None else self.predict(data.contents)
        return evaluate("classification", predictions.results, data.targets, data.labels, data.slices)

    def export_onnx(self) -> OnnxExport:
        from ml.export import DEFAULT_OPSET, export_onnx

        self._check_fitted()
        with tempfile.TemporaryDirectory(prefix="looplab-export-") as tmp:
            path = os.path.join(tmp, "model.onnx")
            export_onnx(self.model_, path, opset=DEFAULT_OPSET)
            with open(path, "rb") as fh:
                model = fh.read()
        manifest = {"format": 1, "task_type": "classification", "modality": self.modality, "learner": self.name,
                    "labels": list(self.labels_), "preprocessing": self.preprocessing,
                    "outputs": {"probs": "softmax (N, C)", "embedding": f"(N, {self.model_.embed_dim})"},
                    "decoding": "argmax", "uncertainty": "entropy / log(C)", "opset": DEFAULT_OPSET}
        return OnnxExport(model=model, manifest=manifest, runner=ClassificationRunner(model, manifest))

    def parity(self, export: OnnxExport, contents: Sequence[bytes]) -> ParityCheck:
        ref, _ = self._probs_and_embedding(contents)
        runner = export.runner if isinstance(export.runner, ClassificationRunner) else \
            ClassificationRunner(export.model, export.manifest)
        probs, _ = runner.raw(contents)
        return classification_parity(ref, probs, self.labels_)

    def to_bytes(self) -> bytes:
        import torch

        self._check_fitted()
        blob = {"format": SAVE_FORMAT, "learner": self.name, "modality": self.modality,
                "params": self.get_params(), "labels": list(self.labels_), "fit_seconds": float(self.fit_seconds_),
                "model": self.model_.to_dict()}
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NetClassifier":
        import torch

        from ml.training import TrainedModel

        try:
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip errors: not a learner blob
            raise CorruptData("not a readable learner file", code="corrupt_model",
                              details={"error": f"{type(exc).__name__}: {exc}"}) from exc
        if not isinstance(blob, dict) or blob.get("format") != SAVE_FORMAT or blob.get("learner") != cls.name \
                or blob.get("modality") != cls.modality:
            raise InvalidInput(f"not a {cls.__name__} file", code="unsupported_model_format",
                               details={k: blob.get(k) for k in ("format", "learner", "modality")}
                               if isinstance(blob, dict) else {})
        params = {k: v for k, v in blob["params"].items() if k in cls._PARAMS}
        self = cls(**params)
        buf = io.BytesIO()
        torch.save(blob["model"], buf)
        self.model_ = TrainedModel.load(buf.getvalue())
        self.labels_ = tuple(blob["labels"])
        self.history_ = list(self.model_.history)
        self.fit_seconds_ = float(blob.get("fit_seconds") or 0.0)
        return self


class ImageClassifier(NetClassifier):
    """The image CNN (:class:`ml.nets.ImageCNN`) on 32x32 RGB (PNG/JPEG/WEBP/BMP decoded and resized)."""

    name = "cnn"
    modality = "image"
    loader = {"size": 32}


class AudioClassifier(NetClassifier):
    """The log-mel CNN (:class:`ml.nets.AudioCNN`) on the loudest second of each clip (WAV/FLAC/OGG)."""

    name = "cnn"
    modality = "audio"
    loader = {}


class PointCloudClassifier(NetClassifier):
    """PointNet (:class:`ml.nets.PointNetClassifier`) on 1024 points per cloud (PLY/PCD/XYZ), unit-sphere
    normalised."""

    name = "pointnet"
    modality = "pointcloud"
    loader = {"n_points": 1024}
