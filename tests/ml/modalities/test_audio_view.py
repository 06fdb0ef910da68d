"""Waveform peaks and spectrograms for the annotation tool: pure functions on an open SoundFile, no database."""
import io
import math

import numpy as np
import pytest

from ml.errors import CorruptData, TooLarge

sf = pytest.importorskip("soundfile")

from ml.modalities import audio_view as av  # noqa: E402
from ml.modalities.audio import mel_filterbank  # noqa: E402
from tests.ml.modalities.spectrogram_reference import direct_spectrogram  # noqa: E402


def _wav(y, sr, subtype="FLOAT"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    buf.seek(0)
    return buf


def test_one_mel_filterbank_equals_librosa_on_both_scales():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmin, fmax, htk in [(16000, 400, 64, 20.0, 8000.0, False), (8000, 400, 64, 20.0, 4000.0, False),
                                               (16000, 512, 80, 0.0, 8000.0, True), (44100, 1024, 128, 0.0, 22050.0, True)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin=fmin, fmax=fmax, htk=htk)
        theirs = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm="slaney")
        assert ours.dtype == np.float32 and ours.shape == (n_mels, n_fft // 2 + 1)
        np.testing.assert_array_equal(ours, theirs)  # the models' features are unchanged, bit for bit
    spec = av.spectrogram_filterbank(16000, 512, 80)
    np.testing.assert_allclose(spec, librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, htk=True, norm="slaney"),
                               rtol=1e-5, atol=1e-9)


def test_samples_per_bucket_is_the_smallest_power_of_two_that_fits():
    assert av.samples_per_bucket_for(1000, 1000) == 1
    assert av.samples_per_bucket_for(1001, 1000) == 2
    assert av.samples_per_bucket_for(16000 * 3600, 1 << 15) == 2048
    assert av.samples_per_bucket_for(0, 10) == 1
    for frames, buckets in [(5, 1), (12345, 77), (1 << 20, 3)]:
        spb = av.samples_per_bucket_for(frames, buckets)
        assert math.ceil(frames / spb) <= buckets and (spb == 1 or math.ceil(frames / (spb // 2)) > buckets)


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_peaks_in_blocks_equal_the_whole_signal(subtype):
    y = (np.random.default_rng(1).standard_normal((20_001, 2)) * 0.2).clip(-1, 1).astype(np.float32)
    whole, _ = sf.read(_wav(y, 8000, subtype), dtype="float32", always_2d=True)
    for spb, block in [(64, 1000), (1, 777), (4096, 5000), (3, 4096)]:
        with sf.SoundFile(_wav(y, 8000, subtype)) as sound:
            data, frames = av.compute_peaks(sound, spb, block_frames=block)
        assert frames == len(y) and data.dtype == np.float32
        ref = np.array([[whole[i:i + spb].min(), whole[i:i + spb].max()] for i in range(0, len(y), spb)], np.float32)
        np.testing.assert_array_equal(data, ref)
    peaks = av.Peaks(data=data, sample_rate=8000, channels=2, frames=frames, samples_per_bucket=3)
    assert peaks.buckets == len(ref) and peaks.duration_s == pytest.approx(len(y) / 8000)
    assert peaks.interleaved()[:2].tolist() == data[0].tolist()
    assert len(peaks.to_int16()) == 4 * peaks.buckets


class _Recorder:
    """A SoundFile stand-in that records the block sizes asked for."""

    def __init__(self, frames, channels=1, fail_after=None):
        self.frames, self.channels, self.samplerate, self.subtype = frames, channels, 16000, "FLOAT"
        self.asked, self.fail_after = [], fail_after

    def blocks(self, blocksize, dtype, always_2d):
        self.asked.append(blocksize)
        left, n = self.frames, 0
        while left > 0:
            if self.fail_after is not None and n >= self.fail_after:
                raise RuntimeError("Internal psf_fseek() failed.")
            m = min(blocksize, left)
            yield np.zeros((m, self.channels), dtype=dtype)
            left, n = left - m, n + 1


def test_blocks_are_bounded_and_decoded_samples_are_capped():
    sound = _Recorder(frames=50_000, channels=2)
    assert sum(b.shape[0] for b in av.iter_blocks(sound, 4096, max_samples=100_000)) == 50_000
    assert max(sound.asked) == 4096
    sound = _Recorder(frames=50_000, channels=2)
    with pytest.raises(TooLarge) as ei:
        for _ in av.iter_blocks(sound, 4096, max_samples=60_000):  # 30,000 frames of two channels
            pass
    assert ei.value.details == {"max_samples": 60_000}
    with pytest.raises(TooLarge):
        av.compute_peaks(_Recorder(frames=50_000), 16, block_frames=1000, max_samples=10_000)
    with pytest.raises(TooLarge):
        av.compute_spectrogram(_Recorder(frames=50_000), width=100, block_frames=1000, max_samples=10_000)
    # the default block is what the app streams an hour of audio with
    sound = _Recorder(frames=3 * av.BLOCK_FRAMES)
    av.compute_peaks(sound, 1)
    assert sound.asked == [av.BLOCK_FRAMES]


def test_a_damaged_body_is_corrupt_data():
    with pytest.raises(CorruptData, match="truncated or corrupt"):
        av.compute_peaks(_Recorder(frames=50_000, fail_after=2), 16, block_frames=1000)
    with pytest.raises(CorruptData):
        av.compute_spectrogram(_Recorder(frames=50_000, fail_after=2), width=50, block_frames=1000)


def test_streamed_spectrogram_equals_the_definition():
    sr = 16000
    t = np.arange(int(1.3 * sr)) / sr
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    y = np.stack([chirp, 0.5 * chirp], axis=1).astype(np.float32)
    for width, block in [(120, 10_000), (4000, 1 << 20), (700, 3000), (40, 5000)]:
        with sf.SoundFile(_wav(y, sr)) as sound:
            db, n_fft, hop, n_frames, frames = av.compute_spectrogram(sound, width=width, n_mels=64, block_frames=block)
        assert (n_fft, frames) == (512, len(y)) and n_frames == math.ceil(len(y) / hop)
        direct = direct_spectrogram(y, sr, width, 64)
        assert db.shape == direct.shape == (64, min(width, n_frames))
        np.testing.assert_allclose(db, direct, atol=0.05)
    spec = av.Spectrogram(db=db, sample_rate=sr, n_fft=n_fft, hop=hop, n_frames=n_frames, frames=frames)
    assert spec.span_s >= spec.duration_s > spec.span_s - hop / sr


def test_fft_size_hop_and_column_edges():
    assert av.fft_size(16000) == 512 and av.fft_size(44100) == 1024 and av.fft_size(48000) == 2048
    assert av.spectrogram_hop(512, 100, 2048) == 64 and av.spectrogram_hop(512, 10 ** 9, 2048) == 512
    edges = av.column_edges(10, 3)
    assert edges.tolist() == [0, 3, 6, 10]


def test_spectrogram_png_puts_high_frequencies_on_top():
    from PIL import Image

    db = np.full((16, 30), -av.DB_RANGE, np.float32)
    db[0] = 0.0  # the lowest band is the loudest
    png = av.spectrogram_png(av.Spectrogram(db=db, sample_rate=16000, n_fft=512, hop=64, n_frames=30, frames=1920))
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (16, 30, 3)
    assert image[-1].sum() > image[0].sum()
