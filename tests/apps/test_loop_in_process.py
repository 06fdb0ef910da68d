"""The whole loop in one process (Celery eager), through the public API: the fast twin of tests/e2e."""
import pytest

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample
from tests.conftest import b64


@pytest.mark.slow
def test_loop_round_label_train_deploy_predict(api, lead, annotator, project, digits, django_capture_on_commit_callbacks):
    from apps.projects.services import project_update

    project_update(project=project, auto_deploy=True)
    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 300)
    truth = truth_by_sample(project, digits)
    c_lead = api(lead)
    with django_capture_on_commit_callbacks(execute=True):
        r = c_lead.post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 120, "strategy": "auto"}, format="json")
    assert r.status_code == 202, r.content
    rnd = c_lead.get(f"/api/v1/rounds/{r.json()['id']}/").json()
    assert rnd["status"] == "succeeded", rnd
    assert rnd["selected"] == 120 and rnd["strategy_used"].startswith("auto")
    assert [item["rank"] for item in rnd["items"]] == list(range(120))
    assert label_all_open(project, annotator, truth) == 120

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        r = c_lead.post(f"/api/v1/projects/{project.id}/training-runs/", {"epochs": 15}, format="json")
        assert r.status_code == 202, r.content
    run = c_lead.get(f"/api/v1/training-runs/{r.json()['id']}/").json()
    assert run["status"] == "succeeded", run
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 4
    assert run["message"] == "deployed by the gate"
    model = c_lead.get(f"/api/v1/models/{run['model']}/").json()
    assert model["eval_report"]["accuracy"] > 0.5
    assert model["parity"]["top1_agreement"] == 1.0
    assert c_lead.get(model["confusion_url"]).status_code == 200
    deployment = c_lead.get(f"/api/v1/projects/{project.id}/deployments/").json()
    assert deployment["model"] == run["model"] and deployment["reason"] == "gate"
    assert deployment["label_to_serving_s"] is not None

    png, label = digits[1500]
    r = c_lead.post(f"/api/v1/projects/{project.id}/predict/", {"content": b64(png)}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["model"] == run["model"] and set(body["scores"]) == set(project.labels)
    assert abs(sum(body["scores"].values()) - 1.0) < 1e-3
