"""Server-side waveform peaks and spectrograms for the audio annotation tool: access, caps and caching.

The browser never decodes an audio file to draw it: it asks for peaks (min/max per bucket of samples)
and a small spectrogram picture, both computed by ml.modalities.audio_view (block by block, see its
docstring for the definitions) and cached in the default storage next to the content, keyed by the
content hash (content-addressed, so a cache entry never goes stale).

Decoding follows ml.modalities.audio's conventions (libsndfile through ``soundfile``, float32,
``always_2d``) but streams the file in blocks: an hour of 16 kHz audio is read ~1 M frames at a time,
never as one float64 (or float32) array. The header is checked against the caps of ingest first
(LOOPLAB_MAX_AUDIO_SAMPLES, LOOPLAB_MAX_LONG_AUDIO_SECONDS) and decoded frames are counted against them.
"""
from __future__ import annotations

import io
import time
from contextlib import contextmanager

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.core.errors import Conflict, ErrorCode, NotApplicable
from apps.samples import content as content_io
from ml import modalities
from ml.errors import CorruptData, MLError, TooLarge
from ml.modalities.audio_view import (N_MELS, Peaks, Spectrogram, compute_peaks, compute_spectrogram,
                                     samples_per_bucket_for)

CACHE_VERSION = 1
MAX_BUCKETS = 1 << 19           # 524,288 buckets: ~18 per second of a one-hour file at the finest level
DEFAULT_BUCKETS = 1 << 15
MAX_SPECTROGRAM_WIDTH = 8192
DEFAULT_SPECTROGRAM_WIDTH = 2048


class NotAudio(NotApplicable):
    code = ErrorCode.NOT_AUDIO


# -- reading -----------------------------------------------------------------------------------------

def _check_audio(sample) -> None:
    if "waveform" not in modalities.get(sample.project.modality).views:
        raise NotAudio(f"Sample {sample.pk} belongs to a {sample.project.modality} project; peaks and spectrograms "
                       "exist only for audio.")


@contextmanager
def open_sound(sample):
    """An open ``soundfile.SoundFile`` on the sample's content (streamed, not decoded)."""
    from ml.modalities.audio import _soundfile

    sf = _soundfile()
    with content_io.open_content(sample) as fh:
        try:
            sound = sf.SoundFile(fh)
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
            raise Conflict(f"The audio of sample {sample.pk} cannot be decoded: {exc}",
                           code=ErrorCode.AUDIO_UNREADABLE) from exc
        with sound:
            if sound.samplerate <= 0 or sound.channels <= 0:
                raise Conflict("The audio header has no sample rate or channels.", code=ErrorCode.AUDIO_UNREADABLE)
            _check_limits(sound)
            yield sound


def _check_limits(sound) -> None:
    """The caps of ingest (LOOPLAB_MAX_AUDIO_SAMPLES, LOOPLAB_MAX_LONG_AUDIO_SECONDS), from the header: a
    file:// sample was never validated, and a decompression bomb is refused before it is decoded."""
    from ml.modalities.audio import check_header

    try:
        check_header(sound, max_duration_s=settings.LOOPLAB["MAX_LONG_AUDIO_SECONDS"],
                     max_samples=settings.LOOPLAB["MAX_AUDIO_SAMPLES"])
    except MLError as exc:
        raise Conflict(f"The audio cannot be drawn: {exc.message}", code=ErrorCode(exc.code),
                       details=exc.details) from exc


@contextmanager
def _decoding():
    """ml's decoding errors as this API's 409s: a body that decodes to more than LOOPLAB_MAX_AUDIO_SAMPLES
    (counted as it is read: some containers do not announce a length) and a damaged body."""
    try:
        yield
    except TooLarge as exc:
        raise Conflict(exc.message, code=ErrorCode.TOO_LARGE, details=exc.details) from exc
    except CorruptData as exc:
        raise Conflict(exc.message, code=ErrorCode.AUDIO_UNREADABLE) from exc


# -- cache -------------------------------------------------------------------------------------------

