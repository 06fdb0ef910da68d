"""Audio bytes -> validated mono waveform -> fixed-size log-mel arrays.

Pipeline for untrusted bytes (:func:`load_audio_features`):

1. the container is sniffed from the leading bytes (WAV/FLAC/OGG accepted);
2. libsndfile (``soundfile``) reads the header; the duration is checked against
   ``max_duration_s`` before the samples are decoded;
3. samples are decoded to float32; empty, non-finite (NaN/inf) and silent
   (peak below ``SILENCE_PEAK``) audio is rejected;
4. channels are averaged to mono and resampled to ``SAMPLE_RATE`` (16 kHz);
5. leading/trailing silence is trimmed, then the signal is cropped to the
   loudest ``duration_s`` window or centred and zero-padded to ``duration_s``;
6. a 64-band log-mel spectrogram (25 ms window, 10 ms hop, 20 Hz..8 kHz) is
   computed and scaled: ``(dB + 50) / 50`` with a floor of -100 dB, so values lie
   roughly in ``[-1, 2]`` (-1 is digital silence).

With the defaults the output is ``float32`` of shape ``(1, 64, 101)``.

soundfile (which needs libsndfile) and librosa are imported inside functions,
so importing this module costs only numpy.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ml.errors import CorruptData, EmptyData, InvalidInput, MLError, MissingDependency, TooLarge, UnsupportedFormat

__all__ = [
    "ALLOWED_FORMATS",
    "SAMPLE_RATE",
    "N_MELS",
    "N_FFT",
    "HOP_LENGTH",
    "DURATION_S",
    "DEFAULT_MAX_DURATION_S",
    "SILENCE_PEAK",
    "LOGMEL_DB_OFFSET",
    "LOGMEL_DB_SCALE",
    "AudioInfo",
    "n_frames",
    "sniff_format",
    "validate_audio",
    "decode_audio",
    "fix_length",
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
    try:
        import soundfile
    except (ImportError, OSError) as e:  # OSError: libsndfile missing
        raise MissingDependency(
            "soundfile (with libsndfile) is required for audio",
            details={"install": "pip install soundfile", "reason": str(e)},
        ) from e
    return soundfile


def _librosa():
    try:
        import librosa
    except ImportError as e:
        raise MissingDependency(
            "librosa is required for audio features",
            details={"install": "pip install librosa", "reason": str(e)},
        ) from e
    return librosa


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


def _check_params(sample_rate: int, duration_s: float, max_duration_s: float) -> None:
    if not (1000 <= int(sample_rate) <= 192_000):
        raise InvalidInput("sample_rate must be in 1000..192000", details={"sample_rate": sample_rate})
    if not (0 < float(duration_s) <= 60):
        raise InvalidInput("duration_s must be in (0, 60]", details={"duration_s": duration_s})
    if not (0 < float(max_duration_s)):
        raise InvalidInput("max_duration_s must be positive", details={"max_duration_s": max_duration_s})


def _decode(
    data: bytes,
    *,
    max_duration_s: float,
    allowed_formats: Sequence[str],
) -> tuple[np.ndarray, AudioInfo]:
    """Decode to float32 ``(frames, channels)`` at the native rate, with all checks."""
    data = _as_bytes(data)
    if not data:
        raise EmptyData("audio data is empty", details={"n_bytes": 0})
    allowed = tuple(str(f).upper() for f in allowed_formats)
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormat(
            "not a recognised audio format",
            details={"allowed": list(allowed), "n_bytes": len(data)},
        )
    if fmt not in allowed:
        raise UnsupportedFormat(
            f"audio format {fmt} is not accepted (accepted: {', '.join(allowed)})",
            details={"format": fmt, "allowed": list(allowed)},
        )
    if fmt == "WAV":
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
        sr, channels, frames = int(f.samplerate), int(f.channels), int(f.frames)
        subtype = str(f.subtype or "")
        if sr <= 0 or channels <= 0:
            raise CorruptData("audio header has no sample rate or channels", details={"format": fmt})
        if channels > 32:
            raise CorruptData("audio header claims too many channels", details={"format": fmt, "channels": channels})
        if frames > 0 and frames / sr > max_duration_s:
            raise TooLarge(
                f"audio is {frames / sr:.1f} s long, more than the limit of {max_duration_s:g} s",
                details={"format": fmt, "duration_s": frames / sr, "max_duration_s": max_duration_s},
            )
        max_frames = int(max_duration_s * sr) + 1
        try:
            y = f.read(frames=max_frames + 1 if frames <= 0 else frames, dtype="float32", always_2d=True)
        except Exception as e:  # noqa: BLE001
            raise CorruptData(f"{fmt} audio data is truncated or corrupt", details={"format": fmt, "reason": str(e)}) from e
    if y.shape[0] > max_frames:
        raise TooLarge(
            f"audio is longer than the limit of {max_duration_s:g} s",
            details={"format": fmt, "max_duration_s": max_duration_s},
        )
    if frames > 0 and y.shape[0] < frames:
        raise CorruptData(
            "audio data is truncated",
            details={"format": fmt, "expected_frames": frames, "decoded_frames": int(y.shape[0])},
        )
    info = AudioInfo(format=fmt, sample_rate=sr, channels=channels, duration_s=y.shape[0] / sr, subtype=subtype)
    if y.shape[0] == 0:
        raise EmptyData("audio has no samples", details={"format": fmt})
    if not np.isfinite(y).all():
        raise EmptyData("audio contains NaN or infinite samples", details={"format": fmt, "reason": "non_finite"})
    peak = float(np.abs(y).max())
    if peak < SILENCE_PEAK:
        raise EmptyData(
            "audio is silent",
            details={"format": fmt, "reason": "silent", "peak": peak, "duration_s": info.duration_s},
        )
    return y, info


def validate_audio(
    data: bytes,
    *,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> AudioInfo:
    """Check ``data`` is a complete, non-silent, finite WAV/FLAC/OGG clip within the length limit.

    Raises :class:`~ml.errors.UnsupportedFormat`, :class:`~ml.errors.CorruptData`,
    :class:`~ml.errors.TooLarge` (longer than ``max_duration_s``, checked from the
    header first) or :class:`~ml.errors.EmptyData` (no samples, silent, NaN/inf).
    """
    _, info = _decode(data, max_duration_s=max_duration_s, allowed_formats=allowed_formats)
    return info


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> tuple[np.ndarray, AudioInfo]:
    """Validate and decode to a mono ``float32`` waveform at ``sample_rate`` (full length)."""
    _check_params(sample_rate, DURATION_S, max_duration_s)
    y, info = _decode(data, max_duration_s=max_duration_s, allowed_formats=allowed_formats)
    mono = y.mean(axis=1) if y.shape[1] > 1 else y[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if info.sample_rate != sample_rate:
        librosa = _librosa()
        mono = librosa.resample(mono, orig_sr=info.sample_rate, target_sr=int(sample_rate), res_type="soxr_hq")
        mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0:
        raise EmptyData("audio is too short to resample", details={"format": info.format})
    return mono, info


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


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int):
    """Mel filterbank ``(n_mels, 1 + n_fft // 2)`` as a CSR sparse matrix.

    Sparse on purpose: a dense BLAS sgemm this small is multi-threaded by OpenBLAS
    and becomes 10-1000x slower on a loaded machine (thread hand-off); scipy's
    sparse product is single-threaded and ~90% of the filterbank is zeros.
    """
    import scipy.sparse

    librosa = _librosa()
    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=FMIN, fmax=min(FMAX, sample_rate / 2))
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
    allowed_formats: Sequence[str] = ALLOWED_FORMATS,
) -> np.ndarray:
    """Validate, decode, resample, fix the length and compute log-mel: ``(1, n_mels, T)`` float32."""
    _check_params(sample_rate, duration_s, max_duration_s)
    y, _ = decode_audio(data, sample_rate=sample_rate, max_duration_s=max_duration_s, allowed_formats=allowed_formats)
    y = fix_length(y, int(round(duration_s * sample_rate)))
    return logmel(y, sample_rate=sample_rate, n_mels=n_mels)[None]


def load_audio_batch(
    blobs: Sequence[bytes],
    *,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    duration_s: float = DURATION_S,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
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
