"""A sample's point cloud as flat little-endian float32 arrays for the 3D annotation tool.

Every stored point is kept, in file order and in the cloud's own units (no normalisation, no
resampling): the tool labels each stored point, and ``point_labels`` index them in this order.
The coordinates come from ml.modalities.pointcloud's reader (the same validation as ingest).
An optional fourth channel carries a PLY/PCD ``intensity`` field, scaled to 0..1.

The decoded binary is cached in the default storage next to the content (content-addressed, so a
cache entry never goes stale).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.samples import content as content_io

CACHE_VERSION = 1
_MAGIC = b"LLPTS1\n"  # cache file: magic, one ascii header line "n stride channels\n", then float32 data

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_INTENSITY_NAMES = ("intensity", "scalar_intensity", "reflectance", "remission")


@dataclass(frozen=True)
class PointArrays:
    """``data`` is (n_points, stride) float32: x, y, z and, when ``channels == "xyzi"``, intensity 0..1."""

    data: np.ndarray
    channels: str

    @property
    def n_points(self) -> int:
        return int(self.data.shape[0])

    @property
    def stride(self) -> int:
        return int(self.data.shape[1])

    def to_bytes(self) -> bytes:
        return np.ascontiguousarray(self.data, dtype="<f4").tobytes()


def _ply_intensity(data: bytes, n: int) -> np.ndarray | None:
    end = data.find(b"end_header")
    if end < 0:
        return None
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = memoryview(data)[data.find(b"\n", end) + 1:]  # a view: slicing bytes would copy the body
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format") and len(ln.split()) > 1), "")
    element, props = None, []
    for ln in header:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element":
            if element == "vertex":
                break  # the vertex element's properties are complete
            element = parts[1] if len(parts) > 1 else None
            if element != "vertex":
                return None  # elements before the vertex element: not handled here (rare)
        elif parts[0] == "property" and element == "vertex":
            if len(parts) < 3 or parts[1] == "list" or parts[1] not in _PLY_TYPES:
                return None
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    names = [p[0] for p in props]
    name = next((c for c in _INTENSITY_NAMES if c in names), None)
    if name is None:
        return None
    col = names.index(name)
    if fmt == "binary_little_endian" or fmt == "binary_big_endian":
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(p, order + t) for p, t in props])
        if len(body) < dtype.itemsize * n:
            return None
        return np.frombuffer(body, dtype=dtype, count=n)[name].astype(np.float64)
    if fmt == "ascii":
        return _column(body, col, n)
    return None


def _column(body: memoryview, col: int, n: int) -> np.ndarray | None:
    """Column ``col`` of the first ``n`` non-blank text rows, read row by row (no list of rows)."""
    from ml.modalities.pointcloud import _text_rows

    try:
        return np.fromiter((float(r.split()[col]) for r in _text_rows(body)), dtype=np.float64, count=n)
    except (IndexError, ValueError):  # a short row, a bad number, fewer than n rows
        return None


def _pcd_intensity(data: bytes, n: int) -> np.ndarray | None:
    m = re.search(rb"^DATA\s+(\w+)[^\n]*\n", data[:65536], re.MULTILINE)
    f = re.search(rb"^FIELDS\s+(.+)$", data[:65536], re.MULTILINE)
    if not m or not f or m.group(1).lower() != b"ascii":
        return None
    fields = f.group(1).decode("ascii", errors="replace").split()
    name = next((c for c in _INTENSITY_NAMES if c in fields), None)
    if name is None:
        return None
    return _column(memoryview(data)[m.end():], fields.index(name), n)


def _intensity(data: bytes, fmt: str, n: int) -> np.ndarray | None:
    try:
        values = _ply_intensity(data, n) if fmt == "PLY" else _pcd_intensity(data, n) if fmt == "PCD" else None
    except Exception:  # noqa: BLE001 - an optional channel never fails the cloud
        return None
    if values is None or values.shape[0] != n or not np.isfinite(values).all():
        return None
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros(n)


def points_decode(data: bytes) -> PointArrays:
    """Decode point-cloud bytes to float32 arrays (every point, file order). Raises ml.errors.MLError."""
    from ml.modalities.pointcloud import read_points, sniff_format

    xyz = read_points(data, **content_io.point_limits())  # the caps of ingest, checked from the header
    fmt = sniff_format(data) or ""
    intensity = _intensity(data, fmt, xyz.shape[0])
    if intensity is None:
        return PointArrays(data=xyz.astype(np.float32), channels="xyz")
    return PointArrays(data=np.column_stack([xyz, intensity]).astype(np.float32), channels="xyzi")


def _cache_name(sample) -> str | None:
    base = sample.file.name if sample.file else ""
    if not base and sample.content_hash:
        base = f"samples/{sample.project_id}/{sample.content_hash[:2]}/{sample.content_hash}"
    return f"{base}.points-v{CACHE_VERSION}.bin" if base else None


def _cache_read(name: str) -> PointArrays | None:
    try:
        if not default_storage.exists(name):
            return None
        with default_storage.open(name, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if not raw.startswith(_MAGIC):
        return None
    nl = raw.find(b"\n", len(_MAGIC))
    try:
        n, stride, channels = raw[len(_MAGIC):nl].decode("ascii").split()
        n, stride = int(n), int(stride)
    except ValueError:
        return None
    body = raw[nl + 1:]
    if len(body) != n * stride * 4 or len(channels) != stride:
        return None
    return PointArrays(data=np.frombuffer(body, dtype="<f4").reshape(n, stride), channels=channels)


def sample_points(*, sample, use_cache: bool = True) -> PointArrays:
    """The sample's stored points as float32 arrays, decoded once and cached next to the content.

    Raises content.ContentUnavailable when the content cannot be read here, ml.errors.MLError when it
    is not a readable point cloud."""
    name = _cache_name(sample) if use_cache else None
    if name:
        cached = _cache_read(name)
        if cached is not None:
            return cached
    arrays = points_decode(content_io.read_content(sample))
    if name:
        head = _MAGIC + f"{arrays.n_points} {arrays.stride} {arrays.channels}\n".encode("ascii")
        try:
            if default_storage.exists(name):
                default_storage.delete(name)  # an unreadable old entry
            default_storage.save(name, ContentFile(head + arrays.to_bytes()))
        except OSError:
            pass  # the cache is an optimisation only
    return arrays
