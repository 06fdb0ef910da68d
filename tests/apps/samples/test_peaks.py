"""Waveform peaks and spectrogram endpoints for the audio tool: values, cache, access, errors."""
from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest

from tests.conftest import b64
from tests.ml.modalities.spectrogram_reference import direct_spectrogram as _direct_spectrogram

WORDS = ["three", "seven", "one", "four"]


@pytest.fixture(scope="module")
def clip():
    from fixtures.speech import espeak_available
    from fixtures.speech_clips import spoken_clip

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    return spoken_clip(WORDS)


@pytest.fixture
def audio_project(lead, annotator):
    from apps.projects.services import membership_set, project_create

    p = project_create(user=lead, name="spoken", modality="audio", task_type="audio_regions",
                       labels=["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
                       label_budget=100)
    membership_set(project=p, user=annotator, role="annotator")
    return p


def _push(api, lead, project, blob, external_id="clip"):
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                       {"samples": [{"external_id": external_id, "content": b64(blob)}]}, format="json")
    assert r.status_code == 201, r.content
    return r.json()["samples"][0]["id"]


def _decode(blob):
    import soundfile as sf

    y, sr = sf.read(io.BytesIO(blob), dtype="float32", always_2d=True)
    return y, sr


def test_peaks_match_numpy_and_are_cached(api, lead, annotator, audio_project, clip):
    blob, _ = clip
    sample_id = _push(api, lead, audio_project, blob)
    y, sr = _decode(blob)

    client = api(annotator)
    r = client.get(f"/api/v1/samples/{sample_id}/peaks/?buckets=500")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["cached"] is False
    assert body["sample_rate"] == sr and body["channels"] == 1 and body["frames"] == len(y)
    assert body["duration_s"] == pytest.approx(len(y) / sr)
    spb = body["samples_per_bucket"]
    assert spb & (spb - 1) == 0, "a power of two"
    assert math.ceil(len(y) / spb) <= 500 < math.ceil(len(y) / (spb // 2))  # the finest level within the budget
    n = math.ceil(len(y) / spb)
    assert body["buckets"] == n and len(body["peaks"]) == 2 * n
    padded = np.concatenate([y[:, 0], np.full(n * spb - len(y), np.nan, np.float32)]).reshape(n, spb)
    expected = np.stack([np.nanmin(padded, axis=1), np.nanmax(padded, axis=1)], axis=1).reshape(-1)
    np.testing.assert_allclose(body["peaks"], expected, atol=1e-5)

    # Second call: from the cache next to the content (same numbers, no decoding).
    started = time.perf_counter()
    again = client.get(f"/api/v1/samples/{sample_id}/peaks/?buckets=500")
    elapsed = time.perf_counter() - started
    assert again.json()["cached"] is True and again.json()["peaks"] == body["peaks"]
    assert elapsed < 0.5
    from django.core.files.storage import default_storage

    from apps.samples.models import Sample

    sample = Sample.objects.get(pk=sample_id)
    folder = sample.file.name.rsplit("/", 1)[0]
    names = default_storage.listdir(folder)[1]
    assert f"{sample.content_hash}.peaks-v1-{spb}.npz" in names

    # The compact binary: int16 min/max interleaved, metadata in headers.
    rb = client.get(f"/api/v1/samples/{sample_id}/peaks/?buckets=500&encoding=int16")
    assert rb.status_code == 200 and rb["Content-Type"] == "application/octet-stream"
    assert int(rb["X-Peaks-Buckets"]) == n and int(rb["X-Peaks-Samples-Per-Bucket"]) == spb
    assert float(rb["X-Peaks-Duration"]) == pytest.approx(len(y) / sr)
    values = np.frombuffer(rb.content, dtype="<i2").astype(np.float32) / 32767
    np.testing.assert_allclose(values, expected, atol=1.5 / 32767)

    # A budget above the frame count gives one bucket per frame.
    fine = client.get(f"/api/v1/samples/{sample_id}/peaks/?buckets=524288&encoding=int16")
    assert int(fine["X-Peaks-Samples-Per-Bucket"]) == 1


def test_block_decoding_matches_whole_file_for_stereo():
    """Blocks never split a bucket; channels are enveloped (min/max over all of them)."""
    import soundfile as sf

    from ml.modalities.audio_view import compute_peaks

    rng = np.random.default_rng(1)
    y = (rng.standard_normal((30_001, 2)) * 0.2).clip(-1, 1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, 8000, format="WAV", subtype="FLOAT")
    for spb, block in [(64, 1000), (1, 777), (4096, 5000)]:
        buf.seek(0)
        with sf.SoundFile(buf) as sound:
            data, frames = compute_peaks(sound, spb, block_frames=block)
        assert frames == len(y)
        ref = np.array([[y[i:i + spb].min(), y[i:i + spb].max()] for i in range(0, len(y), spb)], np.float32)
        np.testing.assert_array_equal(data, ref)
    # 16-bit PCM takes the int16 path: the same numbers as decoding to float32 first.
    buf16 = io.BytesIO()
    sf.write(buf16, y, 8000, format="WAV", subtype="PCM_16")
    buf16.seek(0)
    y16, _ = sf.read(buf16, dtype="float32", always_2d=True)
    for spb in (1, 3, 16, 1024):
        buf16.seek(0)
        with sf.SoundFile(buf16) as sound:
            data, _ = compute_peaks(sound, spb, block_frames=4096)
        ref = np.array([[y16[i:i + spb].min(), y16[i:i + spb].max()] for i in range(0, len(y16), spb)], np.float32)
        np.testing.assert_array_equal(data, ref)


def test_mel_filterbank_is_librosas_htk():
    librosa = pytest.importorskip("librosa")
    from ml.modalities.audio_view import spectrogram_filterbank as mel_filterbank

    ours = mel_filterbank(16000, 512, 80)
    theirs = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=0.0, fmax=8000.0, htk=True, norm="slaney")
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


def test_spectrogram_matches_numpy_and_is_cached(api, lead, annotator, audio_project, clip):
    import soundfile as sf
    from PIL import Image

    from apps.samples.models import Sample
    from apps.samples.peaks import sample_spectrogram
    from ml.modalities.audio_view import compute_spectrogram

    blob, _ = clip
    sample_id = _push(api, lead, audio_project, blob)
    y, sr = _decode(blob)

    # The streamed computation equals the whole-array definition, also with tiny blocks.
    for width, block in [(120, 10_000), (4000, 1 << 20), (700, 3000), (40, 5000)]:
        with sf.SoundFile(io.BytesIO(blob)) as sound:
            db, n_fft, hop, n_frames, frames = compute_spectrogram(sound, width=width, n_mels=64, block_frames=block)
        direct = _direct_spectrogram(y, sr, width, 64)
        assert db.shape == direct.shape == (64, min(width, n_frames))
        np.testing.assert_allclose(db, direct, atol=0.05)
    sample = Sample.objects.get(pk=sample_id)
    spec = sample_spectrogram(sample=sample, width=300, n_mels=64)
    assert not spec.cached and spec.db.shape == (64, 300)
    assert sample_spectrogram(sample=sample, width=300, n_mels=64).cached

    client = api(annotator)
    r = client.get(f"/api/v1/samples/{sample_id}/spectrogram.png?width=256")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["X-Spectrogram-Cached"] == "false"
    image = Image.open(io.BytesIO(r.content))
    assert image.size == (256, 80) and image.mode == "RGB"
    assert float(r["X-Spectrogram-Span"]) == pytest.approx(len(y) / sr, abs=0.04)
    # Loud rows (speech energy, low bands) are brighter than the top band during a word.
    pixels = np.asarray(image).astype(int).sum(axis=2)
    assert pixels[-20:].mean() > pixels[:5].mean()
    again = client.get(f"/api/v1/samples/{sample_id}/spectrogram.png?width=256")
    assert again["X-Spectrogram-Cached"] == "true" and again.content == r.content


def test_access_and_errors(api, lead, outsider, annotator, audio_project, project, clip, digits):
    from tests.apps.helpers import push_digits

    blob, _ = clip
    sample_id = _push(api, lead, audio_project, blob)
    for url in (f"/api/v1/samples/{sample_id}/peaks/", f"/api/v1/samples/{sample_id}/spectrogram.png"):
        r = api(outsider).get(url)
        assert r.status_code == 404, (url, r.content)
        assert r.json()["error"]["code"] == "not_found"
        assert api().get(url).status_code in (401, 403)
        assert api(lead).get(url).status_code == 200

    image_id = push_digits(project, digits, 1)[0]["id"]
    for url in (f"/api/v1/samples/{image_id}/peaks/", f"/api/v1/samples/{image_id}/spectrogram.png"):
        r = api(lead).get(url)
        assert r.status_code == 409, r.content
        assert r.json()["error"]["code"] == "not_audio"
        assert "audio" in r.json()["error"]["message"]

    for query, code in [("buckets=0", "invalid_buckets"), ("buckets=abc", "invalid_buckets"),
                        ("buckets=99999999", "invalid_buckets"), ("encoding=xml", "invalid_encoding")]:
        r = api(annotator).get(f"/api/v1/samples/{sample_id}/peaks/?{query}")
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (query, r.content)
    r = api(annotator).get(f"/api/v1/samples/{sample_id}/spectrogram.png?width=3")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_width"
    assert api(annotator).get("/api/v1/samples/999999/peaks/").status_code == 404


def test_long_uri_sample_streams_in_blocks(lead, audio_project, tmp_path, settings):
    """A sample referenced by file:// (how hour-long audio is ingested: past the push size limit)
    is read from disk block by block; duration comes from the header."""
    import soundfile as sf

    from apps.samples.models import Sample
    from apps.samples.peaks import sample_peaks
    from apps.samples.services import IngestItem, samples_ingest

    settings.LOOPLAB = {**settings.LOOPLAB, "URI_ROOTS": [str(tmp_path)]}
    rng = np.random.default_rng(2)
    y = (rng.standard_normal(16000 * 90) * 0.05).astype(np.float32)
    y[16000 * 45] = 0.9
    path = tmp_path / "long.wav"
    sf.write(path, y, 16000, subtype="PCM_16")
    out = samples_ingest(project=audio_project, items=[IngestItem(external_id="long", uri=path.as_uri())])
    sample = Sample.objects.get(pk=out[0]["id"])
    peaks = sample_peaks(sample=sample, buckets=1000)
    assert peaks.frames == len(y) and peaks.duration_s == pytest.approx(90.0)
    assert peaks.buckets <= 1000
    top = int(np.argmax(peaks.data[:, 1]))
    assert top == (16000 * 45) // peaks.samples_per_bucket
    assert peaks.data[top, 1] == pytest.approx(0.9, abs=1e-4)
