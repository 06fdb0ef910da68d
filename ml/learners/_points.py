"""What the per-point learners (point segmentation, cuboids) share: the PointNet segmenter behind the contract.

- **Input**: a cloud's stored bytes (PLY/PCD/XYZ) → ``read_points`` → normalised coordinates (``"unit_sphere"``:
  centroid at 0, farthest point at radius 1, for objects of any scale; ``"ground"``: x, y centred on the centroid
  and z measured from the lowest percentile, units kept, for scenes where size means something).
- **Training**: each cloud is drawn ``draws`` times as a random subset of ``n_points`` points (padded by repeats
  when smaller) with its per-point labels (-1 = unlabeled, ignored by the loss), and fed to
  :func:`ml.training.train_segmenter` (seeded, CPU-deterministic, CUDA when present).
- **Prediction on every point**: a cloud is cut into chunks of ``n_points`` (a seeded permutation; the last chunk
  is padded with its own points, so its max-pooled global feature is that of its points) and the network runs on
  the chunks; the per-point probabilities are put back on every point of the cloud and the embedding (the
  projected global feature) is averaged over the chunks.
- **The network's raw outputs** (per-point probabilities, embeddings) come from torch or from onnxruntime through
  one function each (:func:`torch_forward`, :class:`OnnxForward`); everything before and after them is this
  module's numpy code, so both paths decode identically.

Imports numpy only at module level; torch, onnxruntime and the readers are imported inside functions.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ml.errors import CorruptData, InvalidInput, MLError
from ml.learners.base import ParityCheck, Predictions

NORMALIZATIONS = ("unit_sphere", "ground")
SAVE_FORMAT = 1

# forward(X (B, n_points, 3) float32) -> (per-point probabilities (B, n_points, C), embeddings (B, D))
Forward = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def read_clouds(contents: Sequence[bytes]) -> list[np.ndarray]:
    """Stored bytes → raw ``(P, 3)`` float64 clouds (typed errors carry ``details["index"]``)."""
    from ml.modalities.pointcloud import read_points

    out = []
    for i, blob in enumerate(contents):
        try:
            out.append(read_points(bytes(blob)))
        except MLError as e:
            e.details.setdefault("index", i)
            raise
    return out


def normalise(points: np.ndarray, mode: str) -> np.ndarray:
    """The network's coordinates for a cloud, float32 ``(P, 3)`` (see the module docstring)."""
    from ml.modalities.pointcloud import normalize_points

    if mode == "unit_sphere":
        return normalize_points(points)
    if mode == "ground":
        pts = np.asarray(points, dtype=np.float64)
        centre = pts.mean(axis=0)
        centre[2] = np.quantile(pts[:, 2], 0.01)
        return (pts - centre).astype(np.float32)
    raise InvalidInput(f"normalize must be one of {NORMALIZATIONS}", details={"normalize": mode})


