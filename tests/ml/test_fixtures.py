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


def test_shapes_deterministic_prefix_and_loadable():
    from fixtures import shapes
    from ml.modalities.pointcloud import load_points_batch, validate_points

    a = shapes.shapes(2, seed=0, n_points=512)
    assert len(a) == 2 * len(shapes.SHAPE_LABELS)
    assert [y for _, y in a] == list(range(8)) * 2
    assert shapes.shapes(1, seed=0, n_points=512) == a[:8]
    assert shapes.shapes(1, seed=1, n_points=512) != a[:8]
    info = validate_points(a[0][0])
    assert info.format == "PLY" and info.n_points == 512
    X = load_points_batch([b for b, _ in a], n_points=256)
    assert X.shape == (16, 256, 3) and np.isfinite(X).all()


@pytest.mark.parametrize("fmt", ["pcd", "xyz"])
def test_shapes_other_formats(fmt):
    from fixtures import shapes
    from ml.modalities.pointcloud import read_points

    data, label = shapes.shapes(1, seed=0, n_points=256, fmt=fmt)[3]
    assert label == 3
    ref = shapes.shapes_points(1, seed=0, n_points=256)[3][0]
    assert np.allclose(read_points(data), ref, atol=1e-5)


def test_shapes_geometry_is_class_specific():
    from fixtures import shapes

    rng = np.random.default_rng(0)
    sphere = shapes.shape_points("sphere", rng, 2048, occlusion=False)
    c = sphere - sphere.mean(axis=0)
    r = np.linalg.norm(c, axis=1)
    assert r.std() / r.mean() < 0.1  # points lie on a (slightly squashed) sphere
    box = shapes.shape_points("box", np.random.default_rng(1), 2048, occlusion=False)
    # a box surface: locally planar -> PCA of small neighbourhoods is flat
    from scipy.spatial import cKDTree

    _, nn = cKDTree(box).query(box[:200], k=12)
    nb = box[nn] - box[nn].mean(axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(np.einsum("qki,qkj->qij", nb, nb))
    assert np.median(ev[:, 0] / ev.sum(axis=1)) < 0.05
    occluded = shapes.shape_points("sphere", np.random.default_rng(0), 2048, occlusion=True)

    def cap_imbalance(P):
        # least-squares sphere centre, then the norm of the mean direction from it:
        # ~0 for a whole sphere, clearly positive when a cap was cut away
        A = np.c_[2 * P, np.ones(len(P))]
        sol, *_ = np.linalg.lstsq(A, (P**2).sum(axis=1), rcond=None)
        d = P - sol[:3]
        return np.linalg.norm((d / np.linalg.norm(d, axis=1, keepdims=True)).mean(axis=0))

    assert cap_imbalance(sphere) < 0.05
    assert cap_imbalance(occluded) > 0.08
    with pytest.raises(ValueError):
        shapes.shape_points("dodecahedron", rng)


def test_part_shapes():
    from fixtures import shapes

    parts = shapes.part_shapes(4, seed=0, n_points=1024)
    assert len(parts) == 4
    assert parts[0][0].shape == (1024, 3) and parts[0][1].shape == (1024,)
    assert np.array_equal(parts[1][0], shapes.part_shapes(2, seed=0, n_points=1024)[1][0])
    for pts, lab in parts:
        assert pts.dtype == np.float32 and lab.dtype == np.int64
        counts = np.bincount(lab, minlength=3)
        assert (counts >= 0.05 * 1024).all() and counts.sum() == 1024
        z = [pts[lab == i, 2].mean() for i in range(3)]
        assert z[0] < z[1] < z[2]  # base below pole below shade (z is up)
    assert shapes.PART_LABELS == ["base", "pole", "shade"]


def test_write_shapes(tmp_path):
    from fixtures import shapes

    csv_path = shapes.write_shapes(tmp_path, n_per_class=1, n_points=128)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["label_name"] for r in rows] == shapes.SHAPE_LABELS
    assert (tmp_path / rows[0]["filename"]).read_bytes() == shapes.shapes(1, n_points=128)[0][0]


def test_label_lists_consistent():
    import fixtures
    from fixtures import build, digits, shapes, speech

    assert fixtures.DIGIT_LABELS == digits.DIGIT_LABELS == build.DIGIT_LABELS
    assert fixtures.SPOKEN_LABELS == speech.SPOKEN_LABELS == build.SPOKEN_LABELS
    assert fixtures.SHAPE_LABELS == shapes.SHAPE_LABELS == build.SHAPE_LABELS
    assert fixtures.PART_LABELS == shapes.PART_LABELS == build.PART_LABELS


def test_build_idempotent_and_deterministic(tmp_path, monkeypatch):
    from fixtures import build

    small = {
        "spoken_digits": {"n_per_class": 1, "seed": 0},
        "shapes": {"n_per_class": 1, "seed": 0, "n_points": 256},
        "parts": {"n": 2, "seed": 0, "n_points": 256},
    }
    monkeypatch.setattr(build, "DATASETS", small)
    logs = []
    first = build.build(tmp_path / "a", log=logs.append)
    assert {k: v["status"] for k, v in first.items()} == dict.fromkeys(small, "built")
    assert first["spoken_digits"]["n_files"] == 11 and first["shapes"]["n_files"] == 9
    assert first["parts"]["n_files"] == 5
    assert (tmp_path / "a" / "speech").is_dir()
    again = build.build(tmp_path / "a", log=logs.append)
    assert {k: v["status"] for k, v in again.items()} == dict.fromkeys(small, "up to date")
    # a damaged file is noticed and repaired
    victim = tmp_path / "a" / "shapes" / "box_000.ply"
    good = victim.read_bytes()
    victim.write_bytes(b"junk")
    repaired = build.build(tmp_path / "a", only=["shapes"], log=logs.append)
    assert repaired["shapes"]["status"] == "built" and victim.read_bytes() == good
    # a fresh directory gets byte-identical data
    other = build.build(tmp_path / "b", log=logs.append)
    assert all(other[k]["sha256"] == first[k]["sha256"] for k in small)
    assert any("up to date" in line for line in logs)
    with pytest.raises(ValueError):
        build.build(tmp_path / "c", only=["nope"], log=logs.append)


def test_stress_fixture_is_deterministic_balanced_and_hard():
    import io

    import numpy as np
    from PIL import Image

    from fixtures.stress import stress_items, stress_pngs

    a, b = stress_items(3, seed=0), stress_items(6, seed=0)
    assert [x[0] for x in a] == [x[0] for x in b[:30]]  # a per-class prefix of a larger draw, same bytes
    assert stress_items(3, seed=1)[0][0] != a[0][0]
    assert sorted(c for _, c in stress_pngs(3)) == sorted(list(range(10)) * 3)
    conditions = {m["condition"] for *_, m in b}
    assert conditions == {"dark", "blur", "plain"}
    dark = [np.asarray(Image.open(io.BytesIO(p))) for p, _, m in b if m["condition"] == "dark"]
    plain = [np.asarray(Image.open(io.BytesIO(p))) for p, _, m in b if m["condition"] == "plain"]
    assert dark[0].shape == (32, 32, 3)
    assert np.mean([d.std() for d in dark]) < 0.5 * np.mean([p.std() for p in plain])  # the low-contrast quarter
