"""The permission matrix: annotators cannot start rounds, training or deployments; non-members get 404."""
import pytest

from tests.apps.helpers import push_digits


@pytest.fixture
def loaded(project, digits):
    push_digits(project, digits, 12)
    return project


def _ids(project):
    from apps.samples.models import Sample

    return Sample.objects.filter(project=project).values_list("id", flat=True)[0]


@pytest.mark.parametrize("method,path,body", [
    ("post", "/api/v1/projects/{p}/rounds/", {"budget": 2}),
    ("post", "/api/v1/projects/{p}/training-runs/", {}),
    ("post", "/api/v1/projects/{p}/deployments/", {"model": 1}),
    ("post", "/api/v1/projects/{p}/samples/", {"samples": [{"uri": "s3://bucket/x.png"}]}),
    ("post", "/api/v1/projects/{p}/members/", {"username": "annotator", "role": "admin"}),
    ("patch", "/api/v1/projects/{p}/", {"label_budget": 10**6}),
])
def test_annotator_is_refused_lead_operations(api, annotator, loaded, method, path, body):
    from apps.labeling.models import Round

    r = getattr(api(annotator), method)(path.format(p=loaded.id), body, format="json")
    assert r.status_code == 403, r.content
    assert r.json()["error"]["code"] == "permission_denied"
    assert Round.objects.count() == 0


def test_annotator_cannot_create_projects(api, annotator):
    r = api(annotator).post("/api/v1/projects/", {"name": "x", "modality": "image", "labels": ["a", "b"]}, format="json")
    assert r.status_code == 403


def test_non_member_gets_404_everywhere(api, outsider, loaded, lead):
    sample_id = _ids(loaded)
    c = api(outsider)
    paths = [
        ("get", f"/api/v1/projects/{loaded.id}/"), ("patch", f"/api/v1/projects/{loaded.id}/"),
        ("get", f"/api/v1/projects/{loaded.id}/members/"), ("post", f"/api/v1/projects/{loaded.id}/members/"),
        ("get", f"/api/v1/projects/{loaded.id}/samples/"), ("post", f"/api/v1/projects/{loaded.id}/samples/"),
        ("get", f"/api/v1/samples/{sample_id}/"), ("get", f"/api/v1/samples/{sample_id}/content/"),
        ("get", f"/api/v1/samples/{sample_id}/similar/"),
        ("get", f"/api/v1/projects/{loaded.id}/rounds/"), ("post", f"/api/v1/projects/{loaded.id}/rounds/"),
        ("post", f"/api/v1/projects/{loaded.id}/tasks/next/"),
        ("get", f"/api/v1/projects/{loaded.id}/training-runs/"), ("post", f"/api/v1/projects/{loaded.id}/training-runs/"),
        ("get", f"/api/v1/projects/{loaded.id}/models/"),
        ("get", f"/api/v1/projects/{loaded.id}/deployments/"), ("post", f"/api/v1/projects/{loaded.id}/deployments/"),
        ("post", f"/api/v1/projects/{loaded.id}/predict/"),
    ]
    for method, path in paths:
        r = getattr(c, method)(path, {}, format="json")
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "not_found"
    assert c.get("/api/v1/projects/").json() == []


def test_non_member_404_on_objects_of_the_project(api, outsider, annotator, loaded, django_capture_on_commit_callbacks):
    from apps.labeling.services import round_create, task_lease_next
    from apps.projects.models import Membership

    lead = Membership.objects.get(project=loaded, role="admin").user
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=loaded, user=lead, budget=3, strategy="random")
    task = task_lease_next(project=loaded, user=annotator)
    c = api(outsider)
    for method, path in [("get", f"/api/v1/rounds/{rnd.id}/"), ("post", f"/api/v1/tasks/{task.id}/skip/"),
                         ("post", f"/api/v1/tasks/{task.id}/annotations/")]:
        r = getattr(c, method)(path, {"result": {"label": "1"}}, format="json")
        assert r.status_code == 404, (path, r.content)


def test_unauthenticated_is_401(api, loaded):
    r = api().get(f"/api/v1/projects/{loaded.id}/")
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"


def test_unknown_api_path_is_json_404(client):
    r = client.get("/api/v1/nothing-here/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
