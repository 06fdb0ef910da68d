"""The model contract: what every learner implements, for every task type.

A *learner* turns labeled contents into a model and the model into predictions, for one (modality, task type):

- ``fit(data, validation=None, progress=None)`` trains on a frozen :class:`Dataset` (stored contents as bytes,
  targets in the public API's annotation shapes, per-sample weights, seeded by ``random_state``) and returns
  ``self``; learned attributes end in ``_`` (scikit-learn's conventions).
- ``predict(contents)`` → :class:`Predictions`: per sample the task type's result shape *with scores* (the
  annotation shapes of the public API plus ``score``/``scores``), a per-sample uncertainty (higher = more worth
  labeling) and an embedding (one float32 vector per sample, for batch diversity and drift).
- ``evaluate(data, predictions=None)`` → :class:`EvalReport` (the task type's reference metrics, per class, per
  slice, and one score per sample for paired comparisons); the metrics are the task type's, not the learner's
  (:mod:`ml.learners.metrics`), so two learners of a task type compare on the same figures.
- ``export_onnx()`` → :class:`OnnxExport`: the network as ONNX plus a :class:`OnnxRunner` that predicts with
  onnxruntime through the **same** preprocessing and decoding (non-maximum suppression, region decoding, box
  fitting) as the torch model, and :meth:`Learner.parity` checks both agree.
- ``to_bytes()`` / ``from_bytes()``: the fitted learner as one self-describing blob (``torch.load`` with
  ``weights_only=True`` where torch is involved).

Preprocessing belongs to the learner: contents come in as the stored bytes (PNG/JPEG/…, WAV/FLAC/OGG, PLY/PCD/XYZ,
validated at ingest), so a learner picks its own input size, features and augmentation, and an uploaded ONNX model
describes its own in a manifest.

Results by task type (coordinates as in the annotation API: 0–1 for images, seconds for audio, the cloud's units):

- ``classification``: ``{"label", "scores": {label: p}}``
- ``detection``: ``{"boxes": [{"label", "x", "y", "w", "h", "score"}]}``
- ``audio_regions``: ``{"regions": [{"label", "start", "end", "score"}]}``
- ``point_segmentation``: ``{"point_labels": [int, ...], "point_scores": [float, ...]}`` (label index per point and
  its probability; ``Predictions.extra["point_proba"]`` may hold the full ``(P, C)`` arrays)
- ``cuboids``: ``{"cuboids": [{"label", "center": [x, y, z], "size": [l, w, h], "yaw", "score"}]}``

This module imports numpy and the standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ml.errors import InvalidInput

__all__ = ["TASK_TYPES", "ProgressFn", "Dataset", "Predictions", "EvalReport", "ParityCheck", "OnnxRunner",
           "OnnxExport", "Learner", "check_dataset"]

TASK_TYPES = ("classification", "detection", "audio_regions", "point_segmentation", "cuboids")

# progress(percent 0-100, message): called from fit at least once per epoch; raising from it stops training
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class Dataset:
    """A frozen dataset version in memory.

    ``contents[i]`` is sample i's stored bytes, ``targets[i]`` its label in the task type's annotation shape
    (label names, not indices; the shapes above without scores); ``labels`` the project's label set in index
    order; ``sample_weight`` (N,) non-negative floats or None; ``slices`` name → boolean mask (N,) for per-slice
    metrics; ``ids`` the sample ids (for reports), default 0..N-1.
    """

    contents: Sequence[bytes]
    targets: Sequence[Mapping[str, Any]]
    labels: tuple[str, ...]
    sample_weight: np.ndarray | None = None
    slices: Mapping[str, np.ndarray] = field(default_factory=dict)
    ids: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.contents)

    def subset(self, index: Sequence[int] | np.ndarray) -> "Dataset":
        idx = np.asarray(index, dtype=np.int64)
        return Dataset(
            contents=[self.contents[i] for i in idx], targets=[self.targets[i] for i in idx], labels=self.labels,
            sample_weight=None if self.sample_weight is None else np.asarray(self.sample_weight)[idx],
            slices={k: np.asarray(v, dtype=bool)[idx] for k, v in self.slices.items()},
            ids=None if self.ids is None else [self.ids[i] for i in idx])


def check_dataset(data: Dataset, *, min_samples: int = 1) -> None:
    """Shape checks every learner runs before fitting (typed errors, code ``invalid_input``)."""
    n = len(data.contents)
    if n < min_samples:
        raise InvalidInput(f"need at least {min_samples} labeled samples to train; got {n}",
                           code="not_enough_labels", details={"labeled": n, "needed": min_samples})
    if len(data.targets) != n:
        raise InvalidInput(f"{n} contents but {len(data.targets)} targets", code="invalid_input")
    if not data.labels or len(set(data.labels)) != len(data.labels):
        raise InvalidInput("labels must be a non-empty list of distinct names", code="invalid_input")
    if data.sample_weight is not None:
        w = np.asarray(data.sample_weight, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise InvalidInput("sample_weight must be (N,) finite, non-negative, not all zero", code="invalid_input")
    for name, mask in data.slices.items():
        if np.asarray(mask).shape != (n,):
            raise InvalidInput(f"slice {name!r} must be a boolean mask of length {n}", code="invalid_input")


@dataclass(frozen=True)
class Predictions:
    """What a learner says about a batch: ``results[i]`` (the task type's shape with scores), ``uncertainty``
    (N,) float64 (higher = more worth labeling; comparable within one learner's batch), ``embedding`` (N, D)
    float32; ``extra`` learner-specific arrays (e.g. per-point probabilities) that metrics may use."""

    results: list[dict]
    uncertainty: np.ndarray
    embedding: np.ndarray
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class EvalReport:
    """A task type's evaluation. ``metrics`` the headline figures (``primary`` names the one the gate and the
    learning curve use, higher is better); ``per_class`` label → figures; ``per_slice`` slice → figures (the same
    keys as ``metrics``, plus ``n``); ``per_sample`` (N,) one score per sample in [0, 1] for paired tests
    (e.g. correct for classification, per-image AP-like F1 for detection); ``n`` the samples scored."""

    task_type: str
    primary: str
    metrics: Mapping[str, float]
    per_class: Mapping[str, Mapping[str, float]]
    per_slice: Mapping[str, Mapping[str, float]]
    per_sample: np.ndarray
    n: int

    def to_dict(self) -> dict:
        return {"task_type": self.task_type, "primary": self.primary, "metrics": dict(self.metrics),
                "per_class": {k: dict(v) for k, v in self.per_class.items()},
                "per_slice": {k: dict(v) for k, v in self.per_slice.items()},
                "per_sample": [float(x) for x in np.asarray(self.per_sample, dtype=np.float64)], "n": int(self.n)}


@dataclass(frozen=True)
class ParityCheck:
    """Torch vs onnxruntime on the same contents: the largest absolute difference of the raw network outputs,
    and the share of samples whose decoded results agree (same labels, boxes/regions/cuboids matched within
    ``tolerance``)."""

    n: int
    max_abs_diff: float
    agreement: float
    passed: bool
    tolerance: float

    def to_dict(self) -> dict:
        return {"n": self.n, "max_abs_diff": self.max_abs_diff, "agreement": self.agreement, "passed": self.passed,
                "tolerance": self.tolerance}


@runtime_checkable
class OnnxRunner(Protocol):
    """Predicts like the learner it was exported from, through onnxruntime (no torch import)."""

    labels: tuple[str, ...]

    def predict(self, contents: Sequence[bytes]) -> Predictions: ...


@dataclass(frozen=True)
class OnnxExport:
    """``model`` the ONNX file's bytes; ``manifest`` what a runner needs besides the graph (task type, labels,
    preprocessing and decoding parameters; JSON-serialisable); ``runner`` a ready :class:`OnnxRunner`."""

    model: bytes
    manifest: Mapping[str, Any]
    runner: OnnxRunner


@runtime_checkable
class Learner(Protocol):
    """The contract (see the module docstring). Class attributes ``modality`` and ``task_type`` say where it
    registers; ``name`` is its stable id in the registry (model versions record it)."""

    name: ClassVar[str]
    modality: ClassVar[str]
    task_type: ClassVar[str]

    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "Learner": ...

    def predict(self, contents: Sequence[bytes]) -> Predictions: ...

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport: ...

    def export_onnx(self) -> OnnxExport: ...

    def parity(self, export: OnnxExport, contents: Sequence[bytes]) -> ParityCheck: ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes) -> "Learner": ...
