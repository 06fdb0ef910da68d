"""Point-cloud bytes (PLY / PCD / XYZ) -> validated, normalised, fixed-size arrays.

Pipeline for untrusted bytes (:func:`load_points`):

1. the format is sniffed from the content (``fmt`` may force it): PLY (``ply``
   magic), PCD (``# .PCD`` / ``VERSION`` / ``FIELDS`` header), XYZ (text lines of
   at least three numbers);
2. the point count is read from the header (PLY ``element vertex``, PCD
   ``POINTS``, XYZ line count) and checked against ``max_points``, and points x
   fields (PLY vertex properties, PCD ``COUNT``s) against ``max_values``, before
   parsing; a PCD ``binary_compressed`` body must announce exactly that many
   bytes uncompressed (so a small file cannot inflate past the caps);
3. open3d parses the data from a temporary file (open3d reads only files).
   open3d returns an *empty* cloud on a bad file instead of raising, so an empty
   result is :class:`~ml.errors.CorruptData` when the header promised points and
   :class:`~ml.errors.EmptyData` otherwise; NaN/inf coordinates are
   :class:`~ml.errors.EmptyData` (the cloud has unusable points);
4. :func:`normalize_points`: centroid to the origin, farthest point at radius 1;
5. :func:`resample_points`: farthest-point sampling down to ``n_points``, or
   padding by repeating points (deterministic).

open3d is imported only inside functions.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import tempfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.errors import CorruptData, EmptyData, InvalidInput, MLError, TooLarge, UnsupportedFormat, require
from ml.modalities import accepted_format

__all__ = [
    "ALLOWED_FORMATS",
    "DEFAULT_N_POINTS",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_VALUES",
    "PointCloudInfo",
    "PlyVertexHeader",
    "PointArrays",
    "ply_vertex_header",
    "read_intensity",
    "read_point_arrays",
    "sniff_format",
    "read_points",
    "validate_points",
    "normalize_points",
    "farthest_point_sampling",
    "resample_points",
    "load_points",
    "load_points_batch",
    "augment_points",
    "random_rotation_matrix",
    "points_to_ply",
]

ALLOWED_FORMATS: tuple[str, ...] = ("PLY", "PCD", "XYZ")
DEFAULT_N_POINTS = 1024
DEFAULT_MAX_POINTS = 5_000_000
# Points x fields (the scalar values a reader decodes: x, y, z, colour, normal, intensity...), checked
# from the header before parsing: a PCD binary_compressed body inflates to exactly this many values.
DEFAULT_MAX_VALUES = 30_000_000
_FPS_PREPOOL = 8  # FPS runs on at most n_points * _FPS_PREPOOL points (seeded subsample first)


@dataclass(frozen=True)
class PointCloudInfo:
    """What :func:`validate_points` learned: format, number of points, optional attributes."""

    format: str
    n_points: int
    has_colors: bool = False
    has_normals: bool = False


def _open3d():
    o3d = require("open3d", "open3d is required for point clouds", install="pip install open3d")
    try:
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    return o3d


def _as_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidInput("point cloud data must be bytes", details={"type": type(data).__name__})


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity)"
_FINITE_TOKEN = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NONFINITE_TOKEN = re.compile(rb"[-+]?(?:nan|inf|infinity)(?:\(.*\))?", re.IGNORECASE)
_XYZ_LINE = re.compile(rf"^\s*(?:{_NUM})(?:[\s,]+(?:{_NUM})){{2,}}\s*$", re.IGNORECASE)
# PCD header lines (searched in the first 64 KiB): the DATA line ends the header, FIELDS names the values
_PCD_DATA = re.compile(rb"^DATA\s+(\w+)[^\n]*\n", re.MULTILINE)
_PCD_FIELDS = re.compile(rb"^FIELDS\s+(.+)$", re.MULTILINE)


def sniff_format(data: bytes) -> str | None:
    """``"PLY"``, ``"PCD"``, ``"XYZ"`` or ``None`` from the content."""
    head = bytes(data[:4096])
    if head.startswith(b"ply\n") or head.startswith(b"ply\r\n"):
        return "PLY"
    text_head = head.lstrip()
    if text_head.startswith(b"# .PCD") or text_head.startswith(b"VERSION") or text_head.startswith(b"FIELDS"):
        return "PCD"
    if b"\x00" in head:
        return None
    try:
        lines = head.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return None
    if len(head) == 4096 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    content = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if content and all(_XYZ_LINE.match(ln) for ln in content[:20]):
        return "XYZ"
    return None


def _header_count(data: bytes, fmt: str) -> int | None:
    """Point count announced by the header (XYZ: number of data lines), or None."""
    if fmt == "PLY":
        end = data.find(b"end_header")
        header = data[: end if end >= 0 else 65536]
        m = re.search(rb"^element\s+vertex\s+(\d+)\s*$", header, re.MULTILINE)
        return int(m.group(1)) if m else None
    if fmt == "PCD":
        header = data[:65536]
        m = re.search(rb"^POINTS\s+(\d+)\s*$", header, re.MULTILINE)
        if m:
            return int(m.group(1))
        w = re.search(rb"^WIDTH\s+(\d+)\s*$", header, re.MULTILINE)
        h = re.search(rb"^HEIGHT\s+(\d+)\s*$", header, re.MULTILINE)
        return int(w.group(1)) * int(h.group(1)) if (w and h) else None
    if fmt == "XYZ":
        return sum(1 for _ in _text_rows(data, comments=True))
    return None


@dataclass(frozen=True)
class PlyVertexHeader:
    """The vertex element of a PLY header: what the size caps, the reader and the intensity channel need."""

    format: str                            # "ascii", "binary_little_endian", "binary_big_endian" ("" if none)
    properties: tuple[tuple[str, ...], ...]  # the tokens after "property", in order: ("float", "x"), ("list", ...)
    first: bool                            # no element comes before the vertex element
    body_start: int | None                 # offset of the body (after the end_header line); None if unterminated


def ply_vertex_header(data) -> PlyVertexHeader | None:
    """Parse the vertex element of a PLY header (the header ends at ``end_header``, else within 64 KiB), or None
    when the header declares no vertex element."""
    end = data.find(b"end_header")
    header = bytes(data[: end if end >= 0 else 65536]).decode("ascii", errors="replace").splitlines()
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format") and len(ln.split()) > 1), "")
    props: list[tuple[str, ...]] = []
    seen_element = found = in_vertex = first = False
    for ln in header:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element":
            if in_vertex:
                break  # the vertex element's properties are complete
            in_vertex = len(parts) > 1 and parts[1] == "vertex"
            if in_vertex and not found:
                found, first = True, not seen_element
            seen_element = True
        elif parts[0] == "property" and in_vertex:
            props.append(tuple(parts[1:]))
    if not found:
        return None
    nl = data.find(b"\n", end) if end >= 0 else -1
    return PlyVertexHeader(format=fmt, properties=tuple(props), first=first, body_start=nl + 1 if nl >= 0 else None)


def _header_fields(data: bytes, fmt: str) -> int | None:
    """Scalar values per point announced by the header (PLY vertex properties, PCD sum of COUNT), or None."""
    if fmt == "PLY":
        vertex = ply_vertex_header(data)
        return (len(vertex.properties) or None) if vertex else None
    if fmt == "PCD":
        header = data[:65536]
        f = _PCD_FIELDS.search(header)
        c = re.search(rb"^COUNT\s+(.+)$", header, re.MULTILINE)
        try:
            if c:
                return sum(int(v) for v in c.group(1).split()) or None
        except ValueError:
            return None
        return len(f.group(1).split()) if f else None
    return None


def _text_rows(data, *, comments: bool = False):
    """The non-blank lines of ``data`` (bytes or a memoryview of them) one at a time (never a list of
    them all: a 64 MB text cloud would be millions of objects), optionally without ``#`` comments."""
    if isinstance(data, memoryview):  # BytesIO would copy a view; seek into the whole bytes instead
        stream = io.BytesIO(data.obj)
        stream.seek(len(data.obj) - data.nbytes)
    else:
        stream = io.BytesIO(data)
    for ln in stream:
        if ln.strip() and not (comments and ln.lstrip().startswith(b"#")):
            yield ln


