"""Image detection: a compact CenterNet ("Objects as Points", Zhou et al. 2019) in plain torch.

The network (:func:`_build_net`): a small conv backbone down to stride 16 with a top-down path back to stride 4
(nearest upsampling plus lateral 1x1 convolutions), and three heads on the stride-4 map: a per-class center
heatmap (logits; trained with CenterNet's penalty-reduced focal loss against Gaussian splats at the box centers),
the box width/height (in output cells; L1 at the centers) and the sub-cell center offset (L1 at the centers). The
embedding is the global average of the stride-16 features. Images are resized to ``image_size`` squared (aspect not
kept: coordinates are normalised, so boxes map back unchanged).

Decoding (:func:`decode`, numpy only, the same for torch and onnxruntime outputs): sigmoid of the heatmap, peaks
kept where a cell equals its 3x3 max (max-pool NMS), the ``max_detections`` best peaks over all classes, a
``score_threshold``, then class-wise NMS at ``nms_iou``. The network's raw outputs (``heatmap`` logits, ``wh``,
``offset``, ``embedding``) are what the ONNX graph returns; :func:`_predict_batches` turns any such forward into
:class:`~ml.learners.base.Predictions`, so the torch model and the ONNX runner share preprocessing, decoding and
uncertainty.

Uncertainty per image (``Predictions.uncertainty``, in [0, 1], higher = more worth labeling), the mean of three terms:

- ``u_box``: the mean over the image's detections of ``(H_cls + H_obj) / 2`` where ``H_cls`` is the entropy of the
  class distribution at the detection's peak (the C heatmap scores at that cell, normalised to sum 1, entropy divided
  by ``log C``) and ``H_obj`` the binary entropy (bits) of the detection's score; 1 when nothing is detected;
- ``u_peak``: ``1 - max heatmap score`` over the image (how unsure the model is that anything is there);
- ``u_flip``: localisation instability under a horizontal flip, ``1 - sum(IoU of matched pairs) / max(n, n_flip)``
  where the image's detections are matched greedily (same label, by IoU, IoU > 0) to the un-flipped detections of
  the flipped image; 0 when both are empty.

``Predictions.extra`` holds the three terms (``u_box``, ``u_peak``, ``u_flip``) per image.

Training: AdamW with a one-cycle learning rate (15% warm-up, then cosine decay), seeded
(:func:`ml.training._deterministic` for torch, a numpy ``Generator`` for order and augmentation), horizontal flip
(boxes mirrored) and brightness/contrast jitter; per-image sample weights scale each image's loss terms (an image
of weight 0 is left out). Polygons in targets train as their bounding boxes. With a validation set the weights of the
epoch with the lowest validation loss are kept.

Importing this module imports numpy only; torch and onnxruntime are imported inside the functions that need them.
"""
from __future__ import annotations

import copy
import io
import math
import time
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from ml.errors import InvalidInput
from ml.learners.base import (Dataset, EvalReport, OnnxExport, ParityCheck, Predictions, ProgressFn,
                              check_dataset)

__all__ = ["CenterNetDetector", "OnnxDetectionRunner", "decode", "flip_instability", "targets_to_boxes"]

SAVE_FORMAT = 1
STRIDE = 4
OUTPUT_NAMES = ("heatmap", "wh", "offset", "embedding")

# forward(x float32 (N, 3, S, S)) -> (heatmap logits (N, C, S/4, S/4), wh (N, 2, ., .), offset (N, 2, ., .),
# embedding (N, D)) as numpy arrays
ForwardFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------------------------
# targets