def point_entropy(proba: np.ndarray) -> np.ndarray:
    """Per-point entropy of ``(P, C)`` probabilities, divided by log C (0 = sure, 1 = uniform)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1) / math.log(max(p.shape[-1], 2))


def entropy_uncertainty(proba: np.ndarray, top_fraction: float) -> float:
    """The per-cloud acquisition score of per-point predictions: the mean of (the mean point entropy) and (the
    mean entropy of the ``top_fraction`` most uncertain points) — the first ranks clouds that are uncertain
    overall, the second those with a small confusing part (a thin pole, a far object) that the mean dilutes."""
    h = point_entropy(proba)
    if h.size == 0:
        return 0.0
    k = max(1, int(math.ceil(top_fraction * h.size)))
    top = np.partition(h, h.size - k)[h.size - k:]
    return float(0.5 * h.mean() + 0.5 * top.mean())


@dataclass(frozen=True)
class Chunker:
    """Cuts clouds into fixed-size chunks for the network and puts the outputs back on every point."""

    n_points: int
    normalize: str
    seed: int = 0

    def chunks(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X (k, n_points, 3) float32, index (k * n_points,))``: row r of the flattened chunks is point
        ``index[r]`` of the cloud."""
        norm = normalise(points, self.normalize)
        p, n = len(norm), self.n_points
        order = np.random.default_rng(self.seed).permutation(p)
        k = max(1, int(math.ceil(p / n)))
        rows = []
        for j in range(k):
            part = order[j * n:(j + 1) * n]
            rows.append(np.resize(part, n))  # pads the last chunk with its own points
        index = np.concatenate(rows)
        return norm[index].reshape(k, n, 3), index

    def run(self, clouds: Sequence[np.ndarray], forward: Forward, *, batch: int = 64
            ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """``(per-cloud point probabilities (P_i, C) float32, embeddings (N, D) float32, raw probabilities of every
        chunk row (R, n_points, C) for parity)``."""
        parts = [self.chunks(c) for c in clouds]
        X = np.concatenate([x for x, _ in parts]) if parts else np.zeros((0, self.n_points, 3), np.float32)
        probs, embs = [], []
        for s in range(0, len(X), batch):
            pr, em = forward(np.ascontiguousarray(X[s:s + batch]))
            probs.append(np.asarray(pr, dtype=np.float32))
            embs.append(np.asarray(em, dtype=np.float32))
        raw = np.concatenate(probs) if probs else np.zeros((0, self.n_points, 0), np.float32)
        emb_rows = np.concatenate(embs) if embs else np.zeros((0, 0), np.float32)
        out, cloud_emb, start = [], [], 0
        for cloud, (x, index) in zip(clouds, parts):
            k = len(x)
            proba = np.zeros((len(cloud), raw.shape[-1]), dtype=np.float32)
            proba[index] = raw[start:start + k].reshape(-1, raw.shape[-1])
            out.append(proba)
            cloud_emb.append(emb_rows[start:start + k].mean(axis=0))
            start += k
        emb = np.stack(cloud_emb).astype(np.float32) if cloud_emb else np.zeros((0, 0), np.float32)
        return out, emb, raw


def training_arrays(clouds: Sequence[np.ndarray], point_labels: Sequence[np.ndarray], *, n_points: int,
                    normalize: str, draws: int, rng: np.random.Generator, weights: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``draws`` random ``n_points`` subsets of every cloud → ``(X (M, n, 3), y (M, n), weight (M,))``."""
    from ml.modalities.pointcloud import resample_points

    X, Y, W = [], [], []
    for i, (cloud, labels) in enumerate(zip(clouds, point_labels)):
        norm = normalise(cloud, normalize)
        for _ in range(draws):
            pts, idx = resample_points(norm, n_points, random_state=rng, method="random")
            X.append(pts)
            Y.append(labels[idx])
            W.append(1.0 if weights is None else float(weights[i]))
    return (np.stack(X).astype(np.float32), np.stack(Y).astype(np.int64), np.asarray(W, dtype=np.float32))


def fit_segmenter(X: np.ndarray, y: np.ndarray, w: np.ndarray, *, n_classes: int, epochs: int, batch_size: int,
                  lr: float, seed: int, device: str, arch: Mapping[str, Any] | None, progress=None):
    """:func:`ml.training.train_segmenter` on the drawn subsets (no validation split: all epochs, best train loss)."""
    from ml.training import TrainConfig, train_segmenter

    config = TrainConfig(epochs=epochs, batch_size=max(2, min(batch_size, len(X))), lr=lr, seed=seed,
                         device=device, patience=max(epochs, 1))
    return train_segmenter(X, y, None, None, n_classes=n_classes, config=config, sample_weight=w,
                           progress=progress, arch=dict(arch) if arch else None)


def torch_forward(model) -> Forward:
    """The fitted :class:`ml.training.TrainedModel`'s raw outputs."""
    def forward(X: np.ndarray):
        return model.predict_and_embed(X, batch_size=len(X))
    return forward


class OnnxForward:
    """The exported network's raw outputs through onnxruntime (CPU)."""

    def __init__(self, model: bytes, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # no spin-waiting of the intra-op pool after a run: the spinning threads slowed the numpy chunking and
        # decoding around every forward on a small CPU (bench.export_latency)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, X: np.ndarray):
        probs, emb = self._session.run(["probs", "embedding"], {"input": X.astype(np.float32)})
        return probs, emb


def export_model(model) -> bytes:
    """The segmenter as ONNX bytes (:func:`ml.export.export_onnx`, opset :data:`ml.export.DEFAULT_OPSET`)."""
    import os
    import tempfile

    from ml.export import DEFAULT_OPSET, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model, path, opset=DEFAULT_OPSET)
        with open(path, "rb") as f:
            return f.read()


def save_blob(kind: str, params: Mapping[str, Any], labels: Sequence[str], model, decoding: Mapping) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({"format": SAVE_FORMAT, "kind": kind, "params": dict(params), "labels": list(labels),
                "model": model.to_dict(), "decoding": dict(decoding)}, buf)
    return buf.getvalue()


def load_blob(kind: str, data: bytes) -> tuple[dict, tuple[str, ...], Any, dict]:
    import torch

    from ml.training import TrainedModel

    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors: not a learner blob
        raise CorruptData("not a readable learner file", code="corrupt_model",
                          details={"error": f"{type(exc).__name__}: {exc}"}) from exc
    if not isinstance(blob, dict) or blob.get("format") != SAVE_FORMAT or blob.get("kind") != kind:
        raise CorruptData(f"not a {kind} learner file", code="corrupt_model",
                          details={"format": blob.get("format") if isinstance(blob, dict) else None})
    model = TrainedModel.from_bytes(_to_bytes(blob["model"]))
    return dict(blob["params"]), tuple(blob["labels"]), model, dict(blob.get("decoding", {}))


def _to_bytes(model_dict: dict) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(model_dict, buf)
    return buf.getvalue()


def parity_check(torch_raw: np.ndarray, onnx_raw: np.ndarray, agree: Sequence[bool], *,
                 tolerance: float) -> ParityCheck:
    """Raw outputs compared by max abs difference, decoded results by the share of samples that agree."""
    diff = float(np.max(np.abs(torch_raw - onnx_raw))) if torch_raw.size else 0.0
    agreement = float(np.mean(agree)) if len(agree) else 1.0
    return ParityCheck(n=len(agree), max_abs_diff=diff, agreement=agreement,
                       passed=bool(diff <= tolerance and agreement >= 0.99), tolerance=tolerance)




class PointNetLearnerBase:
    """The fit / predict / export / persistence plumbing of a learner on the PointNet segmenter. A subclass says
    how targets become per-point labels (:meth:`_point_labels`), how many network classes it has
    (:meth:`_n_net_classes`), and how per-point probabilities decode into results (:meth:`decode`, a static
    function of numpy arrays that the ONNX runner calls too)."""

    name = ""
    modality = "pointcloud"
    task_type = ""
    _kind = ""
    _params = ("epochs", "n_points", "draws", "batch_size", "lr", "normalize", "top_fraction", "device",
               "random_state", "arch")

    def _n_net_classes(self, labels: Sequence[str]) -> int:
        raise NotImplementedError

    def _point_labels(self, points: np.ndarray, target: Mapping, labels: Sequence[str], index: int) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def decode(cls, clouds: Sequence[np.ndarray], proba: Sequence[np.ndarray], params: Mapping[str, Any],
               labels: Sequence[str]) -> tuple[list[dict], np.ndarray]:
        raise NotImplementedError

    @classmethod
    def results_agree(cls, a: Mapping, b: Mapping) -> bool:
        raise NotImplementedError

    def _fit_decoding(self, clouds: Sequence[np.ndarray], data) -> dict:
        """Learned decoding state (JSON-serialisable, passed to :meth:`decode` with the parameters and written
        into the ONNX manifest), fitted after the network; none by default."""
        return {}

    def _decoding_params(self) -> dict:
        return {**self.get_params(), **getattr(self, "decoding_", {})}

    # -- scikit-learn style parameters

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._params}

    def _chunker(self) -> Chunker:
        return Chunker(n_points=int(self.n_points), normalize=self.normalize, seed=int(self.random_state))

    def _check_params(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise InvalidInput(f"normalize must be one of {NORMALIZATIONS}", details={"normalize": self.normalize})
        if int(self.n_points) < 16 or int(self.draws) < 1 or int(self.epochs) < 1:
            raise InvalidInput("n_points must be >= 16, draws and epochs >= 1",
                               details={"n_points": self.n_points, "draws": self.draws, "epochs": self.epochs})
        if not 0 < float(self.top_fraction) <= 1:
            raise InvalidInput("top_fraction must be in (0, 1]", details={"top_fraction": self.top_fraction})

    # -- the contract

    def fit(self, data, *, validation=None, progress=None):
        """Train on ``data`` (``validation`` is not used: the segmenter keeps its best training epoch)."""
        import time

        from ml.learners.base import check_dataset

        self._check_params()
        check_dataset(data, min_samples=1)
        t0 = time.perf_counter()
        clouds = read_clouds(data.contents)
        labels = tuple(data.labels)
        point_labels = [self._point_labels(c, t, labels, i) for i, (c, t) in enumerate(zip(clouds, data.targets))]
        if not any((y >= 0).any() for y in point_labels):
            raise InvalidInput("no labeled point to train on", code="not_enough_labels",
                               details={"labeled": 0, "needed": 1})
        rng = np.random.default_rng(int(self.random_state))
        weights = None if data.sample_weight is None else np.asarray(data.sample_weight, dtype=np.float64)
        X, y, w = training_arrays(clouds, point_labels, n_points=int(self.n_points), normalize=self.normalize,
                                  draws=int(self.draws), rng=rng, weights=weights)
        if len(X) < 2:  # the trainer needs two samples: one cloud drawn once is drawn twice
            X, y, w = np.concatenate([X, X]), np.concatenate([y, y]), np.concatenate([w, w])
        self.model_ = fit_segmenter(X, y, w, n_classes=self._n_net_classes(labels), epochs=int(self.epochs),
                                    batch_size=int(self.batch_size), lr=float(self.lr), seed=int(self.random_state),
                                    device=self.device, arch=self.arch, progress=progress)
        self.labels_ = labels
        self.decoding_ = self._fit_decoding(clouds, data)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InvalidInput(f"{type(self).__name__} is not fitted", code="invalid_input")

    def _predict_with(self, contents: Sequence[bytes], forward: Forward) -> tuple[Predictions, np.ndarray]:
        clouds = read_clouds(contents)
        proba, emb, raw = self._chunker().run(clouds, forward)
        results, uncertainty = self.decode(clouds, proba, self._decoding_params(), self.labels_)
        if not clouds:
            emb = np.zeros((0, int(self.model_.embed_dim)), np.float32)
        return Predictions(results=results, uncertainty=np.asarray(uncertainty, dtype=np.float64),
                           embedding=emb.astype(np.float32), extra={"point_proba": proba}), raw

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        self._check_fitted()
        return self._predict_with(contents, torch_forward(self.model_))[0]

    def evaluate(self, data, predictions: Predictions | None = None):
        from ml.metrics import evaluate

        self._check_fitted()
        predictions = predictions if predictions is not None else self.predict(data.contents)
        return evaluate(self.task_type, predictions.results, data.targets, data.labels, data.slices)

    def export_onnx(self):
        from ml.learners.base import OnnxExport

        self._check_fitted()
        model = export_model(self.model_)
        manifest = {"task_type": self.task_type, "learner": self.name, "labels": list(self.labels_),
                    "params": {k: v for k, v in self._decoding_params().items() if k not in ("device", "arch")},
                    "input": {"name": "input", "shape": ["batch", int(self.n_points), 3],
                              "normalize": self.normalize},
                    "outputs": {"probs": "per-point class probabilities", "embedding": "projected global feature"}}
        return OnnxExport(model=model, manifest=manifest, runner=PointOnnxRunner(type(self), model, manifest))

    def parity(self, export, contents: Sequence[bytes], *, tolerance: float = 1e-4) -> ParityCheck:
        self._check_fitted()
        ref, ref_raw = self._predict_with(contents, torch_forward(self.model_))
        got, got_raw = export.runner.predict_raw(contents)
        agree = [self.results_agree(a, b) for a, b in zip(ref.results, got.results)]
        return parity_check(ref_raw, got_raw, agree, tolerance=tolerance)

    def to_bytes(self) -> bytes:
        self._check_fitted()
        return save_blob(self._kind, self.get_params(), self.labels_, self.model_, self.decoding_)

    @classmethod
    def from_bytes(cls, data: bytes):
        params, labels, model, decoding = load_blob(cls._kind, data)
        learner = cls(**params)
        learner.model_, learner.labels_, learner.decoding_ = model, labels, decoding
        return learner


class PointOnnxRunner:
    """Predicts like the learner class it was exported from: onnxruntime for the network, the learner's own numpy
    chunking and :meth:`PointNetLearnerBase.decode` around it."""

    def __init__(self, learner_cls: type, model: bytes, manifest: Mapping[str, Any], *, threads: int | None = None):
        self.labels = tuple(manifest["labels"])
        self._cls = learner_cls
        self._params = dict(manifest["params"])
        self._forward = OnnxForward(model, threads=threads)
        self._chunker = Chunker(n_points=int(self._params["n_points"]), normalize=self._params["normalize"],
                                seed=int(self._params["random_state"]))

    def predict_raw(self, contents: Sequence[bytes]) -> tuple[Predictions, np.ndarray]:
        clouds = read_clouds(contents)
        proba, emb, raw = self._chunker.run(clouds, self._forward)
        results, uncertainty = self._cls.decode(clouds, proba, self._params, self.labels)
        return Predictions(results=results, uncertainty=np.asarray(uncertainty, dtype=np.float64),
                           embedding=emb.astype(np.float32), extra={"point_proba": proba}), raw

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        return self.predict_raw(contents)[0]
