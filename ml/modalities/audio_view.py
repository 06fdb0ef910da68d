"""What the audio annotation tool draws: waveform peaks and a spectrogram picture, computed block by block.

Pure functions on an open ``soundfile.SoundFile`` (streamed, never decoded whole): an hour of 16 kHz audio is
read ``BLOCK_FRAMES`` (~1 M) frames at a time, never as one float64 (or float32) array, and the decoded frames
are counted against ``max_samples`` as they are read (some containers do not announce a length). Caching, access
and HTTP live in the app (``apps/samples/peaks.py``).

Peaks (a multi-resolution set): a request for ``buckets`` picks ``samples_per_bucket`` as the smallest
power of two with ``ceil(frames / samples_per_bucket) <= buckets``; bucket ``i`` covers frames
``[i * spb, (i + 1) * spb)`` and holds the min and max over those frames and over all channels (the
envelope of every channel, so a clip that peaks on one channel shows it). Powers of two keep at most
~25 resolutions per file.

Spectrogram: STFT power of the channel mean (the mono mix the models see) with a Hann window of
``n_fft`` (~32 ms) and a hop between ``n_fft // 8`` and ``n_fft`` (``frames // width`` clamped
to that range, so a short clip still gets about ``width`` columns); frame ``t`` covers samples ``[t * hop, t * hop + n_fft)`` of
the signal zero-padded at the end, ``T = ceil(frames / hop)`` frames. Frames are averaged into
``columns = min(width, T)`` columns (column ``j`` averages frames ``[floor(j T / c), floor((j+1) T / c))``),
mapped to ``n_mels`` area-normalised HTK mel bands (0 Hz .. Nyquist, :func:`ml.modalities.audio.mel_filterbank`)
and to dB relative to the loudest cell, clipped to ``DB_RANGE`` below it. The columns span
``T * hop / sample_rate`` seconds (the clip plus < one hop).

Errors: :class:`ml.errors.TooLarge` when the body decodes to more than ``max_samples`` samples,
:class:`ml.errors.CorruptData` when it cannot be decoded.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from ml.errors import CorruptData, TooLarge
from ml.modalities.audio import DEFAULT_MAX_SAMPLES, mel_filterbank

__all__ = [
    "BLOCK_FRAMES", "N_MELS", "DB_RANGE", "Peaks", "Spectrogram", "iter_blocks", "samples_per_bucket_for",
    "compute_peaks", "fft_size", "spectrogram_hop", "column_edges", "spectrogram_filterbank", "compute_spectrogram",
    "spectrogram_png",
]

BLOCK_FRAMES = 1 << 20          # frames decoded at a time
N_MELS = 80
DB_RANGE = 80.0


@dataclass(frozen=True, kw_only=True)
class _Served:
    """Set by whoever caches a result: whether it came from the cache, and the seconds spent computing or loading it."""

    cached: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class Peaks(_Served):
    """``data`` is (buckets, 2) float32: min and max per bucket, in -1..1."""

    data: np.ndarray
    sample_rate: int
    channels: int
    frames: int
    samples_per_bucket: int

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
class Spectrogram(_Served):
    """``db`` is (n_mels, columns) float32 in dB relative to the loudest cell (0 .. -DB_RANGE), row 0 = lowest band."""

    db: np.ndarray
    sample_rate: int
    n_fft: int
    hop: int
    n_frames: int
    frames: int

    @property
    def span_s(self) -> float:
        """Seconds covered by the columns (the clip plus less than one hop of padding)."""
        return self.n_frames * self.hop / self.sample_rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def iter_blocks(sound, block_frames: int, dtype: str = "float32", *, max_samples: int | None = DEFAULT_MAX_SAMPLES):
    """(frames, channels) blocks of an open SoundFile. A damaged body raises CorruptData, and so does nothing
    else; a body that decodes to more than ``max_samples`` samples (frames x channels, counted as it is read)
    raises TooLarge with ``details["max_samples"]``."""
    limit = None if max_samples is None else max_samples // max(1, int(sound.channels))
    read = 0
    try:
        for y in sound.blocks(blocksize=block_frames, dtype=dtype, always_2d=True):
            read += y.shape[0]
            if limit is not None and read > limit:
                raise TooLarge(f"The audio decodes to more than {max_samples} samples.",
                               details={"max_samples": max_samples})
            yield y
    except TooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types
        raise CorruptData(f"The audio data is truncated or corrupt: {exc}") from exc


# -- peaks -------------------------------------------------------------------------------------------

def samples_per_bucket_for(frames: int, buckets: int) -> int:
    """Smallest power of two ``spb`` with ``ceil(frames / spb) <= buckets``."""
    need = max(1, math.ceil(max(frames, 1) / max(1, buckets)))
    return 1 << (need - 1).bit_length()


def compute_peaks(sound, samples_per_bucket: int, *, block_frames: int = BLOCK_FRAMES,
                  max_samples: int | None = DEFAULT_MAX_SAMPLES) -> tuple[np.ndarray, int]:
    """(min/max per bucket as (n, 2) float32, frames read) from an open SoundFile, block by block."""
    spb = int(samples_per_bucket)
    block = max(1, block_frames // spb) * spb  # whole buckets per block, so no bucket spans two blocks
    channels = int(sound.channels)
    # 16-bit PCM is reduced as int16 (half the memory traffic) and scaled at the end: libsndfile's
    # float32 of a PCM_16 sample is exactly value / 32768, so the result is the same.
    as_int16 = str(sound.subtype or "").upper() == "PCM_16"
    dtype = np.int16 if as_int16 else np.float32
    parts, frames = [], 0
    for y in iter_blocks(sound, block, "int16" if as_int16 else "float32", max_samples=max_samples):
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


# -- spectrogram -------------------------------------------------------------------------------------

def fft_size(sample_rate: int) -> int:
    """The power of two nearest to 32 ms in log scale (512 at 16 kHz, 1024 at 44.1 kHz, 2048 at 48 kHz)."""
    return 1 << max(6, int(round(math.log2(sample_rate * 0.032))))


def spectrogram_hop(n_fft: int, frames: int, width: int) -> int:
    return int(min(n_fft, max(n_fft // 8, max(frames, 1) // max(1, width))))


def spectrogram_filterbank(sample_rate: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32: the HTK-mel filters from 0 Hz to Nyquist, area-normalised
    (``librosa.filters.mel(..., htk=True, norm="slaney")``), computed in float64."""
    return mel_filterbank(sample_rate, n_fft, n_mels, htk=True, dtype=np.float64).astype(np.float32)


