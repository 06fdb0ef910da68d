"""The spectrogram of ml.modalities.audio_view by its documented definition, on the whole signal at once (a reference
for the streamed computation's tests)."""
import math

import numpy as np


def direct_spectrogram(y: np.ndarray, sr: int, width: int, n_mels: int) -> np.ndarray:
    from ml.modalities import audio_view as av

    n_fft = av.fft_size(sr)
    hop = min(n_fft, max(n_fft // 8, len(y) // width))
    mono = y.mean(axis=1)
    t = math.ceil(len(mono) / hop)
    padded = np.zeros((t - 1) * hop + n_fft, np.float64)
    padded[:len(mono)] = mono
    frames = np.stack([padded[i * hop:i * hop + n_fft] for i in range(t)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    cols = min(width, t)
    edges = (np.arange(cols + 1) * t) // cols
    mean = np.stack([power[edges[j]:edges[j + 1]].mean(axis=0) for j in range(cols)])
    db = 10 * np.log10(np.maximum(av.spectrogram_filterbank(sr, n_fft, n_mels).astype(np.float64) @ mean.T, 1e-12))
    return np.maximum(db - db.max(), -av.DB_RANGE)
