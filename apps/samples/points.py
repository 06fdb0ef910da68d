"""A sample's point cloud as flat little-endian float32 arrays for the 3D annotation tool.

Every stored point is kept, in file order and in the cloud's own units (no normalisation, no
resampling): the tool labels each stored point, and ``point_labels`` index them in this order.
The arrays come from ml.modalities.pointcloud.read_point_arrays (the same validation as ingest).
An optional fourth channel carries a PLY/PCD ``intensity`` field, scaled to 0..1.

The decoded binary is cached in the default storage next to the content (content-addressed, so a
cache entry never goes stale).
"""
from __future__ import annotations

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.core.limits import point_limits
from apps.samples import content as content_io
from ml.modalities.pointcloud import PointArrays, read_point_arrays

CACHE_VERSION = 1
_MAGIC = b"LLPTS1\n"  # cache file: magic, one ascii header line "n stride channels\n", then float32 data


def points_decode(data: bytes) -> PointArrays:
    """Decode point-cloud bytes to float32 arrays (every point, file order) under this server's caps (those of
    ingest, checked from the header). Raises ml.errors.MLError."""
    return read_point_arrays(data, **point_limits())


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