@functools.lru_cache(maxsize=8)
def _row_re(min_tokens: int):
    """One whole row of at least ``min_tokens`` finite numbers (separated by blanks or commas)."""
    num = _FINITE_TOKEN.pattern
    return re.compile(rb"[ \t,]*(?:%s)(?:[ \t,]+(?:%s)){%d,}[ \t,\r\n]*" % (num, num, max(0, min_tokens - 1)))


def _scan_rows(rows, fmt: str, *, check: int, stop: int, min_tokens: int) -> tuple[int, str | None]:
    """Walk text rows once: the first ``check`` are checked like :func:`_check_ascii_rows` (a
    whole-row regex first, the token-by-token check only for a row it rejects); counting stops
    at ``stop`` rows.  Returns ``(rows counted, reason or None)``."""
    row_re = _row_re(min_tokens)
    n = 0
    for ln in rows:
        if n < check and not row_re.fullmatch(ln):
            reason = _check_ascii_rows([ln], fmt, min_tokens=min_tokens, start=n)
            if reason is not None:
                return n, reason
        n += 1
        if n >= stop and n >= check:
            break
    return n, None


def _check_ascii_rows(lines: Sequence[bytes], fmt: str, *, min_tokens: int = 3, start: int = 0) -> str | None:
    """Token-by-token check of text rows: open3d's text readers turn junk into 0 and
    silently zero-fill after a bad token.  Raises EmptyData on NaN/inf; returns the
    reason text for a non-numeric token, else None."""
    for row, ln in enumerate(lines, start):
        toks = ln.replace(b",", b" ").split()
        if len(toks) < min_tokens:
            return f"{fmt} row {row} has {len(toks)} values, expected at least {min_tokens}"
        for tok in toks:
            if not _FINITE_TOKEN.fullmatch(tok):
                if _NONFINITE_TOKEN.fullmatch(tok):
                    raise EmptyData(
                        "point cloud contains NaN or infinite coordinates",
                        details={"format": fmt, "reason": "non_finite", "row": row},
                    )
                return f"{fmt} row {row} has a value that is not a number: {tok[:20]!r}"
    return None


