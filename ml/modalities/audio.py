"""Audio bytes -> validated mono waveform -> fixed-size log-mel arrays.

Pipeline for untrusted bytes (:func:`load_audio_features`):

1. the container is sniffed from the leading bytes (WAV/FLAC/OGG accepted);
2. libsndfile (``soundfile``) reads the header; the duration is checked against
   ``max_duration_s`` and the decoded size (frames x channels) against ``max_samples``
   before any sample is decoded (and both are counted again while decoding, for
   containers that do not announce their length);
3. samples are decoded to float32, ``BLOCK_FRAMES`` at a time for validation and for
   files longer than ``IN_MEMORY_SAMPLES``; empty, non-finite (NaN/inf) and silent
   (peak below ``SILENCE_PEAK``) audio is rejected;
4. channels are averaged to mono and resampled to ``SAMPLE_RATE`` (16 kHz);
5. leading/trailing silence is trimmed, then the signal is cropped to the
   loudest ``duration_s`` window or centred and zero-padded to ``duration_s``
   (a long file: trimmed and searched at its own rate on the mono mix, block by
   block; only the chosen window is decoded again and resampled);
6. a 64-band log-mel spectrogram (25 ms window, 10 ms hop, 20 Hz..8 kHz) is
   computed and scaled: ``(dB + 50) / 50`` with a floor of -100 dB, so values lie
   roughly in ``[-1, 2]`` (-1 is digital silence).

With the defaults the output is ``float32`` of shape ``(1, 64, 101)``.

soundfile (which needs libsndfile) and librosa are imported inside functions,
so importing this module costs only numpy.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.errors import CorruptData, EmptyData, InvalidInput, MLError, TooLarge, require
from ml.modalities import accepted_format

__all__ = [
    "ALLOWED_FORMATS",
    "SAMPLE_RATE",
    "N_MELS",
    "N_FFT",
    "HOP_LENGTH",
    "DURATION_S",
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_SAMPLES",
    "BLOCK_FRAMES",
    "IN_MEMORY_SAMPLES",
    "SILENCE_PEAK",
    "LOGMEL_DB_OFFSET",
    "LOGMEL_DB_SCALE",
    "AudioInfo",
    "n_frames",
    "sniff_format",
    "check_header",
    "validate_audio",
    "decode_audio",
    "fix_length",
    "mel_filterbank",
    "logmel",
    "load_audio_features",
    "load_audio_batch",
    "augment_waveform",
    "augment_logmel",
]

ALLOWED_FORMATS: tuple[str, ...] = ("WAV", "FLAC", "OGG")
SAMPLE_RATE = 16_000
N_MELS = 64
N_FFT = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms
FMIN, FMAX = 20.0, 8000.0
DURATION_S = 1.0
DEFAULT_MAX_DURATION_S = 30.0
# Decoded samples (frames x channels) a file may hold, checked from the header before decoding:
# 10 minutes of 48 kHz stereo, or one hour of 16 kHz mono (57.6 M samples, 230 MB as float32).
DEFAULT_MAX_SAMPLES = 57_600_000
BLOCK_FRAMES = 1 << 16  # frames decoded at a time by the block readers
# Files up to this many samples (30 s of 48 kHz stereo fits) are decoded in one piece for features;
# longer ones are read in blocks (see _loudest_window).
IN_MEMORY_SAMPLES = 1 << 22
SILENCE_PEAK = 1e-4  # about -80 dBFS
_DB_FLOOR = -100.0
LOGMEL_DB_OFFSET = 50.0  # features = (dB + LOGMEL_DB_OFFSET) / LOGMEL_DB_SCALE
LOGMEL_DB_SCALE = 50.0
_DB_OFFSET, _DB_SCALE = LOGMEL_DB_OFFSET, LOGMEL_DB_SCALE


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`validate_audio` learned: container format, native rate, channels, duration."""

    format: str
    sample_rate: int
    channels: int
    duration_s: float
    subtype: str = ""


def n_frames(duration_s: float = DURATION_S, *, sample_rate: int = SAMPLE_RATE, hop_length: int = HOP_LENGTH) -> int:
    """Number of log-mel frames ``T`` for a clip of ``duration_s`` (centred STFT)."""
    return 1 + int(round(duration_s * sample_rate)) // hop_length