def _cache_base(sample) -> str:
    h = sample.content_hash
    return f"samples/{sample.project_id}/{h[:2]}/{h}"


def _cache_load(name: str):
    try:
        if not default_storage.exists(name):
            return None
        with default_storage.open(name, "rb") as fh:
            return np.load(io.BytesIO(fh.read()), allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged cache entry is recomputed


def _cache_save(name: str, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        if not default_storage.exists(name):
            default_storage.save(name, ContentFile(buffer.getvalue()))
    except OSError:
        pass  # a read-only or full storage only costs the cache


# -- peaks -------------------------------------------------------------------------------------------

def sample_peaks(*, sample, buckets: int = DEFAULT_BUCKETS) -> Peaks:
    """Peaks of an audio sample at the resolution for ``buckets`` (cached per resolution)."""
    _check_audio(sample)
    started = time.perf_counter()
    buckets = max(1, min(MAX_BUCKETS, int(buckets)))
    info = sample.content_info or {}
    if info.get("sample_rate") and info.get("duration_s"):
        frames_hint = int(round(info["duration_s"] * info["sample_rate"]))
    else:
        with open_sound(sample) as sound:
            frames_hint = int(sound.frames)
    spb = samples_per_bucket_for(frames_hint, buckets)
    name = f"{_cache_base(sample)}.peaks-v{CACHE_VERSION}-{spb}.npz"
    cached = _cache_load(name)
    if cached is not None:
        sr, channels, frames = (int(v) for v in cached["meta"])
        return Peaks(data=cached["peaks"], sample_rate=sr, channels=channels, frames=frames, samples_per_bucket=spb,
                     cached=True, seconds=time.perf_counter() - started)
    with open_sound(sample) as sound, _decoding():
        data, frames = compute_peaks(sound, spb, max_samples=settings.LOOPLAB["MAX_AUDIO_SAMPLES"])
        sr, channels = int(sound.samplerate), int(sound.channels)
    if frames == 0:
        raise Conflict("The audio has no samples.", code=ErrorCode.AUDIO_EMPTY)
    _cache_save(name, peaks=data, meta=np.array([sr, channels, frames], dtype=np.int64))
    return Peaks(data=data, sample_rate=sr, channels=channels, frames=frames, samples_per_bucket=spb,
                 seconds=time.perf_counter() - started)


# -- spectrogram -------------------------------------------------------------------------------------

def sample_spectrogram(*, sample, width: int = DEFAULT_SPECTROGRAM_WIDTH, n_mels: int = N_MELS) -> Spectrogram:
    _check_audio(sample)
    started = time.perf_counter()
    width = max(16, min(MAX_SPECTROGRAM_WIDTH, int(width)))
    n_mels = max(16, min(256, int(n_mels)))
    name = f"{_cache_base(sample)}.spec-v{CACHE_VERSION}-{width}-{n_mels}.npz"
    cached = _cache_load(name)
    if cached is not None:
        sr, n_fft, hop, n_frames, frames = (int(v) for v in cached["meta"])
        return Spectrogram(db=cached["db"], sample_rate=sr, n_fft=n_fft, hop=hop, n_frames=n_frames, frames=frames,
                           cached=True, seconds=time.perf_counter() - started)
    with open_sound(sample) as sound, _decoding():
        db, n_fft, hop, n_frames, frames = compute_spectrogram(sound, width=width, n_mels=n_mels,
                                                               max_samples=settings.LOOPLAB["MAX_AUDIO_SAMPLES"])
        sr = int(sound.samplerate)
    if frames == 0:
        raise Conflict("The audio has no samples.", code=ErrorCode.AUDIO_EMPTY)
    _cache_save(name, db=db, meta=np.array([sr, n_fft, hop, n_frames, frames], dtype=np.int64))
    return Spectrogram(db=db, sample_rate=sr, n_fft=n_fft, hop=hop, n_frames=n_frames, frames=frames,
                       seconds=time.perf_counter() - started)
