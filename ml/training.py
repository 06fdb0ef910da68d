"""Training of the per-modality networks in :mod:`ml.nets`.

Deterministic on CPU for a given ``TrainConfig.seed``: the network's initial weights and dropout
come from a forked torch RNG seeded with it, the data order and augmentation from a numpy
``Generator`` seeded with it, and deterministic algorithms are switched on for the duration of
training (the previous global setting is restored afterwards).

Optimiser: AdamW with a cosine learning-rate decay over ``config.epochs``. After every epoch the
batch-norm statistics are re-estimated on (up to 512) training samples, so eval-mode predictions
are right even with a handful of batches per epoch. Early stopping watches the validation loss
(plain mean cross-entropy) and keeps the weights of the best epoch. Class imbalance is handled by inverse-frequency class weights
(``config.class_weighting``) and optional per-sample weights; both enter a weighted mean of the
per-sample losses.
Segmentation labels may be -1 (an unlabeled point): it adds nothing to the loss, the class weights or the
validation figures.

Importing this module imports torch; the web process should not import it (use
:mod:`ml.export` / :mod:`ml.serving` to predict with an exported model).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ml import modalities
from ml.errors import CorruptData, EmptyData, InvalidInput
from ml.nets import build_net, default_arch

__all__ = [
    "MODALITIES",
    "ProgressFn",
    "TrainConfig",
    "TrainedModel",
    "train_classifier",
    "train_segmenter",
    "check_inputs",
    "resolve_device",
]

MODALITIES = modalities.MODALITIES
SAVE_FORMAT = 1

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    class_weighting: bool = True
    # Light, modality-specific augmentation during training: image/audio random shifts of a few
    # pixels/frames, point clouds random yaw rotation about z plus Gaussian jitter.
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InvalidInput("epochs must be >= 1", details={"epochs": self.epochs})
        if self.batch_size < 2:
            raise InvalidInput("batch_size must be >= 2", details={"batch_size": self.batch_size})
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InvalidInput("lr must be a positive number", details={"lr": self.lr})
        if self.weight_decay < 0:
            raise InvalidInput("weight_decay must be >= 0", details={"weight_decay": self.weight_decay})
        if self.patience < 1:
            raise InvalidInput("patience must be >= 1", details={"patience": self.patience})


# --------------------------------------------------------------------------------------------
# input checks


def check_inputs(modality: str, X: np.ndarray, *, task: str = "classification") -> np.ndarray:
    """Validate a batch for a modality; return it as C-contiguous float32.

    image ``(N, 3, H, W)``, audio ``(N, 1, n_mels, T)``, pointcloud ``(N, P, 3)``.
    Raises ``InvalidInput`` (code ``bad_shape`` / ``unsupported_modality``) or ``EmptyData`` for
    an empty batch or non-finite values.
    """
    mod = modalities.get(modality)  # UnknownModality: an InvalidInput with code unsupported_modality
    if task == "segmentation" and task not in mod.tasks:
        raise InvalidInput(
            "segmentation is implemented for point clouds only",
            code="unsupported_task",
            details={"modality": modality, "task": task},
        )
    X = np.asarray(X)
    expected = mod.input_layout
    ok = mod.check_shape(X.shape)
    if not ok:
        raise InvalidInput(
            f"{modality} input must have shape {expected}, got {tuple(X.shape)}",
            code="bad_shape",
            details={"modality": modality, "expected": expected, "shape": list(X.shape)},
        )
    if X.shape[0] == 0:
        raise EmptyData("empty batch", details={"modality": modality})
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise InvalidInput(f"input must be real numbers, got dtype {X.dtype}", code="bad_dtype")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise EmptyData("input contains NaN or infinite values", details={"modality": modality})
    return X


def _check_labels(y: np.ndarray, n: int, n_classes: int, name: str, *, n_points: int | None = None) -> np.ndarray:
    y = np.asarray(y)
    shape = (n,) if n_points is None else (n, n_points)
    if y.shape != shape:
        raise InvalidInput(
            f"{name} must have shape {shape}, got {tuple(y.shape)}",
            code="bad_shape",
            details={"name": name, "expected": list(shape), "shape": list(y.shape)},
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise InvalidInput(f"{name} must hold integer class indices", code="bad_labels")
    y = y.astype(np.int64)
    lowest = -1 if n_points is not None else 0  # per-point labels may be -1: unlabeled, ignored by the loss
    if y.size and (y.min() < lowest or y.max() >= n_classes):
        raise InvalidInput(
            f"{name} must lie in [{lowest}, {n_classes})",
            code="bad_labels",
            details={"name": name, "min": int(y.min()), "max": int(y.max()), "n_classes": n_classes},
        )
    return y


def _check_sample_weight(sample_weight: np.ndarray | None, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n, dtype=np.float32)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise InvalidInput(
            f"sample_weight must have shape ({n},), got {tuple(w.shape)}",
            code="bad_shape",
            details={"expected": [n], "shape": list(w.shape)},
        )
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InvalidInput("sample_weight must be finite, >= 0 and not all zero", code="bad_weights")
    return w.astype(np.float32)


def _cuda_index(device: str) -> int:
    """The GPU a "cuda[:i]" device runs on: plain "cuda" is the current device, as in torch."""
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is usable, else ``"cpu"``; explicit names are checked."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInput("device 'cuda' requested but no CUDA GPU is available", code="bad_device")
        try:
            index = torch.device(device).index
        except RuntimeError as exc:
            raise InvalidInput(f"unknown device {device!r}", code="bad_device", details={"device": device}) from exc
        if index is not None and index >= torch.cuda.device_count():
            raise InvalidInput(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)",
                               code="bad_device", details={"device": device})
        return device
    raise InvalidInput(f"unknown device {device!r}", code="bad_device", details={"device": device})


# --------------------------------------------------------------------------------------------
# the trained model


class TrainedModel:
    """A trained network plus what is needed to rebuild it (modality, classes, arch, history).

    ``history`` holds one dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_acc``
    (``None`` without a validation set) and ``seconds``. ``best_epoch`` is the epoch whose weights
    were kept. ``task`` is ``"classification"`` (``predict_proba`` -> ``(N, C)``) or
    ``"segmentation"`` (-> ``(N, P, C)``). ``input_shape`` is the per-sample shape of the training
    data (the ONNX export traces with it; batch, audio frames and cloud points stay dynamic).
    """

    def __init__(
        self,
        *,
        modality: str,
        n_classes: int,
        arch: dict,
        state_dict: dict,
        history: list[dict] | None = None,
        task: str = "classification",
        best_epoch: int | None = None,
        train_seconds: float | None = None,
        input_shape: tuple[int, ...] | list[int] | None = None,
        device: str = "cpu",
    ) -> None:
        if modality not in MODALITIES or task not in ("classification", "segmentation"):
            raise InvalidInput(
                f"unknown modality/task {modality!r}/{task!r}",
                code="unsupported_modality",
                details={"modality": modality, "task": task},
            )
        self.modality = modality
        self.n_classes = int(n_classes)
        self.arch = dict(arch)
        self.history = list(history or [])
        self.task = task
        self.best_epoch = best_epoch
        self.train_seconds = train_seconds
        # per-sample input shape seen in training, e.g. (3, 32, 32); the export uses it
        self.input_shape = tuple(int(d) for d in (input_shape or modalities.get(modality).default_input_shape))
        self.device = resolve_device(device)
        with torch.random.fork_rng(devices=[]):  # random init is overwritten: keep the caller's RNG
            self._net = build_net(self.arch, self.n_classes)
        self._net.load_state_dict(state_dict)
        self._net.to(self.device).eval()

    def __repr__(self) -> str:
        return (
            f"TrainedModel(modality={self.modality!r}, task={self.task!r}, n_classes={self.n_classes}, "
            f"arch={self.arch!r}, epochs={len(self.history)}, best_epoch={self.best_epoch})"
        )

    @property
    def net(self) -> torch.nn.Module:
        """The underlying torch module (in eval mode)."""
        return self._net

    @property
    def embed_dim(self) -> int:
        return int(self._net.embed_dim)

    def state_dict(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self._net.state_dict().items()}

    # ---- inference

    def _batches(self, X: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
        if batch_size < 1:
            raise InvalidInput("batch_size must be >= 1", details={"batch_size": batch_size})
        X = check_inputs(self.modality, X, task=self.task)
        for start in range(0, len(X), batch_size):
            yield torch.from_numpy(X[start : start + batch_size]).to(self.device)

    def _forward(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, embedding) in one pass."""
        if self.task == "segmentation":
            return self._net.forward_with_embedding(xb)
        emb = self._net.forward_features(xb)
        return self._net.logits_from_embedding(emb), emb

    @torch.no_grad()
    def predict_and_embed(self, X: np.ndarray, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, embeddings)`` in one pass over ``X``."""
        self._net.eval()
        probs, embs = [], []
        for xb in self._batches(X, batch_size):
            logits, emb = self._forward(xb)
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
            embs.append(emb.cpu().numpy())
        return np.concatenate(probs).astype(np.float32), np.concatenate(embs).astype(np.float32)

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities: ``(N, C)`` float32, or ``(N, P, C)`` for segmentation."""
        self._net.eval()
        out = []
        for xb in self._batches(X, batch_size):
            out.append(torch.softmax(self._net(xb), dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def predict(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Arg-max class index per sample (per point for segmentation), int64."""
        return self.predict_proba(X, batch_size=batch_size).argmax(axis=-1).astype(np.int64)

    @torch.no_grad()
    def embed(self, X: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer embeddings ``(N, D)`` float32 (not normalised)."""
        self._net.eval()
        out = [self._net.forward_features(xb).cpu().numpy() for xb in self._batches(X, batch_size)]
        return np.concatenate(out).astype(np.float32)

    @torch.no_grad()
    def predict_proba_mc(
        self, X: np.ndarray, *, n_samples: int = 10, random_state: int = 0, batch_size: int = 256
    ) -> np.ndarray:
        """MC-dropout probabilities ``(n_samples, N, C)`` (or ``(n_samples, N, P, C)``).

        Dropout is on, batch norm stays in eval mode; deterministic for a given ``random_state``.
        """
        if n_samples < 1:
            raise InvalidInput("n_samples must be >= 1", details={"n_samples": n_samples})
        X = check_inputs(self.modality, X, task=self.task)
        self._net.eval()
        dropouts = [m for m in self._net.modules() if isinstance(m, torch.nn.Dropout)]
        devices = [_cuda_index(self.device)] if self.device.startswith("cuda") else []
        try:
            for m in dropouts:
                m.train()
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(random_state)
                runs = []
                for _ in range(n_samples):
                    out = [torch.softmax(self._net(xb), dim=-1).cpu().numpy() for xb in self._batches(X, batch_size)]
                    runs.append(np.concatenate(out))
        finally:
            self._net.eval()
        return np.stack(runs).astype(np.float32)

    # ---- persistence

    def to_dict(self) -> dict:
        """The plain dict that :meth:`save` writes (tensors, str, numbers, lists, dicts only)."""
        return {
            "format": SAVE_FORMAT,
            "modality": self.modality,
            "task": self.task,
            "n_classes": self.n_classes,
            "arch": dict(self.arch),
            "state_dict": self.state_dict(),
            "history": [dict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "input_shape": list(self.input_shape),
        }

    def save(self, path: str | os.PathLike | io.IOBase) -> None:
        """Write the model with ``torch.save`` (a path or a binary file object)."""
        torch.save(self.to_dict(), path)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.save(buf)
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike | io.IOBase | bytes, *, device: str = "cpu") -> "TrainedModel":
        """Load a model written by :meth:`save` (``torch.load(..., weights_only=True)``)."""
        source = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path
        try:
            blob = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # pickle / zip errors: not a model file
            raise CorruptData(
                "not a readable model file", code="corrupt_model", details={"error": f"{type(exc).__name__}: {exc}"}
            ) from exc
        if not isinstance(blob, dict) or blob.get("format") != SAVE_FORMAT:
            fmt = blob.get("format") if isinstance(blob, dict) else None
            raise InvalidInput(
                f"unsupported model file format {fmt!r} (expected {SAVE_FORMAT})",
                code="unsupported_model_format",
                details={"format": fmt},
            )
        try:
            return cls(
                modality=blob["modality"],
                n_classes=blob["n_classes"],
                arch=blob["arch"],
                state_dict=blob["state_dict"],
                history=blob.get("history", []),
                task=blob.get("task", "classification"),
                best_epoch=blob.get("best_epoch"),
                train_seconds=blob.get("train_seconds"),
                input_shape=blob.get("input_shape"),
                device=device,
            )
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CorruptData(
                "model file does not match its architecture", code="corrupt_model", details={"error": str(exc)}
            ) from exc

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str = "cpu") -> "TrainedModel":
        return cls.load(data, device=device)


# --------------------------------------------------------------------------------------------
# augmentation (numpy, driven by the seeded generator so CPU and GPU runs see the same data)


def _shift(x: np.ndarray, rng: np.random.Generator, max_shift: int, axes: tuple[int, ...]) -> np.ndarray:
    """Random integer shift per sample along ``axes`` (of the per-sample array), edge padding."""
    if max_shift <= 0:
        return x
    n = x.shape[0]
    pad = [(0, 0)] * x.ndim
    for a in axes:
        pad[a + 1] = (max_shift, max_shift)
    padded = np.pad(x, pad, mode="edge")
    offsets = rng.integers(0, 2 * max_shift + 1, size=(n, len(axes)))
    out = np.empty_like(x)
    for i in range(n):
        sl: list[slice | int] = [i] + [slice(None)] * (x.ndim - 1)
        for j, a in enumerate(axes):
            sl[a + 1] = slice(offsets[i, j], offsets[i, j] + x.shape[a + 1])
        out[i] = padded[tuple(sl)]
    return out


def _augment(modality: str, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shift = modalities.get(modality).shift_augment
    if shift is not None:  # image, audio: a random shift of up to 1/divisor of the last axis
        divisor, axes = shift
        return _shift(x, rng, max_shift=max(1, x.shape[-1] // divisor), axes=axes)
    # point cloud: random yaw about z, small jitter
    theta = rng.uniform(0.0, 2.0 * np.pi, size=x.shape[0])
    c, s = np.cos(theta), np.sin(theta)
    rot = np.zeros((x.shape[0], 3, 3), dtype=np.float32)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
    rot[:, 2, 2] = 1.0
    jitter = np.clip(rng.normal(0.0, 0.01, size=x.shape), -0.05, 0.05).astype(np.float32)
    return (np.einsum("npj,nij->npi", x, rot) + jitter).astype(np.float32)


# --------------------------------------------------------------------------------------------
# training


@contextlib.contextmanager
def _deterministic(seed: int, device: str) -> Iterator[None]:
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cuda_devices = [_cuda_index(device)] if device.startswith("cuda") else []
    if cuda_devices:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn


def _class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the classes present; 0 for absent classes."""
    y = y.reshape(-1)
    counts = np.bincount(y[y >= 0], minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def _epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = rng.permutation(n)
    batches = [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    # batch norm cannot train on a batch of one: fold a lone last sample into the previous batch
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = np.concatenate([batches[-2], batches.pop()])
    return batches


def _loss_terms(logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Per-sample (classification) or per-point (segmentation) cross-entropy, flattened; 0 where the label is -1."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="none", ignore_index=-1)


@torch.no_grad()
def _recalibrate_batch_norm(
    net: torch.nn.Module, X: np.ndarray, device: str, batch_size: int, rng: np.random.Generator, max_samples: int = 512
) -> None:
    """Re-estimate batch-norm running statistics with the current weights (exact averages).

    With few batches per epoch (small labelled sets: the first rounds of a data loop) the running
    averages lag far behind the weights and eval-mode predictions are poor; a forward pass over
    (a fixed-size sample of) the training data fixes that for about a third of an epoch's cost.
    """
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    idx = np.sort(rng.choice(len(X), size=min(len(X), max_samples), replace=False))
    momenta = [m.momentum for m in bns]
    net.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
    try:
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            if len(chunk) < 2:
                continue
            net(torch.from_numpy(X[chunk]).to(device))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        net.eval()


@torch.no_grad()
def _evaluate(net: torch.nn.Module, X: np.ndarray, y: np.ndarray, device: str, batch_size: int) -> tuple[float, float]:
    net.eval()
    total_loss, total_correct, total = 0.0, 0, 0
    for start in range(0, len(X), max(batch_size, 256)):
        xb = torch.from_numpy(X[start : start + max(batch_size, 256)]).to(device)
        yb = torch.from_numpy(y[start : start + max(batch_size, 256)]).to(device)
        logits = net(xb)
        terms = _loss_terms(logits, yb)
        total_loss += float(terms.sum())
        total_correct += int((logits.argmax(dim=-1) == yb).sum())
        total += int((yb >= 0).sum())  # unlabeled points (-1) count neither in the loss nor the accuracy
    total = max(total, 1)
    return total_loss / total, total_correct / total


def _fit(
    *,
    modality: str,
    task: str,
    arch: dict,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    n_classes: int,
    config: TrainConfig,
    sample_weight: np.ndarray,
    progress: ProgressFn | None,
) -> TrainedModel:
    device = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    has_val = X_val is not None and len(X_val) > 0
    class_w = _class_weights(y_train, n_classes) if config.class_weighting else np.ones(n_classes, np.float32)
    t_start = time.perf_counter()
    history: list[dict] = []

    def report(pct: float, msg: str) -> None:
        if progress is not None:
            progress(float(min(100.0, max(0.0, pct))), msg)

    with _deterministic(config.seed, device):
        net = build_net(arch, n_classes).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        # cosine decay of the learning rate over the planned epochs (per step)
        steps_per_epoch = len(_epoch_batches(len(X_train), config.batch_size, np.random.default_rng(0)))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.epochs * steps_per_epoch))
        class_w_t = torch.from_numpy(class_w).to(device)
        best_loss, best_epoch, best_state, bad_epochs = math.inf, None, None, 0
        report(0.0, f"training {arch['name']} on {len(X_train)} samples ({device})")

        for epoch in range(1, config.epochs + 1):
            t_epoch = time.perf_counter()
            net.train()
            loss_sum, weight_sum = 0.0, 0.0
            for idx in _epoch_batches(len(X_train), config.batch_size, rng):
                xb_np = X_train[idx]
                if config.augment:
                    xb_np = _augment(modality, xb_np, rng)
                xb = torch.from_numpy(np.ascontiguousarray(xb_np)).to(device)
                yb = torch.from_numpy(y_train[idx]).to(device)
                sw = torch.from_numpy(sample_weight[idx]).to(device)
                terms = _loss_terms(net(xb), yb)
                if task == "segmentation":
                    sw = sw.repeat_interleave(y_train.shape[1])
                y_flat = yb.reshape(-1)
                w = class_w_t[y_flat.clamp(min=0)] * (y_flat >= 0) * sw
                w_sum = w.sum().detach()
                if float(w_sum) <= 0:
                    continue
                loss = (terms * w).sum() / w_sum
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * float(w_sum)
                weight_sum += float(w_sum)
            train_loss = loss_sum / weight_sum if weight_sum > 0 else float("nan")

            _recalibrate_batch_norm(net, X_train, device, max(config.batch_size, 32), rng)
            val_loss = val_acc = None
            if has_val:
                val_loss, val_acc = _evaluate(net, X_val, y_val, device, config.batch_size)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                    "seconds": time.perf_counter() - t_epoch,
                }
            )
            msg = f"epoch {epoch}/{config.epochs} train_loss={train_loss:.4f}"
            if has_val:
                msg += f" val_loss={val_loss:.4f} val_acc={val_acc:.3f}"

            monitored = val_loss if has_val else train_loss
            if monitored < best_loss - 1e-6:
                best_loss, best_epoch, bad_epochs = monitored, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad_epochs += 1
            if has_val and bad_epochs >= config.patience:
                report(100.0, msg + f"; early stop, best epoch {best_epoch}")
                break
            report(100.0 * epoch / config.epochs, msg)

        if best_state is None:  # every epoch produced NaN: keep the last weights
            best_state, best_epoch = net.state_dict(), len(history)
        state = {k: v.detach().cpu().clone() for k, v in best_state.items()}

    return TrainedModel(
        modality=modality,
        n_classes=n_classes,
        arch=arch,
        state_dict=state,
        history=history,
        task=task,
        best_epoch=best_epoch,
        train_seconds=time.perf_counter() - t_start,
        input_shape=X_train.shape[1:],
        device="cpu",
    )


def _prepare(
    modality: str,
    task: str,
    X_train,
    y_train,
    X_val,
    y_val,
    n_classes: int,
    sample_weight,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray]:
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise InvalidInput("n_classes must be an integer >= 2", code="bad_labels", details={"n_classes": n_classes})
    X_train = check_inputs(modality, X_train, task=task)
    n_points = X_train.shape[1] if task == "segmentation" else None
    y_train = _check_labels(y_train, len(X_train), n_classes, "y_train", n_points=n_points)
    if len(X_train) < 2:
        raise InvalidInput("need at least 2 training samples", code="too_few_samples", details={"n": len(X_train)})
    if X_val is None or len(X_val) == 0:
        X_val = y_val = None
    else:
        X_val = check_inputs(modality, X_val, task=task)
        if X_val.shape[1:] != X_train.shape[1:] and modalities.get(modality).fixed_sample_shape:
            raise InvalidInput(
                "X_val and X_train must have the same sample shape",
                code="bad_shape",
                details={"train": list(X_train.shape[1:]), "val": list(X_val.shape[1:])},
            )
        n_points_val = X_val.shape[1] if task == "segmentation" else None
        y_val = _check_labels(y_val, len(X_val), n_classes, "y_val", n_points=n_points_val)
    weights = _check_sample_weight(sample_weight, len(X_train))
    return X_train, y_train, X_val, y_val, weights


def _train(modality: str, task: str, X_train, y_train, X_val, y_val, *, n_classes: int, config: TrainConfig,
           sample_weight, progress: ProgressFn | None, arch: dict | None) -> TrainedModel:
    """Check the inputs, build the task's default architecture with ``arch``'s overrides and fit it."""
    X_train, y_train, X_val, y_val, weights = _prepare(
        modality, task, X_train, y_train, X_val, y_val, n_classes, sample_weight
    )
    full_arch = default_arch(modality, task, **{k: v for k, v in (arch or {}).items() if k != "name"})
    return _fit(
        modality=modality,
        task=task,
        arch=full_arch,
        X_train=X_train,
        y_train=y_train,
        X_val=X_val,
        y_val=y_val,
        n_classes=int(n_classes),
        config=config,
        sample_weight=weights,
        progress=progress,
    )


def train_classifier(
    modality: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    n_classes: int,
    config: TrainConfig = TrainConfig(),
    sample_weight: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    arch: dict | None = None,
) -> TrainedModel:
    """Train the modality's classifier; return the weights of the epoch with the best val loss.

    X: image ``(N, 3, 32, 32)``, audio ``(N, 1, 64, T)``, pointcloud ``(N, P, 3)``; y int in
    ``[0, n_classes)``. ``X_val`` may be ``None``/empty: then all epochs run and the epoch with
    the lowest training loss is kept. ``arch`` overrides the default architecture's keyword
    arguments (e.g. ``{"widths": [16, 32, 64]}``).
    """
    return _train(modality, "classification", X_train, y_train, X_val, y_val, n_classes=n_classes, config=config,
                  sample_weight=sample_weight, progress=progress, arch=arch)


def train_segmenter(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray | None,
    y_val: np.ndarray | None,
    *,
    n_classes: int,
    config: TrainConfig = TrainConfig(),
    sample_weight: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    arch: dict | None = None,
) -> TrainedModel:
    """Train per-point segmentation of point clouds ``(N, P, 3)`` with labels ``(N, P)``.

    The returned model's ``predict_proba`` gives ``(N, P, C)``; ``embed`` gives one vector per
    cloud. Class weights are computed over points; ``sample_weight`` weighs whole clouds; a label -1 marks an
    unlabeled point (ignored).
    """
    return _train("pointcloud", "segmentation", X_train, y_train, X_val, y_val, n_classes=n_classes, config=config,
                  sample_weight=sample_weight, progress=progress, arch=arch)