# PLY scalar property types as numpy dtype codes (byte order added by the reader) and their sizes
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_PLY_SIZES = {name: int(code[1]) for name, code in _PLY_TYPES.items()}


def _ply_shortfall(data: bytes) -> str | None:
    """Why a PLY body is too short for the vertices its header declares, else None.

    open3d (rply) fills unread vertices with zeros and only prints a warning, so the
    body length is checked here: every element up to and including ``vertex`` must
    fit (binary: fixed-size rows; ascii: one line per row).  Elements with list
    properties before ``vertex`` end the check (sizes unknown without parsing).
    """
    end = data.find(b"end_header")
    if end < 0:
        return "PLY header has no end_header"
    nl = data.find(b"\n", end)
    if nl < 0:
        return "PLY header is not terminated"
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = memoryview(data)[nl + 1 :]  # a view: a slice of bytes would copy the body
    fmt_line = next((ln.split() for ln in header if ln.startswith("format")), None)
    if not fmt_line or len(fmt_line) < 2:
        return "PLY header has no format line"
    binary = fmt_line[1] != "ascii"
    elements: list[list] = []  # [name, count, row_size or None]
    for ln in header:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element" and len(parts) >= 3:
            try:
                elements.append([parts[1], int(parts[2]), 0])
            except ValueError:
                return "PLY element count is not a number"
        elif parts[0] == "property" and elements:
            if len(parts) >= 2 and parts[1] == "list":
                elements[-1][2] = None
            elif elements[-1][2] is not None:
                size = _PLY_SIZES.get(parts[1]) if len(parts) >= 3 else None
                if size is None:
                    return f"PLY property type {parts[1] if len(parts) > 1 else '?'} is unknown"
                elements[-1][2] += size
    if not any(e[0] == "vertex" for e in elements):
        return "PLY header declares no vertex element"
    need_bytes = 0
    need_rows = 0
    for name, count, row in elements:
        if row is None:
            return None
        need_bytes += count * row
        need_rows += count
        if name == "vertex":
            break
    if binary and len(body) < need_bytes:
        return f"PLY body has {len(body)} bytes, the header needs at least {need_bytes}"
    if not binary:
        # rply zero-fills the rest of the cloud after a token it cannot parse (including
        # "nan"/"inf"), so the vertex rows are checked token by token when they come first
        check = elements[0][1] if elements[0][0] == "vertex" else 0
        n, reason = _scan_rows(_text_rows(body), "PLY", check=check, stop=need_rows, min_tokens=1)
        if reason is not None:
            return reason
        if n < need_rows:
            return f"PLY body has {n} rows, the header needs at least {need_rows}"
    return None


