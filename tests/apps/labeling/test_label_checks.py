"""Label checks: the label-quality findings as a background job with progress, and the review loop they feed."""
import pytest

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample


@pytest.fixture
def noisy_labels(lead, annotator, project, digits, django_capture_on_commit_callbacks):
    """120 digits labeled through the API's services, every 10th with a wrong digit: (flipped sample ids)."""
    from apps.labeling.services import round_create

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 120)
        round_create(project=project, user=lead, budget=120, strategy="random")
    flipped = set()
    n = label_all_open(project, annotator, truth_by_sample(project, digits), flip_every=10, flip_by=5, flipped=flipped)
    assert n == 120
    return flipped


@pytest.mark.slow
def test_label_check_job_finds_flipped_labels_with_progress(api, lead, project, noisy_labels,
                                                             django_capture_on_commit_callbacks):
    from apps.samples.selectors import label_free_space

    with django_capture_on_commit_callbacks(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/label-checks/", {"limit": 50}, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "queued" and r.json()["limit"] == 50
    check_id = r.json()["id"]
    body = api(lead).get(f"/api/v1/label-checks/{check_id}/").json()
    assert body["status"] == "succeeded", body
    assert body["progress"] == 100.0 and body["n_checked"] == 120 and body["space"] == label_free_space()
    assert body["message"].endswith("findings in 120 labeled samples") and body["duration_s"] is not None
    issues = [f for f in body["findings"] if f["kind"] == "label_issue"]
    assert body["counts"]["label_issue"] >= len(issues) > 0
    found = {f["sample"] for f in issues}
    assert len(found & noisy_labels) >= len(noisy_labels) // 2, (len(found & noisy_labels), len(noisy_labels))
    scores = [f["score"] for f in body["findings"]]
    assert scores == sorted(scores, reverse=True) and len(body["findings"]) <= 50
    for f in issues:  # each finding says what to review and where to look
        assert f["annotation"] is not None and f["content_url"] == f"/api/v1/samples/{f['sample']}/content/"
        assert f["external_id"].startswith("d") and f["label"] in project.labels
        assert f["suggested_label"] in project.labels and f["suggested_label"] != f["label"]
    # the list shows it without the findings
    listed = api(lead).get(f"/api/v1/projects/{project.id}/label-checks/").json()
    assert [c["id"] for c in listed] == [check_id] and "findings" not in listed[0]


@pytest.mark.slow
def test_a_finding_goes_back_to_labeling_through_review(api, lead, annotator, project, noisy_labels,
                                                        django_capture_on_commit_callbacks):
    """Rejecting the flagged annotation reopens its task for annotators; correcting it fixes the label."""
    from apps.labeling.services import task_lease_next
    from apps.samples.models import Sample

    with django_capture_on_commit_callbacks(execute=True):
        check_id = api(lead).post(f"/api/v1/projects/{project.id}/label-checks/", {}, format="json").json()["id"]
    issues = [f for f in api(lead).get(f"/api/v1/label-checks/{check_id}/").json()["findings"]
              if f["kind"] == "label_issue" and f["sample"] in noisy_labels]
    assert len(issues) >= 2
    first, second = issues[0], issues[1]
    r = api(lead).post(f"/api/v1/annotations/{first['annotation']}/review/",
                       {"action": "reject", "comment": first["reason"]}, format="json")
    assert r.status_code == 200, r.content
    task = task_lease_next(project=project, user=annotator)
    assert task is not None and task.sample_id == first["sample"]  # back in the queue
    r = api(lead).post(f"/api/v1/annotations/{second['annotation']}/review/",
                       {"action": "correct", "result": {"label": second["suggested_label"]}}, format="json")
    assert r.status_code == 200, r.content
    assert Sample.objects.get(pk=second["sample"]).label == second["suggested_label"]
    # the check shows what happened to its findings since it ran
    now = {f["sample"]: f["review_status"] for f in api(lead).get(f"/api/v1/label-checks/{check_id}/").json()["findings"]}
    assert now[first["sample"]] == "rejected" and now[second["sample"]] == "corrected"
    assert {now[f["sample"]] for f in issues[2:]} <= {"pending"}


def test_label_check_bad_input_roles_and_nothing_queued(api, lead, annotator, outsider, project, digits):
    from apps.labeling.models import LabelCheck

    url = f"/api/v1/projects/{project.id}/label-checks/"
    r = api(lead).post(url, {}, format="json")  # no labels yet
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_labels"
    assert r.json()["error"]["details"] == {"labeled": 0, "needed": 20}
    r = api(lead).post(url, {"limit": 0}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_limit"
    r = api(lead).post(url, {"limit": "many"}, format="json")
    assert r.status_code == 400 or r.status_code == 422
    assert set(r.json()) == {"error"}
    assert api(annotator).post(url, {}, format="json").status_code == 403
    assert api(annotator).get(url).status_code == 403
    assert api(outsider).get(url).status_code == 404
    assert api(lead).get("/api/v1/label-checks/999999/").status_code == 404
    assert not LabelCheck.objects.exists()


def test_label_issues_in_the_request_are_for_classification_projects(api, lead):
    """Other task types get label checks (a job that cross-validates their learner:
    tests/apps/labeling/test_label_checks_shapes.py), not an answer within the request."""
    from apps.projects.services import project_create

    detection = project_create(user=lead, name="boxes", modality="image", task_type="detection",
                               labels=["cat", "dog"], label_budget=100)
    r = api(lead).get(f"/api/v1/projects/{detection.id}/label-issues/")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_task_type"


@pytest.mark.slow
def test_a_second_delivery_of_the_job_does_nothing(lead, project, noisy_labels, django_capture_on_commit_callbacks):
    from apps.labeling.quality import label_check_create
    from apps.labeling.tasks import run_label_check

    with django_capture_on_commit_callbacks(execute=True):
        check = label_check_create(project=project, user=lead, limit=10)
    check.refresh_from_db()
    finished = check.finished_at
    assert check.status == "succeeded"
    run_label_check.apply(args=[check.pk])  # the broker redelivers the message
    check.refresh_from_db()
    assert check.status == "succeeded" and check.finished_at == finished