def targets_to_boxes(target: Mapping[str, Any], labels: Sequence[str], *, index: int | None = None) -> np.ndarray:
    """One detection target (``boxes`` and/or ``polygons``, normalised) -> ``(K, 5)`` float64 rows
    ``[class, x, y, w, h]``; a polygon becomes its bounding box. Boxes are clipped to the image; an empty box
    (after clipping) is dropped. Unknown labels or non-numbers raise ``InvalidInput``."""
    lookup = {name: i for i, name in enumerate(labels)}
    rows: list[list[float]] = []

    def _fail(msg: str) -> None:
        raise InvalidInput(msg, code="invalid_input", details={"index": index} if index is not None else {})

    if not isinstance(target, Mapping):
        _fail("a detection target must be an object with boxes and/or polygons")
    shapes = list(target.get("boxes") or [])
    for poly in target.get("polygons") or []:
        try:
            pts = np.asarray(poly["points"], dtype=np.float64).reshape(-1, 2)
        except (KeyError, TypeError, ValueError):
            _fail("a polygon needs points [[x, y], ...]")
        if len(pts) == 0:
            continue
        shapes.append({"label": poly.get("label"), "x": pts[:, 0].min(), "y": pts[:, 1].min(),
                       "w": np.ptp(pts[:, 0]), "h": np.ptp(pts[:, 1])})
    for box in shapes:
        label = box.get("label") if isinstance(box, Mapping) else None
        if label not in lookup:
            _fail(f"unknown label {label!r} in a detection target")
        try:
            x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            _fail("a box needs numbers x, y, w, h")
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            _fail("box coordinates must be finite")
        x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
        x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
        if x1 > x0 and y1 > y0:
            rows.append([lookup[label], x0, y0, x1 - x0, y1 - y0])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest center shift that keeps IoU >= min_overlap (the three cases of the paper's
    code, in output cells)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def _encode_targets(boxes: np.ndarray, n_classes: int, out: int, max_objects: int):
    """Rows ``[class, x, y, w, h]`` (normalised) -> heatmap (C, out, out), and per object: flat center index,
    wh (cells), offset, mask (max_objects padded)."""
    hm = np.zeros((n_classes, out, out), dtype=np.float32)
    ind = np.zeros(max_objects, dtype=np.int64)
    wh = np.zeros((max_objects, 2), dtype=np.float32)
    off = np.zeros((max_objects, 2), dtype=np.float32)
    mask = np.zeros(max_objects, dtype=np.float32)
    yy, xx = np.mgrid[0:out, 0:out]
    for k, (c, x, y, w, h) in enumerate(boxes[:max_objects]):
        bw, bh = w * out, h * out
        cx, cy = (x + w / 2) * out, (y + h / 2) * out
        ix, iy = min(int(cx), out - 1), min(int(cy), out - 1)
        radius = max(0.0, _gaussian_radius(bh, bw))
        sigma = (2 * int(radius) + 1) / 6.0
        g = np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma * sigma)).astype(np.float32)
        hm[int(c)] = np.maximum(hm[int(c)], g)
        ind[k], wh[k], off[k], mask[k] = iy * out + ix, (bw, bh), (cx - ix, cy - iy), 1.0
    return hm, ind, wh, off, mask


# --------------------------------------------------------------------------------------------
# decoding (numpy; shared by the torch model and the ONNX runner)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _maxpool3(hm: np.ndarray) -> np.ndarray:
    """3x3 max over the last two axes, stride 1, padded with -inf (the max-pool NMS of CenterNet)."""
    pad = np.pad(hm, [(0, 0)] * (hm.ndim - 2) + [(1, 1), (1, 1)], constant_values=-np.inf)
    h, w = hm.shape[-2:]
    out = np.full(hm.shape, -np.inf)
    for dy in range(3):
        for dx in range(3):
            out = np.maximum(out, pad[..., dy:dy + h, dx:dx + w])
    return out


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(n, 4)`` and ``(m, 4)`` boxes ``[x, y, w, h]`` -> ``(n, m)``."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            ious = _iou_xywh(boxes[i], boxes[order])[0]
            order = [j for j, v in zip(order, ious) if v <= iou]
    return keep