def column_edges(n_frames: int, columns: int) -> np.ndarray:
    """Frame index where each column starts, plus n_frames at the end."""
    return (np.arange(columns + 1, dtype=np.int64) * n_frames) // columns


def compute_spectrogram(sound, *, width: int, n_mels: int = N_MELS, block_frames: int = BLOCK_FRAMES,
                        max_samples: int | None = DEFAULT_MAX_SAMPLES):
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
    for y in iter_blocks(sound, block, max_samples=max_samples):
        if y.shape[0] == 0:
            continue
        frames += y.shape[0]
        mono = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
        carry = consume(np.concatenate([carry, mono]) if carry.size else mono, final=False)
    if t0 < n_frames:
        consume(carry, final=True)
    counts = np.diff(edges).astype(np.float64)
    mean_power = sums / np.maximum(counts, 1)[:, None]
    mel = spectrogram_filterbank(sr, n_fft, n_mels).astype(np.float64) @ mean_power.T   # (n_mels, columns)
    db = 10.0 * np.log10(np.maximum(mel, 1e-12))
    db = np.maximum(db - db.max(), -DB_RANGE).astype(np.float32)
    return db, n_fft, hop, n_frames, frames


# A magma-like colour map: dark (quiet) to bright (loud).
_STOPS = np.array([
    [0.00, 0, 0, 4], [0.13, 28, 16, 68], [0.25, 79, 18, 123], [0.38, 129, 37, 129], [0.50, 181, 54, 122],
    [0.63, 229, 80, 100], [0.75, 251, 135, 97], [0.88, 254, 194, 135], [1.00, 252, 253, 191]])
_LUT = np.stack([np.interp(np.linspace(0, 1, 256), _STOPS[:, 0], _STOPS[:, c]) for c in (1, 2, 3)], axis=1).astype(np.uint8)


def spectrogram_png(spec: Spectrogram) -> bytes:
    """The spectrogram as an RGB PNG, high frequencies on top (Pillow imported here)."""
    from PIL import Image

    levels = np.round((spec.db + DB_RANGE) / DB_RANGE * 255).clip(0, 255).astype(np.uint8)
    rgb = _LUT[levels[::-1]]  # high frequencies on top
    out = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()
