"""Bring your own ONNX model: validate an uploaded ONNX file and its JSON manifest, so that Looplab runs it exactly
like its own exported models (through :func:`ml.learners.runners.onnx_runner`).

:func:`validate_upload` takes the file's bytes and the manifest (already parsed from JSON) and either returns a
:class:`ValidatedUpload` (the normalised manifest to store next to the file, what the graph looks like, and a test
inference's timing and summary) or raises a typed error from :mod:`ml.errors` whose ``code`` says which check
failed and whose message says where (``manifest.labels[3]``, ``outputs['probs'] dim 1``, ...). The checks, in order:

=========================  ==================  =====================================================================
code                       class               what was wrong
=========================  ==================  =====================================================================
``onnx_too_large``         ``TooLarge``        the file is larger than ``max_bytes`` (checked before parsing)
``onnx_invalid``           ``CorruptData``     not a parseable ONNX ``ModelProto``, or ``onnx.checker`` refuses it
``onnx_external_data``     ``InvalidInput``    a tensor keeps its data in an external file (never read: refused)
``onnx_opset``             ``InvalidInput``    an opset import outside :data:`ALLOWED_OPSETS` (custom domains too)
``onnx_manifest``          ``InvalidInput``    the manifest does not follow :func:`manifest_schema` for its task type
``onnx_io_mismatch``       ``InvalidInput``    graph inputs/outputs are not what the task type's runner feeds/reads
``onnx_inference_failed``  ``InvalidInput``    the test inference raised (onnxruntime's message is kept), or gave
                                               non-finite values / wrong shapes / probabilities that are not ones
=========================  ==================  =====================================================================

Every error's ``details`` holds at least ``{"check": <code>}`` and, where one applies, ``"path"`` (the manifest
path or graph tensor at fault). A sample content that cannot be decoded keeps its own typed error from the loader
(``corrupt_data``, ``unsupported_format``, ...) with ``details["index"]``.

What each task type's runner expects of the graph (the built-in learners' exports; ``N`` the batch, which must be
a dynamic axis except for ``audio_regions``, which runs one clip at a time):

- ``classification``: one float input whose shape is the preprocessing's batch (image ``(N, 3, size, size)``,
  audio ``(N, 1, n_mels, frames)``, point cloud ``(N, n_points, 3)``, ``features: "label_free"`` ``(N, 128)``);
  outputs ``probs`` ``(N, C)`` softmax and ``embedding`` ``(N, D)``.
- ``detection``: input ``input`` ``(N, 3, size, size)`` RGB in [0, 1]; outputs ``heatmap`` ``(N, C, H, W)``
  center logits, ``wh`` ``(N, 2, H, W)`` box size in output cells, ``offset`` ``(N, 2, H, W)``, ``embedding``
  ``(N, D)``; decoded CenterNet-style (:func:`ml.learners.detection.decode`).
- ``audio_regions``: input ``input`` ``(N, 1, 64, T)`` (16 kHz log-mel, 10 ms hop, ``T`` dynamic); outputs ``probs``
  ``(N, T, 1 + C)`` per-frame softmax with the background first, ``features`` ``(N, T, D)``.
- ``point_segmentation`` / ``cuboids``: input ``input`` ``(N, n_points, 3)``; outputs ``probs`` ``(N, n_points, K)``
  per-point softmax (segmentation ``K = C``, or 2 for a one-label project; cuboids ``K = 1 + C``, background
  first) and ``embedding`` ``(N, D)``.

Example manifests (``labels`` in the order of the output's class axis)::

    {"task_type": "classification", "labels": ["cat", "dog"],
     "preprocessing": {"modality": "image", "loader": {"size": 32}, "features": null}}

    {"task_type": "detection", "labels": ["car", "person"], "input": {"size": 96},
     "decoding": {"method": "centernet", "max_detections": 50, "score_threshold": 0.1, "nms_iou": 0.5}}

    {"task_type": "audio_regions", "labels": ["yes", "no"],
     "preprocessing": {"features": "logmel", "max_duration_s": 600},
     "decoding": {"onset": [0.5, 0.5], "offset": [0.3, 0.3], "median_frames": 7, "min_duration_s": 0.1,
                  "merge_gap_s": 0.1}}

    {"task_type": "point_segmentation", "labels": ["base", "pole", "shade"],
     "params": {"n_points": 1024, "normalize": "unit_sphere", "top_fraction": 0.1, "random_state": 0}}

    {"task_type": "cuboids", "labels": ["car", "pedestrian"],
     "params": {"n_points": 1024, "normalize": "ground", "top_fraction": 0.1, "random_state": 0,
                "cluster_eps": 0.25, "min_points": 15, "ground_margin": 0.05, "classifier": null}}

:func:`manifest_schema` gives the full schema of each (JSON Schema, with the ranges the validator enforces), and
:func:`validate_manifest` checks a manifest alone. A manifest a built-in learner's ``export_onnx`` wrote passes
as it is. Server limits (``max_pixels``, ``max_duration_s`` above the server's, allowed formats) are not the
model's to set: a loader argument other than the input size is refused.

Memory: the file is parsed once (``onnx.load_model_from_string``, which never reads external data), the checker
gets the original bytes (no re-serialisation), and the proto is dropped before onnxruntime builds its session for
the test inference. Imports numpy and the standard library at module level; onnx and onnxruntime on use.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ml.errors import CorruptData, InvalidInput, MLError, TooLarge
from ml.learners.base import TASK_TYPES, Predictions

__all__ = ["ValidatedUpload", "TensorSpec", "validate_upload", "validate_manifest", "manifest_schema",
           "ALLOWED_OPSETS", "ERROR_CODES"]

ERROR_CODES = ("onnx_too_large", "onnx_invalid", "onnx_external_data", "onnx_opset", "onnx_manifest",
               "onnx_io_mismatch", "onnx_inference_failed")

# domain -> (lowest, highest) opset version accepted; "ai.onnx" is the default domain's other name
ALLOWED_OPSETS: Mapping[str, tuple[int, int]] = {"": (7, 21), "ai.onnx": (7, 21), "ai.onnx.ml": (1, 5)}

_BACKGROUND = "__background__"
MAX_LABELS = 10_000
MAX_LABEL_CHARS = 200
MAX_MANIFEST_CHARS = 1_000_000
_PROB_TOL = 1e-3  # |sum of a softmax row - 1| allowed

# the ranges the validator enforces and the schema documents: (minimum, maximum), both inclusive unless noted
RANGES: Mapping[str, tuple[float, float]] = {
    "image_size": (8, 1024),
    "detection_size": (16, 1024),
    "sample_rate": (8_000, 48_000),
    "n_mels": (16, 128),
    "duration_s": (0.1, 30.0),
    "n_points": (16, 16_384),
    "max_detections": (1, 1000),
    "median_frames": (1, 101),
    "min_duration_s": (0.0, 60.0),
    "merge_gap_s": (0.0, 60.0),
    "max_duration_s": (0.1, 600.0),
    "cluster_eps": (1e-6, 1e4),
    "min_points": (1, 100_000),
    "ground_margin": (0.0, 1e4),
}

# informational top-level keys a manifest may carry (the built-in exports write them); kept, not interpreted
_INFO_KEYS = ("format", "learner", "modality", "outputs", "opset", "uncertainty", "embedding", "description",
              "name", "version")


# --------------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: ``shape`` has an int per fixed axis, the axis name (str) per named dynamic axis,
    None for an unknown one (``shape`` None: the graph records no shape); ``dtype`` the ONNX element type's name
    (``"FLOAT"``)."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ValidatedUpload:
    """A model that passed every check. ``manifest`` is the normalised manifest (defaults filled in, JSON values;
    store it and hand it to :func:`ml.learners.runners.onnx_runner`); ``opset`` the default domain's version,
    ``opset_imports`` every domain's; ``parameters`` the element count of all initializers and constants;
    ``sha256`` of the file; ``load_seconds`` building the runner (onnxruntime session), ``inference_seconds``
    its ``predict`` on ``n_samples`` contents (``synthetic``: made up here, none were given); ``summary`` what
    the predictions looked like (:func:`_summary`)."""

    task_type: str
    manifest: Mapping[str, Any]
    sha256: str
    size_bytes: int
    ir_version: int
    opset: int
    opset_imports: Mapping[str, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: int
    load_seconds: float
    inference_seconds: float
    n_samples: int
    synthetic: bool
    summary: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"task_type": self.task_type, "manifest": json.loads(json.dumps(self.manifest)),
                "sha256": self.sha256, "size_bytes": self.size_bytes, "ir_version": self.ir_version,
                "opset": self.opset, "opset_imports": dict(self.opset_imports),
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "parameters": self.parameters, "load_seconds": self.load_seconds,
                "inference_seconds": self.inference_seconds, "n_samples": self.n_samples,
                "synthetic": self.synthetic, "summary": json.loads(json.dumps(self.summary))}


# ---------------------------------------------------------------------------------------------------------- errors


def _manifest_error(path: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", code="onnx_manifest",
                        details={"check": "onnx_manifest", "path": path, **details})


def _io_error(path: str, message: str, **details: Any) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", code="onnx_io_mismatch",
                        details={"check": "onnx_io_mismatch", "path": path, **details})


def _inference_error(message: str, **details: Any) -> InvalidInput:
    return InvalidInput(message, code="onnx_inference_failed", details={"check": "onnx_inference_failed", **details})


# ------------------------------------------------------------------------------------------------ manifest checks


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(float(v))


def _mapping(m: Any, path: str) -> Mapping:
    if not isinstance(m, Mapping):
        raise _manifest_error(path, f"must be an object, got {type(m).__name__}")
    return m


def _required(m: Mapping, key: str, path: str) -> Any:
    if key not in m:
        raise _manifest_error(f"{path}.{key}", "is required", missing=key)
    return m[key]


def _only_keys(m: Mapping, allowed: Sequence[str], path: str) -> None:
    extra = sorted(str(k) for k in m if k not in allowed)
    if extra:
        raise _manifest_error(f"{path}.{extra[0]}", f"unknown key (allowed: {', '.join(allowed)})",
                              unknown=extra[:20])


def _int(m: Mapping, key: str, path: str, rng: str, *, default: Any = ..., ) -> int:
    where = f"{path}.{key}"
    if key not in m:
        if default is ...:
            raise _manifest_error(where, "is required", missing=key)
        return default
    v = m[key]
    if not _is_int(v):
        raise _manifest_error(where, f"must be an integer, got {v!r:.60}")
    lo, hi = RANGES[rng]
    if not lo <= int(v) <= hi:
        raise _manifest_error(where, f"must lie in {lo:g}..{hi:g}, got {int(v)}", minimum=lo, maximum=hi)
    return int(v)


def _number(v: Any, where: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> float:
    if not _is_num(v):
        raise _manifest_error(where, f"must be a finite number, got {v!r:.60}")
    v = float(v)
    if (v < lo or (lo_open and v == lo)) or (v > hi or (hi_open and v == hi)):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise _manifest_error(where, f"must lie in {interval}, got {v:g}", minimum=lo, maximum=hi)
    return v


def _float(m: Mapping, key: str, path: str, lo: float, hi: float, *, default: Any = ...,
           lo_open: bool = False, hi_open: bool = False) -> float:
    if key not in m:
        if default is ...:
            raise _manifest_error(f"{path}.{key}", "is required", missing=key)
        return default
    return _number(m[key], f"{path}.{key}", lo, hi, lo_open=lo_open, hi_open=hi_open)


def _labels(manifest: Mapping, project_labels: Sequence[str] | None, task_type: str) -> list[str]:
    raw = _required(manifest, "labels", "manifest")
    if not isinstance(raw, (list, tuple)):
        raise _manifest_error("manifest.labels", f"must be a list of label names, got {type(raw).__name__}")
    if not raw:
        raise _manifest_error("manifest.labels", "must not be empty")
    if len(raw) > MAX_LABELS:
        raise _manifest_error("manifest.labels", f"has {len(raw)} labels; at most {MAX_LABELS}")
    seen: dict[str, int] = {}
    for i, name in enumerate(raw):
        where = f"manifest.labels[{i}]"
        if not isinstance(name, str):
            raise _manifest_error(where, f"must be a string, got {type(name).__name__} {name!r:.40}")
        if not name.strip():
            raise _manifest_error(where, "must be a non-empty name")
        if len(name) > MAX_LABEL_CHARS:
            raise _manifest_error(where, f"is {len(name)} characters long; at most {MAX_LABEL_CHARS}")
        if name in seen:
            raise _manifest_error(where, f"{name!r} repeats manifest.labels[{seen[name]}]; labels must be distinct",
                                  duplicate=name)
        if name == _BACKGROUND and task_type in ("audio_regions", "cuboids"):
            raise _manifest_error(where, f"{_BACKGROUND!r} is the background class, not a label")
        seen[name] = i
    if task_type == "classification" and len(raw) < 2:
        raise _manifest_error("manifest.labels", "a classifier needs at least two labels")
    if project_labels is not None:
        want = [str(x) for x in project_labels]
        missing = [x for x in want if x not in seen]
        extra = [x for x in raw if x not in set(want)]
        if missing or extra:
            parts = ([f"missing the project's {', '.join(map(repr, missing[:10]))}"] if missing else []) + \
                    ([f"{', '.join(map(repr, extra[:10]))} not in the project"] if extra else [])
            raise _manifest_error("manifest.labels", "must be the project's label set: " + "; ".join(parts),
                                  missing=missing[:100], extra=extra[:100])
    return [str(x) for x in raw]


def _classification_preprocessing(manifest: Mapping) -> dict:
    from ml import modalities
    from ml.features import FEATURES_VERSION
    from ml.modalities import audio

    path = "manifest.preprocessing"
    pre = _mapping(_required(manifest, "preprocessing", "manifest"), path)
    _only_keys(pre, ("modality", "loader", "features", "features_version"), path)
    modality = _required(pre, "modality", path)
    if modality not in modalities.MODALITIES:
        raise _manifest_error(f"{path}.modality", f"must be one of {', '.join(modalities.MODALITIES)}, got "
                                                  f"{modality!r:.40}")
    loader_raw = pre.get("loader") or {}
    loader_raw = _mapping(loader_raw, f"{path}.loader")
    lpath = f"{path}.loader"
    if modality == "image":
        _only_keys(loader_raw, ("size",), lpath)
        loader = {"size": _int(loader_raw, "size", lpath, "image_size", default=32)}
    elif modality == "audio":
        _only_keys(loader_raw, ("sample_rate", "n_mels", "duration_s"), lpath)
        loader = {"sample_rate": _int(loader_raw, "sample_rate", lpath, "sample_rate", default=audio.SAMPLE_RATE),
                  "n_mels": _int(loader_raw, "n_mels", lpath, "n_mels", default=audio.N_MELS),
                  "duration_s": _float(loader_raw, "duration_s", lpath, *RANGES["duration_s"],
                                       default=float(audio.DURATION_S))}
    else:
        _only_keys(loader_raw, ("n_points",), lpath)
        loader = {"n_points": _int(loader_raw, "n_points", lpath, "n_points", default=1024)}
    features = pre.get("features")
    out = {"modality": modality, "loader": loader, "features": features}
    if features is None:
        if "features_version" in pre:
            raise _manifest_error(f"{path}.features_version", "only goes with features 'label_free'")
    elif features == "label_free":
        version = pre.get("features_version", FEATURES_VERSION)
        if not _is_int(version) or int(version) != FEATURES_VERSION:
            raise _manifest_error(f"{path}.features_version", f"must be {FEATURES_VERSION} (the label-free "
                                                              f"features this server computes), got {version!r:.40}")
        out["features_version"] = int(version)
    else:
        raise _manifest_error(f"{path}.features", f"must be null or 'label_free', got {features!r:.40}")
    if "modality" in manifest and manifest["modality"] != modality:
        raise _manifest_error("manifest.modality", f"{manifest['modality']!r:.40} disagrees with "
                                                   f"manifest.preprocessing.modality {modality!r}")
    return out


def _classification(manifest: Mapping, labels: list[str]) -> dict:
    _only_keys(manifest, ("task_type", "labels", "preprocessing", "decoding", *_INFO_KEYS), "manifest")
    pre = _classification_preprocessing(manifest)
    decoding = manifest.get("decoding", "argmax")
    if decoding != "argmax":
        raise _manifest_error("manifest.decoding", f"must be 'argmax', got {decoding!r:.40}")
    return {"task_type": "classification", "labels": labels, "modality": pre["modality"], "preprocessing": pre,
            "decoding": "argmax"}


def _detection(manifest: Mapping, labels: list[str]) -> dict:
    _only_keys(manifest, ("task_type", "labels", "input", "decoding", "stride", *_INFO_KEYS), "manifest")
    if manifest.get("modality", "image") != "image":
        raise _manifest_error("manifest.modality", f"detection is on images, got {manifest['modality']!r:.40}")
    path = "manifest.input"
    inp = _mapping(_required(manifest, "input", "manifest"), path)
    _only_keys(inp, ("name", "size", "layout", "range", "color", "resize"), path)
    fixed = {"name": "input", "layout": "NCHW", "color": "RGB"}
    for key, want in fixed.items():
        if key in inp and inp[key] != want:
            raise _manifest_error(f"{path}.{key}", f"must be {want!r} (what the image loader gives), got "
                                                   f"{inp[key]!r:.40}")
    if "range" in inp and (not isinstance(inp["range"], (list, tuple)) or list(inp["range"]) != [0, 1]):
        raise _manifest_error(f"{path}.range", f"must be [0, 1] (what the image loader gives), got "
                                               f"{inp['range']!r:.40}")
    size = _int(inp, "size", path, "detection_size")
    dpath = "manifest.decoding"
    dec = _mapping(_required(manifest, "decoding", "manifest"), dpath)
    _only_keys(dec, ("method", "max_detections", "score_threshold", "nms_iou"), dpath)
    if dec.get("method", "centernet") != "centernet":
        raise _manifest_error(f"{dpath}.method", f"must be 'centernet', got {dec['method']!r:.40}")
    decoding = {"method": "centernet", "max_detections": _int(dec, "max_detections", dpath, "max_detections"),
                "score_threshold": _float(dec, "score_threshold", dpath, 0.0, 1.0, hi_open=True),
                "nms_iou": _float(dec, "nms_iou", dpath, 0.0, 1.0, lo_open=True)}
    stride = manifest.get("stride", 4)
    if not _is_int(stride) or not 1 <= int(stride) <= 64:
        raise _manifest_error("manifest.stride", f"must be an integer in 1..64, got {stride!r:.40}")
    return {"task_type": "detection", "labels": labels, "modality": "image",
            "input": {"name": "input", "size": size, "layout": "NCHW", "range": [0, 1], "color": "RGB",
                      "resize": "bilinear, aspect not kept"},
            "outputs": ["heatmap", "wh", "offset", "embedding"], "stride": int(stride), "decoding": decoding}


def _audio_regions(manifest: Mapping, labels: list[str]) -> dict:
    from ml.modalities import audio

    _only_keys(manifest, ("task_type", "labels", "preprocessing", "decoding", "classes", "feature_dim",
                          *_INFO_KEYS), "manifest")
    if manifest.get("modality", "audio") != "audio":
        raise _manifest_error("manifest.modality", f"audio regions are on audio, got {manifest['modality']!r:.40}")
    path = "manifest.preprocessing"
    pre = _mapping(_required(manifest, "preprocessing", "manifest"), path)
    _only_keys(pre, ("features", "sample_rate", "n_mels", "hop_length", "input", "max_duration_s"), path)
    if _required(pre, "features", path) != "logmel":
        raise _manifest_error(f"{path}.features", f"must be 'logmel', got {pre['features']!r:.40}")
    for key, want in (("sample_rate", audio.SAMPLE_RATE), ("n_mels", audio.N_MELS),
                      ("hop_length", audio.HOP_LENGTH)):
        if key in pre and (not _is_int(pre[key]) or int(pre[key]) != want):
            raise _manifest_error(f"{path}.{key}", f"must be {want} (the log-mel this server computes), got "
                                                   f"{pre[key]!r:.40}")
    max_duration = _float(pre, "max_duration_s", path, *RANGES["max_duration_s"],
                          default=RANGES["max_duration_s"][1])
    dpath = "manifest.decoding"
    dec = _mapping(_required(manifest, "decoding", "manifest"), dpath)
    _only_keys(dec, ("onset", "offset", "median_frames", "min_duration_s", "merge_gap_s"), dpath)
    thresholds = {}
    for key in ("onset", "offset"):
        v = _required(dec, key, dpath)
        if not isinstance(v, (list, tuple)) or len(v) != len(labels):
            raise _manifest_error(f"{dpath}.{key}", f"must be a list of {len(labels)} thresholds (one per label)",
                                  expected=len(labels))
        thresholds[key] = [_number(x, f"{dpath}.{key}[{i}]", 0.0, 1.0, lo_open=True, hi_open=key == "onset")
                           for i, x in enumerate(v)]
    for i, (on, off) in enumerate(zip(thresholds["onset"], thresholds["offset"])):
        if off > on:
            raise _manifest_error(f"{dpath}.offset[{i}]", f"{off:g} is above onset[{i}] {on:g}; offset <= onset")
    decoding = {**thresholds, "median_frames": _int(dec, "median_frames", dpath, "median_frames"),
                "min_duration_s": _float(dec, "min_duration_s", dpath, *RANGES["min_duration_s"]),
                "merge_gap_s": _float(dec, "merge_gap_s", dpath, *RANGES["merge_gap_s"])}
    classes = [_BACKGROUND, *labels]
    if "classes" in manifest and list(manifest["classes"] or []) != classes:
        raise _manifest_error("manifest.classes", f"must be {classes!r:.200} (the background, then the labels)")
    out = {"task_type": "audio_regions", "labels": labels, "modality": "audio", "classes": classes,
           "preprocessing": {"features": "logmel", "sample_rate": audio.SAMPLE_RATE, "n_mels": audio.N_MELS,
                             "hop_length": audio.HOP_LENGTH, "input": "input (N, 1, n_mels, T)",
                             "max_duration_s": max_duration},
           "decoding": decoding}
    if "feature_dim" in manifest:
        fd = manifest["feature_dim"]
        if not _is_int(fd) or int(fd) < 1:
            raise _manifest_error("manifest.feature_dim", f"must be a positive integer, got {fd!r:.40}")
        out["feature_dim"] = int(fd)
    return out


_POINT_TRAINING_KEYS = ("epochs", "draws", "batch_size", "lr", "device", "arch")


def _classifier(clf: Any, n_labels: int, path: str) -> dict | None:
    from ml.learners.cuboids import N_SHAPE_FEATURES

    if clf is None:
        return None
    clf = _mapping(clf, path)
    _only_keys(clf, ("mean", "scale", "coef", "intercept", "classes"), path)
    n_feat = N_SHAPE_FEATURES + n_labels + 1

    def arr(key: str, ndim: int) -> np.ndarray:
        raw = _required(clf, key, path)
        try:
            a = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise _manifest_error(f"{path}.{key}", "must be numbers") from None
        if a.ndim != ndim or a.size > 1_000_000:
            raise _manifest_error(f"{path}.{key}", f"must be a {ndim}-d array of numbers, got shape {list(a.shape)}")
        if not np.all(np.isfinite(a)):
            raise _manifest_error(f"{path}.{key}", "must be finite numbers")
        return a

    mean, scale, coef, intercept = arr("mean", 1), arr("scale", 1), arr("coef", 2), arr("intercept", 1)
    classes = _required(clf, "classes", path)
    for key, a in (("mean", mean), ("scale", scale)):
        if a.shape != (n_feat,):
            raise _manifest_error(f"{path}.{key}", f"must have {n_feat} entries ({N_SHAPE_FEATURES} shape features "
                                                   f"+ 1 + {n_labels} class probabilities), got {a.shape[0]}")
    if np.any(scale == 0):
        raise _manifest_error(f"{path}.scale", "must not contain 0")
    k = coef.shape[0]
    if coef.shape[1] != n_feat or intercept.shape != (k,):
        raise _manifest_error(f"{path}.coef", f"must be ({k}, {n_feat}) with intercept ({k},), got coef "
                                              f"{list(coef.shape)} and intercept {list(intercept.shape)}")
    if not isinstance(classes, (list, tuple)) or len(classes) != k or not all(_is_int(c) for c in classes) \
            or len(set(int(c) for c in classes)) != k or not all(0 <= int(c) <= n_labels for c in classes):
        raise _manifest_error(f"{path}.classes", f"must be {k} distinct integers in 0..{n_labels} (the label "
                                                 f"indices, {n_labels} = not an object)")
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(), "intercept": intercept.tolist(),
            "classes": [int(c) for c in classes]}


def _points(manifest: Mapping, labels: list[str], task_type: str) -> dict:
    from ml.learners._points import NORMALIZATIONS

    _only_keys(manifest, ("task_type", "labels", "params", "input", *_INFO_KEYS), "manifest")
    if manifest.get("modality", "pointcloud") != "pointcloud":
        raise _manifest_error("manifest.modality", f"{task_type} is on point clouds, got "
                                                   f"{manifest['modality']!r:.40}")
    path = "manifest.params"
    par = _mapping(_required(manifest, "params", "manifest"), path)
    decode_keys = ("n_points", "normalize", "top_fraction", "random_state")
    if task_type == "cuboids":
        decode_keys += ("cluster_eps", "min_points", "ground_margin", "classifier")
    _only_keys(par, decode_keys + _POINT_TRAINING_KEYS, path)
    normalize = _required(par, "normalize", path)
    if normalize not in NORMALIZATIONS:
        raise _manifest_error(f"{path}.normalize", f"must be one of {', '.join(NORMALIZATIONS)}, got "
                                                   f"{normalize!r:.40}")
    seed = par.get("random_state", 0)
    if not _is_int(seed) or not 0 <= int(seed) < 2 ** 32:
        raise _manifest_error(f"{path}.random_state", f"must be an integer in 0..2**32-1, got {seed!r:.40}")
    params: dict[str, Any] = {"n_points": _int(par, "n_points", path, "n_points"), "normalize": normalize,
                              "top_fraction": _float(par, "top_fraction", path, 0.0, 1.0, lo_open=True,
                                                     default=0.1),
                              "random_state": int(seed)}
    if task_type == "cuboids":
        params["cluster_eps"] = _float(par, "cluster_eps", path, *RANGES["cluster_eps"])
        params["min_points"] = _int(par, "min_points", path, "min_points")
        params["ground_margin"] = _float(par, "ground_margin", path, *RANGES["ground_margin"])
        params["classifier"] = _classifier(par.get("classifier"), len(labels), f"{path}.classifier")
    ipath = "manifest.input"
    if "input" in manifest:
        inp = _mapping(manifest["input"], ipath)
        _only_keys(inp, ("name", "shape", "normalize"), ipath)
        if inp.get("name", "input") != "input":
            raise _manifest_error(f"{ipath}.name", f"must be 'input', got {inp['name']!r:.40}")
        if "normalize" in inp and inp["normalize"] != normalize:
            raise _manifest_error(f"{ipath}.normalize", f"{inp['normalize']!r:.40} disagrees with "
                                                        f"manifest.params.normalize {normalize!r}")
        shape = inp.get("shape")
        if shape is not None and (not isinstance(shape, (list, tuple)) or len(shape) != 3
                                  or list(shape[1:]) != [params["n_points"], 3]):
            raise _manifest_error(f"{ipath}.shape", f"must be ['batch', {params['n_points']}, 3] "
                                                    f"(manifest.params.n_points), got {shape!r:.60}")
    return {"task_type": task_type, "labels": labels, "modality": "pointcloud", "params": params,
            "input": {"name": "input", "shape": ["batch", params["n_points"], 3], "normalize": normalize}}


def validate_manifest(manifest: Mapping[str, Any], *, labels: Sequence[str] | None = None) -> dict:
    """The manifest checked against :func:`manifest_schema` of its task type and normalised (defaults filled in,
    informational keys kept); :class:`~ml.errors.InvalidInput` ``onnx_manifest`` naming the path at fault.
    ``labels``: the project's label set, which ``manifest["labels"]`` must equal as a set (any order: the
    manifest's order is the model's class axis)."""
    manifest = _mapping(manifest, "manifest")
    try:
        text = json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _manifest_error("manifest", f"must be plain JSON (no NaN/Infinity): {exc}") from None
    if len(text) > MAX_MANIFEST_CHARS:
        raise _manifest_error("manifest", f"is {len(text)} characters of JSON; at most {MAX_MANIFEST_CHARS}")
    manifest = json.loads(text)  # a private, plain copy: nothing below can alias the caller's objects
    task_type = _required(manifest, "task_type", "manifest")
    if task_type not in TASK_TYPES:
        raise _manifest_error("manifest.task_type", f"must be one of {', '.join(TASK_TYPES)}, got {task_type!r:.40}")
    names = _labels(manifest, labels, task_type)
    if task_type == "classification":
        out = _classification(manifest, names)
    elif task_type == "detection":
        out = _detection(manifest, names)
    elif task_type == "audio_regions":
        out = _audio_regions(manifest, names)
    else:
        out = _points(manifest, names, task_type)
    for key in _INFO_KEYS:
        if key in manifest and key not in out:
            out[key] = manifest[key]
    if "learner" in out and not isinstance(out["learner"], str):
        raise _manifest_error("manifest.learner", f"must be a string, got {type(out['learner']).__name__}")
    out.setdefault("learner", "onnx-upload")
    return out


# -------------------------------------------------------------------------------------------------------- schema


def _rng_schema(name: str, kind: str, description: str, **extra: Any) -> dict:
    lo, hi = RANGES[name]
    return {"type": kind, "minimum": lo, "maximum": hi, "description": description, **extra}


def manifest_schema(task_type: str) -> dict:
    """The manifest of ``task_type`` as a JSON Schema (draft 2020-12) with descriptions and an ``examples``
    entry: the keys :func:`validate_manifest` requires and accepts and the ranges it enforces (it also checks
    what a schema cannot say: labels distinct, per-label threshold lists as long as the labels, offset <= onset,
    and the project's label set)."""
    from ml.features import FEATURES_VERSION
    from ml.learners._points import NORMALIZATIONS
    from ml.modalities import audio

    if task_type not in TASK_TYPES:
        raise InvalidInput(f"unknown task type {task_type!r}; one of {', '.join(TASK_TYPES)}",
                           code="unsupported_task_type", details={"task_type": str(task_type)[:50]})
    labels = {"type": "array", "minItems": 2 if task_type == "classification" else 1, "maxItems": MAX_LABELS,
              "uniqueItems": True,
              "items": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS, "pattern": r"\S"},
              "description": "label names in the order of the output's class axis; distinct; the project's "
                             "label set"}
    info = {k: {"description": "informational, kept as given"} for k in _INFO_KEYS}
    info["learner"] = {"type": "string", "description": "a name for the model's maker (default 'onnx-upload')"}
    props: dict[str, Any] = {"task_type": {"const": task_type}, "labels": labels}
    required = ["task_type", "labels"]
    if task_type == "classification":
        loader = {
            "image": {"type": "object", "additionalProperties": False, "properties": {
                "size": _rng_schema("image_size", "integer", "images are resized to size x size RGB in [0, 1]",
                                    default=32)}},
            "audio": {"type": "object", "additionalProperties": False, "properties": {
                "sample_rate": _rng_schema("sample_rate", "integer", "resampled to this rate (Hz)",
                                           default=audio.SAMPLE_RATE),
                "n_mels": _rng_schema("n_mels", "integer", "log-mel bands", default=audio.N_MELS),
                "duration_s": _rng_schema("duration_s", "number", "the loudest window of this length",
                                          default=audio.DURATION_S)}},
            "pointcloud": {"type": "object", "additionalProperties": False, "properties": {
                "n_points": _rng_schema("n_points", "integer", "points per cloud (unit-sphere normalised)",
                                        default=1024)}}}
        props["preprocessing"] = {
            "type": "object", "additionalProperties": False, "required": ["modality"],
            "properties": {"modality": {"enum": ["image", "audio", "pointcloud"]},
                           "loader": {"description": "the modality's loader arguments (input size only)",
                                      "oneOf": list(loader.values())},
                           "features": {"enum": [None, "label_free"],
                                        "description": "null: the loader's batch is the input; 'label_free': "
                                                       "the server's 128-d label-free features of it"},
                           "features_version": {"const": FEATURES_VERSION}},
            "description": "how stored contents become the graph's one input"}
        props["decoding"] = {"const": "argmax", "default": "argmax"}
        required.append("preprocessing")
        example = {"task_type": task_type, "labels": ["cat", "dog"],
                   "preprocessing": {"modality": "image", "loader": {"size": 32}, "features": None}}
        graph = {"inputs": ["<any name> (N, ...) float32: the preprocessing's batch"],
                 "outputs": ["probs (N, C) softmax", "embedding (N, D)"]}
    elif task_type == "detection":
        props["input"] = {"type": "object", "additionalProperties": False, "required": ["size"], "properties": {
            "name": {"const": "input"}, "size": _rng_schema("detection_size", "integer", "square input side"),
            "layout": {"const": "NCHW"}, "range": {"const": [0, 1]}, "color": {"const": "RGB"},
            "resize": {"type": "string"}}}
        props["decoding"] = {"type": "object", "additionalProperties": False,
                             "required": ["max_detections", "score_threshold", "nms_iou"], "properties": {
                                 "method": {"const": "centernet"},
                                 "max_detections": _rng_schema("max_detections", "integer", "peaks kept per image"),
                                 "score_threshold": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                                 "nms_iou": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}}
        props["stride"] = {"type": "integer", "minimum": 1, "maximum": 64, "default": 4,
                           "description": "informational; boxes are decoded from the heatmap's own size"}
        required += ["input", "decoding"]
        example = {"task_type": task_type, "labels": ["car", "person"], "input": {"size": 96},
                   "decoding": {"method": "centernet", "max_detections": 50, "score_threshold": 0.1,
                                "nms_iou": 0.5}}
        graph = {"inputs": ["input (N, 3, size, size) float32 RGB in [0, 1]"],
                 "outputs": ["heatmap (N, C, H, W) logits", "wh (N, 2, H, W) cells", "offset (N, 2, H, W)",
                             "embedding (N, D)"]}
    elif task_type == "audio_regions":
        thr = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
               "description": "one per label"}
        props["preprocessing"] = {"type": "object", "additionalProperties": False, "required": ["features"],
                                  "properties": {
                                      "features": {"const": "logmel"}, "sample_rate": {"const": audio.SAMPLE_RATE},
                                      "n_mels": {"const": audio.N_MELS}, "hop_length": {"const": audio.HOP_LENGTH},
                                      "input": {"type": "string"},
                                      "max_duration_s": _rng_schema("max_duration_s", "number",
                                                                    "longest clip read whole", default=600.0)}}
        props["decoding"] = {"type": "object", "additionalProperties": False,
                             "required": ["onset", "offset", "median_frames", "min_duration_s", "merge_gap_s"],
                             "properties": {
                                 "onset": {**thr, "items": {"type": "number", "exclusiveMinimum": 0,
                                                            "exclusiveMaximum": 1}},
                                 "offset": {**thr, "description": "one per label, <= its onset"},
                                 "median_frames": _rng_schema("median_frames", "integer", "smoothing window"),
                                 "min_duration_s": _rng_schema("min_duration_s", "number", "shorter regions drop"),
                                 "merge_gap_s": _rng_schema("merge_gap_s", "number", "closer regions merge")}}
        props["classes"] = {"type": "array", "description": "if given: ['__background__', *labels]"}
        props["feature_dim"] = {"type": "integer", "minimum": 1}
        required += ["preprocessing", "decoding"]
        example = {"task_type": task_type, "labels": ["yes", "no"],
                   "preprocessing": {"features": "logmel", "max_duration_s": 600},
                   "decoding": {"onset": [0.5, 0.5], "offset": [0.3, 0.3], "median_frames": 7,
                                "min_duration_s": 0.1, "merge_gap_s": 0.1}}
        graph = {"inputs": ["input (N, 1, 64, T) float32 log-mel, T dynamic"],
                 "outputs": ["probs (N, T, 1 + C) softmax, background first", "features (N, T, D)"]}
    else:
        pprops: dict[str, Any] = {
            "n_points": _rng_schema("n_points", "integer", "points per chunk the graph sees"),
            "normalize": {"enum": list(NORMALIZATIONS)},
            "top_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1},
            "random_state": {"type": "integer", "minimum": 0, "default": 0, "description": "the chunking seed"},
            **{k: {"description": "training information, kept"} for k in _POINT_TRAINING_KEYS}}
        preq = ["n_points", "normalize"]
        if task_type == "cuboids":
            pprops.update({
                "cluster_eps": _rng_schema("cluster_eps", "number", "DBSCAN radius, cloud units"),
                "min_points": _rng_schema("min_points", "integer", "smallest cluster kept"),
                "ground_margin": _rng_schema("ground_margin", "number", "footprint fitted above this height"),
                "classifier": {"type": ["object", "null"], "description": "null, or the cluster classifier "
                               "{mean, scale, coef, intercept, classes} (ml.learners.cuboids.classify)"}})
            preq += ["cluster_eps", "min_points", "ground_margin"]
        props["params"] = {"type": "object", "additionalProperties": False, "required": preq, "properties": pprops}
        props["input"] = {"type": "object", "additionalProperties": False,
                          "properties": {"name": {"const": "input"}, "shape": {"type": "array"},
                                         "normalize": {"enum": list(NORMALIZATIONS)}}}
        required.append("params")
        example = {"task_type": task_type, "labels": ["base", "pole", "shade"],
                   "params": {"n_points": 1024, "normalize": "unit_sphere", "top_fraction": 0.1, "random_state": 0}}
        if task_type == "cuboids":
            example = {"task_type": task_type, "labels": ["car", "pedestrian"],
                       "params": {"n_points": 1024, "normalize": "ground", "top_fraction": 0.1, "random_state": 0,
                                  "cluster_eps": 0.25, "min_points": 15, "ground_margin": 0.05,
                                  "classifier": None}}
        k = "1 + C, background first" if task_type == "cuboids" else "C"
        graph = {"inputs": ["input (N, n_points, 3) float32"],
                 "outputs": [f"probs (N, n_points, {k}) softmax per point", "embedding (N, D)"]}
    for key, spec in info.items():
        props.setdefault(key, spec)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"Looplab ONNX manifest: {task_type}",
            "type": "object", "required": required, "additionalProperties": False, "properties": props,
            "examples": [example], "x-graph": graph}


