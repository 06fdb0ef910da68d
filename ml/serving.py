"""Serving an exported model with onnxruntime, and measuring it. No torch here.

:class:`OnnxClassifier` is what the web process and the prediction API use: importing this module
imports numpy only; onnxruntime is imported when a classifier is created. A process that serves
with it never imports torch.

:func:`measure_latency` times any ``runner(X) -> array`` at several batch sizes;
:func:`choose_runtime` applies the deployment rule for int8 vs fp32.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ml.errors import CorruptData, EmptyData, InvalidInput, require

__all__ = [
    "OnnxClassifier",
    "measure_latency",
    "choose_runtime",
    "RuntimeChoice",
    "runtime_decision",
    "METADATA_PREFIX",
]

METADATA_PREFIX = "looplab."


def _ort():
    # onnxruntime is a core dependency; the check only words the error when an install lacks it
    return require("onnxruntime", "onnxruntime is required to serve exported models",
                   install="pip install 'onnxruntime>=1.18,<2'")


class OnnxClassifier:
    """A model exported by :func:`ml.export.export_onnx`, run with onnxruntime (CPU).

    ``path_or_bytes``: a path to a ``.onnx`` file or its bytes. ``threads``: intra-op threads
    (``None`` lets onnxruntime decide). The model's outputs are ``probs`` and ``embedding``;
    ``modality``, ``task``, ``n_classes`` and ``arch`` come from the model's metadata (``None``
    for a model exported elsewhere).
    """

    def __init__(self, path_or_bytes: str | os.PathLike | bytes, *, threads: int | None = None) -> None:
        ort = _ort()
        opts = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise InvalidInput("threads must be >= 1", details={"threads": threads})
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = bytes(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else os.fspath(path_or_bytes)
        try:
            self._session = ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile
            if not isinstance(source, bytes) and not os.path.exists(source):
                raise FileNotFoundError(source) from exc
            raise CorruptData(
                "not a loadable ONNX model", code="corrupt_model", details={"error": f"{type(exc).__name__}: {exc}"}
            ) from exc
        inputs = self._session.get_inputs()
        outputs = {o.name for o in self._session.get_outputs()}
        if len(inputs) != 1 or not {"probs", "embedding"} <= outputs:
            raise InvalidInput(
                "ONNX model must have one input and outputs 'probs' and 'embedding'",
                code="bad_model",
                details={"inputs": [i.name for i in inputs], "outputs": sorted(outputs)},
            )
        self.input_name: str = inputs[0].name
        self.input_shape: list = list(inputs[0].shape)  # e.g. ['batch', 3, 32, 32]
        meta = self._session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = {k[len(METADATA_PREFIX):]: v for k, v in meta.items() if k.startswith(METADATA_PREFIX)}
        self.modality: str | None = self.metadata.get("modality")
        self.task: str | None = self.metadata.get("task")
        self.n_classes: int | None = int(self.metadata["n_classes"]) if "n_classes" in self.metadata else None
        self.arch: dict | None = json.loads(self.metadata["arch"]) if "arch" in self.metadata else None
        self.threads = threads

    def __repr__(self) -> str:
        return f"OnnxClassifier(modality={self.modality!r}, task={self.task!r}, n_classes={self.n_classes}, input={self.input_shape})"

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        rank = len(self.input_shape)
        if X.ndim != rank:
            raise InvalidInput(
                f"input must have {rank} dimensions {self.input_shape}, got shape {tuple(X.shape)}",
                code="bad_shape",
                details={"expected": [str(d) for d in self.input_shape], "shape": list(X.shape)},
            )
        for axis, (want, got) in enumerate(zip(self.input_shape, X.shape)):
            if isinstance(want, int) and want != got:
                raise InvalidInput(
                    f"input axis {axis} must be {want}, got {got} (shape {tuple(X.shape)})",
                    code="bad_shape",
                    details={"expected": [str(d) for d in self.input_shape], "shape": list(X.shape)},
                )
        if X.shape[0] == 0:
            raise EmptyData("empty batch")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if not np.isfinite(X).all():
            raise EmptyData("input contains NaN or infinite values")
        return X

    def run(self, X: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, embedding)`` for a batch, run in chunks of ``batch_size``."""
        X = self._check(X)
        probs, embs = [], []
        for start in range(0, len(X), batch_size):
            p, e = self._session.run(["probs", "embedding"], {self.input_name: X[start : start + batch_size]})
            probs.append(p)
            embs.append(e)
        return np.concatenate(probs).astype(np.float32, copy=False), np.concatenate(embs).astype(np.float32, copy=False)

    def _one(self, name: str, X: np.ndarray, batch_size: int) -> np.ndarray:
        X = self._check(X)
        out = [
            self._session.run([name], {self.input_name: X[start : start + batch_size]})[0]
            for start in range(0, len(X), batch_size)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict_proba(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Probabilities ``(N, C)`` (``(N, P, C)`` for a segmentation model), float32."""
        return self._one("probs", X, batch_size)

    def embed(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Embeddings ``(N, D)`` float32."""
        return self._one("embedding", X, batch_size)

    def predict(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        return self.predict_proba(X, batch_size=batch_size).argmax(axis=-1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# measurement


def _rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc; falls back to peak RSS)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def measure_latency(
    runner: Callable[[np.ndarray], Any],
    X: np.ndarray,
    batch_sizes: Sequence[int] = (1, 64),
    *,
    warmup: int = 3,
    repeats: int | None = None,
    min_seconds: float = 0.5,
    max_repeats: int = 200,
) -> dict:
    """Time ``runner(batch)`` on batches drawn in order (wrapping around) from ``X``.

    For each batch size: ``warmup`` untimed calls, then ``repeats`` timed calls (default:
    as many as fit in ``min_seconds``, at least 10, at most ``max_repeats``).

    Returns ``{str(batch_size): {"batch_size", "n_runs", "p50_ms", "p95_ms", "mean_ms",
    "throughput_per_s", "rss_mb", "peak_rss_delta_mb"}}``: latencies of one call in ms,
    throughput in samples/s from the mean latency, the process RSS after the runs, and how much the
    process's peak RSS rose above the RSS before the runs (the runner's extra working memory; the
    peak mark is reset through /proc/self/clear_refs, ``None`` where that is not possible).
    """
    X = np.asarray(X)
    if len(X) == 0:
        raise EmptyData("X is empty")
    results: dict[str, dict] = {}
    for bs in batch_sizes:
        if bs < 1:
            raise InvalidInput("batch sizes must be >= 1", details={"batch_size": bs})
        n_batches = max(1, min(8, len(X) // bs))
        batches = [
            np.ascontiguousarray(np.take(X, np.arange(i * bs, (i + 1) * bs) % len(X), axis=0)) for i in range(n_batches)
        ]
        rss_before = _rss_mb()
        peak_tracked = _reset_peak_rss()
        for i in range(warmup):
            runner(batches[i % len(batches)])
        times: list[float] = []
        t_end = time.perf_counter() + min_seconds
        n_target = repeats if repeats is not None else max_repeats
        while len(times) < n_target:
            b = batches[len(times) % len(batches)]
            t0 = time.perf_counter()
            runner(b)
            times.append(time.perf_counter() - t0)
            if repeats is None and len(times) >= 10 and time.perf_counter() > t_end:
                break
        peak_after = _vm_hwm_mb() if peak_tracked else None
        ms = sorted(t * 1000 for t in times)
        mean_ms = statistics.fmean(ms)
        results[str(bs)] = {
            "batch_size": int(bs),
            "n_runs": len(ms),
            "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(mean_ms),
            "throughput_per_s": float(bs / (mean_ms / 1000)) if mean_ms > 0 else float("inf"),
            "rss_mb": float(_rss_mb()),
            "peak_rss_delta_mb": None if peak_after is None else float(max(0.0, peak_after - rss_before)),
        }
    return results


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: str  # "int8" or "fp32"
    speedup: float | None  # min over batch sizes of fp32 p50 / int8 p50
    accuracy_drop: float | None  # fp32_acc - int8_acc, as a fraction (0.01 = 1 point)
    reason: str

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "speedup": self.speedup, "accuracy_drop": self.accuracy_drop, "reason": self.reason}


MIN_INT8_SPEEDUP = 1.2
MAX_INT8_ACCURACY_DROP = 0.01  # one accuracy point


def runtime_decision(
    fp32_stats: dict,
    int8_stats: dict,
    fp32_acc: float | None,
    int8_acc: float | None,
    *,
    min_speedup: float = MIN_INT8_SPEEDUP,
    max_accuracy_drop: float = MAX_INT8_ACCURACY_DROP,
) -> RuntimeChoice:
    """The int8/fp32 rule with its reason (see :func:`choose_runtime`)."""
    common = sorted(set(fp32_stats) & set(int8_stats), key=lambda k: int(k))
    if not common:
        raise InvalidInput(
            "fp32_stats and int8_stats share no batch size",
            details={"fp32": sorted(fp32_stats), "int8": sorted(int8_stats)},
        )
    speedups = {k: fp32_stats[k]["p50_ms"] / int8_stats[k]["p50_ms"] for k in common}
    speedup = min(speedups.values())
    if fp32_acc is None or int8_acc is None:
        return RuntimeChoice("fp32", speedup, None, "no accuracy measured for both runtimes; keeping fp32")
    for name, acc in (("fp32_acc", fp32_acc), ("int8_acc", int8_acc)):
        if not (0.0 <= acc <= 1.0):
            raise InvalidInput(f"{name} must be a fraction in [0, 1]", details={name: acc})
    drop = float(fp32_acc - int8_acc)
    per_batch = ", ".join(f"batch {k}: {v:.2f}x" for k, v in speedups.items())
    if speedup < min_speedup:
        return RuntimeChoice("fp32", speedup, drop, f"int8 not >= {min_speedup}x faster at every batch size ({per_batch})")
    if drop > max_accuracy_drop + 1e-12:
        return RuntimeChoice("fp32", speedup, drop, f"int8 loses {drop * 100:.2f} accuracy points (> {max_accuracy_drop * 100:g})")
    return RuntimeChoice("int8", speedup, drop, f"int8 {per_batch}; accuracy change {-drop * 100:+.2f} points")


def choose_runtime(
    fp32_stats: dict,
    int8_stats: dict,
    fp32_acc: float | None,
    int8_acc: float | None,
) -> str:
    """``"int8"`` only when int8 is >= 1.2x faster than fp32 and loses <= 1 accuracy point.

    ``*_stats`` are :func:`measure_latency` results; the speed-up is fp32 p50 / int8 p50 and must
    hold at every batch size measured for both. Accuracies are fractions in [0, 1]; ``None``
    (not measured) keeps fp32.
    """
    return runtime_decision(fp32_stats, int8_stats, fp32_acc, int8_acc).runtime