def decode(heatmap: np.ndarray, wh: np.ndarray, offset: np.ndarray, *, max_detections: int = 50,
           score_threshold: float = 0.1, nms_iou: float = 0.5) -> list[dict]:
    """Raw outputs of one image -> its detections, best first.

    ``heatmap`` (C, H, W) logits, ``wh`` (2, H, W) box size in cells, ``offset`` (2, H, W). Returns dicts with
    ``cls`` (int), ``box`` ``[x, y, w, h]`` (normalised, clipped to the image), ``score`` and ``class_scores`` (the C
    heatmap scores at the peak's cell, for the uncertainty).
    """
    scores = _sigmoid(heatmap)
    c, h, w = scores.shape
    peaks = np.where(scores >= _maxpool3(scores), scores, 0.0).reshape(-1)
    k = min(int(max_detections), peaks.size)
    top = np.argsort(-peaks, kind="stable")[:k]
    top = top[peaks[top] >= score_threshold]
    if top.size == 0:
        return []
    cls, cell = np.divmod(top, h * w)
    iy, ix = np.divmod(cell, w)
    cx = (ix + offset[0, iy, ix].astype(np.float64)) / w
    cy = (iy + offset[1, iy, ix].astype(np.float64)) / h
    bw = np.clip(wh[0, iy, ix].astype(np.float64), 0, None) / w
    bh = np.clip(wh[1, iy, ix].astype(np.float64), 0, None) / h
    x0, y0 = np.clip(cx - bw / 2, 0, 1), np.clip(cy - bh / 2, 0, 1)
    x1, y1 = np.clip(cx + bw / 2, 0, 1), np.clip(cy + bh / 2, 0, 1)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    sc = peaks[top]
    dets: list[dict] = []
    for klass in np.unique(cls):
        sel = np.flatnonzero(cls == klass)
        for j in _nms(boxes[sel], sc[sel], nms_iou):
            i = sel[j]
            dets.append({"cls": int(klass), "box": boxes[i], "score": float(sc[i]),
                         "class_scores": scores[:, iy[i], ix[i]]})
    dets.sort(key=lambda d: -d["score"])
    return dets


def _match_mean_iou(a: list[dict], b: list[dict]) -> float:
    """Greedy same-label matching by IoU; sum of matched IoUs / max(len(a), len(b)) (1.0 when both empty)."""
    if not a and not b:
        return 1.0
    if not a or not b:
        return 0.0
    ious = _iou_xywh(np.stack([d["box"] for d in a]), np.stack([d["box"] for d in b]))
    same = np.equal.outer([d["cls"] for d in a], [d["cls"] for d in b])
    ious = np.where(same, ious, 0.0)
    total = 0.0
    while ious.size and ious.max() > 0:
        i, j = np.unravel_index(int(np.argmax(ious)), ious.shape)
        total += ious[i, j]
        ious[i, :] = 0.0
        ious[:, j] = 0.0
    return total / max(len(a), len(b))


def flip_instability(dets: list[dict], dets_of_flipped: list[dict]) -> float:
    """``1 - mean IoU`` between an image's detections and those of its mirror image mapped back (see the module
    docstring); 0 when the two agree exactly or both are empty."""
    back = [{**d, "box": np.array([1.0 - d["box"][0] - d["box"][2], d["box"][1], d["box"][2], d["box"][3]])}
            for d in dets_of_flipped]
    return float(1.0 - _match_mean_iou(dets, back))


def _box_uncertainty(dets: list[dict]) -> float:
    if not dets:
        return 1.0
    terms = []
    for d in dets:
        p = np.asarray(d["class_scores"], dtype=np.float64)
        n = len(p)
        if n > 1:
            q = p / max(p.sum(), 1e-12)
            h_cls = float(-(q * np.log(np.clip(q, 1e-12, None))).sum() / math.log(n))
        else:
            h_cls = 0.0
        s = min(max(d["score"], 1e-12), 1 - 1e-12)
        h_obj = float(-(s * math.log2(s) + (1 - s) * math.log2(1 - s)))
        terms.append((h_cls + h_obj) / 2)
    return float(np.mean(terms))


