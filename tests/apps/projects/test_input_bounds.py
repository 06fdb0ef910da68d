"""Numbers beyond what the database column holds are a 400 in the error shape, not a 500 (found by
tests/apps/test_api_fuzz.py: a label budget of 38,491,054,015 overflowed PostgreSQL's integer)."""
import pytest


@pytest.mark.parametrize("budget", [2**31, 38491054015, 10**40])
def test_a_label_budget_past_32_bits_is_refused(api, lead, project, budget):
    r = api(lead).post("/api/v1/projects/", {"name": "big", "modality": "image", "labels": ["a", "b"],
                                             "label_budget": budget}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "validation_error"
    r = api(lead).patch(f"/api/v1/projects/{project.id}/", {"label_budget": budget}, format="json")
    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "validation_error"


def test_the_largest_label_budget_is_kept(api, lead, project):
    r = api(lead).patch(f"/api/v1/projects/{project.id}/", {"label_budget": 2**31 - 1}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["label_budget"] == 2**31 - 1


@pytest.mark.parametrize("path,body", [
    ("rounds/", {"budget": 2**40, "strategy": "random"}),
    ("training-runs/", {"epochs": 2**40}),
])
def test_huge_numbers_on_job_posts_are_4xx(api, lead, project, path, body):
    """The fuzz test leaves these POSTs out (they start work); their numbers are checked here."""
    r = api(lead).post(f"/api/v1/projects/{project.id}/{path}", body, format="json")
    assert 400 <= r.status_code < 500, r.content
    assert set(r.json()) == {"error"}
