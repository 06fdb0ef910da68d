"""Image bytes -> validated, decoded, fixed-size float arrays.

Only numpy and Pillow are imported here: the web process imports this module to
validate uploads, so it must stay light.

Safety order for untrusted bytes:

1. the format is sniffed from the leading bytes (never from a file name) and
   checked against ``allowed_formats``;
2. Pillow opens the image with *only* that format's plugin, which reads the
   header but decodes no pixels;
3. the pixel count from the header is checked against ``max_pixels``
   (pixel bombs are rejected here, before any allocation);
4. the image is fully decoded, so truncated or corrupt data is caught;
5. the EXIF orientation is applied, so arrays match what a browser shows.

Arrays produced by :func:`load_image` are ``float32`` of shape ``(3, size, size)``,
channel-first RGB with values in ``[0, 1]``.  Transparent pixels are composited
over white.  The whole image is resized to ``size x size`` (no crop, aspect ratio
not preserved).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ml.errors import CorruptData, EmptyData, InvalidInput, MLError, TooLarge
from ml.modalities import accepted_format

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "ImageInfo",
    "sniff_format",
    "validate_image",
    "decode_image",
    "load_image",
    "load_images",
    "augment_images",
]

ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP")
DEFAULT_MAX_PIXELS = 40_000_000

_EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`validate_image` learned about an image.

    ``width``/``height`` are the *displayed* dimensions, i.e. after the EXIF
    orientation is applied (what a browser shows and what annotation coordinates
    refer to).  ``mode`` is Pillow's mode of the stored pixels (``"RGB"``, ``"L"``,
    ``"RGBA"``, ``"P"``...).  ``exif_orientation`` is 1 when absent.
    """

    format: str
    width: int
    height: int
    mode: str
    exif_orientation: int = 1


def _as_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidInput(
        "image data must be bytes",
        details={"type": type(data).__name__},
    )


def sniff_format(data: bytes) -> str | None:
    """Name the image format from its leading bytes, or ``None`` if unknown.

    Recognises the allowed formats plus common ones we reject with a clear message.
    """
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[:4] == b"qoif":
        return "QOI"
    if head[:4] == b"%PDF":
        return "PDF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    if head.startswith(b"\x00\x00\x00\x0cjP  ") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    stripped = head.lstrip()
    if stripped.startswith(b"<svg") or stripped.startswith(b"<?xml"):
        return "SVG"
    return None


def _open_checked(
    data: bytes,
    *,
    max_pixels: int,
    allowed_formats: Sequence[str],
) -> tuple[Image.Image, ImageInfo]:
    """Open, size-check, fully decode and orient.  Returns the decoded image."""
    data = _as_bytes(data)
    if not data:
        raise EmptyData("image data is empty", details={"n_bytes": 0})
    if max_pixels <= 0:
        raise InvalidInput("max_pixels must be positive", details={"max_pixels": max_pixels})
    fmt = accepted_format(sniff_format(data), allowed_formats, kind="image", n_bytes=len(data))

    # Header only: Image.open does not decode pixels.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as e:
        raise TooLarge(
            "image has too many pixels",
            details={"format": fmt, "max_pixels": max_pixels, "reason": str(e)},
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise CorruptData(
            f"{fmt} header is damaged or unreadable",
            details={"format": fmt, "reason": str(e)},
        ) from e

    width, height = int(im.width), int(im.height)
    if width <= 0 or height <= 0:
        raise EmptyData("image has no pixels", details={"width": width, "height": height})
    if width * height > max_pixels:
        raise TooLarge(
            f"image is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
            details={"format": fmt, "width": width, "height": height, "max_pixels": max_pixels},
        )

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # pragma: no cover - global misconfiguration elsewhere
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set in this process; truncated images cannot be detected"
        )
    # Full decode: catches truncated or corrupt pixel data.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as e:  # pragma: no cover - caught at open in practice
        raise TooLarge("image has too many pixels", details={"format": fmt, "reason": str(e)}) from e
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, Image.DecompressionBombError) as e:
        raise CorruptData(
            f"{fmt} image data is truncated or corrupt",
            details={"format": fmt, "reason": str(e)},
        ) from e

    mode = im.mode
    orientation = 1
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the image
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as e:  # noqa: BLE001
            raise CorruptData(
                "could not apply the EXIF orientation",
                details={"format": fmt, "orientation": orientation, "reason": str(e)},
            ) from e
    info = ImageInfo(
        format=fmt,  # sniffed; Pillow's "MPO" (multi-picture JPEG) counts as JPEG
        width=int(im.width),
        height=int(im.height),
        mode=mode,
        exif_orientation=orientation,
    )
    return im, info


