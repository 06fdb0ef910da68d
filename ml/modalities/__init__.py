"""Per-modality loaders (untrusted bytes -> validated, fixed-shape float32 arrays) and the modality registry.

- :mod:`ml.modalities.image`: PNG/JPEG/WEBP/BMP -> ``(3, size, size)`` (numpy + Pillow only).
- :mod:`ml.modalities.audio`: WAV/FLAC/OGG -> log-mel ``(1, 64, T)`` (librosa imported lazily);
  :mod:`ml.modalities.audio_view`: waveform peaks and spectrograms for the annotation tool, streamed.
- :mod:`ml.modalities.pointcloud`: PLY/PCD/XYZ -> ``(n_points, 3)`` (open3d imported lazily), and the
  stored points with an optional intensity channel for the annotation tool.

The registry: :func:`get` returns the :class:`Modality` of a name (raising :class:`UnknownModality`, an
``InvalidInput`` with code ``unsupported_modality``, for any other), and a ``Modality`` holds everything
code elsewhere used to switch on the name for: content validation and batch loading with a server's
:class:`Limits`, the model input layout and its shape check, the default input shape, the training tasks,
augmentation by shifting, the ONNX variable axes and the annotation-tool views.

Importing this package imports none of the submodules (each ``Modality`` imports its module on use).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ml.errors import InvalidInput, UnsupportedFormat

__all__ = ["MODALITIES", "Limits", "ContentInfo", "Modality", "UnknownModality", "get", "all_modalities",
           "accepted_format"]


class UnknownModality(InvalidInput):
    """A modality name that is not in the registry."""

    code = "unsupported_modality"


def accepted_format(fmt: str | None, allowed_formats: Sequence[str], *, kind: str, n_bytes: int) -> str:
    """``fmt``, the format sniffed from a content of ``n_bytes`` bytes, when it is one of ``allowed_formats``.

    Else :class:`~ml.errors.UnsupportedFormat`: "not a recognised {kind} format" when nothing was recognised,
    "{kind} format X is not accepted" for a known format the caller does not accept.
    """
    allowed = tuple(str(f).upper() for f in allowed_formats)
    if fmt is None:
        raise UnsupportedFormat(
            f"not a recognised {kind} format",
            details={"allowed": list(allowed), "n_bytes": n_bytes},
        )
    if fmt not in allowed:
        raise UnsupportedFormat(
            f"{kind} format {fmt} is not accepted (accepted: {', '.join(allowed)})",
            details={"format": fmt, "allowed": list(allowed)},
        )
    return fmt


@dataclass(frozen=True)
class Limits:
    """A server's caps on decoded sizes, checked from the header before decoding (None: the module's default)."""

    max_pixels: int | None = None
    max_duration_s: float | None = None
    max_samples: int | None = None
    max_points: int | None = None
    max_values: int | None = None

    def kwargs(self, *names: str) -> dict[str, Any]:
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class ContentInfo:
    """What validation learned about one content: its format name and what annotation tools need to know."""

    format: str
    meta: dict


def _validate_image(data: bytes, limits: Limits) -> ContentInfo:
    from ml.modalities.image import validate_image

    info = validate_image(data, **limits.kwargs("max_pixels"))
    return ContentInfo(info.format, {"width": info.width, "height": info.height})


def _validate_audio(data: bytes, limits: Limits) -> ContentInfo:
    from ml.modalities.audio import validate_audio

    info = validate_audio(data, **limits.kwargs("max_duration_s", "max_samples"))
    return ContentInfo(info.format, {"duration_s": info.duration_s, "sample_rate": info.sample_rate,
                                     "channels": info.channels})


def _validate_pointcloud(data: bytes, limits: Limits) -> ContentInfo:
    from ml.modalities.pointcloud import validate_points

    info = validate_points(data, **limits.kwargs("max_points", "max_values"))
    return ContentInfo(info.format, {"n_points": info.n_points})


def _image_shape_ok(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[1] == 3 and shape[2] >= 8 and shape[3] >= 8


def _audio_shape_ok(shape: tuple[int, ...]) -> bool:
    return len(shape) == 4 and shape[1] == 1 and shape[2] >= 8 and shape[3] >= 1


def _pointcloud_shape_ok(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[2] == 3 and shape[1] >= 1


@dataclass(frozen=True)
class Modality:
    name: str
    module: str                      # the loader module, imported on use
    batch_loader: str                # its function: list of bytes -> model input batch
    limit_names: tuple[str, ...]     # the Limits fields its loaders take
    input_layout: str                # the model input batch, as written in errors
    default_input_shape: tuple[int, ...]
    shape_ok: Callable[[tuple[int, ...]], bool]
    validator: Callable[[bytes, Limits], ContentInfo]
    tasks: tuple[str, ...] = ("classification",)        # what ml.training trains for it
    fixed_sample_shape: bool = False  # validation inputs must have the training inputs' sample shape
    shift_augment: tuple[int, tuple[int, ...]] | None = None  # (extent divisor, axes) of random shifts, else None
    variable_axes: dict[int, str] = field(default_factory=dict)  # ONNX input axes besides the batch
    point_axis: int | None = None     # the input axis of points (per-point outputs follow it)
    views: tuple[str, ...] = ()       # what the annotation tool may ask the server to draw

    def load_module(self):
        return importlib.import_module(self.module)

    def validate(self, data: bytes, limits: Limits = Limits()) -> ContentInfo:
        """Validate untrusted content under ``limits``. Raises ml.errors.InvalidInput (TooLarge, CorruptData, ...)."""
        return self.validator(data, limits)

    def load_batch(self, blobs: list[bytes], limits: Limits = Limits()):
        """The model input batch for validated contents, under the same ``limits``."""
        return getattr(self.load_module(), self.batch_loader)(blobs, **limits.kwargs(*self.limit_names))

    def check_shape(self, shape) -> bool:
        return bool(self.shape_ok(tuple(int(d) for d in shape)))


_REGISTRY: dict[str, Modality] = {m.name: m for m in (
    Modality(name="image", module="ml.modalities.image", batch_loader="load_images", limit_names=("max_pixels",),
             input_layout="(N, 3, H, W)", default_input_shape=(3, 32, 32),
             shape_ok=_image_shape_ok, validator=_validate_image, fixed_sample_shape=True,
             shift_augment=(16, (1, 2))),
    Modality(name="audio", module="ml.modalities.audio", batch_loader="load_audio_batch",
             limit_names=("max_duration_s", "max_samples"),
             input_layout="(N, 1, n_mels, T)", default_input_shape=(1, 64, 101), shape_ok=_audio_shape_ok,
             validator=_validate_audio, shift_augment=(10, (2,)), variable_axes={3: "frames"},
             views=("waveform", "spectrogram")),
    Modality(name="pointcloud", module="ml.modalities.pointcloud", batch_loader="load_points_batch",
             limit_names=("max_points", "max_values"), input_layout="(N, P, 3)",
             default_input_shape=(1024, 3), shape_ok=_pointcloud_shape_ok, validator=_validate_pointcloud,
             tasks=("classification", "segmentation"), variable_axes={1: "points"}, point_axis=1, views=("points",)),
)}

MODALITIES: tuple[str, ...] = tuple(_REGISTRY)


def get(name: str) -> Modality:
    """The registered modality called ``name``; UnknownModality (400-class InvalidInput) for any other."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownModality(f"unknown modality {name!r}",
                              details={"modality": name, "supported": list(MODALITIES)}) from None


def all_modalities() -> tuple[Modality, ...]:
    return tuple(_REGISTRY.values())