def _to_result(dets: list[dict], labels: Sequence[str]) -> dict:
    return {"boxes": [{"label": labels[d["cls"]], "x": float(d["box"][0]), "y": float(d["box"][1]),
                       "w": float(d["box"][2]), "h": float(d["box"][3]), "score": float(d["score"])}
                      for d in dets]}


def _predict_batches(forward: ForwardFn, X: np.ndarray, labels: Sequence[str], decoding: Mapping[str, Any],
                     *, batch_size: int = 64) -> tuple[Predictions, list[np.ndarray]]:
    """Run ``forward`` on ``X`` and on its mirror image; decode, score uncertainty, embed. Returns the predictions
    and the raw outputs of the un-flipped pass (for parity checks)."""
    results, unc, emb, u_box, u_peak, u_flip = [], [], [], [], [], []
    raws: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, len(X), batch_size):
        xb = np.ascontiguousarray(X[start:start + batch_size], dtype=np.float32)
        hm, wh, off, e = forward(xb)
        fhm, fwh, foff, _ = forward(np.ascontiguousarray(xb[..., ::-1]))
        for r, a in zip(raws, (hm, wh, off)):
            r.append(np.asarray(a))
        emb.append(np.asarray(e, dtype=np.float32))
        for i in range(len(xb)):
            dets = decode(hm[i], wh[i], off[i], **decoding)
            fdets = decode(fhm[i], fwh[i], foff[i], **decoding)
            ub = _box_uncertainty(dets)
            up = float(1.0 - _sigmoid(hm[i]).max())
            uf = flip_instability(dets, fdets)
            u_box.append(ub), u_peak.append(up), u_flip.append(uf)
            unc.append((ub + up + uf) / 3.0)
            results.append(_to_result(dets, labels))
    preds = Predictions(results=results, uncertainty=np.asarray(unc, dtype=np.float64),
                        embedding=np.concatenate(emb).astype(np.float32),
                        extra={"u_box": np.asarray(u_box), "u_peak": np.asarray(u_peak),
                               "u_flip": np.asarray(u_flip)})
    return preds, [np.concatenate(r) for r in raws]


def _load(contents: Sequence[bytes], size: int) -> np.ndarray:
    from ml.modalities.image import load_images

    if len(contents) == 0:
        from ml.errors import EmptyData

        raise EmptyData("no contents to predict")
    return load_images(list(contents), size=size)


# --------------------------------------------------------------------------------------------
# the network


def _build_net(n_classes: int, width: int):
    import torch
    from torch import nn
    import torch.nn.functional as F

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True),
                             nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True))

    def head(c_out: int, bias: float = 0.0) -> nn.Sequential:
        last = nn.Conv2d(width, c_out, 1)
        nn.init.constant_(last.bias, bias)
        return nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True), last)

    class CenterNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            self.s2 = block(3, w // 2, 2)
            self.s4 = block(w // 2, w, 2)
            self.s8 = block(w, 2 * w, 2)
            self.s16 = block(2 * w, 2 * w, 2)
            self.lat8 = nn.Conv2d(2 * w, 2 * w, 1)
            self.lat4 = nn.Conv2d(w, 2 * w, 1)
            self.up8 = nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))
            self.up4 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(inplace=True))
            self.heatmap = head(n_classes, bias=-2.19)  # prior 0.1, as in CenterNet
            self.wh = head(2)
            self.offset = head(2)

        def forward(self, x: torch.Tensor):
            x = x - 0.5
            f4 = self.s4(self.s2(x))
            f8 = self.s8(f4)
            f16 = self.s16(f8)
            p8 = self.up8(F.interpolate(f16, scale_factor=2.0, mode="nearest") + self.lat8(f8))
            p4 = self.up4(F.interpolate(p8, scale_factor=2.0, mode="nearest") + self.lat4(f4))
            return self.heatmap(p4), self.wh(p4), self.offset(p4), f16.mean(dim=(2, 3))

    return CenterNet()


