import csv
import hashlib

import numpy as np
import pytest

from fixtures import digits
from ml.modalities.image import load_images, validate_image


def test_digits_pngs_deterministic_and_valid():
    items = digits.digits_pngs()
    assert len(items) == 1797
    labels = np.array([y for _, y in items])
    assert set(labels.tolist()) == set(range(10))
    assert np.bincount(labels).min() >= 170
    again = digits.digits_pngs()
    assert [b for b, _ in items[:50]] == [b for b, _ in again[:50]]
    # fresh encode (bypassing the cache) gives the same bytes
    from sklearn.datasets import load_digits

    d = load_digits()
    assert digits.digit_png(d.images[7]) == items[7][0]
    info = validate_image(items[0][0])
    assert (info.format, info.width, info.height, info.mode) == ("PNG", 32, 32, "L")


def test_digits_pixels_match_source():
    from sklearn.datasets import load_digits

    d = load_digits()
    items = digits.digits_pngs()
    X = load_images([b for b, _ in items[:20]], size=8)
    # downscaled back to 8x8 the image correlates strongly with the source digit
    for i in range(20):
        a = X[i, 0].ravel()
        b = d.images[i].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.9
    assert np.allclose(X[:, 0], X[:, 1]) and np.allclose(X[:, 0], X[:, 2])


def test_write_digits(tmp_path):
    csv_path = digits.write_digits(tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1797
    assert rows[0]["filename"] == "digit_0000.png"
    first = (tmp_path / rows[0]["filename"]).read_bytes()
    assert first == digits.digits_pngs()[0][0]
    assert rows[5]["label_name"] == digits.DIGIT_LABELS[int(rows[5]["label"])]
    mtime = (tmp_path / "digit_0001.png").stat().st_mtime_ns
    digits.write_digits(tmp_path)  # idempotent: unchanged files are not rewritten
    assert (tmp_path / "digit_0001.png").stat().st_mtime_ns == mtime


def test_digit_labels():
    assert digits.DIGIT_LABELS == ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]


def test_spoken_digits_deterministic_prefix_and_cached(tmp_path):
    from fixtures import speech

    a = speech.spoken_digits(2, seed=0, cache_dir=tmp_path)
    assert [y for _, y in a] == list(range(10)) * 2
    assert len(list(tmp_path.glob("*.wav"))) == 20
    b = speech.spoken_digits(3, seed=0, cache_dir=tmp_path)
    assert b[:20] == a  # same bytes, and n=2 is a prefix of n=3
    c = speech.spoken_digits(2, seed=0, cache_dir=None)  # no cache: identical synthesis
    assert c == a
    d = speech.spoken_digits(2, seed=1, cache_dir=tmp_path)
    assert d != a


def test_spoken_digits_variety():
    from fixtures import speech

    plan = speech.speech_params(20, seed=0)
    assert len(plan) == 200
    for c in range(10):
        ps = [p for p, label, _ in plan if label == c]
        assert len(set(ps)) == 20  # no duplicate parameter sets within a class
        assert all(p.word == speech.SPOKEN_LABELS[c] for p in ps)
    assert len({p.voice for p, _, _ in plan}) >= 6
    assert len({p.speed for p, _, _ in plan}) >= 10
    assert speech.SPOKEN_LABELS[0] == "zero" and len(speech.SPOKEN_LABELS) == 10


def test_spoken_digits_are_distinct_words():
    from fixtures import speech
    from ml.modalities.audio import validate_audio

    items = speech.spoken_digits(1, seed=0)
    durations = [validate_audio(b).duration_s for b, _ in items]
    assert all(0.2 < d < 2.0 for d in durations)
    assert len({b for b, _ in items}) == 10


def test_write_spoken_digits(tmp_path):
    from fixtures import speech

    csv_path = speech.write_spoken_digits(tmp_path, n_per_class=1, seed=0)
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 10 and rows[3]["label_name"] == "three"
    assert (tmp_path / rows[3]["filename"]).read_bytes() == speech.spoken_digits(1, seed=0)[3][0]