def _soundfile():
    return require("soundfile", "soundfile (with libsndfile) is required for audio", install="pip install soundfile",
                   catch=(ImportError, OSError))  # OSError: libsndfile missing


def _librosa():
    return require("librosa", "librosa is required for audio features", install="pip install librosa")


def _as_bytes(data) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise InvalidInput("audio data must be bytes", details={"type": type(data).__name__})


def sniff_format(data: bytes) -> str | None:
    """Name the audio container from its leading bytes, or ``None``."""
    head = bytes(data[:16])
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "RF64"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return "MP3"
    if head[4:8] == b"ftyp":
        return "MP4"
    if head[:4] == b".snd":
        return "AU"
    if head[:4] == b"caff":
        return "CAF"
    return None


def _wav_data_shortfall(data: bytes) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: ``(declared, available)`` data-chunk bytes when the data chunk
    is cut short, else ``None``.  libsndfile silently reads truncated WAVs, so we check."""
    import struct

    pos = 12
    n = len(data)
    while pos + 8 <= n:
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if cid == b"data":
            if size in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                return None
            available = n - body
            return (size, available) if available < size else None
        pos = body + size + (size & 1)
    return None


def _wav_declared_samples(data: bytes) -> int | None:
    """Decoded samples (frames x channels) a RIFF/WAVE header announces for its data chunk (PCM and float
    layouts: data bytes / block align x channels), or ``None`` when it does not say."""
    import struct

    pos, n = 12, len(data)
    channels = block_align = 0
    while pos + 8 <= n:
        cid = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if cid == b"fmt " and body + 14 <= n:
            channels, _, _, block_align = struct.unpack("<HIIH", data[body + 2 : body + 14])
        elif cid == b"data":
            if size in (0, 0xFFFFFFFF) or not channels or not block_align:
                return None
            return size // block_align * channels
        pos = body + size + (size & 1)
    return None


def _check_params(sample_rate: int, duration_s: float, max_duration_s: float, max_samples: int | None = None) -> None:
    if not (1000 <= int(sample_rate) <= 192_000):
        raise InvalidInput("sample_rate must be in 1000..192000", details={"sample_rate": sample_rate})
    if not (0 < float(duration_s) <= 60):
        raise InvalidInput("duration_s must be in (0, 60]", details={"duration_s": duration_s})
    if not (0 < float(max_duration_s)):
        raise InvalidInput("max_duration_s must be positive", details={"max_duration_s": max_duration_s})
    if max_samples is not None and not int(max_samples) > 0:
        raise InvalidInput("max_samples must be positive", details={"max_samples": max_samples})


def check_header(
    sound,
    *,
    fmt: str = "",
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[int, int, int]:
    """Check an open ``soundfile.SoundFile`` from its header alone (nothing is decoded).

    Returns ``(sample_rate, channels, frames)``.  Raises :class:`~ml.errors.CorruptData` for a header
    without rate or channels (or more than 32 channels) and :class:`~ml.errors.TooLarge` when the
    header announces more than ``max_duration_s`` seconds or more than ``max_samples`` decoded
    samples (frames x channels).  ``frames`` may be 0 or less when the container does not say;
    readers then count while decoding (:func:`validate_audio` does).
    """
    sr, channels, frames = int(sound.samplerate), int(sound.channels), int(sound.frames)
    if sr <= 0 or channels <= 0:
        raise CorruptData("audio header has no sample rate or channels", details={"format": fmt})
    if channels > 32:
        raise CorruptData("audio header claims too many channels", details={"format": fmt, "channels": channels})
    if frames > 0 and frames * channels > max_samples:
        raise TooLarge(
            f"audio decodes to {frames * channels} samples ({frames} frames x {channels} channels at {sr} Hz), "
            f"more than the limit of {max_samples}",
            details={"format": fmt, "samples": frames * channels, "max_samples": int(max_samples),
                     "sample_rate": sr, "channels": channels, "duration_s": frames / sr},
        )
    if frames > 0 and frames / sr > max_duration_s:
        raise TooLarge(
            f"audio is {frames / sr:.1f} s long, more than the limit of {max_duration_s:g} s",
            details={"format": fmt, "duration_s": frames / sr, "max_duration_s": max_duration_s},
        )
    return sr, channels, frames


def _max_frames(sr: int, channels: int, max_duration_s: float, max_samples: int) -> int:
    """Most frames a reader may decode: the duration limit (plus one frame) and the samples limit."""
    return min(int(max_duration_s * sr) + 1, int(max_samples) // channels)


def _too_long(fmt: str, sr: int, channels: int, max_duration_s: float, max_samples: int) -> TooLarge:
    return TooLarge(
        f"audio is longer than the limit of {max_duration_s:g} s or {max_samples} samples",
        details={"format": fmt, "max_duration_s": max_duration_s, "max_samples": int(max_samples),
                 "sample_rate": sr, "channels": channels},
    )


@contextlib.contextmanager
def _open(data, *, max_duration_s: float, max_samples: int, allowed_formats: Sequence[str]):
    """Sniff, check the header against the limits and yield ``(SoundFile, format)``; decodes nothing."""
    data = _as_bytes(data)
    if not data:
        raise EmptyData("audio data is empty", details={"n_bytes": 0})
    fmt = accepted_format(sniff_format(data), allowed_formats, kind="audio", n_bytes=len(data))
    if fmt == "WAV":
        declared = _wav_declared_samples(data)
        if declared is not None and declared > max_samples:
            raise TooLarge(
                f"WAV header announces {declared} samples, more than the limit of {max_samples}",
                details={"format": fmt, "samples": declared, "max_samples": int(max_samples)},
            )
        short = _wav_data_shortfall(data)
        if short is not None:
            raise CorruptData(
                "WAV data is truncated",
                details={"format": fmt, "declared_bytes": short[0], "available_bytes": short[1]},
            )
    sf = _soundfile()
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise CorruptData(f"{fmt} audio header is damaged or unreadable", details={"format": fmt, "reason": str(e)}) from e
    with f:
        check_header(f, fmt=fmt, max_duration_s=max_duration_s, max_samples=max_samples)
        yield f, fmt


def _blocks(f, fmt: str, *, start: int = 0, frames: int = -1, block_frames: int = BLOCK_FRAMES):
    """``(n, channels)`` float32 blocks of an open SoundFile from frame ``start``; decoder errors are CorruptData."""
    try:
        f.seek(start)
        it = f.blocks(blocksize=block_frames, frames=frames, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise CorruptData(f"{fmt} audio data is truncated or corrupt", details={"format": fmt, "reason": str(e)}) from e
    while True:
        try:
            y = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001
            raise CorruptData(f"{fmt} audio data is truncated or corrupt", details={"format": fmt, "reason": str(e)}) from e
        yield y


def _check_decoded(fmt: str, n: int, frames: int, finite: bool, peak: float, duration_s: float) -> None:
    """The checks on decoded samples, shared by the whole-array and the block readers."""
    if frames > 0 and n < frames:
        raise CorruptData(
            "audio data is truncated",
            details={"format": fmt, "expected_frames": frames, "decoded_frames": int(n)},
        )
    if n == 0:
        raise EmptyData("audio has no samples", details={"format": fmt})
    if not finite:
        raise EmptyData("audio contains NaN or infinite samples", details={"format": fmt, "reason": "non_finite"})
    if peak < SILENCE_PEAK:
        raise EmptyData(
            "audio is silent",
            details={"format": fmt, "reason": "silent", "peak": peak, "duration_s": duration_s},
        )


def _scan(f, fmt: str, *, max_duration_s: float, max_samples: int) -> tuple[AudioInfo, float]:
    """Decode block by block (``BLOCK_FRAMES`` at a time, never the whole file) and check everything
    :func:`validate_audio` promises.  Returns the info and the peak of the mono mix (channel mean)."""
    sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
    limit = _max_frames(sr, channels, max_duration_s, max_samples)
    n, peak, mono_peak, finite = 0, 0.0, 0.0, True
    for y in _blocks(f, fmt):
        n += y.shape[0]
        if n > limit:
            raise _too_long(fmt, sr, channels, max_duration_s, max_samples)
        if not y.size:
            continue
        if not np.isfinite(y).all():
            finite = False
            break
        peak = max(peak, float(np.abs(y).max()))
        mono = y.mean(axis=1, dtype=np.float32) if channels > 1 else y[:, 0]
        mono_peak = max(mono_peak, float(np.abs(mono).max()))
    info = AudioInfo(format=fmt, sample_rate=sr, channels=channels, duration_s=n / sr, subtype=str(f.subtype or ""))
    _check_decoded(fmt, n if finite else max(n, frames), frames, finite, peak, info.duration_s)
    return info, mono_peak


def _read_all(f, fmt: str, *, max_duration_s: float, max_samples: int) -> tuple[np.ndarray, AudioInfo]:
    """Decode the whole file at once to float32 ``(frames, channels)`` (within the limits), with all checks."""
    sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
    limit = _max_frames(sr, channels, max_duration_s, max_samples)
    try:
        y = f.read(frames=limit + 1 if frames <= 0 else frames, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise CorruptData(f"{fmt} audio data is truncated or corrupt", details={"format": fmt, "reason": str(e)}) from e
    if y.shape[0] > limit:
        raise _too_long(fmt, sr, channels, max_duration_s, max_samples)
    info = AudioInfo(format=fmt, sample_rate=sr, channels=channels, duration_s=y.shape[0] / sr, subtype=str(f.subtype or ""))
    finite = bool(np.isfinite(y).all())
    peak = float(np.abs(y).max()) if (y.size and finite) else 0.0
    _check_decoded(fmt, y.shape[0], frames, finite, peak, info.duration_s)
    return y, info


def _in_memory(f) -> bool:
    frames = int(f.frames)
    return 0 < frames and frames * int(f.channels) <= IN_MEMORY_SAMPLES


def validate_audio(
    data: bytes,
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> AudioInfo:
    """Check ``data`` is a complete, non-silent, finite WAV/FLAC/OGG clip within the limits.

    The limits are checked from the header before anything is decoded (and counted again while
    decoding, for containers that do not announce their length); the samples are then decoded
    ``BLOCK_FRAMES`` at a time, so memory does not grow with the length.

    Raises :class:`~ml.errors.UnsupportedFormat`, :class:`~ml.errors.CorruptData`,
    :class:`~ml.errors.TooLarge` (longer than ``max_duration_s`` or more than ``max_samples``
    decoded samples, frames x channels) or :class:`~ml.errors.EmptyData` (no samples, silent, NaN/inf).
    """
    _check_params(SAMPLE_RATE, DURATION_S, max_duration_s, max_samples)
    with _open(data, max_duration_s=max_duration_s, max_samples=max_samples, allowed_formats=allowed_formats) as (f, fmt):
        info, _ = _scan(f, fmt, max_duration_s=max_duration_s, max_samples=max_samples)
    return info


def _mono(y: np.ndarray) -> np.ndarray:
    mono = y.mean(axis=1, dtype=np.float32) if y.shape[1] > 1 else y[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32)


def _resample(mono: np.ndarray, orig_sr: int, sample_rate: int) -> np.ndarray:
    if orig_sr == sample_rate:
        return mono
    librosa = _librosa()
    return np.ascontiguousarray(
        librosa.resample(mono, orig_sr=orig_sr, target_sr=int(sample_rate), res_type="soxr_hq"), dtype=np.float32
    )


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> tuple[np.ndarray, AudioInfo]:
    """Validate and decode to a mono ``float32`` waveform at ``sample_rate`` (full length, so its memory
    grows with the length up to ``max_samples``; :func:`load_audio_features` reads long files in blocks)."""
    _check_params(sample_rate, DURATION_S, max_duration_s, max_samples)
    with _open(data, max_duration_s=max_duration_s, max_samples=max_samples, allowed_formats=allowed_formats) as (f, fmt):
        y, info = _read_all(f, fmt, max_duration_s=max_duration_s, max_samples=max_samples)
    mono = _resample(_mono(y), info.sample_rate, sample_rate)
    if mono.size == 0:
        raise EmptyData("audio is too short to resample", details={"format": info.format})
    return mono, info


def _loudest_window(f, info: AudioInfo, mono_peak: float, *, sample_rate: int, length: int, trim_db: float = 50.0) -> np.ndarray:
    """:func:`fix_length` of a long file without holding it: ``length`` samples at ``sample_rate``.

    Works at the file's own rate on the mono mix, block by block: the edges quieter than ``trim_db``
    below the mono peak are trimmed, the loudest window of ``length`` (in native frames) inside what
    is left is found from running energies, and only that window (plus a resampling margin on each
    side) is decoded again and resampled.  A trimmed signal no longer than the window is read whole
    and centred by :func:`fix_length`.  Memory: a few blocks, whatever the length of the file.
    """
    sr, fmt = info.sample_rate, info.format
    win = max(1, int(round(length * sr / sample_rate)))
    thr = mono_peak * 10 ** (-trim_db / 20) if trim_db else 0.0
    first = last = None
    best_v, best_p = -1.0, -1          # best window (value, end) among windows inside [first, last]
    pend_v, pend_p = -1.0, -1          # best window ending after the last loud sample seen so far
    prev = np.zeros(0, dtype=np.float64)  # energies of the last `win` frames before the block
    pos = 0
    for y in _blocks(f, fmt):
        m = y.shape[0]
        if not m:
            continue
        mono = _mono(y)
        loud = np.flatnonzero(np.abs(mono) >= thr)
        if loud.size:
            if first is None:
                first = pos + int(loud[0])
            last = pos + int(loud[-1])
            if pend_p >= 0:  # a loud sample here: every window ending before this block is inside
                if pend_v > best_v:
                    best_v, best_p = pend_v, pend_p
                pend_v, pend_p = -1.0, -1
        energy = np.concatenate([prev, mono.astype(np.float64) ** 2])
        g0 = pos - prev.size  # global frame index of energy[0]
        lo, hi = (max(pos + 1, g0 + win, first + win), pos + m) if first is not None else (1, 0)  # window ends (exclusive)
        if lo <= hi:
            csum = np.concatenate([[0.0], np.cumsum(energy)])
            # values[i]: energy of the window ending (exclusive) at frame lo + i
            values = csum[lo - g0 : hi - g0 + 1] - csum[lo - g0 - win : hi - g0 + 1 - win]
            # windows ending at or before this block's last loud sample are inside the trimmed signal
            k = min(values.size, max(0, pos + int(loud[-1]) + 2 - lo)) if loud.size else 0
            if k:
                j = int(np.argmax(values[:k]))
                if float(values[j]) > best_v:
                    best_v, best_p = float(values[j]), lo + j
            if k < values.size:
                j = k + int(np.argmax(values[k:]))
                if float(values[j]) > pend_v:
                    pend_v, pend_p = float(values[j]), lo + j
        prev = energy[-win:]
        pos += m
    if first is None or last is None:
        raise EmptyData("audio is silent", details={"format": fmt, "reason": "silent"})
    # A piece read again starts on a frame that falls on the output grid (a multiple of sr / gcd), so
    # its resampled samples are those of the whole file; the margin keeps the resampler's edge
    # effects outside what is kept.
    step = sr // math.gcd(sr, int(sample_rate))
    margin = 0 if sr == sample_rate else int(0.05 * sr) + 64

    def read(lo: int, hi: int) -> tuple[int, np.ndarray]:
        a, b = max(0, lo - margin) // step * step, min(pos, hi + margin)
        part = np.concatenate([_mono(y) for y in _blocks(f, fmt, start=a, frames=b - a)] or [np.zeros(0, np.float32)])
        return a, _resample(part, sr, sample_rate)

    if last - first + 1 <= win or best_p < 0:
        # short enough to keep whole: fix_length trims (again, at the output rate) and centres it
        _, out = read(first, last + 1)
        return fix_length(out, length, trim_db=trim_db)
    start = best_p - win
    a, out = read(start, start + win)
    offset = int(round(start * sample_rate / sr)) - a * int(sample_rate) // sr
    out = out[offset : offset + length]
    if out.size < length:
        out = np.concatenate([out, np.zeros(length - out.size, dtype=np.float32)])
    return np.ascontiguousarray(out, dtype=np.float32)


def fix_length(y: np.ndarray, length: int, *, trim_db: float = 50.0) -> np.ndarray:
    """Trim edge silence, then crop to the loudest ``length`` window or centre-pad with zeros."""
    y = np.asarray(y, dtype=np.float32)
    length = int(length)
    if y.size and trim_db:
        peak = float(np.abs(y).max())
        if peak > 0:
            loud = np.flatnonzero(np.abs(y) >= peak * 10 ** (-trim_db / 20))
            y = y[loud[0] : loud[-1] + 1]
    if y.size > length:
        energy = np.concatenate([[0.0], np.cumsum(y.astype(np.float64) ** 2)])
        window = energy[length:] - energy[:-length]
        start = int(np.argmax(window))
        return np.ascontiguousarray(y[start : start + length])
    out = np.zeros(length, dtype=np.float32)
    off = (length - y.size) // 2
    out[off : off + y.size] = y
    return out


def _hz_to_mel(f, htk: bool):
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    # Slaney's scale: linear (3 bands per 200 Hz) below 1 kHz, logarithmic (27 bands per factor 6.4) above
    linear = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, linear)


def _mel_to_hz(m, htk: bool):
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = m * (200.0 / 3)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    *,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    dtype=np.float32,
) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular mel filters between ``fmin`` and ``fmax`` (default Nyquist),
    area-normalised so a flat spectrum gives equal bands; the mel scale is Slaney's, or HTK's with ``htk``.

    The one filterbank of Looplab: the models' log-mel features (Slaney scale, 20 Hz..8 kHz) and the
    annotation tool's spectrogram picture (HTK scale, 0 Hz..Nyquist) both use it. It equals
    ``librosa.filters.mel(sr, n_fft=..., n_mels=..., fmin=..., fmax=..., htk=..., norm="slaney", dtype=...)``.
    Rows are written in ``dtype`` before the area scaling (float64 keeps full precision until the caller casts).
    """
    fmax = float(sample_rate) / 2.0 if fmax is None else float(fmax)
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, fft_freqs.size), dtype=dtype)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int):
    """Mel filterbank ``(n_mels, 1 + n_fft // 2)`` as a CSR sparse matrix.

    Sparse on purpose: a dense BLAS sgemm this small is multi-threaded by OpenBLAS
    and becomes 10-1000x slower on a loaded machine (thread hand-off); scipy's
    sparse product is single-threaded and ~90% of the filterbank is zeros.
    """
    import scipy.sparse

    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin=FMIN, fmax=min(FMAX, sample_rate / 2))
    return scipy.sparse.csr_matrix(fb.astype(np.float32))


