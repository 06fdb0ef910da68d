"""Audio regions: frame-level classification on log-mel, then region decoding (``FrameRegionLearner``, "frames").

Pipeline (the same for the torch model and the ONNX runner; only the network's forward differs):

1. **Features** (:func:`clip_features`): the stored bytes are validated and decoded to 16 kHz mono
   (:func:`ml.modalities.audio.decode_audio`) and turned into the scaled log-mel spectrogram
   (:func:`ml.modalities.audio.logmel`, 64 bands, 10 ms hop): ``(1, 64, T)``, frame ``t`` centred at ``t * 10 ms``.
2. **Network** (:class:`_FrameNet`): a 2-D conv front end (two conv-BN-ReLU blocks, each halving the mel axis), the
   mel axis folded into channels, then residual dilated 1-D convolutions over time (dilations 1, 2, 4, 8: about
   0.6 s of context) → per-frame features ``(T, D)`` and per-frame softmax over ``[background, *labels]``
   ``(T, K)``. All convolutions are "same"-padded, so any ``T`` works (the ONNX time axis is dynamic).
3. **Decoding** (:func:`decode_regions`, numpy): per class, the frame probabilities are median-filtered
   (``median_frames``), thresholded with hysteresis (a region starts on a frame at or above the class's
   ``onset`` threshold and extends while the probability stays at or above its ``offset`` threshold), regions of
   one class closer than ``merge_gap_s`` are merged and those shorter than ``min_duration_s`` dropped. A region's
   ``score`` is the mean (unsmoothed) frame probability of its class inside it. Classes decode independently.
4. **Uncertainty** (:func:`clip_uncertainty`): with ``H_t`` the entropy of frame ``t``'s softmax divided by
   ``log K`` (so in [0, 1]), ``u = 0.5 * mean_t H_t + 0.5 * mean of the top-k H_t`` with ``k = max(1, ceil(10 %
   of T))``: the mean says how unsure the whole clip is, the top-k part keeps a clip with one short confusing
   passage (an unclear word inside long easy background) from being averaged away.
5. **Embedding**: mean- and max-pooled frame features, concatenated (``2 D`` float32).

Training: random fixed-length crops (``crop_s``) of the clips (shorter clips are padded and the padding masked out),
per-frame cross-entropy with class weights (inverse square root of the frame frequency of each class, mean 1) and
per-clip sample weights, light augmentation (random gain, i.e. a constant shift of the log-mel; the random crop
offset shifts the clip in time). AdamW with a one-cycle schedule (warm-up, then cosine decay); seeded and
deterministic on CPU (:func:`ml.training._deterministic`); trained on CUDA when ``device="auto"`` finds one, predicted
on CPU. With a ``validation`` set, each class's onset threshold (offset = 0.6 x onset) is picked from a small grid by
the event F1 on it; otherwise the defaults hold. Clips are read whole, up to ``max_duration_s`` (default 10 min).

A known limit of the entropy score: on audio unlike the training data (e.g. loud noise after training on quiet
clips) the network tends to call everything background *confidently*, so such clips score *low*; that shift shows in
the embedding (drift), not in this score.

A frame's target: the label of the region that contains its centre (the later region where two overlap), else
background. Importing this module costs numpy only; torch and onnxruntime are imported inside the methods.
"""
from __future__ import annotations

import io
import json
import math
import time
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from ml.errors import CorruptData, InvalidInput
from ml.learners.base import (Dataset, EvalReport, OnnxExport, ParityCheck, Predictions, ProgressFn,
                              check_dataset)

__all__ = ["FrameRegionLearner", "RegionOnnxRunner", "clip_features", "frame_targets", "decode_regions",
           "clip_uncertainty", "pool_embedding", "postprocess", "regions_agree"]

HOP_S = 0.01  # ml.modalities.audio.HOP_LENGTH / SAMPLE_RATE
SAVE_FORMAT = 1
_BACKGROUND = "__background__"


# ---------------------------------------------------------------------------------------------------------------
# shared numpy code: features, targets, decoding (used after torch and after onnxruntime alike)


