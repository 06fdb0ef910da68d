"""GET /api/v1/samples/{id}/points.bin: every stored point as little-endian float32, members only."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import b64


@pytest.fixture
def cloud_project(lead, annotator):
    from apps.projects.services import membership_set, project_create

    p = project_create(user=lead, name="lamps", modality="pointcloud", task_type="point_segmentation",
                       labels=["base", "pole", "shade"], label_budget=100)
    membership_set(project=p, user=annotator, role="annotator")
    return p


def _push(api, lead, project, blobs):
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                       {"samples": [{"external_id": f"c{i}", "content": b64(b)} for i, b in enumerate(blobs)]}, format="json")
    assert r.status_code == 201, r.content
    return [s["id"] for s in r.json()["samples"]]


def _ply_with_intensity(xyz: np.ndarray, intensity: np.ndarray) -> bytes:
    rows = np.zeros(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4")])
    rows["x"], rows["y"], rows["z"], rows["intensity"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], intensity
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(xyz)}\nproperty float x\nproperty float y\n"
              "property float z\nproperty float intensity\nend_header\n").encode()
    return header + rows.tobytes()


def test_points_bin_matches_the_reader(api, lead, annotator, outsider, cloud_project):
    from fixtures.shapes import encode_points, part_shapes
    from ml.modalities.pointcloud import read_points

    clouds = [pts for pts, _ in part_shapes(2, seed=3, n_points=1500)]
    blobs = [encode_points(clouds[0], "ply"), encode_points(clouds[1][:700], "pcd")]
    ids = _push(api, lead, cloud_project, blobs)
    for sample_id, blob in zip(ids, blobs):
        expected = read_points(blob).astype(np.float32)
        for user in (annotator, lead):
            for _ in range(2):  # second call comes from the cache next to the content
                r = api(user).get(f"/api/v1/samples/{sample_id}/points.bin")
                assert r.status_code == 200, r.content
                assert r["Content-Type"] == "application/octet-stream"
                assert int(r["X-Point-Count"]) == len(expected) and int(r["X-Point-Stride"]) == 3
                assert r["X-Point-Channels"] == "xyz"
                got = np.frombuffer(r.content, dtype="<f4").reshape(-1, 3)
                np.testing.assert_array_equal(got, expected)
        # the count agrees with what the annotation validator checks
        assert api(lead).get(f"/api/v1/samples/{sample_id}/").json()["content_info"]["n_points"] == len(expected)

    # non-members learn nothing; anonymous callers are refused
    r = api(outsider).get(f"/api/v1/samples/{ids[0]}/points.bin")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api().get(f"/api/v1/samples/{ids[0]}/points.bin").status_code in (401, 403)
    assert api(lead).get("/api/v1/samples/999999/points.bin").status_code == 404


def test_intensity_channel(api, lead, cloud_project):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(500, 3)).astype(np.float32)
    intensity = rng.uniform(10, 90, size=500).astype(np.float32)
    (sample_id,) = _push(api, lead, cloud_project, [_ply_with_intensity(xyz, intensity)])
    r = api(lead).get(f"/api/v1/samples/{sample_id}/points.bin")
    assert r.status_code == 200 and r["X-Point-Stride"] == "4" and r["X-Point-Channels"] == "xyzi"
    got = np.frombuffer(r.content, dtype="<f4").reshape(-1, 4)
    np.testing.assert_allclose(got[:, :3], xyz, atol=1e-6)
    np.testing.assert_allclose(got[:, 3], (intensity - intensity.min()) / (intensity.max() - intensity.min()), atol=1e-5)


def test_not_a_point_cloud(api, lead, project, digits):
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                       {"samples": [{"external_id": "d0", "content": b64(digits[0][0])}]}, format="json")
    sample_id = r.json()["samples"][0]["id"]
    r = api(lead).get(f"/api/v1/samples/{sample_id}/points.bin")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_a_point_cloud"


def test_ingest_warms_the_point_cache(api, lead, django_capture_on_commit_callbacks):
    """The embedding job decodes clouds for the 3D tool, so the first open is a cache hit."""
    import base64

    from django.core.files.storage import default_storage

    from apps.projects.services import project_create
    from apps.samples.models import Sample
    from apps.samples.points import _cache_name
    from fixtures.shapes import shapes

    project = project_create(user=lead, name="warm", modality="pointcloud", task_type="point_segmentation",
                             labels=["a", "b"])
    ply = shapes(1)[0][0]
    with django_capture_on_commit_callbacks(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                           {"samples": [{"content": base64.b64encode(ply).decode()}]}, format="json")
    sample = Sample.objects.get(pk=r.json()["samples"][0]["id"])
    assert default_storage.exists(_cache_name(sample))