# ---------------------------------------------------------------------------------------------------- graph checks


def _parse(model: bytes):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(model)  # from bytes: external data is never read
    except (DecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise CorruptData(f"not an ONNX model: the file does not parse as an ONNX ModelProto ({exc})",
                          code="onnx_invalid", details={"check": "onnx_invalid", "error": str(exc)[:300]}) from None
    if not proto.HasField("graph") or not proto.graph.node:
        raise CorruptData("not an ONNX model: no graph (empty, truncated, or another format)", code="onnx_invalid",
                          details={"check": "onnx_invalid"})
    return proto


def _tensors(graph, where: str):
    """Every TensorProto in ``graph`` and its subgraphs: (where, tensor)."""
    for t in graph.initializer:
        yield f"{where}.initializer[{t.name!r}]", t
    for st in graph.sparse_initializer:
        yield f"{where}.sparse_initializer[{st.values.name!r}]", st.values
        yield f"{where}.sparse_initializer[{st.values.name!r}].indices", st.indices
    for node in graph.node:
        yield from _node_tensors(node, f"{where}.node[{node.name or node.op_type!r}]")


def _node_tensors(node, where: str):
    for a in node.attribute:
        at = f"{where}.attribute[{a.name!r}]"
        if a.HasField("t"):
            yield at, a.t
        for t in a.tensors:
            yield at, t
        if a.HasField("sparse_tensor"):
            yield at, a.sparse_tensor.values
            yield at, a.sparse_tensor.indices
        for st in a.sparse_tensors:
            yield at, st.values
            yield at, st.indices
        if a.HasField("g"):
            yield from _tensors(a.g, f"{at}.g")
        for i, g in enumerate(a.graphs):
            yield from _tensors(g, f"{at}.graphs[{i}]")


def _all_tensors(proto):
    yield from _tensors(proto.graph, "graph")
    for f in proto.functions:
        for node in f.node:
            yield from _node_tensors(node, f"functions[{f.name!r}].node[{node.name or node.op_type!r}]")


def _check_external(proto) -> int:
    """Refuse any tensor with external data; return the parameter count (elements of every stored tensor)."""
    from onnx import TensorProto

    params = 0
    for where, t in _all_tensors(proto):
        if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            raise InvalidInput(f"{where} keeps its data in an external file ({loc!r}); upload one self-contained "
                               "ONNX file (onnx.save_model(..., save_as_external_data=False))",
                               code="onnx_external_data",
                               details={"check": "onnx_external_data", "path": where, "location": loc})
        n = 1
        for d in t.dims:
            n *= int(d)
        params += n
    return params


def _check_opsets(proto) -> dict[str, int]:
    imports: dict[str, int] = {}
    for op in proto.opset_import:
        domain, version = op.domain, int(op.version)
        allowed = ALLOWED_OPSETS.get(domain)
        name = domain or "ai.onnx (default)"
        if allowed is None:
            raise InvalidInput(f"opset_import domain {name!r} is not allowed (only the standard domains "
                               f"{', '.join(repr(d or 'ai.onnx') for d in ALLOWED_OPSETS if d != 'ai.onnx')}: "
                               "custom operators do not run here)", code="onnx_opset",
                               details={"check": "onnx_opset", "domain": domain, "version": version,
                                        "allowed": {k: list(v) for k, v in ALLOWED_OPSETS.items()}})
        lo, hi = allowed
        if not lo <= version <= hi:
            raise InvalidInput(f"opset_import {name} version {version} is outside the supported {lo}..{hi}; "
                               f"re-export with an opset in that range", code="onnx_opset",
                               details={"check": "onnx_opset", "domain": domain, "version": version,
                                        "allowed": [lo, hi]})
        imports["" if domain == "ai.onnx" else domain] = version
    if "" not in imports:
        raise InvalidInput("the model imports no default-domain (ai.onnx) opset", code="onnx_opset",
                           details={"check": "onnx_opset", "imports": dict(imports)})
    return imports


def _check_model(model: bytes) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)  # the original bytes: no second serialisation
    except Exception as exc:  # onnx.checker.ValidationError and the C++ checker's other errors
        msg = str(exc).strip().splitlines()
        raise CorruptData(f"onnx.checker refuses the model: {' '.join(msg)[:500]}", code="onnx_invalid",
                          details={"check": "onnx_invalid", "error": " ".join(msg)[:1000]}) from None


