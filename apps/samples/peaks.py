"""Server-side waveform peaks and spectrograms for the audio annotation tool.

The browser never decodes an audio file to draw it: it asks for peaks (min/max per bucket of samples)
and a small spectrogram picture, both computed here and cached in the default storage next to the
content, keyed by the content hash (content-addressed, so a cache entry never goes stale).

Decoding follows ml.modalities.audio's conventions (libsndfile through ``soundfile``, float32,
``always_2d``) but streams the file in blocks: an hour of 16 kHz audio is read ~1 M frames at a time,
never as one float64 (or float32) array. The header is checked against the caps of ingest first
(LOOPLAB_MAX_AUDIO_SAMPLES, LOOPLAB_MAX_LONG_AUDIO_SECONDS) and decoded frames are counted against them.

Peaks (a multi-resolution set): a request for ``buckets`` picks ``samples_per_bucket`` as the smallest
power of two with ``ceil(frames / samples_per_bucket) <= buckets``; bucket ``i`` covers frames
``[i * spb, (i + 1) * spb)`` and holds the min and max over those frames and over all channels (the
envelope of every channel, so a clip that peaks on one channel shows it). Powers of two keep at most
~25 resolutions per file, each cached once.

Spectrogram: STFT power of the channel mean (the mono mix the models see) with a Hann window of
``n_fft`` (~32 ms) and a hop between ``n_fft // 8`` and ``n_fft`` (``frames // width`` clamped
to that range, so a short clip still gets about ``width`` columns); frame ``t`` covers samples ``[t * hop, t * hop + n_fft)`` of
the signal zero-padded at the end, ``T = ceil(frames / hop)`` frames. Frames are averaged into
``columns = min(width, T)`` columns (column ``j`` averages frames ``[floor(j T / c), floor((j+1) T / c))``),
mapped to ``n_mels`` area-normalised HTK mel bands (0 Hz .. Nyquist) and to dB relative to the loudest cell, clipped to
``DB_RANGE`` below it. The columns span ``T * hop / sample_rate`` seconds (the clip plus < one hop).
"""
from __future__ import annotations

import io
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.core.errors import ValidationFailed
from apps.samples import content as content_io

CACHE_VERSION = 1
BLOCK_FRAMES = 1 << 20          # frames decoded at a time
MAX_BUCKETS = 1 << 19           # 524,288 buckets: ~18 per second of a one-hour file at the finest level
DEFAULT_BUCKETS = 1 << 15
N_MELS = 80
DB_RANGE = 80.0
MAX_SPECTROGRAM_WIDTH = 8192
DEFAULT_SPECTROGRAM_WIDTH = 2048


class NotAudio(ValidationFailed):
    pass


@dataclass(frozen=True)
class Peaks:
    """``data`` is (buckets, 2) float32: min and max per bucket, in -1..1."""

    data: np.ndarray
    sample_rate: int
    channels: int
    frames: int
    samples_per_bucket: int
    cached: bool = False
    seconds: float = 0.0       # time spent computing or loading

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def buckets(self) -> int:
        return int(self.data.shape[0])

    def interleaved(self) -> np.ndarray:
        """min0, max0, min1, max1, ... (the audiowaveform convention)."""
        return np.ascontiguousarray(self.data, dtype=np.float32).reshape(-1)

    def to_int16(self) -> bytes:
        return np.round(np.clip(self.interleaved(), -1.0, 1.0) * 32767).astype("<i2").tobytes()


@dataclass(frozen=True)
class Spectrogram:
    """``db`` is (n_mels, columns) float32 in dB relative to the loudest cell (0 .. -DB_RANGE), row 0 = lowest band."""

    db: np.ndarray
    sample_rate: int
    n_fft: int
    hop: int
    n_frames: int
    frames: int
    cached: bool = False
    seconds: float = 0.0

    @property
    def span_s(self) -> float:
        """Seconds covered by the columns (the clip plus less than one hop of padding)."""
        return self.n_frames * self.hop / self.sample_rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


# -- reading -----------------------------------------------------------------------------------------

def _check_audio(sample) -> None:
    if sample.project.modality != "audio":
        raise NotAudio(f"Sample {sample.pk} belongs to a {sample.project.modality} project; peaks and spectrograms "
                       "exist only for audio.", code="not_audio", status_code=409)


@contextmanager
def open_sound(sample):
    """An open ``soundfile.SoundFile`` on the sample's content (streamed, not decoded)."""
    from ml.modalities.audio import _soundfile

    sf = _soundfile()
    with content_io.open_content(sample) as fh:
        try:
            sound = sf.SoundFile(fh)
        except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
            raise ValidationFailed(f"The audio of sample {sample.pk} cannot be decoded: {exc}", code="audio_unreadable",
                                   status_code=409) from exc
        with sound:
            if sound.samplerate <= 0 or sound.channels <= 0:
                raise ValidationFailed("The audio header has no sample rate or channels.", code="audio_unreadable",
                                       status_code=409)
            _check_limits(sound)
            yield sound


