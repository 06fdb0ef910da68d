"""Small networks for the three modalities.

Every network maps an input batch to ``(logits, embedding)`` through ``forward_features`` (the
embedding is the penultimate layer, before dropout) and ``head`` (embedding -> logits).
``forward`` returns logits only. Dropout sits between the embedding and the head, so MC dropout
(dropout left on at inference, batch norm in eval mode) is possible.

Architectures are described by a plain, JSON-serialisable ``arch`` dict
(``{"name": ..., **kwargs}``) and rebuilt with :func:`build_net`; the dict is what
``TrainedModel.save`` stores next to the weights.

Shapes:

- ``image_cnn``: ``(N, 3, 32, 32)`` (other H, W >= 8 work: adaptive pooling) -> ``(N, C)``
- ``audio_cnn``: ``(N, 1, 64, T)`` log-mel, any T >= 1 (mean over time) -> ``(N, C)``
- ``pointnet_cls``: ``(N, P, 3)`` -> ``(N, C)``, invariant to point order
- ``pointnet_seg``: ``(N, P, 3)`` -> ``(N, P, C)`` per-point logits

This module imports torch at top level; import it only where torch is wanted (training, export).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ImageCNN",
    "AudioCNN",
    "PointNetClassifier",
    "PointNetSegmenter",
    "build_net",
    "default_arch",
]


def _conv_block(c_in: int, c_out: int, *, ceil_mode: bool = False) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=ceil_mode),
    )


class _ConvClassifier(nn.Module):
    """Conv blocks (conv3x3-BN-ReLU-maxpool) -> average pool to a small grid -> FC embedding -> dropout -> head.

    ``pool_grid = (gh, gw)``: the feature map is average-pooled to ``gh x gw`` cells before the FC
    layer. ``(1, 1)`` is global pooling; ``(2, 2)`` keeps coarse position (much better on digits);
    a ``1`` on an axis is a plain mean over it, so that axis may have any length (audio time).
    """

    def __init__(
        self,
        n_classes: int,
        *,
        in_channels: int,
        widths: tuple[int, ...] | list[int],
        embed_dim: int = 128,
        dropout: float = 0.3,
        ceil_mode: bool = False,
        pool_grid: tuple[int, int] | list[int] = (1, 1),
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError("n_classes must be >= 1")
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers.append(_conv_block(c, int(w), ceil_mode=ceil_mode))
            c = int(w)
        self.features = nn.Sequential(*layers)
        self.pool_grid = (int(pool_grid[0]), int(pool_grid[1]))
        self.fc = nn.Sequential(nn.Linear(c * self.pool_grid[0] * self.pool_grid[1], embed_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, n_classes)
        self.embed_dim = embed_dim
        self.n_classes = n_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        gh, gw = self.pool_grid
        if gw == 1:
            h = h.mean(dim=3, keepdim=True)  # any width / number of frames
        if gh == 1:
            h = h.mean(dim=2, keepdim=True)
        if (gh > 1 or gw > 1) and tuple(h.shape[2:]) != (gh, gw):  # sizes are static here (ONNX too)
            H, W = int(h.shape[2]), int(h.shape[3])
            if H % gh == 0 and W % gw == 0:  # the same numbers; its CUDA backward is deterministic, adaptive's is not
                h = F.avg_pool2d(h, (H // gh, W // gw))
            else:
                h = F.adaptive_avg_pool2d(h, (gh, gw))
        return self.fc(h.flatten(1))

    def logits_from_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.forward_features(x))


class ImageCNN(_ConvClassifier):
    """Image classifier for ``(N, 3, 32, 32)`` inputs: 3 conv blocks, 2x2 pooled grid, 128-d embedding."""

    def __init__(
        self,
        n_classes: int,
        *,
        in_channels: int = 3,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        embed_dim: int = 128,
        dropout: float = 0.3,
        pool_grid: tuple[int, int] | list[int] = (2, 2),
    ) -> None:
        super().__init__(
            n_classes, in_channels=in_channels, widths=widths, embed_dim=embed_dim, dropout=dropout, pool_grid=pool_grid
        )


class AudioCNN(_ConvClassifier):
    """Log-mel classifier for ``(N, 1, n_mels, T)``: 4 conv blocks, mean over time, 4 frequency bands kept.

    With the default 4 blocks both axes are halved 4 times; pooling uses ``ceil_mode`` so short
    inputs (T down to 1) stay valid, and the time axis is averaged, so any T works (the ONNX export
    keeps T dynamic). A batch norm on the raw input learns the log-mel scale.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        in_channels: int = 1,
        widths: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        embed_dim: int = 128,
        dropout: float = 0.3,
        pool_grid: tuple[int, int] | list[int] = (4, 1),
    ) -> None:
        super().__init__(
            n_classes,
            in_channels=in_channels,
            widths=widths,
            embed_dim=embed_dim,
            dropout=dropout,
            ceil_mode=True,
            pool_grid=pool_grid,
        )
        self.input_norm = nn.BatchNorm2d(in_channels)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_features(self.input_norm(x))


