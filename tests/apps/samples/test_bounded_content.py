"""Bombs that skip ingest validation (file:// references) meet the same caps where the worker and the
audio tool decode them: embedding records an error, peaks answer 409, and memory stays small."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fixtures import bombs

MB = 1 << 20


@pytest.fixture
def region_project(lead, settings, tmp_path):
    from apps.projects.services import project_create

    settings.LOOPLAB = {**settings.LOOPLAB, "URI_ROOTS": [str(tmp_path)]}
    return project_create(user=lead, name="recordings", modality="audio", task_type="audio_regions", labels=["a"])


def _ingest(project, path, external_id):
    from apps.samples.models import Sample
    from apps.samples.services import IngestItem, samples_ingest

    out = samples_ingest(project=project, items=[IngestItem(external_id=external_id, uri=path.as_uri())])
    return Sample.objects.get(pk=out[0]["id"])


def test_file_uri_bomb_is_refused_where_it_is_decoded(api, lead, region_project, tmp_path):
    import soundfile as sf

    from apps.samples.services import samples_features

    # the file: 2 h of 16 kHz silence in 363 KB (115 M samples, 2x LOOPLAB_MAX_AUDIO_SAMPLES)
    bomb = tmp_path / "bomb.flac"
    bomb.write_bytes(bombs.cached("silence-16k-1ch-7200s.flac",
                                  lambda: bombs.flac_silence(frames=16000 * 7200, sample_rate=16000, channels=1)))
    ok = tmp_path / "ok.wav"
    t = np.arange(16000 * 20) / 16000
    sf.write(ok, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000, subtype="PCM_16")
    bomb_sample, ok_sample = _ingest(region_project, bomb, "bomb"), _ingest(region_project, ok, "ok")

    samples_features(project=region_project, samples=[ok_sample])  # warm up imports and caches
    tracemalloc.start()
    try:
        good, X, _ = samples_features(project=region_project, samples=[bomb_sample, ok_sample])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [s.pk for s in good] == [ok_sample.pk] and X.shape[0] == 1
    bomb_sample.refresh_from_db()
    assert "more than the limit of 57600000" in bomb_sample.embed_error
    assert peak < 20 * MB, peak  # decoded whole, the bomb alone is 460 MB of float32

    r = api(lead).get(f"/api/v1/samples/{bomb_sample.pk}/peaks/")
    assert r.status_code == 409, r.content
    assert r.json()["error"]["code"] == "too_large"
    assert r.json()["error"]["details"]["max_samples"] == 57_600_000
    assert api(lead).get(f"/api/v1/samples/{ok_sample.pk}/peaks/").status_code == 200


def test_oversized_file_uri_is_not_read_whole(lead, region_project, tmp_path, settings):
    from apps.samples import content as content_io

    path = tmp_path / "huge.wav"
    with open(path, "wb") as fh:
        fh.truncate(4096 + 1)  # sparse: the size is what matters
    sample = _ingest(region_project, path, "huge")
    settings.LOOPLAB = {**settings.LOOPLAB, "MAX_CONTENT_BYTES": 4096}
    with pytest.raises(content_io.ContentUnavailable, match="LOOPLAB_MAX_CONTENT_BYTES"):
        content_io.read_content(sample)


@pytest.mark.parametrize("fmt", ["ply", "pcd"])
def test_ascii_intensity_is_read_row_by_row(fmt):
    from apps.samples.points import points_decode

    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(500, 3))
    intensity = rng.uniform(10, 20, size=500)
    rows = "".join(f"{x:.6f} {y:.6f} {z:.6f} {i:.4f}\n" for (x, y, z), i in zip(xyz, intensity))
    if fmt == "ply":
        head = ("ply\nformat ascii 1.0\nelement vertex 500\nproperty float x\nproperty float y\nproperty float z\n"
                "property float intensity\nend_header\n")
    else:
        head = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
                "WIDTH 500\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 500\nDATA ascii\n")
    arrays = points_decode((head + rows).encode())
    assert arrays.channels == "xyzi" and arrays.n_points == 500
    expected = (intensity - intensity.min()) / (intensity.max() - intensity.min())
    assert np.allclose(arrays.data[:, 3], expected, atol=1e-4)
    assert np.allclose(arrays.data[:, :3], xyz, atol=1e-5)