def _spec(vi) -> TensorSpec:
    from onnx import TensorProto

    tt = vi.type.tensor_type
    dims: list[int | str | None] = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None))
    shape = tuple(dims) if tt.HasField("shape") else None
    return TensorSpec(name=vi.name, shape=shape,
                      dtype=TensorProto.DataType.Name(tt.elem_type) if vi.type.HasField("tensor_type") else "?")


def _io(proto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    init = {t.name for t in proto.graph.initializer}
    inputs = tuple(_spec(v) for v in proto.graph.input if v.name not in init)
    outputs = tuple(_spec(v) for v in proto.graph.output)
    return inputs, outputs


def _expect(spec: TensorSpec, where: str, want: Sequence[int | str | None],
            why: Mapping[int, str] | None = None) -> None:
    """``want``: an int for a fixed size, "dynamic" for an axis that must not be fixed, None for any; ``why``:
    axis -> where the expected size comes from (for the message)."""
    if spec.shape is None:
        return  # no shape recorded: the test inference decides
    if len(spec.shape) != len(want):
        raise _io_error(where, f"has rank {len(spec.shape)} {list(spec.shape)}; the runner needs rank {len(want)} "
                               f"{['N' if w == 'dynamic' else w for w in want]}",
                        shape=list(spec.shape), expected=[str(w) for w in want])
    for axis, (got, w) in enumerate(zip(spec.shape, want)):
        if isinstance(w, int) and isinstance(got, int) and got != w:
            reason = (why or {}).get(axis, "from the manifest")
            raise _io_error(f"{where} dim {axis}", f"is {got} (shape {list(spec.shape)}); expected {w}, {reason}",
                            shape=list(spec.shape), axis=axis, expected=w)
        if w == "dynamic" and isinstance(got, int):
            raise _io_error(f"{where} dim {axis}", f"is fixed to {got}; it must be a dynamic axis (Looplab feeds "
                                                   f"batches of any size)", shape=list(spec.shape), axis=axis)


def _check_io(manifest: Mapping, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    task = manifest["task_type"]
    C = len(manifest["labels"])
    outs = {o.name: o for o in outputs}
    if task == "classification":
        if len(inputs) != 1:
            raise _io_error("inputs", f"the graph has {len(inputs)} inputs {[i.name for i in inputs]}; a "
                                      "classifier takes exactly one", inputs=[i.name for i in inputs])
        inp = inputs[0]
        where_in = f"inputs[{inp.name!r}]"
    else:
        names = [i.name for i in inputs]
        if names != ["input"]:
            raise _io_error("inputs", f"the graph's inputs are {names}; the {task} runner feeds exactly one, "
                                      "named 'input'", inputs=names)
        inp = inputs[0]
        where_in = "inputs['input']"
    if inp.dtype not in ("FLOAT", "?"):
        raise _io_error(where_in, f"has element type {inp.dtype}; the runner feeds float32", dtype=inp.dtype)
    wanted = {"classification": ("probs", "embedding"), "detection": ("heatmap", "wh", "offset", "embedding"),
              "audio_regions": ("probs", "features"), "point_segmentation": ("probs", "embedding"),
              "cuboids": ("probs", "embedding")}[task]
    missing = [n for n in wanted if n not in outs]
    if missing:
        raise _io_error(f"outputs[{missing[0]!r}]", f"is missing; the {task} runner reads outputs "
                                                    f"{list(wanted)}, the graph has {sorted(outs)}",
                        missing=missing, outputs=sorted(outs))
    for n in wanted:
        if outs[n].dtype not in ("FLOAT", "DOUBLE", "FLOAT16", "?"):
            raise _io_error(f"outputs[{n!r}]", f"has element type {outs[n].dtype}; a float output is needed")
    if task == "classification":
        pre = manifest["preprocessing"]
        if pre.get("features") == "label_free":
            from ml.features import EMBEDDING_DIM

            sample: list[int | str | None] = [EMBEDDING_DIM]
        elif pre["modality"] == "image":
            s = pre["loader"]["size"]
            sample = [3, s, s]
        elif pre["modality"] == "audio":
            from ml.modalities.audio import n_frames

            sample = [1, pre["loader"]["n_mels"], n_frames(pre["loader"]["duration_s"],
                                                           sample_rate=pre["loader"]["sample_rate"])]
        else:
            sample = [pre["loader"]["n_points"], 3]
        _expect(inp, where_in, ["dynamic", *sample], {i + 1: "what manifest.preprocessing gives"
                                                      for i in range(len(sample))})
        _expect(outs["probs"], "outputs['probs']", ["dynamic", C], {1: f"one per label ({C} in manifest.labels)"})
        _expect(outs["embedding"], "outputs['embedding']", ["dynamic", None])
    elif task == "detection":
        s = manifest["input"]["size"]
        _expect(inp, where_in, ["dynamic", 3, s, s], {1: "RGB", 2: "manifest.input.size", 3: "manifest.input.size"})
        _expect(outs["heatmap"], "outputs['heatmap']", ["dynamic", C, None, None],
                {1: f"one per label ({C} in manifest.labels)"})
        _expect(outs["wh"], "outputs['wh']", ["dynamic", 2, None, None])
        _expect(outs["offset"], "outputs['offset']", ["dynamic", 2, None, None])
        _expect(outs["embedding"], "outputs['embedding']", ["dynamic", None])
    elif task == "audio_regions":
        from ml.modalities.audio import N_MELS

        _expect(inp, where_in, [None, 1, N_MELS, "dynamic"], {2: "the server's log-mel bands"})
        _expect(outs["probs"], "outputs['probs']", [None, None, C + 1],
                {2: f"the background and one per label ({C} in manifest.labels)"})
        _expect(outs["features"], "outputs['features']", [None, None, manifest.get("feature_dim")],
                {2: "manifest.feature_dim"})
    else:
        n = manifest["params"]["n_points"]
        _expect(inp, where_in, ["dynamic", n, 3], {1: "manifest.params.n_points"})
        spec = outs["probs"]
        k_ok = {C + 1} if task == "cuboids" else {C, max(2, C)}
        k = spec.shape[2] if spec.shape is not None and len(spec.shape) == 3 else None
        _expect(spec, "outputs['probs']", ["dynamic", n, None], {1: "manifest.params.n_points"})
        if isinstance(k, int) and k not in k_ok:
            raise _io_error("outputs['probs'] dim 2", f"is {k}; with {C} labels the {task} runner needs "
                                                      f"{' or '.join(map(str, sorted(k_ok)))} classes"
                                                      + (" (background first)" if task == "cuboids" else ""),
                            shape=list(spec.shape), expected=sorted(k_ok))
        _expect(outs["embedding"], "outputs['embedding']", ["dynamic", None])


# ----------------------------------------------------------------------------------------------- test inference


def synthetic_contents(manifest: Mapping[str, Any], n: int = 2, *, seed: int = 0) -> list[bytes]:
    """``n`` made-up contents the manifest's modality accepts (seeded): noisy gradient PNGs, 1.5 s WAVs of a tone
    in noise, PLY clouds (a sphere, or a ground plane with a box on it for cuboids)."""
    import io
    import wave

    rng = np.random.default_rng(seed)
    modality = manifest.get("modality") or manifest.get("preprocessing", {}).get("modality")
    out = []
    for i in range(n):
        if modality == "image":
            from PIL import Image

            yy, xx = np.mgrid[0:64, 0:64] / 63.0
            img = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1) + 0.2 * rng.standard_normal((64, 64, 3))
            buf = io.BytesIO()
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
            out.append(buf.getvalue())
        elif modality == "audio":
            sr = 16_000
            t = np.arange(int(1.5 * sr)) / sr
            y = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) * (t > 0.4) * (t < 1.0) \
                + 0.02 * rng.standard_normal(t.size)
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(sr)
                w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
            out.append(buf.getvalue())
        else:
            from ml.modalities.pointcloud import points_to_ply

            if manifest.get("task_type") == "cuboids":
                g = rng.uniform(-3, 3, size=(600, 2))
                ground = np.column_stack([g, 0.02 * rng.standard_normal(600)])
                box = rng.uniform([-0.5, -0.3, 0.0], [0.5, 0.3, 0.8], size=(300, 3)) + [1.0, 0.5, 0.0]
                pts = np.concatenate([ground, box])
            else:
                v = rng.standard_normal((700, 3))
                pts = v / np.linalg.norm(v, axis=1, keepdims=True) * (1 + 0.1 * i)
            out.append(points_to_ply(pts))
    return out