def _pointwise(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True))


class _PointNetTrunk(nn.Module):
    """Shared per-point MLP (as 1x1 convolutions) + max pool over points.

    Returns per-point local features (N, local_dim, P) and the global feature (N, global_dim).
    """

    def __init__(self, local_dim: int = 64, global_dim: int = 256) -> None:
        super().__init__()
        self.local = nn.Sequential(_pointwise(3, 64), _pointwise(64, local_dim))
        self.expand = nn.Sequential(_pointwise(local_dim, 128), _pointwise(128, global_dim))
        self.local_dim = local_dim
        self.global_dim = global_dim

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = points.transpose(1, 2)  # (N, 3, P)
        local = self.local(x)
        glob = self.expand(local).amax(dim=2)  # symmetric function: order invariant
        return local, glob


class _PointNet(nn.Module):
    """What the PointNet classifier and segmenter share: the trunk, the dropout before the head, the sizes.

    A subclass builds its layers after the trunk's in :meth:`_build_layers` (the order in which parameters
    are drawn from the seed).
    """

    def __init__(
        self,
        n_classes: int,
        *,
        local_dim: int = 64,
        global_dim: int = 256,
        embed_dim: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.trunk = _PointNetTrunk(local_dim, global_dim)
        self._build_layers(n_classes, local_dim=local_dim, global_dim=global_dim, embed_dim=embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.embed_dim = embed_dim
        self.n_classes = n_classes

    def _build_layers(self, n_classes: int, *, local_dim: int, global_dim: int, embed_dim: int) -> None:
        raise NotImplementedError


class PointNetClassifier(_PointNet):
    """PointNet-style classifier for ``(N, P, 3)`` clouds (no T-Net; yaw augmentation instead)."""

    def _build_layers(self, n_classes: int, *, local_dim: int, global_dim: int, embed_dim: int) -> None:
        self.fc = nn.Sequential(nn.Linear(global_dim, embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(embed_dim, n_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _, glob = self.trunk(x)
        return self.fc(glob)

    def logits_from_embedding(self, emb: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.forward_features(x))


class PointNetSegmenter(_PointNet):
    """PointNet-style part segmentation: per-point logits ``(N, P, C)``.

    Each point's local feature is concatenated with the cloud's global feature. The embedding of
    a cloud (for search / selection) is its global feature projected to ``embed_dim``.
    """

    def _build_layers(self, n_classes: int, *, local_dim: int, global_dim: int, embed_dim: int) -> None:
        self.embed_proj = nn.Sequential(nn.Linear(global_dim, embed_dim), nn.ReLU(inplace=True))
        self.seg = nn.Sequential(_pointwise(local_dim + global_dim, 128), _pointwise(128, 64))
        self.head = nn.Conv1d(64, n_classes, 1)

    def _both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local, glob = self.trunk(x)
        n_points = local.shape[2]
        h = torch.cat([local, glob.unsqueeze(2).expand(-1, -1, n_points)], dim=1)
        logits = self.head(self.dropout(self.seg(h))).transpose(1, 2)  # (N, P, C)
        return logits, self.embed_proj(glob)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        _, glob = self.trunk(x)
        return self.embed_proj(glob)

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._both(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._both(x)[0]


_REGISTRY: dict[str, type[nn.Module]] = {
    "image_cnn": ImageCNN,
    "audio_cnn": AudioCNN,
    "pointnet_cls": PointNetClassifier,
    "pointnet_seg": PointNetSegmenter,
}

_DEFAULT_NET = {
    ("image", "classification"): "image_cnn",
    ("audio", "classification"): "audio_cnn",
    ("pointcloud", "classification"): "pointnet_cls",
    ("pointcloud", "segmentation"): "pointnet_seg",
}


def default_arch(modality: str, task: str = "classification", **overrides: Any) -> dict:
    """The arch dict used for a modality and task, with keyword overrides (e.g. ``widths=[16, 32, 64]``)."""
    try:
        name = _DEFAULT_NET[(modality, task)]
    except KeyError:
        raise ValueError(f"no network for modality={modality!r} task={task!r}") from None
    arch: dict[str, Any] = {"name": name}
    for key, value in overrides.items():
        arch[key] = list(value) if isinstance(value, tuple) else value
    return arch


def build_net(arch: dict, n_classes: int) -> nn.Module:
    """Instantiate the network an ``arch`` dict describes."""
    kwargs = dict(arch)
    name = kwargs.pop("name", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown network {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](n_classes, **kwargs)
