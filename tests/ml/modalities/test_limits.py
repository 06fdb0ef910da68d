"""Decoded-size caps, checked from the header before decoding, and block-wise decoding of long audio.

Each cap has a bomb 10x over it (small on disk, huge decoded; fixtures.bombs) refused with TooLarge,
and tracemalloc shows the refusal and the block readers allocate little."""
from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from fixtures import bombs
from ml.errors import CorruptData, TooLarge
from ml.modalities import audio as ma
from ml.modalities import image as mi
from ml.modalities import pointcloud as mp

MB = 1 << 20


def _peak_alloc(fn):
    """(result or exception, peak bytes numpy and Python allocated while fn ran)."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - returned for the caller to check
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _enc(y, sr, fmt="WAV", subtype="PCM_16"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _bursts(sr, seconds, channels=1, seed=0):
    """Quiet noise with loud bursts of various lengths, and digital silence at both ends."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    y = rng.normal(0, 0.005, (n, channels)).astype(np.float32)
    y[: 2 * sr] = 0
    y[-sr:] = 0
    for _ in range(12):
        k = int(rng.integers(sr // 20, sr * 2))
        s = int(rng.integers(2 * sr, n - sr - k))
        y[s : s + k] += rng.normal(0, rng.uniform(0.02, 0.3), (k, channels)).astype(np.float32)
    return np.clip(y, -1, 1)


# -- audio ---------------------------------------------------------------------------------------------

def test_default_samples_cap_fits_real_use():
    assert ma.DEFAULT_MAX_SAMPLES == 10 * 60 * 48000 * 2 == 3600 * 16000
    assert ma.IN_MEMORY_SAMPLES >= 30 * 48000 * 2  # every classification clip keeps the one-piece path


def test_flac_bomb_refused_from_the_header():
    data = bombs.flac_silence(frames=100 * 16000, sample_rate=16000, channels=1)  # 1.6 M samples of silence
    assert len(data) < 100_000
    cap = 160_000  # the bomb is 10x over it
    out, peak = _peak_alloc(lambda: ma.validate_audio(data, max_duration_s=1e6, max_samples=cap))
    assert isinstance(out, TooLarge), out
    assert out.details["samples"] == 1_600_000 and out.details["max_samples"] == cap
    assert peak < 1 * MB  # nothing was decoded (1.6 M float32 samples would be 6.4 MB)
    with pytest.raises(TooLarge):
        ma.load_audio_features(data, max_duration_s=1e6, max_samples=cap)
    with pytest.raises(TooLarge):
        ma.decode_audio(data, max_duration_s=1e6, max_samples=cap)


def test_samples_cap_counts_channels_and_is_checked_before_decoding():
    t = np.arange(3 * 48000) / 48000
    y = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    data = _enc(y, 48000, "FLAC")
    assert ma.validate_audio(data, max_samples=288_000).channels == 2  # exactly 3 s x 48 kHz x 2
    with pytest.raises(TooLarge) as ei:
        ma.validate_audio(data, max_samples=287_999)
    assert ei.value.details["channels"] == 2
    # a truncated file over the cap is TooLarge, not CorruptData: the header decided, nothing was decoded
    with pytest.raises(TooLarge):
        ma.validate_audio(data[: len(data) // 2], max_samples=100_000)
    with pytest.raises(CorruptData):
        ma.validate_audio(data[: len(data) // 2])


def test_wav_header_claiming_10x_the_cap():
    data = bombs.wav_claiming(frames=10 * ma.DEFAULT_MAX_SAMPLES // 2, channels=2)
    assert len(data) < 200_000
    with pytest.raises(TooLarge) as ei:
        ma.validate_audio(data, max_duration_s=1e9)
    assert ei.value.details["samples"] >= 10 * ma.DEFAULT_MAX_SAMPLES - 2


def test_validation_decodes_in_blocks():
    data = _enc(_bursts(16000, 600.0), 16000)  # 10 minutes: 38 MB as float32 if decoded whole
    info, peak = _peak_alloc(lambda: ma.validate_audio(data, max_duration_s=7200))
    assert info.duration_s == pytest.approx(600.0)
    assert peak < 4 * MB, peak


@pytest.mark.parametrize("channels, seconds", [(1, 400.0), (2, 140.0)])
def test_long_file_features_read_in_blocks_match_the_one_piece_path(monkeypatch, channels, seconds):
    """At 16 kHz (no resampling) the block path finds exactly the window the one-piece path finds."""
    data = _enc(_bursts(16000, seconds, channels=channels, seed=channels), 16000, subtype="FLOAT")
    assert 16000 * seconds * channels > ma.IN_MEMORY_SAMPLES
    ma.load_audio_features(_enc(_bursts(16000, 10.0), 16000))  # warm up: librosa's lazy imports and caches
    streamed, peak = _peak_alloc(lambda: ma.load_audio_features(data, max_duration_s=7200))
    assert not isinstance(streamed, Exception), streamed
    assert peak < 8 * MB, peak  # the one-piece path holds the file several times over
    monkeypatch.setattr(ma, "IN_MEMORY_SAMPLES", 1 << 40)
    whole = ma.load_audio_features(data, max_duration_s=7200)
    assert np.array_equal(streamed, whole)


def test_long_file_with_one_short_sound_is_centred(monkeypatch):
    sr = 44100
    y = np.zeros(sr * 200, dtype=np.float32)
    t = np.arange(sr // 2) / sr
    y[sr * 120 : sr * 120 + t.size] = 0.4 * np.sin(2 * np.pi * 880 * t)
    long = ma.load_audio_features(_enc(y, sr, subtype="FLOAT"), max_duration_s=7200)
    alone = ma.load_audio_features(_enc(y[sr * 119 : sr * 122], sr, subtype="FLOAT"))
    assert np.allclose(long, alone, atol=2e-3)


def test_long_resampled_file_picks_the_loudest_second():
    sr = 44100
    rng = np.random.default_rng(3)
    y = rng.normal(0, 0.01, sr * 150).astype(np.float32)
    t = np.arange(sr) / sr
    y[sr * 90 : sr * 91] += 0.5 * np.sin(2 * np.pi * 2000 * t)  # the loudest second: a 2 kHz tone
    x = ma.load_audio_features(_enc(y, sr, subtype="FLOAT"), max_duration_s=7200)
    ref = ma.load_audio_features(_enc(y[sr * 90 : sr * 91], sr, subtype="FLOAT"))
    assert int(x[0].mean(axis=1).argmax()) == int(ref[0].mean(axis=1).argmax())
    assert np.abs(x - ref)[:, :, 2:-2].mean() < 0.05


# -- point clouds ----------------------------------------------------------------------------------------

def test_default_point_caps():
    assert mp.DEFAULT_MAX_POINTS == 5_000_000 and mp.DEFAULT_MAX_VALUES == 30_000_000


def test_pcd_compressed_bomb_refused_from_the_header():
    data = bombs.pcd_compressed_zeros(n_points=3_000_000, n_fields=100)  # 300 M values: 10x the cap
    assert len(data) < 16 * MB  # inflates to 1.2 GB
    out, peak = _peak_alloc(lambda: mp.validate_points(data))
    assert isinstance(out, TooLarge), out
    assert out.details["values"] == 300_000_000 and out.details["max_values"] == mp.DEFAULT_MAX_VALUES
    assert peak < 2 * MB


def test_values_cap_counts_fields():
    pts = np.random.default_rng(0).normal(size=(1000, 3))
    ply = mp.points_to_ply(pts)
    assert mp.validate_points(ply, max_values=3000).n_points == 1000
    with pytest.raises(TooLarge) as ei:
        mp.validate_points(ply, max_values=2999)
    assert ei.value.details["fields"] == 3
    pcd = bombs.pcd_compressed_zeros(n_points=1000, n_fields=12)
    with pytest.raises(TooLarge) as ei:
        mp.read_points(pcd, max_values=11_999)
    assert ei.value.details["fields"] == 12
    assert mp.read_points(pcd, max_values=12_000).shape == (1000, 3)  # a well-formed compressed body reads


def test_pcd_compressed_body_must_inflate_to_what_the_header_says():
    data = bytearray(bombs.pcd_compressed_zeros(n_points=1000, n_fields=3))
    i = data.index(b"binary_compressed\n") + len(b"binary_compressed\n")
    data[i + 4 : i + 8] = (4_000_000_000).to_bytes(4, "little")  # claims 4 GB uncompressed
    with pytest.raises(CorruptData):
        mp.read_points(bytes(data))


def test_ply_header_claiming_10x_the_points():
    with pytest.raises(TooLarge) as ei:
        mp.validate_points(bombs.ply_claiming(n_points=10 * mp.DEFAULT_MAX_POINTS))
    assert ei.value.details["n_points"] == 50_000_000


# -- images ------------------------------------------------------------------------------------------------

def test_png_bomb_refused_from_the_header():
    data = bombs.png_flat(width=20000, height=20000)  # 400 M pixels: 10x the 40 M cap, ~80 KB
    assert len(data) < 200_000
    out, peak = _peak_alloc(lambda: mi.validate_image(data))
    assert isinstance(out, TooLarge), out
    assert peak < 2 * MB
    small = bombs.png_flat(width=640, height=480)
    assert mi.validate_image(small).width == 640
    with pytest.raises(TooLarge):
        mi.validate_image(small, max_pixels=640 * 480 - 1)