def _pcd_shortfall(data: bytes) -> str | None:
    """Why a PCD body is too short for its ``POINTS``, else None (binary_compressed: not checked)."""
    m = _PCD_DATA.search(data[:65536])
    if not m:
        return "PCD header has no DATA line"
    kind = m.group(1).decode("ascii", errors="replace").lower()
    header = data[: m.start()].decode("ascii", errors="replace")
    body = memoryview(data)[m.end() :]  # a view: a slice of bytes would copy the body
    count = _header_count(data, "PCD") or 0

    def ints(key):
        mm = re.search(rf"^{key}\s+(.+)$", header, re.MULTILINE)
        try:
            return [int(v) for v in mm.group(1).split()] if mm else None
        except ValueError:
            return None

    if kind == "ascii":
        n, reason = _scan_rows(_text_rows(body), "PCD", check=count, stop=count, min_tokens=1)
        if reason is None and n < count:
            return f"PCD body has {n} rows, the header announces {count} points"
        return reason
    elif kind in ("binary", "binary_compressed"):
        sizes, counts = ints("SIZE"), ints("COUNT")
        if sizes is None:
            return "PCD header has no SIZE line"
        counts = counts or [1] * len(sizes)
        row = sum(a * b for a, b in zip(sizes, counts))
        if kind == "binary" and len(body) < row * count:
            return f"PCD body has {len(body)} bytes, the header needs {row * count}"
        if kind == "binary_compressed":
            # two uint32 (compressed, uncompressed size), then the LZF data: the reader allocates the
            # uncompressed size, so it must be exactly what the header's points and fields make
            if len(body) < 8:
                return "PCD binary_compressed body has no size words"
            compressed, uncompressed = struct.unpack("<II", body[:8].tobytes())
            if uncompressed != row * count:
                return f"PCD binary_compressed body inflates to {uncompressed} bytes, the header needs {row * count}"
            if len(body) - 8 < compressed:
                return f"PCD binary_compressed body has {len(body) - 8} bytes, it announces {compressed}"
    return None


