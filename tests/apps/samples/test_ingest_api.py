import io

import pytest
from PIL import Image

from tests.conftest import b64


def _png(w=8, h=8, color=0) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def test_push_batch_creates_dedups_and_splits(api, lead, project, digits, django_capture_on_commit_callbacks):
    samples = [{"external_id": f"d{i}", "content": b64(png), "metadata": {"source": "digits", "n": i}}
               for i, (png, _) in enumerate(digits[:20])]
    samples.append(dict(samples[0], external_id="again"))
    with django_capture_on_commit_callbacks(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": samples}, format="json")
    assert r.status_code == 201, r.content
    out = r.json()["samples"]
    assert [s["external_id"] for s in out] == [s["external_id"] for s in samples]
    assert [s["status"] for s in out].count("created") == 20
    assert out[-1]["status"] == "duplicate" and out[-1]["id"] == out[0]["id"]
    assert {s["split"] for s in out} <= {"train", "val", "test"}
    # Embeddings were computed by the (eager) Celery task enqueued on commit.
    r = api(lead).get(f"/api/v1/samples/{out[0]['id']}/")
    assert r.json()["has_embedding"] is True
    # The same content pushed again keeps its split.
    r2 = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": samples[:3]}, format="json")
    assert [s["split"] for s in r2.json()["samples"]] == [s["split"] for s in out[:3]]
    assert {s["status"] for s in r2.json()["samples"]} == {"duplicate"}


def test_metadata_filter(api, lead, project, digits):
    samples = [{"external_id": f"d{i}", "content": b64(png), "metadata": {"time_of_day": "night" if i % 3 == 0 else "day"}}
               for i, (png, _) in enumerate(digits[:9])]
    api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": samples}, format="json")
    r = api(lead).get(f"/api/v1/projects/{project.id}/samples/?metadata.time_of_day=night")
    assert r.status_code == 200
    assert sorted(s["external_id"] for s in r.json()["results"]) == ["d0", "d3", "d6"]


def _assert_error(r, status, code=None):
    assert r.status_code == status, r.content
    body = r.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code, body


@pytest.mark.parametrize("name,payload,status,code", [
    ("not an image", b"hello, this is text", 422, "unsupported_format"),
    ("truncated png", "TRUNCATED", 422, "corrupt_data"),
    ("pixel bomb", "BOMB", 413, "too_large"),
])
def test_bad_content_is_rejected_and_nothing_stored(api, lead, project, digits, name, payload, status, code):
    from apps.samples.models import Sample

    if payload == "TRUNCATED":
        payload = digits[0][0][: len(digits[0][0]) // 2]
    elif payload == "BOMB":
        buf = io.BytesIO()
        Image.new("1", (20000, 20000)).save(buf, format="PNG")
        payload = buf.getvalue()
    batch = [{"external_id": "good", "content": b64(digits[1][0])}, {"external_id": "bad", "content": b64(payload)}]
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": batch}, format="json")
    _assert_error(r, 422, "invalid_samples")
    assert r.json()["error"]["details"]["errors"][0]["index"] == 1
    assert r.json()["error"]["details"]["errors"][0]["code"] == code
    assert Sample.objects.filter(project=project).count() == 0


def test_malformed_json(api, lead, project):
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", data='{"samples": [', content_type="application/json")
    _assert_error(r, 400, "malformed_request")


def test_oversized_batch(api, lead, project, settings):
    from apps.samples.models import Sample

    settings.LOOPLAB = dict(settings.LOOPLAB, MAX_BATCH=5)
    batch = [{"external_id": str(i), "uri": f"s3://bucket/data/{i}.png"} for i in range(6)]
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": batch}, format="json")
    _assert_error(r, 413, "batch_too_large")
    assert Sample.objects.count() == 0


def test_bad_base64_and_missing_content(api, lead, project):
    batch = [{"external_id": "a", "content": "***"}, {"external_id": "b"}]
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": batch}, format="json")
    _assert_error(r, 422, "invalid_samples")


def test_multipart_single_upload(api, lead, project, digits):
    png = digits[5][0]
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                       {"file": io.BytesIO(png), "external_id": "one", "metadata": '{"camera": "a"}'}, format="multipart")
    assert r.status_code == 201, r.content
    sample = r.json()["samples"][0]
    assert sample["status"] == "created"
    r = api(lead).get(f"/api/v1/samples/{sample['id']}/content/")
    assert r.status_code == 200 and r.content == png and r["Content-Type"] == "image/png"


def test_idempotency_key_replays_and_conflicts(api, lead, project, digits):
    from apps.samples.models import Sample

    body = {"samples": [{"external_id": "x", "content": b64(digits[0][0])}]}
    c = api(lead)
    r1 = c.post(f"/api/v1/projects/{project.id}/samples/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    r2 = c.post(f"/api/v1/projects/{project.id}/samples/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert r1.status_code == r2.status_code == 201
    assert r1.json() == r2.json() and r1.json()["samples"][0]["status"] == "created"
    assert r2["Idempotent-Replayed"] == "true"
    other = {"samples": [{"external_id": "y", "content": b64(digits[1][0])}]}
    r3 = c.post(f"/api/v1/projects/{project.id}/samples/", other, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    _assert_error(r3, 409, "idempotency_key_reused")
    assert Sample.objects.filter(project=project).count() == 1


def test_content_supports_range_requests(api, lead, project, digits):
    png = digits[7][0]
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": [{"content": b64(png)}]}, format="json")
    url = f"/api/v1/samples/{r.json()['samples'][0]['id']}/content/"
    c = api(lead)
    part = c.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and part.content == png[10:20]
    assert part["Content-Range"] == f"bytes 10-19/{len(png)}"
    assert c.get(url, HTTP_RANGE="bytes=-5").content == png[-5:]
    assert c.get(url, HTTP_RANGE=f"bytes={len(png) + 5}-").status_code == 416
    assert c.get(url).content == png


def test_long_audio_only_for_region_projects(api, lead):
    import numpy as np
    import soundfile as sf

    from apps.projects.services import project_create

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    sf.write(buf, (0.1 * rng.standard_normal(16000 * 40)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    wav = b64(buf.getvalue())
    clips = project_create(user=lead, name="clips", modality="audio", labels=["a", "b"])
    long_ = project_create(user=lead, name="long", modality="audio", task_type="audio_regions", labels=["a", "b"])
    r = api(lead).post(f"/api/v1/projects/{clips.id}/samples/", {"samples": [{"content": wav}]}, format="json")
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["code"] == "too_large"
    r = api(lead).post(f"/api/v1/projects/{long_.id}/samples/", {"samples": [{"content": wav}]}, format="json")
    assert r.status_code == 201, r.content
    sample = api(lead).get(f"/api/v1/samples/{r.json()['samples'][0]['id']}/").json()
    assert abs(sample["content_info"]["duration_s"] - 40.0) < 0.01


@pytest.mark.parametrize("item", [
    {"external_id": "a\x00b", "uri": "s3://b/x.png"},
    {"uri": "s3://b/x\x00.png"},
    {"uri": "s3://b/y.png", "metadata": {"k": "v\x00"}},
    {"uri": "s3://b/z.png", "metadata": {"k\x00": 1}},
])
def test_nul_characters_are_422_not_500(api, lead, project, item):
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"samples": [item]}, format="json")
    _assert_error(r, 422, "invalid_samples")


def test_multipart_retry_with_the_same_key_replays(api, lead, project, digits):
    png = digits[9][0]
    c = api(lead)
    bodies = []
    for _ in range(2):  # each multipart request gets its own random boundary
        r = c.post(f"/api/v1/projects/{project.id}/samples/", {"file": io.BytesIO(png), "external_id": "m"},
                   format="multipart", HTTP_IDEMPOTENCY_KEY="upload-1")
        assert r.status_code == 201, r.content
        bodies.append(r.json())
    assert bodies[0] == bodies[1] and r["Idempotent-Replayed"] == "true"