def _check_limits(sound) -> None:
    """The caps of ingest (LOOPLAB_MAX_AUDIO_SAMPLES, LOOPLAB_MAX_LONG_AUDIO_SECONDS), from the header: a
    file:// sample was never validated, and a decompression bomb is refused before it is decoded."""
    from ml.errors import MLError
    from ml.modalities.audio import check_header

    try:
        check_header(sound, max_duration_s=settings.LOOPLAB["MAX_LONG_AUDIO_SECONDS"],
                     max_samples=settings.LOOPLAB["MAX_AUDIO_SAMPLES"])
    except MLError as exc:
        raise ValidationFailed(f"The audio cannot be drawn: {exc.message}", code=exc.code, details=exc.details,
                               status_code=409) from exc


def _blocks(sound, block_frames: int, dtype: str = "float32"):
    """(frames, channels) blocks; a damaged body ends in a 409, not a 500, and so does a body that decodes to
    more than LOOPLAB_MAX_AUDIO_SAMPLES (counted as it is read: some containers do not announce a length)."""
    limit = settings.LOOPLAB["MAX_AUDIO_SAMPLES"] // max(1, int(sound.channels))
    read = 0
    try:
        for y in sound.blocks(blocksize=block_frames, dtype=dtype, always_2d=True):
            read += y.shape[0]
            if read > limit:
                raise ValidationFailed(f"The audio decodes to more than {settings.LOOPLAB['MAX_AUDIO_SAMPLES']} samples.",
                                       code="too_large", details={"max_samples": settings.LOOPLAB["MAX_AUDIO_SAMPLES"]},
                                       status_code=409)
            yield y
    except ValidationFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ValidationFailed(f"The audio data is truncated or corrupt: {exc}", code="audio_unreadable",
                               status_code=409) from exc


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

def samples_per_bucket_for(frames: int, buckets: int) -> int:
    """Smallest power of two ``spb`` with ``ceil(frames / spb) <= buckets``."""
    need = max(1, math.ceil(max(frames, 1) / max(1, buckets)))
    return 1 << (need - 1).bit_length()