def validate_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> ImageInfo:
    """Check that ``data`` is a complete image of an accepted format and size.

    Raises :class:`~ml.errors.UnsupportedFormat` (not an image, or a format not in
    ``allowed_formats``), :class:`~ml.errors.TooLarge` (more than ``max_pixels``,
    checked from the header before decoding), :class:`~ml.errors.CorruptData`
    (truncated or undecodable), :class:`~ml.errors.EmptyData` (no bytes).
    """
    _, info = _open_checked(data, max_pixels=max_pixels, allowed_formats=allowed_formats)
    return info


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency composited over white."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        if mode.startswith("I;16"):
            scale = 65535.0
        elif mode == "I":
            scale = 65535.0 if arr.size and arr.max() > 255 else 255.0
        else:
            scale = 1.0 if arr.size and arr.max() <= 1.0 else 255.0
        arr8 = np.clip(np.rint(arr / scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    ) or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return im.convert("RGB")
    return im


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """Validate and decode to a full-resolution ``uint8`` array ``(H, W, 3)`` (oriented RGB)."""
    im, _ = _open_checked(data, max_pixels=max_pixels, allowed_formats=allowed_formats)
    return np.asarray(_to_rgb(im), dtype=np.uint8).copy()


def load_image(
    data: bytes,
    *,
    size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """Validate, decode, orient, convert to RGB and resize to ``size x size``.

    Returns ``float32`` ``(3, size, size)`` with values in ``[0, 1]``.
    """
    size = int(size)
    if size < 1 or size > 4096:
        raise InvalidInput("size must be in 1..4096", details={"size": size})
    im, _ = _open_checked(data, max_pixels=max_pixels, allowed_formats=allowed_formats)
    rgb = _to_rgb(im)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    arr = np.asarray(rgb, dtype=np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_images(
    blobs: Sequence[bytes],
    *,
    size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """:func:`load_image` over a sequence -> ``float32`` ``(N, 3, size, size)``.

    The first bad blob raises its typed error with ``details["index"]`` set.
    """
    out = np.empty((len(blobs), 3, int(size), int(size)), dtype=np.float32)
    for i, blob in enumerate(blobs):
        try:
            out[i] = load_image(blob, size=size, max_pixels=max_pixels, allowed_formats=allowed_formats)
        except MLError as e:
            e.details.setdefault("index", i)
            raise
    return out


def augment_images(
    X: np.ndarray,
    *,
    random_state: int | np.random.Generator | None = None,
    max_shift: int = 2,
    hflip: bool = False,
    brightness: float = 0.1,
    contrast: float = 0.1,
    noise_std: float = 0.0,
) -> np.ndarray:
    """Random label-preserving perturbations of a batch ``(N, C, H, W)`` in ``[0, 1]``.

    Per sample: integer translation by up to ``max_shift`` pixels (edge-replicated),
    optional horizontal flip (off by default: it changes the meaning of digits and
    text), brightness offset in ``[-brightness, brightness]``, contrast factor in
    ``[1-contrast, 1+contrast]`` around the sample mean, optional Gaussian noise.
    Returns a new ``float32`` array clipped to ``[0, 1]``; ``X`` is not modified.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise InvalidInput("expected a batch of shape (N, C, H, W)", details={"shape": list(X.shape)})
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    n, _, h, w = X.shape
    out = np.empty_like(X)
    s = int(max(0, max_shift))
    padded = np.pad(X, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge") if s else X
    for i in range(n):
        dy, dx = (rng.integers(-s, s + 1, size=2) if s else (0, 0))
        img = padded[i, :, s + dy : s + dy + h, s + dx : s + dx + w]
        if hflip and rng.random() < 0.5:
            img = img[:, :, ::-1]
        c = 1.0 + rng.uniform(-contrast, contrast) if contrast else 1.0
        b = rng.uniform(-brightness, brightness) if brightness else 0.0
        mean = img.mean()
        img = (img - mean) * c + mean + b
        if noise_std:
            img = img + rng.normal(0.0, noise_std, size=img.shape)
        out[i] = img
    np.clip(out, 0.0, 1.0, out=out)
    return out