def logmel(y: np.ndarray, *, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """Scaled log-mel spectrogram ``(n_mels, T)`` float32 of a mono waveform (see module doc)."""
    librosa = _librosa()
    y = np.asarray(y, dtype=np.float32)
    stft = librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window="hann", center=True, pad_mode="constant")
    power = (stft.real**2 + stft.imag**2).astype(np.float32)
    # flush near-zero power (digital silence, zero padding) far below the -100 dB floor:
    # float32 denormals there make the matmul ~100x slower and change nothing in the output
    power[power < 1e-20] = 0.0
    mel = np.asarray(_mel_basis(int(sample_rate), N_FFT, int(n_mels)) @ power)
    db = 10.0 * np.log10(np.maximum(mel, 10 ** (_DB_FLOOR / 10)))
    return ((db + _DB_OFFSET) / _DB_SCALE).astype(np.float32)


def load_audio_features(
    data: bytes,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    duration_s: float = DURATION_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """Validate, decode, resample, fix the length and compute log-mel: ``(1, n_mels, T)`` float32.

    Files of at most ``IN_MEMORY_SAMPLES`` samples are decoded whole (:func:`decode_audio`, then
    :func:`fix_length`); longer ones block by block (the loudest window is found at the file's own
    rate and only it is resampled), so memory stays a few blocks whatever the length.
    """
    _check_params(sample_rate, duration_s, max_duration_s, max_samples)
    length = int(round(duration_s * sample_rate))
    with _open(data, max_duration_s=max_duration_s, max_samples=max_samples, allowed_formats=allowed_formats) as (f, fmt):
        if _in_memory(f):
            y, info = _read_all(f, fmt, max_duration_s=max_duration_s, max_samples=max_samples)
            mono = _resample(_mono(y), info.sample_rate, sample_rate)
            del y
            if mono.size == 0:
                raise EmptyData("audio is too short to resample", details={"format": info.format})
            y = fix_length(mono, length)
        else:
            info, mono_peak = _scan(f, fmt, max_duration_s=max_duration_s, max_samples=max_samples)
            y = _loudest_window(f, info, mono_peak, sample_rate=sample_rate, length=length)
    return logmel(y, sample_rate=sample_rate, n_mels=n_mels)[None]


def load_audio_batch(
    blobs: Sequence[bytes],
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    duration_s: float = DURATION_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """:func:`load_audio_features` over a sequence -> ``(N, 1, n_mels, T)`` float32.

    The first bad blob raises its typed error with ``details["index"]`` set.
    """
    t = n_frames(duration_s, sample_rate=sample_rate)
    out = np.empty((len(blobs), 1, int(n_mels), t), dtype=np.float32)
    for i, blob in enumerate(blobs):
        try:
            out[i] = load_audio_features(
                blob,
                sample_rate=sample_rate,
                n_mels=n_mels,
                duration_s=duration_s,
                max_duration_s=max_duration_s,
                max_samples=max_samples,
                allowed_formats=allowed_formats,
            )
        except MLError as e:
            e.details.setdefault("index", i)
            raise
    return out


def _rng(random_state):
    return random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)


def augment_waveform(
    y: np.ndarray,
    *,
    random_state: int | np.random.Generator | None = None,
    max_shift_s: float = 0.1,
    gain_db: float = 6.0,
    noise_snr_db: tuple[float, float] | None = (20.0, 40.0),
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Random circular-free time shift (zero fill), gain change and white noise at a random SNR."""
    rng = _rng(random_state)
    y = np.asarray(y, dtype=np.float32)
    out = y.copy()
    s = int(max_shift_s * sample_rate)
    if s:
        k = int(rng.integers(-s, s + 1))
        out = np.zeros_like(y)
        if k >= 0:
            out[k:] = y[: y.size - k]
        else:
            out[:k] = y[-k:]
    if gain_db:
        out = out * np.float32(10 ** (rng.uniform(-gain_db, gain_db) / 20))
    if noise_snr_db is not None:
        p = float(np.mean(out.astype(np.float64) ** 2))
        if p > 0:
            snr = rng.uniform(*noise_snr_db)
            out = out + rng.normal(0.0, np.sqrt(p / 10 ** (snr / 10)), size=out.shape).astype(np.float32)
    return out.astype(np.float32)


def augment_logmel(
    X: np.ndarray,
    *,
    random_state: int | np.random.Generator | None = None,
    max_time_shift: int = 8,
    freq_masks: int = 1,
    max_freq_width: int = 8,
    time_masks: int = 1,
    max_time_width: int = 10,
) -> np.ndarray:
    """SpecAugment-style batch augmentation of ``(N, 1, n_mels, T)``: time shift and masks.

    Shifted-in and masked cells are set to the clip's minimum (silence).  Returns a new array.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 4:
        raise InvalidInput("expected a batch of shape (N, 1, n_mels, T)", details={"shape": list(X.shape)})
    rng = _rng(random_state)
    out = X.copy()
    n, _, m, t = X.shape
    for i in range(n):
        fill = float(X[i].min())
        if max_time_shift:
            k = int(rng.integers(-max_time_shift, max_time_shift + 1))
            if k:
                out[i] = fill
                if k > 0:
                    out[i, :, :, k:] = X[i, :, :, : t - k]
                else:
                    out[i, :, :, :k] = X[i, :, :, -k:]
        for _ in range(freq_masks):
            w = int(rng.integers(0, max_freq_width + 1))
            f0 = int(rng.integers(0, max(1, m - w)))
            out[i, :, f0 : f0 + w, :] = fill
        for _ in range(time_masks):
            w = int(rng.integers(0, max_time_width + 1))
            t0 = int(rng.integers(0, max(1, t - w)))
            out[i, :, :, t0 : t0 + w] = fill
    return out