MAX_DURATION_S = 600.0  # longest clip a learner reads whole (10 min: 60k frames; activations stay ~100 MB)


def clip_features(content: bytes, *, max_duration_s: float = MAX_DURATION_S) -> np.ndarray:
    """Stored audio bytes → scaled log-mel ``(1, n_mels, T)`` float32 (validated: typed errors on bad input; a
    clip longer than ``max_duration_s`` is ``too_large``)."""
    from ml.modalities.audio import decode_audio, logmel

    y, _ = decode_audio(content, max_duration_s=max_duration_s)
    return logmel(y)[None].astype(np.float32)


def frame_targets(target: Mapping[str, Any], labels: Sequence[str], n: int) -> np.ndarray:
    """``(n,)`` int64 frame classes: 0 background, ``1 + label index`` inside a region (by frame centre)."""
    from ml.metrics.regions import parse_regions

    y = np.zeros(n, dtype=np.int64)
    centres = np.arange(n) * HOP_S
    for c, start, end in sorted(parse_regions(target, labels, where="target"), key=lambda r: r[1]):
        y[(centres >= start) & (centres <= end)] = c + 1
    return y


def _median_filter(p: np.ndarray, size: int) -> np.ndarray:
    """Median over a centred window of ``size`` frames along axis 0 (edges padded by repetition)."""
    if size <= 1 or p.shape[0] == 0:
        return p
    half = size // 2
    padded = np.pad(p, ((half, size - 1 - half), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=0)  # (T, K, size)
    return np.median(windows, axis=-1)


def decode_regions(probs: np.ndarray, labels: Sequence[str], *, onset: Sequence[float], offset: Sequence[float],
                   median_frames: int = 7, min_duration_s: float = 0.1, merge_gap_s: float = 0.1,
                   hop_s: float = HOP_S) -> list[dict]:
    """Frame probabilities ``(T, 1 + C)`` (background first) → regions ``[{"label", "start", "end", "score"}]``
    sorted by start (see the module doc). ``onset``/``offset`` per class (``C`` each)."""
    probs = np.asarray(probs, dtype=np.float64)
    T = probs.shape[0]
    smooth = _median_filter(probs, int(median_frames))
    duration = T * hop_s
    regions = []
    for c, name in enumerate(labels):
        p = smooth[:, c + 1]
        above = np.concatenate([[False], p >= offset[c], [False]])
        edges = np.flatnonzero(np.diff(above.astype(np.int8)))
        runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if np.max(p[a:b]) >= onset[c]]  # [a, b)
        merged: list[list[int]] = []
        for a, b in runs:
            if merged and (a - merged[-1][1]) * hop_s < merge_gap_s:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        for a, b in merged:
            start, end = max(0.0, (a - 0.5) * hop_s), min(duration, (b - 0.5) * hop_s)
            if end - start < min_duration_s:
                continue
            regions.append({"label": name, "start": round(float(start), 4), "end": round(float(end), 4),
                            "score": float(probs[a:b, c + 1].mean())})
    regions.sort(key=lambda r: (r["start"], r["label"]))
    return regions