def _finite(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise _inference_error(f"the test inference gave {bad} non-finite value(s) (NaN/inf) in {name}",
                               output=name, non_finite=bad)
    return arr


def _softmax_rows(name: str, p: np.ndarray, k: int) -> None:
    if p.shape[-1] != k:
        raise InvalidInput(f"{name}: has {p.shape[-1]} classes in the test inference; the manifest needs {k}",
                           code="onnx_io_mismatch", details={"check": "onnx_io_mismatch", "path": name,
                                                             "shape": list(p.shape), "expected": k})
    if p.size and (p.min() < -_PROB_TOL or p.max() > 1 + _PROB_TOL
                   or np.max(np.abs(p.sum(axis=-1) - 1.0)) > _PROB_TOL):
        worst = float(p.sum(axis=-1).reshape(-1)[int(np.argmax(np.abs(p.sum(axis=-1) - 1.0)))])
        raise _inference_error(f"{name} is not a probability distribution (a row sums to {worst:.4g}, values in "
                               f"[{p.min():.3g}, {p.max():.3g}]); end the graph with a Softmax",
                               output=name, row_sum=worst)


def _check_predictions(task: str, manifest: Mapping, pred: Predictions, n: int, raw: Any) -> None:
    if not isinstance(pred, Predictions) or len(pred.results) != n:
        raise _inference_error(f"the test inference gave {len(getattr(pred, 'results', []))} results for {n} "
                               "contents")
    unc = _finite("uncertainty", pred.uncertainty)
    emb = _finite("embedding", pred.embedding)
    if unc.shape != (n,):
        raise _inference_error(f"uncertainty has shape {list(unc.shape)}; expected [{n}]")
    if emb.ndim != 2 or emb.shape[0] != n or emb.shape[1] < 1:
        raise InvalidInput(f"outputs['embedding']: gives shape {list(emb.shape)} for {n} contents; expected "
                           f"({n}, D) with D >= 1", code="onnx_io_mismatch",
                           details={"check": "onnx_io_mismatch", "path": "outputs['embedding']",
                                    "shape": list(emb.shape)})
    C = len(manifest["labels"])
    if task == "classification":
        _softmax_rows("outputs['probs']", _finite("outputs['probs']", pred.extra["probs"]), C)
    elif task == "detection":
        for name, a in zip(("heatmap", "wh", "offset"), raw):
            _finite(f"outputs[{name!r}]", a)
        hm, wh, off = raw
        if hm.shape[1] != C or wh.shape[1] != 2 or off.shape[1] != 2 or wh.shape[2:] != hm.shape[2:] \
                or off.shape[2:] != hm.shape[2:]:
            raise InvalidInput(f"outputs: heatmap {list(hm.shape)}, wh {list(wh.shape)}, offset {list(off.shape)} "
                               f"in the test inference; expected (N, {C}, H, W), (N, 2, H, W), (N, 2, H, W)",
                               code="onnx_io_mismatch", details={"check": "onnx_io_mismatch", "path": "outputs"})
    elif task == "audio_regions":
        for i, p in enumerate(pred.extra["frame_probs"]):
            _softmax_rows("outputs['probs']", _finite("outputs['probs']", p), C + 1)
    else:
        probs = _finite("outputs['probs']", raw)
        k = probs.shape[-1]
        allowed = (C + 1,) if task == "cuboids" else (C, max(2, C))
        _softmax_rows("outputs['probs']", probs, k if k in allowed else allowed[0])
    _finite_results(pred.results)


def _finite_results(results: Any, where: str = "results") -> None:
    stack = [(where, results)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, Mapping):
            stack.extend((f"{path}.{k}", x) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            if len(v) > 64 and all(isinstance(x, (int, float)) for x in v[:64]):
                _finite(path, v)
            else:
                stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
        elif isinstance(v, float) and not math.isfinite(v):
            raise _inference_error(f"the test inference gave a non-finite value at {path}", output=path)


def _summary(task: str, pred: Predictions) -> dict:
    unc = np.asarray(pred.uncertainty, dtype=np.float64)
    out: dict[str, Any] = {"n": len(pred.results), "embedding_dim": int(np.asarray(pred.embedding).shape[1]),
                           "uncertainty": {"min": float(unc.min()), "mean": float(unc.mean()),
                                           "max": float(unc.max())} if unc.size else {}}
    if task == "classification":
        out["labels"] = [r["label"] for r in pred.results]
        out["top_scores"] = [round(max(r["scores"].values()), 6) for r in pred.results]
    else:
        key = {"detection": "boxes", "audio_regions": "regions", "cuboids": "cuboids",
               "point_segmentation": "point_labels"}[task]
        out[f"{key}_per_sample"] = [len(r[key]) for r in pred.results]
    return out


def _run(model: bytes, manifest: dict, contents: Sequence[bytes]) -> tuple[Predictions, Any, float, float]:
    from ml.learners.runners import onnx_runner

    task = manifest["task_type"]
    t0 = time.perf_counter()
    try:
        runner = onnx_runner(model, manifest)
        if task == "audio_regions":
            runner._sess()  # its session is lazy: build it here, so load and inference time apart
    except Exception as exc:  # onnxruntime's Fail / InvalidGraph / NotImplemented, or the runner's own checks
        raise _inference_error(f"onnxruntime cannot load the model: {_ort_message(exc)}", stage="load",
                               error=_ort_message(exc, 1000)) from None
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        if task == "detection":
            pred, raw = runner._predict(contents)
        elif task in ("point_segmentation", "cuboids"):
            pred, raw = runner.predict_raw(contents)
        else:
            pred, raw = runner.predict(contents), None
    except Exception as exc:
        raise _inference_error(f"the test inference failed: {_ort_message(exc)}", stage="predict",
                               error=_ort_message(exc, 1000)) from None
    return pred, raw, load_s, time.perf_counter() - t0


def _ort_message(exc: BaseException, limit: int = 500) -> str:
    msg = str(exc)
    if isinstance(exc, MLError):  # a runner's typed wrapper: keep onnxruntime's own words from its details
        msg = exc.message + (f": {exc.details['error']}" if exc.details.get("error") else "")
    return f"{type(exc).__name__}: {' '.join(msg.split())}"[:limit]


# ------------------------------------------------------------------------------------------------------ the entry


def validate_upload(model: bytes, manifest: Mapping[str, Any], *, max_bytes: int,
                    sample_contents: Sequence[bytes] | None = None,
                    labels: Sequence[str] | None = None) -> ValidatedUpload:
    """Check an uploaded ONNX file and its manifest (see the module docstring for the checks and their codes) and
    run a test inference through :func:`ml.learners.runners.onnx_runner` on ``sample_contents`` (stored bytes of
    the manifest's modality; two made-up ones when None). ``labels``: the project's label set, if the model must
    cover exactly it."""
    data = bytes(model)
    if max_bytes < 1:
        raise InvalidInput("max_bytes must be >= 1", details={"max_bytes": max_bytes})
    if len(data) > max_bytes:
        raise TooLarge(f"the ONNX file is {len(data):,} bytes; at most {max_bytes:,} are accepted",
                       code="onnx_too_large", details={"check": "onnx_too_large", "size_bytes": len(data),
                                                       "max_bytes": int(max_bytes)})
    if sample_contents is not None and len(sample_contents) == 0:
        raise InvalidInput("sample_contents is empty; pass None for made-up samples", code="empty_data")
    proto = _parse(data)
    parameters = _check_external(proto)
    imports = _check_opsets(proto)
    _check_model(data)
    ir_version = int(proto.ir_version)
    inputs, outputs = _io(proto)
    del proto  # onnxruntime parses the bytes itself; do not hold two copies of the weights
    norm = validate_manifest(manifest, labels=labels)
    norm["opset"] = imports[""]
    _check_io(norm, inputs, outputs)
    synthetic = sample_contents is None
    contents = synthetic_contents(norm) if synthetic else [bytes(c) for c in sample_contents]
    if not synthetic:
        from ml import modalities

        mod = modalities.get(norm["modality"])
        for i, c in enumerate(contents):
            try:
                mod.validate(c)
            except MLError as exc:
                exc.details.setdefault("index", i)
                exc.details.setdefault("check", "sample_contents")
                raise
    pred, raw, load_s, infer_s = _run(data, norm, contents)
    _check_predictions(norm["task_type"], norm, pred, len(contents), raw)
    return ValidatedUpload(task_type=norm["task_type"], manifest=norm, sha256=hashlib.sha256(data).hexdigest(),
                           size_bytes=len(data), ir_version=ir_version, opset=imports[""], opset_imports=imports,
                           inputs=inputs, outputs=outputs, parameters=int(parameters), load_seconds=load_s,
                           inference_seconds=infer_s, n_samples=len(contents), synthetic=synthetic,
                           summary=_summary(norm["task_type"], pred))
