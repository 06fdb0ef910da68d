import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from ml.errors import CorruptData, EmptyData, InvalidInput, TooLarge, UnsupportedFormat
from ml.modalities import image as mi


def _png_bytes(arr, mode=None, **save_kw):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", **save_kw)
    return buf.getvalue()


def _encode(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def _handmade_png(width, height, *, idat: bytes | None = None) -> bytes:
    """1-bit grayscale PNG written by hand; with idat=None the pixel data is real (all zero)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    if idat is None:
        row = b"\x00" * (1 + (width + 7) // 8)
        comp = zlib.compressobj(9)
        parts = [comp.compress(row * 1000) for _ in range(height // 1000)]
        parts.append(comp.compress(row * (height % 1000)))
        parts.append(comp.flush())
        idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def noisy_png():
    rng = np.random.default_rng(0)
    return _png_bytes(rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8))


def test_valid_png_info_and_load(noisy_png):
    info = mi.validate_image(noisy_png)
    assert info == mi.ImageInfo(format="PNG", width=48, height=64, mode="RGB", exif_orientation=1)
    x = mi.load_image(noisy_png, size=16)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_exact_pixels_roundtrip_without_resize():
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[..., 0] = 255  # red
    arr[0, 0] = (0, 0, 255)
    x = mi.load_image(_png_bytes(arr), size=8)
    assert np.allclose(x[:, 0, 0], [0, 0, 1])
    assert np.allclose(x[:, 4, 4], [1, 0, 0])


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP"])
def test_other_allowed_formats(fmt):
    im = Image.new("RGB", (40, 30), (10, 200, 30))
    data = _encode(im, fmt)
    info = mi.validate_image(data)
    assert (info.format, info.width, info.height) == (fmt, 40, 30)
    x = mi.load_image(data, size=8)
    assert abs(float(x[1].mean()) - 200 / 255) < 0.05


@pytest.mark.parametrize(
    "data",
    [b"hello, this is not an image at all", b"%PDF-1.4\n...", b"\x00" * 100, b"<svg xmlns='x'></svg>"],
)
def test_not_an_image(data):
    with pytest.raises(UnsupportedFormat) as ei:
        mi.validate_image(data)
    assert ei.value.code == "unsupported_format"


def test_empty_and_wrong_type():
    with pytest.raises(EmptyData):
        mi.validate_image(b"")
    with pytest.raises(InvalidInput):
        mi.validate_image("a string")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt, kw", [("GIF", {}), ("TIFF", {}), ("ICO", {})])
def test_disallowed_format(fmt, kw):
    data = _encode(Image.new("RGB", (16, 16), (1, 2, 3)), fmt, **kw)
    with pytest.raises(UnsupportedFormat) as ei:
        mi.validate_image(data)
    assert ei.value.details["format"] == fmt
    assert "PNG" in ei.value.details["allowed"]


def test_allowed_formats_parameter_restricts():
    data = _encode(Image.new("RGB", (8, 8)), "BMP")
    with pytest.raises(UnsupportedFormat):
        mi.validate_image(data, allowed_formats=("PNG",))
    gif = _encode(Image.new("RGB", (8, 8)), "GIF")
    assert mi.validate_image(gif, allowed_formats=("gif",)).format == "GIF"


def test_content_not_name_decides_format(noisy_png):
    # a "JPEG" whose bytes are PNG is a PNG; a PNG signature with JPEG data is corrupt
    assert mi.validate_image(noisy_png).format == "PNG"
    jpeg = _encode(Image.new("RGB", (8, 8)), "JPEG")
    with pytest.raises(CorruptData):
        mi.validate_image(b"\x89PNG\r\n\x1a\n" + jpeg)


@pytest.mark.parametrize("frac", [0.3, 0.6, 0.9])
def test_truncated_png(noisy_png, frac):
    cut = noisy_png[: int(len(noisy_png) * frac)]
    with pytest.raises(CorruptData) as ei:
        mi.validate_image(cut)
    assert ei.value.details["format"] == "PNG"
    with pytest.raises(CorruptData):
        mi.load_image(cut)


def test_truncated_jpeg():
    rng = np.random.default_rng(1)
    data = _encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG", quality=90)
    with pytest.raises(CorruptData):
        mi.validate_image(data[: len(data) // 2])


def test_header_only_png_is_corrupt():
    with pytest.raises(CorruptData):
        mi.validate_image(b"\x89PNG\r\n\x1a\n\x00\x00")


def test_pixel_bomb_rejected_before_decoding():
    bomb = _handmade_png(20000, 20000)  # a valid, fully decodable 400-megapixel PNG
    assert len(bomb) < 200_000
    t0 = time.perf_counter()
    with pytest.raises(TooLarge) as ei:
        mi.validate_image(bomb)
    assert time.perf_counter() - t0 < 1.0
    assert ei.value.code == "too_large"
    with pytest.raises(TooLarge):
        mi.load_image(bomb)


def test_size_checked_from_header_not_pixels():
    # the header claims 7000x7000 (49 MP > 40 MP, under Pillow's own limit) and the
    # pixel data is garbage: the size check must fire first, so TooLarge, not CorruptData
    fake = _handmade_png(7000, 7000, idat=b"garbage")
    with pytest.raises(TooLarge) as ei:
        mi.validate_image(fake)
    assert ei.value.details["width"] == 7000 and ei.value.details["max_pixels"] == mi.DEFAULT_MAX_PIXELS
    # a tiny max_pixels applies to an ordinary image as well
    small = _png_bytes(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(TooLarge):
        mi.validate_image(small, max_pixels=5000)
    assert mi.validate_image(small, max_pixels=10_000).width == 100


def _two_tone(w=40, h=20):
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = (255, 0, 0)  # left half red
    arr[:, w // 2 :] = (0, 0, 255)  # right half blue
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_applied(fmt):
    im = _two_tone()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels must be rotated 90 degrees clockwise for display
    data = _encode(im, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    info = mi.validate_image(data)
    assert info.exif_orientation == 6
    assert (info.width, info.height) == (20, 40)
    arr = mi.decode_image(data)
    assert arr.shape == (40, 20, 3)
    # after a clockwise quarter turn the left (red) half is on top, blue at the bottom
    top, bottom = arr[:15].reshape(-1, 3).mean(0), arr[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60
    x = mi.load_image(data, size=8)
    assert x[0, 0].mean() > 0.8 and x[2, -1].mean() > 0.8


def test_modes_grayscale_palette_alpha_16bit():
    gray = _png_bytes(np.full((4, 4), 128, dtype=np.uint8))
    x = mi.load_image(gray, size=4)
    assert x.shape == (3, 4, 4) and np.allclose(x, 128 / 255)

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent -> white
    x = mi.load_image(_png_bytes(rgba, mode="RGBA"), size=4)
    assert np.allclose(x, 1.0)

    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 255, 0] * 256)
    x = mi.load_image(_encode(pal, "PNG"), size=4)
    assert np.allclose(x[1], 1.0) and np.allclose(x[0], 0.0)

    im16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    x = mi.load_image(_encode(im16, "PNG"), size=4)
    assert np.allclose(x, 1.0)


def test_load_images_batch_and_error_index(noisy_png):
    X = mi.load_images([noisy_png, noisy_png], size=8)
    assert X.shape == (2, 3, 8, 8) and X.dtype == np.float32
    assert np.array_equal(X[0], mi.load_image(noisy_png, size=8))
    assert mi.load_images([], size=8).shape == (0, 3, 8, 8)
    with pytest.raises(CorruptData) as ei:
        mi.load_images([noisy_png, noisy_png[:100]], size=8)
    assert ei.value.details["index"] == 1


def test_bad_size():
    with pytest.raises(InvalidInput):
        mi.load_image(_png_bytes(np.zeros((4, 4), dtype=np.uint8)), size=0)


def test_augment_images_deterministic_and_label_preserving():
    rng = np.random.default_rng(0)
    X = rng.random((5, 3, 16, 16)).astype(np.float32)
    a = mi.augment_images(X, random_state=3)
    b = mi.augment_images(X, random_state=3)
    c = mi.augment_images(X, random_state=4)
    assert a.shape == X.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert not np.shares_memory(a, X)
    ident = mi.augment_images(X, random_state=0, max_shift=0, brightness=0, contrast=0)
    assert np.allclose(ident, X, atol=1e-6)
    with pytest.raises(InvalidInput):
        mi.augment_images(X[0], random_state=0)
