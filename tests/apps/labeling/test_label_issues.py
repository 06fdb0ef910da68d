import pytest

from apps.samples.selectors import label_free_space
from tests.apps.helpers import push_digits, truth_by_sample


@pytest.mark.slow
def test_label_issues_finds_flipped_labels(api, lead, annotator, project, digits, django_capture_on_commit_callbacks):
    from apps.labeling.services import annotation_submit, round_create, task_lease_next

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 200)
        round_create(project=project, user=lead, budget=200, strategy="random")
    truth = truth_by_sample(project, digits)
    flipped = set()
    n = 0
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        label = truth[task.sample_id]
        if n % 10 == 0:  # 10% label noise: a wrong digit
            label = str((int(label) + 5) % 10)
            flipped.add(task.sample_id)
        annotation_submit(task=task, user=annotator, result={"label": label})
        n += 1
    r = api(lead).get(f"/api/v1/projects/{project.id}/label-issues/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["n_checked"] == 200 and body["space"] == label_free_space()
    issues = [f for f in body["findings"] if f["kind"] == "label_issue"]
    found = {f["sample"] for f in issues}
    assert len(found & flipped) >= len(flipped) // 2, (len(found & flipped), len(flipped))
    assert all(f["reason"] and f["label"] in project.labels for f in issues)
    # An annotator cannot read the findings (leads do), and bad input is a 4xx.
    assert api(annotator).get(f"/api/v1/projects/{project.id}/label-issues/").status_code == 403
    assert api(lead).get(f"/api/v1/projects/{project.id}/label-issues/?limit=x").status_code == 422


def test_label_issues_needs_labels(api, lead, project):
    r = api(lead).get(f"/api/v1/projects/{project.id}/label-issues/")
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_labels"