def _read(
    data: bytes,
    *,
    fmt: str | None,
    max_points: int,
    allowed_formats: Sequence[str],
    max_values: int = DEFAULT_MAX_VALUES,
):
    data = _as_bytes(data)
    if not data:
        raise EmptyData("point cloud data is empty", details={"n_bytes": 0})
    detected = sniff_format(data)
    if fmt is not None:
        fmt = str(fmt).upper().lstrip(".")
        if fmt not in ("PLY", "PCD", "XYZ"):
            raise UnsupportedFormat(f"point cloud format {fmt} is not supported", details={"format": fmt})
        if detected is not None and detected != fmt:
            raise CorruptData(
                f"content looks like {detected}, not {fmt}",
                details={"format": fmt, "detected": detected},
            )
    else:
        fmt = detected
    fmt = accepted_format(fmt, allowed_formats, kind="point cloud", n_bytes=len(data))
    announced = _header_count(data, fmt)
    if announced is not None and announced > max_points:
        raise TooLarge(
            f"point cloud has {announced} points, more than the limit of {max_points}",
            details={"format": fmt, "n_points": announced, "max_points": max_points},
        )
    fields = _header_fields(data, fmt)
    if announced is not None and fields is not None and announced * fields > max_values:
        raise TooLarge(
            f"point cloud has {announced} points x {fields} fields = {announced * fields} values, "
            f"more than the limit of {max_values}",
            details={"format": fmt, "n_points": announced, "fields": fields, "values": announced * fields,
                     "max_values": max_values},
        )

    if fmt in ("PLY", "PCD"):
        if announced is None:
            raise CorruptData(f"{fmt} header is damaged: no point count", details={"format": fmt})
        if announced == 0:
            raise EmptyData("point cloud has no points", details={"format": fmt, "announced": 0})
        short = _ply_shortfall(data) if fmt == "PLY" else _pcd_shortfall(data)
    else:  # XYZ
        _, short = _scan_rows(_text_rows(data, comments=True), "XYZ", check=announced or 0, stop=0, min_tokens=3)
    if short is not None:
        raise CorruptData(f"{fmt} point cloud is truncated or corrupt: {short}", details={"format": fmt, "reason": short})

    o3d = _open3d()
    fd, path = tempfile.mkstemp(prefix="looplab-pc-", suffix="." + fmt.lower())
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            pcd = o3d.io.read_point_cloud(path, format=fmt.lower(), remove_nan_points=False, remove_infinite_points=False)
        except Exception as e:  # noqa: BLE001
            raise CorruptData(f"{fmt} point cloud could not be parsed", details={"format": fmt, "reason": str(e)}) from e
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass

    pts = np.asarray(pcd.points, dtype=np.float64)
    if pts.shape[0] == 0:
        if announced:
            raise CorruptData(
                f"{fmt} point cloud is corrupt: the header announces {announced} points, none could be read",
                details={"format": fmt, "announced": announced},
            )
        raise EmptyData("point cloud has no points", details={"format": fmt})
    if announced is not None and fmt != "XYZ" and pts.shape[0] < announced:
        raise CorruptData(
            f"{fmt} point cloud is truncated: {pts.shape[0]} of {announced} points",
            details={"format": fmt, "announced": announced, "read": int(pts.shape[0])},
        )
    if pts.shape[0] > max_points:
        raise TooLarge(
            f"point cloud has {pts.shape[0]} points, more than the limit of {max_points}",
            details={"format": fmt, "n_points": int(pts.shape[0]), "max_points": max_points},
        )
    finite = np.isfinite(pts).all(axis=1)
    if not finite.all():
        raise EmptyData(
            "point cloud contains NaN or infinite coordinates",
            details={"format": fmt, "reason": "non_finite", "n_bad": int((~finite).sum())},
        )
    info = PointCloudInfo(
        format=fmt,
        n_points=int(pts.shape[0]),
        has_colors=bool(pcd.has_colors()),
        has_normals=bool(pcd.has_normals()),
    )
    return pts, info


