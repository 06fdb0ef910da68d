"""``probe``: a linear probe (multinomial logistic regression) on the label-free embeddings, for any modality.

Features: :func:`ml.features.label_free_embeddings` (128-d, unit norm, no fitting) of the contents as the
modality's batch loader decodes them — the embeddings the first selection round already uses, so they exist
before any label. Model: scikit-learn's ``LogisticRegression`` (multinomial, L2, ``C``) with the dataset's sample
weights. Its probabilities are ``softmax(E @ coef_.T + intercept_)`` — what ``predict_proba`` gives and what the
exported ONNX graph (Gemm + Softmax, opset 17) computes, so parity is exact up to float32 rounding. Labels without
a training sample get probability 0. Served like any classification export (:class:`ml.learners.classification.
ClassificationRunner`, manifest preprocessing ``"features": "label_free"``); its ``embedding`` output is the
label-free embedding itself.

Why a built-in probe: with a few dozen labels a network trained from scratch is often near chance on data with
strong nuisance variation, while a linear model on fixed features is not (``python -m bench.first_model``,
bench/README.md). The built-in classification pipeline fits both on small training sets and keeps the one that
validates better (:mod:`apps.training.services`); a run can also ask for it by name (``"learner": "probe"``).

:func:`probe_cv_accuracy` is the cross-validated accuracy of the same model on precomputed embeddings (the
pipeline's model choice and the benchmark use it). Importing this module imports numpy and the light ``ml``
modules only; scikit-learn and onnx come on use.
"""
from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ml.errors import CorruptData, InvalidInput
from ml.learners.base import Dataset, EvalReport, OnnxExport, ParityCheck, Predictions, ProgressFn, check_dataset
from ml.learners.classification import (ClassificationRunner, classification_parity, decode_probs,
                                        linear_softmax_onnx, preprocess, target_indices)

__all__ = ["EmbeddingProbe", "ImageProbe", "AudioProbe", "PointCloudProbe", "fit_linear_probe", "probe_cv_accuracy",
           "probe_class", "ModelChoice", "choose_model", "cross_validate_choice", "PROBE_MAX_LABELS"]

SAVE_FORMAT = 1
ABSENT_LOGIT = -1e4  # the logit bias of a label without training samples: softmax gives it 0 (float32 too)
DEFAULT_C = 100.0  # measured: python -m bench.first_model --c-grid (100 is best or within 1 point at 20-100 labels)


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


def fit_linear_probe(E: np.ndarray, y: np.ndarray, n_labels: int, *, C: float = DEFAULT_C, max_iter: int = 2000,
                     sample_weight: np.ndarray | None = None, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on embeddings ``E`` (N, D) with class indices ``y`` in [0, n_labels) →
    ``(W (n_labels, D), b (n_labels,))`` float64 so that ``softmax(E @ W.T + b)`` are its probabilities; a label
    without samples gets the bias :data:`ABSENT_LOGIT`. Needs two classes or more."""
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    if len(present) < 2:
        raise InvalidInput("the probe needs labeled samples of at least two classes", code="not_enough_labels",
                           details={"classes": [int(c) for c in present]})
    clf = LogisticRegression(C=float(C), max_iter=int(max_iter), random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on tiny label sets is harmless here
        clf.fit(E, y, sample_weight=None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64))
    coef = np.asarray(clf.coef_, dtype=np.float64)
    icpt = np.asarray(clf.intercept_, dtype=np.float64)
    if len(clf.classes_) == 2:  # binary: sigmoid(z) = softmax([0, z])
        coef = np.vstack([np.zeros_like(coef), coef])
        icpt = np.concatenate([[0.0], icpt])
    W = np.zeros((n_labels, E.shape[1]))
    b = np.full(n_labels, ABSENT_LOGIT)
    W[clf.classes_], b[clf.classes_] = coef, icpt
    return W, b


def probe_cv_accuracy(E: np.ndarray, y: np.ndarray, n_labels: int, *, folds: int = 5, C: float = DEFAULT_C,
                      sample_weight: np.ndarray | None = None, random_state: int = 0) -> tuple[float, int]:
    """Out-of-fold accuracy of :func:`fit_linear_probe` on ``(E, y)``: stratified ``folds``-fold (fewer when the
    rarest class has fewer samples, at least 2), each sample predicted by the probe fitted without it. Returns
    ``(accuracy, samples scored)``; a fold whose training part has one class predicts that class."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    k = int(min(folds, len(y)))
    if k < 2:
        raise InvalidInput("cross-validation needs two samples or more", code="not_enough_labels")
    smallest = int(counts[counts > 0].min())
    splitter = (StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state) if smallest >= k
                else KFold(n_splits=k, shuffle=True, random_state=random_state))
    pred = np.empty(len(y), dtype=np.int64)
    for tr, te in splitter.split(E, y):
        if len(np.unique(y[tr])) < 2:
            pred[te] = y[tr][0]
            continue
        w = None if sample_weight is None else np.asarray(sample_weight)[tr]
        W, b = fit_linear_probe(E[tr], y[tr], n_labels, C=C, sample_weight=w, random_state=random_state)
        pred[te] = (E[te] @ W.T + b).argmax(axis=1)
    return float(np.mean(pred == y)), int(len(y))


