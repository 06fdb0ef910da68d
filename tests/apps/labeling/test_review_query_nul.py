"""A NUL in the annotator filter is a 422, not a 500 (PostgreSQL text cannot hold NUL; found by
tests/apps/test_api_fuzz.py)."""


def test_nul_in_the_annotator_filter_is_refused(api, lead, project):
    r = api(lead).get(f"/api/v1/projects/{project.id}/annotations/", {"annotator": "ann\x002"})
    assert r.status_code == 422, r.content
    assert r.json()["error"]["code"] == "invalid_filter"
    assert api(lead).get(f"/api/v1/projects/{project.id}/annotations/", {"annotator": "ann2"}).status_code == 200
