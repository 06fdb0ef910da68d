"""Per-modality content handling: validation before anything is stored, reading what is stored.

The modality is a field of the project; this is the only place that maps it to ml/ validators (model input
is loaded by apps.registry.runtime.load_batch, under the same caps, apps.core.limits).
ml/ is imported lazily so the web process stays light.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.core.limits import content_limits

_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "WAV": "wav", "FLAC": "flac",
               "OGG": "ogg", "PLY": "ply", "PCD": "pcd", "XYZ": "xyz"}


def validate_content(modality: str, data: bytes, *, long_audio: bool = False) -> tuple[str, dict]:
    """Validate ``data`` for the modality. Returns its format name and what annotation tools need to
    know about it (image width/height, audio duration, number of points). Raises ml.errors.InvalidInput.

    Audio clips for classification may be at most LOOPLAB_MAX_AUDIO_SECONDS long; recordings for
    region annotation (``long_audio``) up to LOOPLAB_MAX_LONG_AUDIO_SECONDS. Every decoded size is
    capped and checked from the header before decoding (ml.errors.TooLarge: at ingest a 422 whose item code is too_large):
    LOOPLAB_MAX_IMAGE_PIXELS, LOOPLAB_MAX_AUDIO_SAMPLES (frames x channels), LOOPLAB_MAX_POINTS and
    LOOPLAB_MAX_POINT_VALUES (points x fields)."""
    limits = content_limits(max_duration_s=settings.LOOPLAB["MAX_LONG_AUDIO_SECONDS" if long_audio else "MAX_AUDIO_SECONDS"])
    info = _modality(modality).validate(data, limits)
    return info.format, info.meta


def _modality(name: str):
    from ml import modalities

    try:
        return modalities.get(name)
    except modalities.UnknownModality:
        raise ValidationFailed(f"Unknown modality {name!r}.", code=ErrorCode.INVALID_MODALITY) from None


def extension_for(fmt: str) -> str:
    return _EXTENSIONS.get(fmt.upper(), fmt.lower() or "bin")


def storage_name(project_id: int, content_hash: str, fmt: str) -> str:
    return f"samples/{project_id}/{content_hash[:2]}/{content_hash}.{extension_for(fmt)}"


def store_content(name: str, data: bytes) -> None:
    """Content-addressed: writing the same name twice is harmless."""
    from django.core.files.base import ContentFile

    if not default_storage.exists(name):
        default_storage.save(name, ContentFile(data))


class ContentUnavailable(Conflict):
    """The sample's bytes cannot be reached from this server (a reference URI, a missing file).

    Services record it on the sample and go on; an API view that needed the bytes answers 409."""

    code = ErrorCode.CONTENT_UNAVAILABLE


def uri_scheme(uri: str) -> str:
    """The URI's scheme in lower case, parsed the way :func:`uri_path` reads it (``FILE:``, ``File:`` and
    `` file:`` are all ``file``): every check of a URI's scheme goes through here, so what ingest checks
    is what is read later."""
    return urlparse(uri).scheme.lower()


def uri_path(uri: str) -> Path:
    """The local path of a file:// URI (any case), if it lies under LOOPLAB_URI_ROOTS; else ContentUnavailable.

    Other schemes (s3://, https://) are kept as references: this server does not fetch them.
    """
    parsed = urlparse(uri)
    if uri_scheme(uri) != "file":
        raise ContentUnavailable(f"cannot fetch {parsed.scheme or 'schemeless'} URIs from this server")
    path = Path(parsed.path).resolve()
    roots = [Path(root).resolve() for root in settings.LOOPLAB["URI_ROOTS"]]
    if not any(path.is_relative_to(root) for root in roots):
        raise ContentUnavailable(f"{path} is not under LOOPLAB_URI_ROOTS")
    return path


@contextmanager
def open_content(sample):
    """A seekable binary file object for the sample's content, without reading it into memory.

    Every failure to reach the bytes (missing file, a path outside the allowed roots, an unfetchable
    scheme) is a ContentUnavailable, which callers record on the sample instead of failing.
    """
    try:
        if sample.file:
            fh = default_storage.open(sample.file.name, "rb")
        elif sample.uri:
            fh = open(uri_path(sample.uri), "rb")  # noqa: SIM115 - closed below
        else:
            raise ContentUnavailable("sample has neither a file nor a uri")
    except ContentUnavailable:
        raise
    except (OSError, ValueError, SuspiciousFileOperation) as exc:
        raise ContentUnavailable(f"cannot read the content: {exc}") from exc
    try:
        yield fh
    finally:
        fh.close()


def read_content(sample) -> bytes:
    """The sample's bytes, at most LOOPLAB_MAX_CONTENT_BYTES of them: a larger file (a file:// reference,
    never validated; a push is capped by LOOPLAB_MAX_REQUEST_BYTES) is ContentUnavailable, found without
    reading it all."""
    limit = settings.LOOPLAB["MAX_CONTENT_BYTES"]
    with open_content(sample) as fh:
        try:
            size = fh.seek(0, 2)  # open_content's files are seekable
            fh.seek(0)
            if size > limit:
                raise ContentUnavailable(f"the content ({size} bytes) is larger than LOOPLAB_MAX_CONTENT_BYTES ({limit} bytes)")
            data = fh.read(limit + 1) if size == 0 else fh.read()
        except OSError as exc:
            raise ContentUnavailable(f"cannot read the content: {exc}") from exc
    if len(data) > limit:  # grew while read
        raise ContentUnavailable(f"the content is larger than LOOPLAB_MAX_CONTENT_BYTES ({limit} bytes)")
    return data