class EmbeddingProbe:
    """Logistic regression on label-free embeddings (see the module docstring). ``C``: inverse L2 strength;
    ``max_iter``; ``random_state`` (kept for the contract; lbfgs is deterministic). Learned: ``labels_``,
    ``coef_`` (C_labels, 128) float32, ``intercept_`` (C_labels,) float32, ``fit_seconds_``."""

    name: ClassVar[str] = "probe"
    modality: ClassVar[str]
    task_type: ClassVar[str] = "classification"
    loader: ClassVar[dict] = {}  # the batch loader's keyword arguments, as the modality's network uses them

    def __init__(self, *, C: float = DEFAULT_C, max_iter: int = 2000, random_state: int = 0) -> None:
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    def get_params(self) -> dict:
        return {"C": self.C, "max_iter": self.max_iter, "random_state": self.random_state}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()) + ")"

    @property
    def preprocessing(self) -> dict:
        from ml.features import FEATURES_VERSION

        return {"modality": self.modality, "loader": dict(self.loader), "features": "label_free",
                "features_version": FEATURES_VERSION}

    def embed(self, contents: Sequence[bytes]) -> np.ndarray:
        """The label-free embeddings the probe reads, (N, 128) float32."""
        return preprocess(contents, self.preprocessing)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise InvalidInput(f"{type(self).__name__} is not fitted", code="invalid_input")

    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "EmbeddingProbe":
        check_dataset(data, min_samples=2)
        y = target_indices(data.targets, data.labels)
        t0 = time.perf_counter()
        if progress is not None:
            progress(0.0, f"embedding {len(y)} samples")
        E = self.embed(data.contents)
        if progress is not None:
            progress(50.0, "fitting the logistic regression")
        return self.fit_embeddings(E, y, data.labels, sample_weight=data.sample_weight, t0=t0)

    def fit_embeddings(self, E: np.ndarray, y: np.ndarray, labels: Sequence[str], *,
                       sample_weight: np.ndarray | None = None, t0: float | None = None) -> "EmbeddingProbe":
        """Fit on precomputed label-free embeddings ``E`` and class indices ``y`` (the pipeline's model choice
        embeds once for the cross-validation and the final fit)."""
        t0 = time.perf_counter() if t0 is None else t0
        W, b = fit_linear_probe(np.asarray(E, dtype=np.float64), np.asarray(y, dtype=np.int64), len(labels),
                                C=self.C, max_iter=self.max_iter, sample_weight=sample_weight,
                                random_state=self.random_state)
        self.labels_ = tuple(labels)
        self.coef_ = W.astype(np.float32)
        self.intercept_ = b.astype(np.float32)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def probs_of_embeddings(self, E: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return _softmax(np.asarray(E, dtype=np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_)

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        E = self.embed(contents)
        probs = self.probs_of_embeddings(E)
        results, unc = decode_probs(probs, self.labels_)
        return Predictions(results=results, uncertainty=unc, embedding=np.ascontiguousarray(E, dtype=np.float32),
                           extra={"probs": probs})

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport:
        from ml.metrics import evaluate

        predictions = predictions if predictions is not None else self.predict(data.contents)
        return evaluate("classification", predictions.results, data.targets, data.labels, data.slices)

    def _onnx(self) -> bytes:
        return linear_softmax_onnx(self.coef_, self.intercept_, name="looplab_probe", modality=self.modality)

    def export_onnx(self) -> OnnxExport:
        self._check_fitted()
        model = self._onnx()
        manifest = {"format": 1, "task_type": "classification", "modality": self.modality, "learner": self.name,
                    "labels": list(self.labels_), "preprocessing": self.preprocessing,
                    "outputs": {"probs": "softmax (N, C)", "embedding": f"(N, {self.coef_.shape[1]}) label-free"},
                    "decoding": "argmax", "uncertainty": "entropy / log(C)", "opset": 17}
        return OnnxExport(model=model, manifest=manifest, runner=ClassificationRunner(model, manifest))

    def parity(self, export: OnnxExport, contents: Sequence[bytes]) -> ParityCheck:
        E = self.embed(contents)
        runner = export.runner if isinstance(export.runner, ClassificationRunner) else \
            ClassificationRunner(export.model, export.manifest)
        probs, _ = runner._session.run(E)
        return classification_parity(self.probs_of_embeddings(E), probs, self.labels_)

    def to_bytes(self) -> bytes:
        self._check_fitted()
        head = {"format": SAVE_FORMAT, "learner": self.name, "modality": self.modality, "params": self.get_params(),
                "labels": list(self.labels_), "fit_seconds": self.fit_seconds_}
        buf = io.BytesIO()
        np.savez(buf, head=np.array(json.dumps(head)), coef=self.coef_, intercept=self.intercept_)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "EmbeddingProbe":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                head: dict[str, Any] = json.loads(str(z["head"]))
                coef, icpt = z["coef"], z["intercept"]
        except Exception as exc:
            raise CorruptData("not a readable probe file", code="corrupt_model",
                              details={"error": f"{type(exc).__name__}: {exc}"}) from exc
        if head.get("format") != SAVE_FORMAT or head.get("learner") != cls.name or head.get("modality") != cls.modality:
            raise InvalidInput(f"not a {cls.__name__} file", code="unsupported_model_format",
                               details={k: head.get(k) for k in ("format", "learner", "modality")})
        self = cls(**head["params"])
        self.labels_ = tuple(head["labels"])
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = icpt.astype(np.float32)
        self.fit_seconds_ = float(head.get("fit_seconds") or 0.0)
        return self


class ImageProbe(EmbeddingProbe):
    """The probe on images (32x32, like the image CNN)."""

    modality = "image"
    loader = {"size": 32}


class AudioProbe(EmbeddingProbe):
    """The probe on audio clips (the log-mel loader's defaults)."""

    modality = "audio"
    loader = {}


class PointCloudProbe(EmbeddingProbe):
    """The probe on point clouds (1024 points per cloud)."""

    modality = "pointcloud"
    loader = {"n_points": 1024}


def probe_class(modality: str) -> type[EmbeddingProbe]:
    """The probe learner class of a modality (``invalid_input`` for one without label-free embeddings)."""
    for cls in (ImageProbe, AudioProbe, PointCloudProbe):
        if cls.modality == modality:
            return cls
    raise InvalidInput(f"no probe for modality {modality!r}", code="invalid_input", details={"modality": modality})


# --------------------------------------------------------------------------- the first-model choice

PROBE_MAX_LABELS = 200  # below this many training labels the built-in pipeline also fits the probe and compares
CV_FOLDS = 3  # folds of the cross-validation when the val split is too small to compare on
MIN_VAL_SAMPLES = 30  # a val split at least this large is compared on directly


@dataclass(frozen=True)
class ModelChoice:
    """Which model a small training set gets: ``chosen`` ("probe" or "cnn", the network of the modality), the
    two validation accuracies, how they were measured (``method``: "val split" or "k-fold cross-validation"), on
    how many samples, and ``why`` in words (shown on the model card)."""

    chosen: str
    probe_accuracy: float
    cnn_accuracy: float
    n_scored: int
    method: str
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_model(probe_accuracy: float, cnn_accuracy: float, n_scored: int, method: str) -> ModelChoice:
    """The rule: the probe unless the network validates strictly better (on a tie the probe, the lower-variance
    model: it has ~1.3k parameters to the network's tens of thousands)."""
    chosen = "probe" if probe_accuracy >= cnn_accuracy else "cnn"
    word = {"probe": "linear probe on label-free embeddings", "cnn": "network"}[chosen]
    tie = " (a tie goes to the probe)" if probe_accuracy == cnn_accuracy else ""
    why = (f"{word}: {method} accuracy {probe_accuracy:.2f} (probe) vs {cnn_accuracy:.2f} (network) "
           f"on {n_scored} samples{tie}")
    return ModelChoice(chosen, float(probe_accuracy), float(cnn_accuracy), int(n_scored), method, why)


def cross_validate_choice(modality: str, X: np.ndarray, E: np.ndarray, y: np.ndarray, n_labels: int, *,
                          train_config, folds: int = CV_FOLDS, sample_weight: np.ndarray | None = None,
                          C: float = DEFAULT_C, random_state: int = 0, progress: ProgressFn | None = None,
                          ) -> ModelChoice:
    """The probe and the modality's network (:func:`ml.training.train_classifier` with ``train_config``, early
    stopping on every 7th sample of the fold's training part, as the pipeline trains it) scored out of fold on the
    same stratified folds of ``(X | E, y)``; :func:`choose_model` on the two accuracies."""
    from sklearn.model_selection import KFold, StratifiedKFold

    from ml.training import train_classifier

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    k = int(min(folds, len(y)))
    if k < 2:
        raise InvalidInput("cross-validation needs two samples or more", code="not_enough_labels")
    splitter = (StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
                if int(counts[counts > 0].min()) >= k else KFold(n_splits=k, shuffle=True, random_state=random_state))
    hits_probe = hits_cnn = 0
    for f, (tr, te) in enumerate(splitter.split(E, y)):
        if progress is not None:
            progress(100.0 * f / k, f"cross-validation fold {f + 1}/{k}: network vs probe on {len(te)} held-out")
        w = None if sample_weight is None else np.asarray(sample_weight)[tr]
        if len(np.unique(y[tr])) < 2:
            hits_probe += int(np.sum(y[te] == y[tr][0]))
            hits_cnn += int(np.sum(y[te] == y[tr][0]))
            continue
        W, b = fit_linear_probe(E[tr], y[tr], n_labels, C=C, sample_weight=w, random_state=random_state)
        hits_probe += int(np.sum((E[te] @ W.T + b).argmax(axis=1) == y[te]))
        hold = np.arange(len(tr)) % 7 == 0
        fit, es = tr[~hold], tr[hold]
        model = train_classifier(modality, X[fit], y[fit], X[es], y[es], n_classes=n_labels, config=train_config,
                                 sample_weight=None if w is None else w[~hold])
        hits_cnn += int(np.sum(model.predict_proba(X[te]).argmax(axis=1) == y[te]))
    return choose_model(hits_probe / len(y), hits_cnn / len(y), len(y), f"{k}-fold cross-validation")