def _focal_per_image(logits, gt):
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed per image -> (N,)."""
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    log_p, log_1p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = -(log_p * (1 - p) ** 2 * pos)
    neg_loss = -(log_1p * p ** 2 * (1 - gt) ** 4 * (1 - pos))
    return (pos_loss + neg_loss).flatten(1).sum(1)


def _gather(feat, ind):
    """(N, 2, H, W) at flat indices (N, K) -> (N, K, 2)."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    return flat.gather(2, ind[:, None, :].expand(n, c, ind.shape[1])).permute(0, 2, 1)


# --------------------------------------------------------------------------------------------
# the learner


class CenterNetDetector:
    """A compact anchor-free detector (see the module docstring) behind the learner contract.

    Parameters: ``image_size`` (input side, a multiple of 16), ``width`` (channels at stride 4), ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``, ``hflip`` (horizontal flip augmentation), ``max_detections``,
    ``score_threshold`` and ``nms_iou`` (decoding), ``max_objects`` (per image, for training), ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``), ``random_state``.

    Learned: ``labels_``, ``net_`` (the torch module, CPU or ``device_``), ``history_`` (per-epoch losses and
    seconds), ``best_epoch_``, ``fit_seconds_``.
    """

    name: ClassVar[str] = "centernet"
    modality: ClassVar[str] = "image"
    task_type: ClassVar[str] = "detection"

    def __init__(self, *, image_size: int = 96, width: int = 32, epochs: int = 40, batch_size: int = 16,
                 lr: float = 3e-3, weight_decay: float = 1e-4, hflip: bool = True, max_detections: int = 50,
                 score_threshold: float = 0.1, nms_iou: float = 0.5, max_objects: int = 32, device: str = "auto",
                 random_state: int = 0) -> None:
        self.image_size = image_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.hflip = hflip
        self.max_detections = max_detections
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_objects = max_objects
        self.device = device
        self.random_state = random_state

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("image_size", "width", "epochs", "batch_size", "lr", "weight_decay",
                                              "hflip", "max_detections", "score_threshold", "nms_iou",
                                              "max_objects", "device", "random_state")}

    def _check_params(self) -> None:
        if int(self.image_size) < 16 or int(self.image_size) % 16:
            raise InvalidInput("image_size must be a multiple of 16 (>= 16)", details={"image_size": self.image_size})
        if int(self.width) < 4 or int(self.width) % 2:
            raise InvalidInput("width must be an even number >= 4", details={"width": self.width})
        if int(self.epochs) < 1 or int(self.batch_size) < 2:
            raise InvalidInput("epochs must be >= 1 and batch_size >= 2",
                               details={"epochs": self.epochs, "batch_size": self.batch_size})
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise InvalidInput("lr must be positive and weight_decay >= 0", details={"lr": self.lr})
        if not 0 <= self.score_threshold < 1 or not 0 < self.nms_iou <= 1 or int(self.max_detections) < 1:
            raise InvalidInput("score_threshold in [0, 1), nms_iou in (0, 1], max_detections >= 1",
                               details={"score_threshold": self.score_threshold, "nms_iou": self.nms_iou})

    @property
    def _decoding(self) -> dict:
        return {"max_detections": int(self.max_detections), "score_threshold": float(self.score_threshold),
                "nms_iou": float(self.nms_iou)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise InvalidInput("this detector is not fitted yet", code="invalid_input")

    # ---------------------------------------------------------------- fit

    def _prepare(self, data: Dataset) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        X = _load(data.contents, int(self.image_size))
        boxes = [targets_to_boxes(t, data.labels, index=i) for i, t in enumerate(data.targets)]
        w = (np.ones(len(X)) if data.sample_weight is None else np.asarray(data.sample_weight, dtype=np.float64))
        return X, boxes, w

    def _batch_targets(self, boxes: list[np.ndarray]):
        out = int(self.image_size) // STRIDE
        parts = [_encode_targets(b, len(self.labels_), out, int(self.max_objects)) for b in boxes]
        return [np.stack(p) for p in zip(*parts)]

    def _losses(self, net, xb, boxes, wb, device):
        """Weighted mean loss of a batch: (focal + 0.1 * wh L1 + offset L1), each image weighted by ``wb``."""
        import torch

        hm_t, ind, wh_t, off_t, mask = (torch.from_numpy(a).to(device) for a in self._batch_targets(boxes))
        w = torch.from_numpy(np.asarray(wb, dtype=np.float32)).to(device)
        hm, wh, off, _ = net(torch.from_numpy(np.ascontiguousarray(xb)).to(device))
        n_obj = mask.sum(1)
        focal = _focal_per_image(hm, hm_t)
        m = mask[..., None]
        l_wh = ((_gather(wh, ind) - wh_t).abs() * m).sum((1, 2))
        l_off = ((_gather(off, ind) - off_t).abs() * m).sum((1, 2))
        per_image = focal + 0.1 * l_wh + l_off
        return (w * per_image).sum() / torch.clamp((w * n_obj).sum(), min=1.0)

    def _augment(self, X: np.ndarray, boxes: list[np.ndarray], rng: np.random.Generator):
        X = X.copy()
        boxes = [b.copy() for b in boxes]
        for i in range(len(X)):
            if self.hflip and rng.random() < 0.5:
                X[i] = X[i][..., ::-1]
                boxes[i][:, 1] = 1.0 - boxes[i][:, 1] - boxes[i][:, 3]
            c = 1.0 + rng.uniform(-0.2, 0.2)
            b = rng.uniform(-0.1, 0.1)
            mean = X[i].mean()
            X[i] = np.clip((X[i] - mean) * c + mean + b, 0.0, 1.0)
        return X, boxes

    def fit(self, data: Dataset, *, validation: Dataset | None = None,
            progress: ProgressFn | None = None) -> "CenterNetDetector":
        import torch

        from ml.training import _deterministic, resolve_device

        self._check_params()
        check_dataset(data, min_samples=2)
        if validation is not None:
            check_dataset(validation)
            if tuple(validation.labels) != tuple(data.labels):
                raise InvalidInput("validation labels differ from the training labels", code="invalid_input")
        self.labels_ = tuple(data.labels)
        device = resolve_device(self.device)
        X, boxes, weights = self._prepare(data)
        keep = np.flatnonzero(weights > 0)
        X, boxes, weights = X[keep], [boxes[i] for i in keep], weights[keep]
        Xv, bv, wv = self._prepare(validation) if validation is not None else (None, None, None)
        rng = np.random.default_rng(int(self.random_state))
        started = time.perf_counter()
        history: list[dict] = []
        with _deterministic(int(self.random_state), device):
            net = _build_net(len(self.labels_), int(self.width)).to(device)
            opt = torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
            epochs = int(self.epochs)
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=float(self.lr), total_steps=epochs * max(1, math.ceil(len(X) / int(self.batch_size))),
                pct_start=0.15)
            best, best_state, best_epoch = math.inf, None, epochs
            for epoch in range(1, epochs + 1):
                t0 = time.perf_counter()
                net.train()
                perm = rng.permutation(len(X))
                bs = int(self.batch_size)
                batches = [perm[i:i + bs] for i in range(0, len(perm), bs)]
                if len(batches) > 1 and len(batches[-1]) == 1:
                    batches[-2] = np.concatenate([batches[-2], batches.pop()])
                total, count = 0.0, 0
                for idx in batches:
                    xb, bb = self._augment(X[idx], [boxes[i] for i in idx], rng)
                    loss = self._losses(net, xb, bb, weights[idx], device)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched.last_epoch + 1 < sched.total_steps:
                        sched.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": None,
                       "seconds": time.perf_counter() - t0}
                if Xv is not None:
                    net.eval()
                    with torch.no_grad():
                        vl = [float(self._losses(net, Xv[i:i + 64], bv[i:i + 64], wv[i:i + 64], device))
                              * len(Xv[i:i + 64]) for i in range(0, len(Xv), 64)]
                    row["val_loss"] = sum(vl) / len(Xv)
                    if row["val_loss"] < best:
                        best, best_epoch = row["val_loss"], epoch
                        best_state = copy.deepcopy(net.state_dict())
                history.append(row)
                if progress is not None:
                    progress(100.0 * epoch / epochs, f"epoch {epoch}/{epochs}: loss {row['train_loss']:.3f}")
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        self.device_ = device
        self.history_ = history
        self.best_epoch_ = best_epoch
        self.fit_seconds_ = time.perf_counter() - started
        return self

    # ---------------------------------------------------------------- predict

    def _forward_fn(self) -> ForwardFn:
        import torch

        net, device = self.net_, self.device_

        def forward(xb: np.ndarray):
            with torch.no_grad():
                outs = net(torch.from_numpy(xb).to(device))
            return tuple(o.detach().float().cpu().numpy() for o in outs)

        return forward

    def _predict(self, contents: Sequence[bytes]) -> tuple[Predictions, list[np.ndarray]]:
        self._check_fitted()
        self.net_.eval()
        X = _load(contents, int(self.image_size))
        return _predict_batches(self._forward_fn(), X, self.labels_, self._decoding)

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        """Boxes with scores and labels per image (``{"boxes": [{"label", "x", "y", "w", "h", "score"}]}``,
        normalised), the per-image uncertainty of the module docstring and the pooled backbone embedding."""
        return self._predict(contents)[0]

    def evaluate(self, data: Dataset, predictions: Predictions | None = None) -> EvalReport:
        from ml.metrics.detection import evaluate_detection

        if predictions is None:
            predictions = self.predict(data.contents)
        return evaluate_detection(predictions.results, data.targets, tuple(data.labels), dict(data.slices))

    # ---------------------------------------------------------------- export

    def manifest(self) -> dict:
        self._check_fitted()
        return {"task_type": self.task_type, "modality": self.modality, "learner": self.name,
                "labels": list(self.labels_), "input": {"name": "input", "size": int(self.image_size),
                                                         "layout": "NCHW", "range": [0, 1], "color": "RGB",
                                                         "resize": "bilinear, aspect not kept"},
                "outputs": list(OUTPUT_NAMES), "stride": STRIDE,
                "decoding": {"method": "centernet", **self._decoding}}

    def export_onnx(self) -> OnnxExport:
        import tempfile
        import warnings
        from pathlib import Path

        import torch

        from ml.export import DEFAULT_OPSET

        self._check_fitted()
        net = copy.deepcopy(self.net_).cpu().eval()
        example = torch.zeros((2, 3, int(self.image_size), int(self.image_size)), dtype=torch.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=list(OUTPUT_NAMES),
                                  dynamic_axes={name: {0: "batch"} for name in ("input", *OUTPUT_NAMES)},
                                  opset_version=DEFAULT_OPSET, do_constant_folding=True, dynamo=False)
            model = path.read_bytes()
        manifest = self.manifest()
        return OnnxExport(model=model, manifest=manifest, runner=OnnxDetectionRunner(model, manifest))

    def parity(self, export: OnnxExport, contents: Sequence[bytes], *, atol: float = 1e-3,
               tolerance: float = 1e-3) -> ParityCheck:
        """Raw outputs (heatmap logits, wh, offset) max abs diff within ``atol``, and every image's decoded boxes
        equal (same labels, coordinates within ``tolerance``)."""
        ours, raw = self._predict(contents)
        runner = export.runner
        if not isinstance(runner, OnnxDetectionRunner):
            runner = OnnxDetectionRunner(export.model, export.manifest)
        theirs, raw_onnx = runner._predict(contents)
        diff = max(float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(raw, raw_onnx))
        agree = [_same_boxes(a, b, tolerance) for a, b in zip(ours.results, theirs.results)]
        agreement = float(np.mean(agree)) if agree else 1.0
        return ParityCheck(n=len(contents), max_abs_diff=diff, agreement=agreement,
                           passed=bool(diff <= atol and agreement == 1.0), tolerance=tolerance)

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        import torch

        self._check_fitted()
        state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}
        blob = {"format": SAVE_FORMAT, "learner": self.name, "params": self.get_params(),
                "labels": list(self.labels_), "state_dict": state, "history": self.history_,
                "best_epoch": int(self.best_epoch_), "fit_seconds": float(self.fit_seconds_)}
        buf = io.BytesIO()
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "cpu") -> "CenterNetDetector":
        import torch

        from ml.errors import CorruptData
        from ml.training import resolve_device

        try:
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt blob
            raise CorruptData(f"not a saved {cls.name} detector: {exc}") from exc
        if not isinstance(blob, dict) or blob.get("learner") != cls.name or blob.get("format") != SAVE_FORMAT:
            raise CorruptData(f"not a saved {cls.name} detector (format {SAVE_FORMAT})")
        params = dict(blob["params"])
        self = cls(**{**params, "device": params.get("device", "auto")})
        self.labels_ = tuple(blob["labels"])
        self.device_ = resolve_device(device)
        net = _build_net(len(self.labels_), int(self.width))
        net.load_state_dict(blob["state_dict"])
        self.net_ = net.to(self.device_).eval()
        self.history_ = list(blob["history"])
        self.best_epoch_ = int(blob["best_epoch"])
        self.fit_seconds_ = float(blob["fit_seconds"])
        return self


