"""``sklearn-probe``: a logistic-regression probe on Looplab's label-free image embeddings, as a learner plug-in.

Features: :func:`ml.features.label_free_embeddings` (128-d, unit norm, no fitting) of the images as the image
loader decodes them (32x32). Model: scikit-learn's ``LogisticRegression`` (multinomial, L2, ``C``), with the
dataset's sample weights. Its probabilities are computed from the learned linear layer as
``softmax(E @ coef_.T + intercept_)`` — exactly what ``predict_proba`` gives, and exactly what the exported ONNX
graph (Gemm + Softmax, written with ``onnx.helper``, opset 17) computes, so torch-free parity is exact up to
float32 rounding. Labels that have no training sample get probability 0.

Importing this module imports numpy and the light ``ml`` modules only; scikit-learn and onnx come on use.
"""
from __future__ import annotations

import io
import json
import time
from typing import Any, ClassVar, Sequence

import numpy as np

from ml.errors import CorruptData, InvalidInput
from ml.learners.base import Dataset, EvalReport, OnnxExport, ParityCheck, Predictions, ProgressFn, check_dataset
from ml.learners.classification import (ClassificationRunner, classification_parity, decode_probs,
                                        linear_softmax_onnx, preprocess, target_indices)

__all__ = ["SklearnProbe"]

SAVE_FORMAT = 1
_ABSENT = -1e4  # the logit bias of a label without training samples: softmax gives it 0 (float32 too)


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


class SklearnProbe:
    """Logistic regression on label-free embeddings (see the module docstring). ``C``: inverse L2 strength;
    ``max_iter``; ``random_state`` (kept for the contract; lbfgs is deterministic). Learned: ``labels_``,
    ``coef_`` (C_labels, 128) float32, ``intercept_`` (C_labels,) float32, ``fit_seconds_``."""

    name: ClassVar[str] = "sklearn-probe"
    modality: ClassVar[str] = "image"
    task_type: ClassVar[str] = "classification"
    image_size: ClassVar[int] = 32

    def __init__(self, *, C: float = 10.0, max_iter: int = 2000, random_state: int = 0) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def get_params(self) -> dict:
        return {"C": self.C, "max_iter": self.max_iter, "random_state": self.random_state}

    @property
    def preprocessing(self) -> dict:
        from ml.features import FEATURES_VERSION

        return {"modality": "image", "loader": {"size": self.image_size}, "features": "label_free",
                "features_version": FEATURES_VERSION}

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise InvalidInput("SklearnProbe is not fitted", code="invalid_input")

    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "SklearnProbe":
        from sklearn.linear_model import LogisticRegression

        check_dataset(data, min_samples=2)
        y = target_indices(data.targets, data.labels)
        present = np.unique(y)
        if len(present) < 2:
            raise InvalidInput("the probe needs labeled samples of at least two classes", code="not_enough_labels",
                               details={"classes": [data.labels[i] for i in present]})
        t0 = time.perf_counter()
        if progress is not None:
            progress(0.0, f"embedding {len(y)} images")
        E = preprocess(data.contents, self.preprocessing)
        if progress is not None:
            progress(50.0, "fitting the logistic regression")
        clf = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter), random_state=self.random_state)
        w = None if data.sample_weight is None else np.asarray(data.sample_weight, dtype=np.float64)
        clf.fit(E, y, sample_weight=w)
        coef = np.asarray(clf.coef_, dtype=np.float64)
        icpt = np.asarray(clf.intercept_, dtype=np.float64)
        if len(clf.classes_) == 2:  # binary: sigmoid(z) = softmax([0, z])
            coef = np.vstack([np.zeros_like(coef), coef])
            icpt = np.concatenate([[0.0], icpt])
        W = np.zeros((len(data.labels), E.shape[1]))
        b = np.full(len(data.labels), _ABSENT)
        W[clf.classes_], b[clf.classes_] = coef, icpt
        self.labels_ = tuple(data.labels)
        self.coef_ = W.astype(np.float32)
        self.intercept_ = b.astype(np.float32)
        self.fit_seconds_ = time.perf_counter() - t0
        if progress is not None:
            progress(100.0, "done")
        return self

    def _probs(self, E: np.ndarray) -> np.ndarray:
        return _softmax(E.astype(np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_)

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        self._check_fitted()
        E = preprocess(contents, self.preprocessing)
        probs = self._probs(E)
        results, unc = decode_probs(probs, self.labels_)
        return Predictions(results=results, uncertainty=unc, embedding=np.ascontiguousarray(E, dtype=np.float32),
                           extra={"probs": probs})

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport:
        from ml.metrics import evaluate

        predictions = predictions if predictions is not None else self.predict(data.contents)
        return evaluate("classification", predictions.results, data.targets, data.labels, data.slices)

    def _onnx(self) -> bytes:
        return linear_softmax_onnx(self.coef_, self.intercept_, name="sklearn_probe", modality="image")

    def export_onnx(self) -> OnnxExport:
        self._check_fitted()
        model = self._onnx()
        manifest = {"format": 1, "task_type": "classification", "modality": "image", "learner": self.name,
                    "labels": list(self.labels_), "preprocessing": self.preprocessing,
                    "outputs": {"probs": "softmax (N, C)", "embedding": "(N, 128) label-free"},
                    "decoding": "argmax", "uncertainty": "entropy / log(C)", "opset": 17}
        return OnnxExport(model=model, manifest=manifest, runner=ClassificationRunner(model, manifest))

    def parity(self, export: OnnxExport, contents: Sequence[bytes]) -> ParityCheck:
        self._check_fitted()
        E = preprocess(contents, self.preprocessing)
        runner = export.runner if isinstance(export.runner, ClassificationRunner) else \
            ClassificationRunner(export.model, export.manifest)
        probs, _ = runner._session.run(E)
        return classification_parity(self._probs(E), probs, self.labels_)

    def to_bytes(self) -> bytes:
        self._check_fitted()
        head = {"format": SAVE_FORMAT, "learner": self.name, "params": self.get_params(), "labels": list(self.labels_),
                "fit_seconds": self.fit_seconds_}
        buf = io.BytesIO()
        np.savez(buf, head=np.array(json.dumps(head)), coef=self.coef_, intercept=self.intercept_)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SklearnProbe":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                head: dict[str, Any] = json.loads(str(z["head"]))
                coef, icpt = z["coef"], z["intercept"]
        except Exception as exc:
            raise CorruptData("not a readable sklearn-probe file", code="corrupt_model",
                              details={"error": f"{type(exc).__name__}: {exc}"}) from exc
        if head.get("format") != SAVE_FORMAT or head.get("learner") != cls.name:
            raise InvalidInput("not a sklearn-probe file", code="unsupported_model_format",
                               details={"format": head.get("format"), "learner": head.get("learner")})
        self = cls(**head["params"])
        self.labels_ = tuple(head["labels"])
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = icpt.astype(np.float32)
        self.fit_seconds_ = float(head.get("fit_seconds") or 0.0)
        return self