def compute_peaks(sound, samples_per_bucket: int, *, block_frames: int = BLOCK_FRAMES) -> tuple[np.ndarray, int]:
    """(min/max per bucket as (n, 2) float32, frames read) from an open SoundFile, block by block."""
    spb = int(samples_per_bucket)
    block = max(1, block_frames // spb) * spb  # whole buckets per block, so no bucket spans two blocks
    channels = int(sound.channels)
    # 16-bit PCM is reduced as int16 (half the memory traffic) and scaled at the end: libsndfile's
    # float32 of a PCM_16 sample is exactly value / 32768, so the result is the same.
    as_int16 = str(sound.subtype or "").upper() == "PCM_16"
    dtype = np.int16 if as_int16 else np.float32
    parts, frames = [], 0
    for y in _blocks(sound, block, "int16" if as_int16 else "float32"):
        m = y.shape[0]
        if m == 0:
            continue
        full = m // spb
        rows = []
        if full:
            body = y[:full * spb].reshape(full, spb * channels)
            k = spb * channels
            if k <= 64:  # short rows: k elementwise passes beat a per-row reduction
                lo, hi = body[:, 0].copy(), body[:, 0].copy()
                for j in range(1, k):
                    np.minimum(lo, body[:, j], out=lo)
                    np.maximum(hi, body[:, j], out=hi)
            else:
                lo, hi = body.min(axis=1), body.max(axis=1)
            rows.append(np.stack([lo, hi], axis=1))
        if m > full * spb:
            tail = y[full * spb:]
            rows.append(np.array([[tail.min(), tail.max()]], dtype=dtype))
        parts.append(np.concatenate(rows) if len(rows) > 1 else rows[0])
        frames += m
    data = np.concatenate(parts) if parts else np.zeros((0, 2), dtype)
    data = data.astype(np.float32) / 32768.0 if as_int16 else data.astype(np.float32)
    return data.astype(np.float32), frames


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
    with open_sound(sample) as sound:
        data, frames = compute_peaks(sound, spb)
        sr, channels = int(sound.samplerate), int(sound.channels)
    if frames == 0:
        raise ValidationFailed("The audio has no samples.", code="audio_empty", status_code=409)
    _cache_save(name, peaks=data, meta=np.array([sr, channels, frames], dtype=np.int64))
    return Peaks(data=data, sample_rate=sr, channels=channels, frames=frames, samples_per_bucket=spb,
                 seconds=time.perf_counter() - started)


# -- spectrogram -------------------------------------------------------------------------------------

def fft_size(sample_rate: int) -> int:
    """A power of two close to 32 ms (512 at 16 kHz, 1024 at 44.1/48 kHz)."""
    return 1 << max(6, int(round(math.log2(sample_rate * 0.032))))


def spectrogram_hop(n_fft: int, frames: int, width: int) -> int:
    return int(min(n_fft, max(n_fft // 8, max(frames, 1) // max(1, width))))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters from 0 Hz to Nyquist, area-normalised so a flat
    spectrum gives equal bands (librosa.filters.mel(..., htk=True, norm="slaney"))."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float64)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def column_edges(n_frames: int, columns: int) -> np.ndarray:
    """Frame index where each column starts, plus n_frames at the end."""
    return (np.arange(columns + 1, dtype=np.int64) * n_frames) // columns


def compute_spectrogram(sound, *, width: int, n_mels: int = N_MELS, block_frames: int = BLOCK_FRAMES):
    """(dB (n_mels, columns), n_fft, hop, n_frames, frames) from an open SoundFile, block by block."""
    sr = int(sound.samplerate)
    n_fft = fft_size(sr)
    total = int(sound.frames)
    hop = spectrogram_hop(n_fft, total, width)
    n_frames = max(1, math.ceil(max(total, 1) / hop))
    columns = max(1, min(int(width), n_frames))
    edges = column_edges(n_frames, columns)
    col_of_frame_start = edges[:-1]
    sums = np.zeros((columns, n_fft // 2 + 1), dtype=np.float64)
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    carry = np.zeros(0, dtype=np.float32)
    t0 = 0       # global index of the next frame to compute
    frames = 0

    def consume(x: np.ndarray, final: bool) -> np.ndarray:
        nonlocal t0
        if final:  # zero-pad so the last frames exist
            need = (n_frames - 1 - t0) * hop + n_fft
            if need > x.size:
                x = np.concatenate([x, np.zeros(need - x.size, dtype=np.float32)])
        if x.size < n_fft:
            return x
        nf = min((x.size - n_fft) // hop + 1, n_frames - t0)
        if nf <= 0:
            return x[0:0]
        view = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:nf]
        spec = np.fft.rfft(view * window, axis=1)
        power = spec.real ** 2 + spec.imag ** 2
        # frames t0 .. t0+nf-1 into their columns: contiguous runs, so reduceat
        cols = np.searchsorted(col_of_frame_start, np.arange(t0, t0 + nf), side="right") - 1
        starts = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1]])
        sums[cols[starts]] += np.add.reduceat(power, starts, axis=0, dtype=np.float64)
        t0 += nf
        return x[nf * hop:]

    block = max(n_fft, (block_frames // hop) * hop)
    for y in _blocks(sound, block):
        if y.shape[0] == 0:
            continue
        frames += y.shape[0]
        mono = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
        carry = consume(np.concatenate([carry, mono]) if carry.size else mono, final=False)
    if t0 < n_frames:
        consume(carry, final=True)
    counts = np.diff(edges).astype(np.float64)
    mean_power = sums / np.maximum(counts, 1)[:, None]
    mel = mel_filterbank(sr, n_fft, n_mels).astype(np.float64) @ mean_power.T   # (n_mels, columns)
    db = 10.0 * np.log10(np.maximum(mel, 1e-12))
    db = np.maximum(db - db.max(), -DB_RANGE).astype(np.float32)
    return db, n_fft, hop, n_frames, frames


# A magma-like colour map: dark (quiet) to bright (loud).
_STOPS = np.array([
    [0.00, 0, 0, 4], [0.13, 28, 16, 68], [0.25, 79, 18, 123], [0.38, 129, 37, 129], [0.50, 181, 54, 122],
    [0.63, 229, 80, 100], [0.75, 251, 135, 97], [0.88, 254, 194, 135], [1.00, 252, 253, 191]])
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS[:, 0], _STOPS[:, c]) for c in (1, 2, 3)], axis=1).astype(np.uint8)


def spectrogram_png(spec: Spectrogram) -> bytes:
    from PIL import Image

    levels = np.round((spec.db + DB_RANGE) / DB_RANGE * 255).clip(0, 255).astype(np.uint8)
    rgb = _LUT[levels[::-1]]  # high frequencies on top
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


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
    with open_sound(sample) as sound:
        db, n_fft, hop, n_frames, frames = compute_spectrogram(sound, width=width, n_mels=n_mels)
        sr = int(sound.samplerate)
    if frames == 0:
        raise ValidationFailed("The audio has no samples.", code="audio_empty", status_code=409)
    _cache_save(name, db=db, meta=np.array([sr, n_fft, hop, n_frames, frames], dtype=np.int64))
    return Spectrogram(db=db, sample_rate=sr, n_fft=n_fft, hop=hop, n_frames=n_frames, frames=frames,
                       seconds=time.perf_counter() - started)