def read_points(
    data: bytes,
    *,
    fmt: str | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> np.ndarray:
    """Validate and parse to raw ``(P, 3)`` float64 coordinates in the file's own units."""
    pts, _ = _read(data, fmt=fmt, max_points=max_points, allowed_formats=allowed_formats, max_values=max_values)
    return pts


def validate_points(
    data: bytes,
    fmt: str | None = None,
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> PointCloudInfo:
    """Check ``data`` is a readable, non-empty, finite point cloud of an accepted format and size."""
    pts, info = _read(data, fmt=fmt, max_points=max_points, allowed_formats=allowed_formats, max_values=max_values)
    _check_extent(pts, info.format)
    return info


def _check_extent(pts: np.ndarray, fmt: str = "") -> float:
    radius = 0.0
    if len(pts):
        centre = pts.mean(axis=0)
        step = 1 << 18  # in slices: a temporary copy of a 5 M point cloud would be 120 MB
        radius = max(float(np.linalg.norm(pts[i : i + step] - centre, axis=1).max()) for i in range(0, len(pts), step))
    if not radius > 0.0:
        raise EmptyData(
            "point cloud has no extent (all points coincide)",
            details={"format": fmt, "reason": "degenerate", "n_points": int(len(pts))},
        )
    return radius


def normalize_points(points: np.ndarray) -> np.ndarray:
    """Centre on the centroid and scale so the farthest point is at radius 1 -> float32 ``(P, 3)``."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise InvalidInput("points must have shape (P, 3) with P >= 1", details={"shape": list(pts.shape)})
    if not np.isfinite(pts).all():
        raise EmptyData("points contain NaN or infinite coordinates", details={"reason": "non_finite"})
    centred = pts - pts.mean(axis=0)
    radius = _check_extent(pts)
    return (centred / radius).astype(np.float32)


def farthest_point_sampling(points: np.ndarray, n: int, *, start: int | None = None) -> np.ndarray:
    """Indices of ``n`` points chosen greedily to be far apart (deterministic).

    Starts from ``start`` or, by default, from the point farthest from the centroid.
    ``n`` must not exceed the number of points.
    """
    pts = np.asarray(points, dtype=np.float64)
    p = pts.shape[0]
    if not 0 < n <= p:
        raise InvalidInput("n must be in 1..len(points)", details={"n": int(n), "n_points": int(p)})
    if start is None:
        start = int(np.argmax(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    # separate contiguous coordinate vectors: three fused passes per step are much
    # faster than reducing over a length-3 axis
    x, y, z = (np.ascontiguousarray(pts[:, a]) for a in range(3))
    idx = np.empty(n, dtype=np.int64)
    idx[0] = start
    dist = (x - x[start]) ** 2 + (y - y[start]) ** 2 + (z - z[start]) ** 2
    tmp = np.empty_like(dist)
    buf = np.empty_like(dist)
    for i in range(1, n):
        j = int(dist.argmax())
        idx[i] = j
        np.subtract(x, x[j], out=tmp)
        np.multiply(tmp, tmp, out=buf)
        np.subtract(y, y[j], out=tmp)
        buf += tmp * tmp
        np.subtract(z, z[j], out=tmp)
        buf += tmp * tmp
        np.minimum(dist, buf, out=dist)
    return idx


def resample_points(
    points: np.ndarray,
    n_points: int = DEFAULT_N_POINTS,
    *,
    random_state: int | np.random.Generator | None = 0,
    method: str = "fps",
) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``n_points`` rows from ``points`` -> ``(resampled, indices)``.

    More points than needed: farthest-point sampling (``method="fps"``; clouds over
    ``n_points * 8`` points are first subsampled at random) or a plain random
    subset (``method="random"``).  Fewer: every point once, then random repeats.
    ``indices`` map output rows to input rows (use it to carry per-point labels).
    """
    pts = np.asarray(points)
    p = pts.shape[0]
    n_points = int(n_points)
    if n_points < 1:
        raise InvalidInput("n_points must be >= 1", details={"n_points": n_points})
    if p == 0:
        raise EmptyData("point cloud has no points", details={})
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    if p > n_points:
        if method == "random":
            idx = np.sort(rng.choice(p, n_points, replace=False))
        elif method == "fps":
            pool = np.arange(p)
            if p > n_points * _FPS_PREPOOL:
                pool = np.sort(rng.choice(p, n_points * _FPS_PREPOOL, replace=False))
            idx = pool[farthest_point_sampling(pts[pool], n_points)]
        else:
            raise InvalidInput("method must be 'fps' or 'random'", details={"method": method})
    elif p < n_points:
        idx = np.concatenate([np.arange(p), rng.choice(p, n_points - p, replace=True)])
    else:
        idx = np.arange(p)
    return pts[idx], idx


def load_points(
    data: bytes,
    *,
    n_points: int = DEFAULT_N_POINTS,
    fmt: str | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> np.ndarray:
    """Validate, parse, normalise to the unit sphere and resample: ``(n_points, 3)`` float32."""
    pts, info = _read(data, fmt=fmt, max_points=max_points, allowed_formats=allowed_formats, max_values=max_values)
    try:
        norm = normalize_points(pts)
    except MLError as e:
        e.details.setdefault("format", info.format)
        raise
    out, _ = resample_points(norm, n_points, random_state=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_points_batch(
    blobs: Sequence[bytes],
    *,
    n_points: int = DEFAULT_N_POINTS,
    fmt: str | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
    max_values: int = DEFAULT_MAX_VALUES,
) -> np.ndarray:
    """:func:`load_points` over a sequence -> ``(N, n_points, 3)`` float32 (errors carry ``details["index"]``)."""
    out = np.empty((len(blobs), int(n_points), 3), dtype=np.float32)
    for i, blob in enumerate(blobs):
        try:
            out[i] = load_points(
                blob, n_points=n_points, fmt=fmt, max_points=max_points, allowed_formats=allowed_formats, max_values=max_values
            )
        except MLError as e:
            e.details.setdefault("index", i)
            raise
    return out


def random_rotation_matrix(rng: np.random.Generator, *, axis: str | None = None) -> np.ndarray:
    """A uniformly random rotation: about ``axis`` ("x", "y" or "z") or over all of SO(3)."""
    if axis is None:
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
    t = rng.uniform(0.0, 2 * np.pi)
    c, s = np.cos(t), np.sin(t)
    if axis == "z":
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    if axis == "y":
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    raise InvalidInput("axis must be 'x', 'y', 'z' or None", details={"axis": axis})


def augment_points(
    X: np.ndarray,
    *,
    random_state: int | np.random.Generator | None = None,
    rotate: str | None = "so3",
    scale: tuple[float, float] | None = (0.85, 1.15),
    jitter_std: float = 0.01,
    jitter_clip: float = 0.03,
    shuffle: bool = True,
) -> np.ndarray:
    """Random rotation (``"so3"``, ``"x"``/``"y"``/``"z"`` axis, or ``None``), per-axis scale,
    clipped Gaussian jitter and point-order shuffle for a batch ``(N, P, 3)``.  Returns a new array."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3 or X.shape[2] != 3:
        raise InvalidInput("expected a batch of shape (N, P, 3)", details={"shape": list(X.shape)})
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    out = np.empty_like(X)
    for i in range(X.shape[0]):
        pts = X[i].astype(np.float64)
        if rotate is not None:
            R = random_rotation_matrix(rng, axis=None if rotate == "so3" else rotate)
            pts = pts @ R.T
        if scale is not None:
            pts = pts * rng.uniform(scale[0], scale[1], size=3)
        if jitter_std:
            pts = pts + np.clip(rng.normal(0.0, jitter_std, size=pts.shape), -jitter_clip, jitter_clip)
        if shuffle:
            pts = pts[rng.permutation(pts.shape[0])]
        out[i] = pts
    return out


def points_to_ply(points: np.ndarray, *, binary: bool = True) -> bytes:
    """Encode ``(P, 3)`` coordinates as a PLY file (float32 x, y, z); byte-for-byte deterministic."""
    pts = np.asarray(points, dtype="<f4")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InvalidInput("points must have shape (P, 3)", details={"shape": list(pts.shape)})
    kind = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {kind} 1.0\nelement vertex {pts.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode("ascii")
    if binary:
        return header + np.ascontiguousarray(pts).tobytes()
    body = "".join(f"{x:.6g} {y:.6g} {z:.6g}\n" for x, y, z in pts.tolist()).encode("ascii")
    return header + body


# --------------------------------------------------------------------------------------------
# every stored point, for the annotation tool

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
    vertex = ply_vertex_header(data)
    if vertex is None or vertex.body_start is None or data.find(b"end_header") < 0 or not vertex.first:
        return None  # elements before the vertex element: not handled here (rare)
    props = []
    for tokens in vertex.properties:
        if len(tokens) < 2 or tokens[0] == "list" or tokens[0] not in _PLY_TYPES:
            return None
        props.append((tokens[1], _PLY_TYPES[tokens[0]]))
    names = [p[0] for p in props]
    name = next((c for c in _INTENSITY_NAMES if c in names), None)
    if name is None:
        return None
    body = memoryview(data)[vertex.body_start:]  # a view: slicing bytes would copy the body
    if vertex.format in ("binary_little_endian", "binary_big_endian"):
        order = "<" if vertex.format == "binary_little_endian" else ">"
        dtype = np.dtype([(p, order + t) for p, t in props])
        if len(body) < dtype.itemsize * n:
            return None
        return np.frombuffer(body, dtype=dtype, count=n)[name].astype(np.float64)
    if vertex.format == "ascii":
        return _column(body, names.index(name), n)
    return None


def _column(body: memoryview, col: int, n: int) -> np.ndarray | None:
    """Column ``col`` of the first ``n`` non-blank text rows, read row by row (no list of rows)."""
    try:
        return np.fromiter((float(r.split()[col]) for r in _text_rows(body)), dtype=np.float64, count=n)
    except (IndexError, ValueError):  # a short row, a bad number, fewer than n rows
        return None


def _pcd_intensity(data: bytes, n: int) -> np.ndarray | None:
    m = _PCD_DATA.search(data[:65536])
    f = _PCD_FIELDS.search(data[:65536])
    if not m or not f or m.group(1).lower() != b"ascii":
        return None
    fields = f.group(1).decode("ascii", errors="replace").split()
    name = next((c for c in _INTENSITY_NAMES if c in fields), None)
    if name is None:
        return None
    return _column(memoryview(data)[m.end():], fields.index(name), n)


def read_intensity(data: bytes, fmt: str, n: int) -> np.ndarray | None:
    """The ``intensity`` (or reflectance, remission) field of the first ``n`` points scaled to 0..1, or None when
    the cloud has none or it cannot be read (PLY ascii/binary with the vertex element first, PCD ascii); never
    raises: an optional channel never fails the cloud."""
    try:
        values = _ply_intensity(data, n) if fmt == "PLY" else _pcd_intensity(data, n) if fmt == "PCD" else None
    except Exception:  # noqa: BLE001
        return None
    if values is None or values.shape[0] != n or not np.isfinite(values).all():
        return None
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) / (hi - lo) if hi > lo else np.zeros(n)


def read_point_arrays(
    data: bytes, *, max_points: int = DEFAULT_MAX_POINTS, max_values: int = DEFAULT_MAX_VALUES
) -> PointArrays:
    """Every stored point as float32 (file order, the cloud's own units: no normalisation, no resampling), with an
    intensity channel when the file has one. The same validation and caps as :func:`read_points`; raises MLError."""
    xyz = read_points(data, max_points=max_points, max_values=max_values)
    intensity = read_intensity(data, sniff_format(data) or "", xyz.shape[0])
    if intensity is None:
        return PointArrays(data=xyz.astype(np.float32), channels="xyz")
    return PointArrays(data=np.column_stack([xyz, intensity]).astype(np.float32), channels="xyzi")