def clip_uncertainty(probs: np.ndarray, *, top_fraction: float = 0.1) -> float:
    """Mean and top-k normalised frame entropy, averaged (see the module doc). ``probs`` ``(T, K)``."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=1) / math.log(p.shape[1])
    k = max(1, math.ceil(top_fraction * h.size))
    return float(0.5 * h.mean() + 0.5 * np.sort(h)[-k:].mean())


def pool_embedding(features: np.ndarray) -> np.ndarray:
    """Frame features ``(T, D)`` → ``(2 D,)`` float32: mean then max over time."""
    f = np.asarray(features, dtype=np.float32)
    return np.concatenate([f.mean(axis=0), f.max(axis=0)]).astype(np.float32)


def postprocess(outputs: Sequence[tuple[np.ndarray, np.ndarray]], labels: Sequence[str],
                decoding: Mapping[str, Any], *, embed_dim: int = 0) -> Predictions:
    """Per clip ``(probs (T, K), features (T, D))`` raw network outputs → :class:`Predictions`; the one function
    the torch path and the ONNX runner share."""
    results, unc, emb = [], [], []
    for probs, feats in outputs:
        results.append({"regions": decode_regions(
            probs, labels, onset=decoding["onset"], offset=decoding["offset"],
            median_frames=decoding["median_frames"], min_duration_s=decoding["min_duration_s"],
            merge_gap_s=decoding["merge_gap_s"])})
        unc.append(clip_uncertainty(probs))
        emb.append(pool_embedding(feats))
    return Predictions(results=results, uncertainty=np.asarray(unc, dtype=np.float64),
                       embedding=np.stack(emb).astype(np.float32) if emb else np.zeros((0, 2 * embed_dim), np.float32),
                       extra={"frame_probs": [p for p, _ in outputs]})


def regions_agree(a: Sequence[Mapping], b: Sequence[Mapping], tolerance: float) -> bool:
    """Same number of regions, same labels in order, starts and ends within ``tolerance`` seconds."""
    return len(a) == len(b) and all(
        x["label"] == y["label"] and abs(x["start"] - y["start"]) <= tolerance and abs(x["end"] - y["end"]) <= tolerance
        for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------------------
# the network (torch imported on use)


def _frame_net(n_mels: int, n_out: int, width: int, dilations: Sequence[int]):
    import torch
    from torch import nn

    class _Block(nn.Module):
        def __init__(self, c: int, d: int) -> None:
            super().__init__()
            self.conv = nn.Conv1d(c, c, 3, padding=d, dilation=d)
            self.bn = nn.BatchNorm1d(c)

        def forward(self, x):
            return torch.relu(x + self.bn(self.conv(x)))

    class _FrameNet(nn.Module):
        """``(N, 1, n_mels, T)`` → ``probs (N, T, K)``, ``features (N, T, width)``."""

        def __init__(self) -> None:
            super().__init__()
            c2 = 16
            self.front = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d((2, 1)),
                nn.Conv2d(8, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d((2, 1)))
            self.proj = nn.Sequential(nn.Conv1d(c2 * (n_mels // 4), width, 1), nn.BatchNorm1d(width), nn.ReLU())
            self.blocks = nn.Sequential(*[_Block(width, d) for d in dilations])
            self.head = nn.Conv1d(width, n_out, 1)

        def logits_and_features(self, x):
            h = self.front(x)  # (N, c2, n_mels/4, T)
            h = h.flatten(1, 2)  # (N, c2 * n_mels/4, T)
            f = self.blocks(self.proj(h))  # (N, width, T)
            return self.head(f), f

        def forward(self, x):
            logits, f = self.logits_and_features(x)
            return torch.softmax(logits, dim=1).transpose(1, 2), f.transpose(1, 2)

    return _FrameNet()


# ---------------------------------------------------------------------------------------------------------------
# the learner


class FrameRegionLearner:
    """Frame classifier on log-mel with region decoding (see the module doc). Parameters are stored as given
    (scikit-learn style); ``fit`` learns ``net_``, ``labels_``, ``onset_``, ``offset_``, ``history_``."""

    name: ClassVar[str] = "frames"
    modality: ClassVar[str] = "audio"
    task_type: ClassVar[str] = "audio_regions"

    def __init__(self, *, epochs: int = 30, batch_size: int = 8, lr: float = 3e-3, weight_decay: float = 1e-4,
                 crop_s: float = 3.0, width: int = 48, dilations: Sequence[int] = (1, 2, 4, 8),
                 onset_threshold: float = 0.5, offset_threshold: float = 0.3, median_frames: int = 7,
                 min_duration_s: float = 0.1, merge_gap_s: float = 0.1, tune_thresholds: bool = True,
                 max_duration_s: float = MAX_DURATION_S, device: str = "auto", random_state: int = 0) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.crop_s = crop_s
        self.width = width
        self.dilations = dilations
        self.onset_threshold = onset_threshold
        self.offset_threshold = offset_threshold
        self.median_frames = median_frames
        self.min_duration_s = min_duration_s
        self.merge_gap_s = merge_gap_s
        self.tune_thresholds = tune_thresholds
        self.max_duration_s = max_duration_s
        self.device = device
        self.random_state = random_state

    # -- parameters -------------------------------------------------------------------------------------------
    def get_params(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items() if not k.endswith("_")}

    def _check_params(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or not (self.lr > 0) or self.crop_s <= 0.1 or self.width < 4:
            raise InvalidInput("epochs >= 1, batch_size >= 2, lr > 0, crop_s > 0.1 and width >= 4 are required",
                               code="invalid_input", details=self.get_params())
        if not (0 < self.offset_threshold <= self.onset_threshold < 1):
            raise InvalidInput("thresholds must satisfy 0 < offset_threshold <= onset_threshold < 1",
                               code="invalid_input",
                               details={"onset": self.onset_threshold, "offset": self.offset_threshold})

    def _decoding(self) -> dict:
        return {"onset": [float(x) for x in self.onset_], "offset": [float(x) for x in self.offset_],
                "median_frames": int(self.median_frames), "min_duration_s": float(self.min_duration_s),
                "merge_gap_s": float(self.merge_gap_s)}

    def _arch(self) -> dict:
        from ml.modalities.audio import N_MELS

        return {"n_mels": N_MELS, "n_out": 1 + len(self.labels_), "width": int(self.width),
                "dilations": [int(d) for d in self.dilations]}

    # -- fit ----------------------------------------------------------------------------------------------------
    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "FrameRegionLearner":
        import torch
        import torch.nn.functional as F

        from ml.training import _deterministic, resolve_device

        self._check_params()
        check_dataset(data, min_samples=2)
        t0 = time.perf_counter()
        self.labels_ = tuple(data.labels)
        feats = [clip_features(c, max_duration_s=self.max_duration_s) for c in data.contents]
        ys = [frame_targets(t, self.labels_, f.shape[-1]) for t, f in zip(data.targets, feats)]
        if not any((y > 0).any() for y in ys):
            raise InvalidInput("no labeled region in the training clips", code="not_enough_labels",
                               details={"clips": len(ys)})
        K = 1 + len(self.labels_)
        counts = np.bincount(np.concatenate(ys), minlength=K).astype(np.float64)
        cw = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
        cw = cw / cw[counts > 0].mean()
        sw = np.ones(len(feats)) if data.sample_weight is None else np.asarray(data.sample_weight, np.float64)
        sw = sw / sw.mean()
        device = resolve_device(self.device)
        crop = max(8, int(round(self.crop_s / HOP_S)))
        rng = np.random.default_rng(self.random_state)
        self.onset_ = np.full(len(self.labels_), float(self.onset_threshold))
        self.offset_ = np.full(len(self.labels_), float(self.offset_threshold))
        history = []
        with _deterministic(int(self.random_state), device):
            net = _frame_net(**self._arch()).to(device)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            steps_per_epoch = max(1, math.ceil(len(feats) / self.batch_size))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.epochs * steps_per_epoch,
                                                        pct_start=0.2)
            cw_t = torch.as_tensor(cw, dtype=torch.float32, device=device)
            for epoch in range(self.epochs):
                net.train()
                perm = rng.permutation(len(feats))
                total = 0.0
                for b in range(steps_per_epoch):
                    idx = perm[b * self.batch_size:(b + 1) * self.batch_size]
                    if len(idx) < 2:  # batch norm needs two samples: top up from the permutation
                        idx = np.concatenate([idx, perm[:2 - len(idx)]])
                    xb = np.full((len(idx), 1, feats[0].shape[1], crop), -1.0, dtype=np.float32)
                    yb = np.zeros((len(idx), crop), dtype=np.int64)
                    mb = np.zeros((len(idx), crop), dtype=np.float32)
                    for j, i in enumerate(idx):
                        T = feats[i].shape[-1]
                        s = int(rng.integers(0, T - crop + 1)) if T > crop else 0
                        L = min(crop, T)
                        xb[j, :, :, :L] = feats[i][:, :, s:s + L] + rng.uniform(-0.2, 0.2)  # gain ±10 dB
                        yb[j, :L] = ys[i][s:s + L]
                        mb[j, :L] = sw[i]
                    x = torch.as_tensor(xb, device=device)
                    logits, _ = net.logits_and_features(x)
                    loss_t = F.cross_entropy(logits, torch.as_tensor(yb, device=device), weight=cw_t,
                                             reduction="none")
                    m = torch.as_tensor(mb, device=device)
                    loss = (loss_t * m).sum() / m.sum().clamp_min(1e-6)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += float(loss.detach())
                history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch})
                if progress is not None:
                    progress(100.0 * (epoch + 1) / self.epochs, f"epoch {epoch + 1}/{self.epochs}")
            net.eval()
        self.net_ = net.to("cpu")
        self.history_ = history
        if validation is not None and len(validation) and self.tune_thresholds:
            self._tune(validation)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _tune(self, validation: Dataset) -> None:
        """Per class, the onset threshold (offset = 0.6 x onset) with the best event F1 on ``validation``."""
        from ml.metrics.regions import evaluate_regions

        outputs = self._outputs(validation.contents)
        grid = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        scores = np.zeros((len(grid), len(self.labels_)))
        for g, on in enumerate(grid):
            self.onset_ = np.full(len(self.labels_), on)
            self.offset_ = 0.6 * self.onset_
            preds = postprocess(outputs, self.labels_, self._decoding())
            rep = evaluate_regions(preds.results, validation.targets, self.labels_)
            scores[g] = [rep.per_class[name]["f1"] for name in self.labels_]
        best = np.asarray(grid)[scores.argmax(axis=0)]
        self.onset_, self.offset_ = best.astype(np.float64), 0.6 * best

    # -- predict ------------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise InvalidInput("the learner is not fitted", code="invalid_input")

    def _outputs(self, contents: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw network outputs per clip (one clip per forward: no padding, so a clip's result does not depend on
        its batch)."""
        import torch

        self._check_fitted()
        out = []
        with torch.no_grad():
            for c in contents:
                x = clip_features(c, max_duration_s=self.max_duration_s)[None]
                probs, feats = self.net_(torch.as_tensor(x))
                out.append((probs[0].numpy(), feats[0].numpy()))
        return out

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        return postprocess(self._outputs(contents), self.labels_, self._decoding(), embed_dim=int(self.width))

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport:
        from ml.metrics.regions import evaluate_regions

        if predictions is None:
            predictions = self.predict(data.contents)
        return evaluate_regions(predictions.results, data.targets, data.labels, data.slices)

    # -- export -------------------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        from ml.modalities.audio import HOP_LENGTH, N_MELS, SAMPLE_RATE

        return {"task_type": self.task_type, "modality": self.modality, "learner": self.name,
                "labels": list(self.labels_), "classes": [_BACKGROUND, *self.labels_],
                "preprocessing": {"features": "logmel", "sample_rate": SAMPLE_RATE, "n_mels": N_MELS,
                                  "hop_length": HOP_LENGTH, "input": "input (N, 1, n_mels, T)",
                                  "max_duration_s": float(self.max_duration_s)},
                "outputs": {"probs": "(N, T, 1 + C) softmax, background first", "features": "(N, T, D)"},
                "feature_dim": int(self.width), "embedding": "mean and max of the features over time (2 D)",
                "decoding": self._decoding()}

    def export_onnx(self) -> OnnxExport:
        import tempfile
        import warnings

        import torch

        from ml.export import DEFAULT_OPSET

        self._check_fitted()
        net = self.net_.eval()
        x = torch.zeros(1, 1, self._arch()["n_mels"], 300)
        with tempfile.TemporaryDirectory(prefix="looplab-regions-") as tmp:
            path = f"{tmp}/model.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
                torch.onnx.export(net, (x,), path, input_names=["input"], output_names=["probs", "features"],
                                  dynamic_axes={"input": {0: "batch", 3: "time"}, "probs": {0: "batch", 1: "time"},
                                                "features": {0: "batch", 1: "time"}},
                                  opset_version=DEFAULT_OPSET, dynamo=False)
            with open(path, "rb") as fh:
                model = fh.read()
        manifest = self.manifest()
        return OnnxExport(model=model, manifest=manifest, runner=RegionOnnxRunner(model, manifest))

    def parity(self, export: OnnxExport, contents: Sequence[bytes], *, atol: float = 1e-4,
               tolerance: float = 0.011) -> ParityCheck:
        """Raw frame probabilities (max abs diff, must be <= ``atol``) and decoded regions (labels equal, times
        within ``tolerance`` s, about one frame) of torch vs the export's runner on ``contents``."""
        ref = self._outputs(contents)
        runner = export.runner
        got = runner.outputs(contents) if isinstance(runner, RegionOnnxRunner) else None
        if got is None:
            raise InvalidInput("parity needs a RegionOnnxRunner", code="invalid_input")
        diff = max((float(np.abs(a[0] - b[0]).max()) for a, b in zip(ref, got)), default=0.0)
        pa = postprocess(ref, self.labels_, self._decoding()).results
        pb = postprocess(got, runner.labels, runner.decoding).results
        agree = float(np.mean([regions_agree(a["regions"], b["regions"], tolerance) for a, b in zip(pa, pb)])) \
            if pa else 1.0
        return ParityCheck(n=len(contents), max_abs_diff=diff, agreement=agree,
                           passed=bool(diff <= atol and agree >= 0.99), tolerance=tolerance)

    # -- persistence --------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        import torch

        self._check_fitted()
        blob = {"format": SAVE_FORMAT, "learner": self.name, "params": json.dumps(self.get_params()),
                "labels": list(self.labels_), "onset": [float(x) for x in self.onset_],
                "offset": [float(x) for x in self.offset_], "history": json.dumps(self.history_),
                "state_dict": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}}
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "FrameRegionLearner":
        import torch

        try:
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # a bad blob is bad input, not a crash
            raise CorruptData(f"not a saved {cls.__name__}: {exc}") from None
        if not isinstance(blob, dict) or blob.get("learner") != cls.name or blob.get("format") != SAVE_FORMAT:
            raise CorruptData(f"not a saved {cls.__name__}")
        params = json.loads(blob["params"])
        params["dilations"] = tuple(params["dilations"])
        self = cls(**params)
        self.labels_ = tuple(blob["labels"])
        self.onset_ = np.asarray(blob["onset"], dtype=np.float64)
        self.offset_ = np.asarray(blob["offset"], dtype=np.float64)
        self.history_ = json.loads(blob["history"])
        net = _frame_net(**self._arch())
        net.load_state_dict(blob["state_dict"])
        self.net_ = net.eval()
        return self


class RegionOnnxRunner:
    """Predicts like :class:`FrameRegionLearner` through onnxruntime: :func:`clip_features` → the graph →
    :func:`postprocess` with the manifest's decoding parameters (no torch import)."""

    def __init__(self, model: bytes, manifest: Mapping[str, Any]) -> None:
        self.model = model
        self.manifest = dict(manifest)
        self.labels = tuple(manifest["labels"])
        self.decoding = dict(manifest["decoding"])
        self.max_duration_s = float(manifest["preprocessing"].get("max_duration_s", MAX_DURATION_S))
        self._session = None

    def _sess(self):
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(self.model, opts, providers=["CPUExecutionProvider"])
        return self._session

    def outputs(self, contents: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        sess = self._sess()
        out = []
        for c in contents:
            x = clip_features(c, max_duration_s=self.max_duration_s)[None]
            probs, feats = sess.run(["probs", "features"], {"input": x})
            out.append((probs[0], feats[0]))
        return out

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        return postprocess(self.outputs(contents), self.labels, self.decoding,
                           embed_dim=int(self.manifest.get("feature_dim", 0)))
