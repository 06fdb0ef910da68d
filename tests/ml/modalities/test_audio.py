import io
import struct

import numpy as np
import pytest
import soundfile as sf

from ml.errors import CorruptData, EmptyData, InvalidInput, TooLarge, UnsupportedFormat
from ml.modalities import audio as ma

T = ma.n_frames()


def _sine(freq=440.0, sr=16000, seconds=1.0, amp=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def _enc(y, sr, fmt="WAV", subtype=None):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _peak_band(x):
    return int(x[0].mean(axis=1).argmax())


def test_shapes_and_constants():
    assert T == 101
    x = ma.load_audio_features(_enc(_sine(), 16000))
    assert x.shape == (1, ma.N_MELS, T) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= -1.0 - 1e-5


@pytest.mark.parametrize(
    "fmt, subtype, sr",
    [("WAV", "PCM_16", 16000), ("WAV", "FLOAT", 22050), ("FLAC", None, 44100), ("OGG", "VORBIS", 16000), ("OGG", "OPUS", 48000)],
)
def test_formats_decode_and_resample(fmt, subtype, sr):
    data = _enc(_sine(1000.0, sr=sr), sr, fmt, subtype)
    info = ma.validate_audio(data)
    assert info.format == fmt and info.sample_rate == sr and info.channels == 1
    assert abs(info.duration_s - 1.0) < 0.05
    y, _ = ma.decode_audio(data)
    assert abs(y.size - 16000) < 800
    # the 1 kHz tone lands in the same mel band whatever the source rate and codec
    ref = _peak_band(ma.load_audio_features(_enc(_sine(1000.0), 16000)))
    assert abs(_peak_band(ma.load_audio_features(data)) - ref) <= 1


def test_pitch_moves_mel_peak():
    low = _peak_band(ma.load_audio_features(_enc(_sine(300.0), 16000)))
    high = _peak_band(ma.load_audio_features(_enc(_sine(3000.0), 16000)))
    assert high > low + 15


def test_stereo_to_mono():
    data = _enc(_sine(channels=2), 16000)
    assert ma.validate_audio(data).channels == 2
    y, _ = ma.decode_audio(data)
    assert y.ndim == 1
    assert np.allclose(ma.load_audio_features(data), ma.load_audio_features(_enc(_sine(), 16000)), atol=1e-3)


@pytest.mark.parametrize("data", [b"definitely not audio", b"\x00" * 64, b"%PDF-1.7"])
def test_not_audio(data):
    with pytest.raises(UnsupportedFormat):
        ma.validate_audio(data)


@pytest.mark.parametrize("fmt", ["AIFF", "MP3"])
def test_disallowed_formats(fmt):
    data = _enc(_sine(), 16000 if fmt == "AIFF" else 44100, fmt)
    with pytest.raises(UnsupportedFormat) as ei:
        ma.validate_audio(data)
    assert ei.value.details["format"] == fmt


def test_empty_bytes_and_wrong_type():
    with pytest.raises(EmptyData):
        ma.validate_audio(b"")
    with pytest.raises(InvalidInput):
        ma.validate_audio(np.zeros(10))  # type: ignore[arg-type]


def test_zero_samples():
    with pytest.raises(EmptyData):
        ma.validate_audio(_enc(np.zeros(0, dtype=np.float32), 16000))


def test_silent():
    with pytest.raises(EmptyData) as ei:
        ma.load_audio_features(_enc(np.zeros(16000, dtype=np.float32), 16000))
    assert ei.value.details["reason"] == "silent"
    with pytest.raises(EmptyData):
        ma.validate_audio(_enc(np.full(16000, 1e-6, dtype=np.float32), 16000, subtype="FLOAT"))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(bad):
    y = _sine()
    y[100] = bad
    with pytest.raises(EmptyData) as ei:
        ma.validate_audio(_enc(y, 16000, subtype="FLOAT"))
    assert ei.value.details["reason"] == "non_finite"


def test_too_long_checked_from_header():
    data = _enc(_sine(sr=8000, seconds=31.0), 8000, subtype="PCM_U8")  # 31 s, 8-bit, 248 kB
    with pytest.raises(TooLarge) as ei:
        ma.validate_audio(data)
    assert ei.value.details["max_duration_s"] == ma.DEFAULT_MAX_DURATION_S
    assert ma.validate_audio(data, max_duration_s=40).duration_s == pytest.approx(31.0)
    with pytest.raises(TooLarge):
        ma.validate_audio(_enc(_sine(seconds=2.0), 16000), max_duration_s=1.5)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", None), ("OGG", "VORBIS")])
def test_truncated(fmt, subtype):
    data = _enc(_sine(seconds=2.0) + np.float32(0.01), 16000, fmt, subtype)
    with pytest.raises(CorruptData):
        ma.validate_audio(data[: len(data) // 2])


def test_wav_header_only_is_corrupt():
    data = _enc(_sine(), 16000)
    with pytest.raises((CorruptData, EmptyData)):
        ma.validate_audio(data[:30])


def test_wav_with_unset_data_size_is_accepted():
    data = bytearray(_enc(_sine(), 16000))
    i = data.index(b"data")
    data[i + 4 : i + 8] = struct.pack("<I", 0xFFFFFFFF)
    assert ma.validate_audio(bytes(data)).duration_s > 0.9


def test_fix_length_crops_loudest_and_centres():
    quiet = np.full(16000, 0.01, dtype=np.float32)
    loud = np.full(8000, 0.5, dtype=np.float32)
    y = np.concatenate([quiet, loud, quiet])
    out = ma.fix_length(y, 8000, trim_db=0)
    assert np.allclose(out, 0.5)
    short = ma.fix_length(np.ones(100, dtype=np.float32), 1000)
    assert short.shape == (1000,) and short[:400].sum() == 0 and short[450:550].sum() == 100
    # edge silence is trimmed before centring
    padded = np.concatenate([np.zeros(5000, np.float32), np.ones(100, np.float32)])
    assert np.array_equal(ma.fix_length(padded, 1000), short)


def test_long_clip_gives_fixed_shape():
    x = ma.load_audio_features(_enc(_sine(seconds=5.0), 16000))
    assert x.shape == (1, 64, T)
    x2 = ma.load_audio_features(_enc(_sine(seconds=5.0), 16000), duration_s=2.0)
    assert x2.shape == (1, 64, ma.n_frames(2.0))


def test_batch_and_error_index():
    good = _enc(_sine(), 16000)
    X = ma.load_audio_batch([good, good])
    assert X.shape == (2, 1, 64, T)
    assert ma.load_audio_batch([]).shape == (0, 1, 64, T)
    with pytest.raises(EmptyData) as ei:
        ma.load_audio_batch([good, _enc(np.zeros(1600, np.float32), 16000)])
    assert ei.value.details["index"] == 1


def test_augmentations_deterministic():
    y = _sine()
    a = ma.augment_waveform(y, random_state=1)
    assert np.array_equal(a, ma.augment_waveform(y, random_state=1))
    assert not np.array_equal(a, ma.augment_waveform(y, random_state=2))
    assert a.shape == y.shape and a.dtype == np.float32
    X = ma.load_audio_batch([_enc(_sine(), 16000)] * 3)
    A = ma.augment_logmel(X, random_state=0)
    assert A.shape == X.shape and np.array_equal(A, ma.augment_logmel(X, random_state=0))
    assert not np.array_equal(A, X)
    assert A.min() >= X.min() - 1e-6


def test_spoken_digit_fixture_loads():
    from fixtures.speech import spoken_digits

    items = spoken_digits(1, seed=0)
    X = ma.load_audio_batch([b for b, _ in items])
    assert X.shape == (10, 1, 64, T)
    assert [y for _, y in items] == list(range(10))
    info = ma.validate_audio(items[0][0])
    assert info.format == "WAV" and info.sample_rate == 22050