def _same_boxes(a: Mapping, b: Mapping, tolerance: float) -> bool:
    ba, bb = a["boxes"], b["boxes"]
    if len(ba) != len(bb):
        return False
    key = lambda r: (r["label"], round(r["x"], 2), round(r["y"], 2))  # noqa: E731
    for x, y in zip(sorted(ba, key=key), sorted(bb, key=key)):
        if x["label"] != y["label"] or any(abs(x[k] - y[k]) > tolerance for k in ("x", "y", "w", "h")):
            return False
    return True


class OnnxDetectionRunner:
    """Predicts like :class:`CenterNetDetector` through onnxruntime (no torch): the same image loading, decoding,
    uncertainty and embedding (:func:`_predict_batches`)."""

    def __init__(self, model: bytes, manifest: Mapping[str, Any], *, providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.manifest = dict(manifest)
        self.labels = tuple(manifest["labels"])
        self.image_size = int(manifest["input"]["size"])
        self.decoding = dict(manifest["decoding"])
        self.decoding.pop("method", None)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # no spin-waiting of the intra-op pool after a run: on a small CPU the spinning threads took the cores from
        # the numpy decoding that follows every forward (bench.export_latency: 2-4x slower end to end on 2 vCPUs)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, sess_options=opts,
                                            providers=list(providers or ["CPUExecutionProvider"]))

    def _forward(self, xb: np.ndarray):
        return tuple(self.session.run(list(OUTPUT_NAMES), {"input": xb}))

    def _predict(self, contents: Sequence[bytes]) -> tuple[Predictions, list[np.ndarray]]:
        X = _load(contents, self.image_size)
        return _predict_batches(self._forward, X, self.labels, self.decoding)

    def predict(self, contents: Sequence[bytes]) -> Predictions:
        return self._predict(contents)[0]
