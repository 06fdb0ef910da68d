from datetime import timedelta

import pytest
from django.utils import timezone

from tests.apps.helpers import push_digits, run_round


@pytest.fixture
def round_of_10(project, lead, digits, django_capture_on_commit_callbacks):
    push_digits(project, digits, 40)
    return run_round(project, lead, django_capture_on_commit_callbacks, budget=10, strategy="auto")


def test_round_records_scores_ranks_budget(api, lead, project, round_of_10):
    from apps.labeling.models import Task

    tasks = list(Task.objects.filter(round=round_of_10).order_by("rank"))
    assert len(tasks) == 10 and [t.rank for t in tasks] == list(range(10))
    assert sorted(t.priority for t in tasks) == sorted((t.priority for t in tasks), reverse=False)
    assert round_of_10.details["allocation"]["train"] >= 6  # the project's 70/15/15 split
    body = api(lead).get(f"/api/v1/projects/{project.id}/").json()
    assert body["budget"] == {"total": 500, "selected": 10, "labeled": 0, "reserved": 0, "remaining": 490}


def test_budget_cannot_be_exceeded(api, lead, project, round_of_10):
    from apps.projects.services import project_update

    project_update(project=project, label_budget=12)
    r = api(lead).post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 3, "strategy": "random"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "budget_exceeded"
    assert r.json()["error"]["details"] == {"remaining": 2, "requested": 3}


def test_unknown_strategy_and_model_required(api, lead, project, round_of_10):
    r = api(lead).post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 3, "strategy": "psychic"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_strategy"
    r = api(lead).post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 3, "strategy": "margin"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_required"
    assert "kmeans" in r.json()["error"]["details"]["model_free_strategies"]


def test_lease_order_resume_skip_submit(api, annotator, lead, project, round_of_10):
    c = api(annotator)
    first = c.post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    assert set(first) >= {"id", "sample", "lease_expires_at", "prediction"}
    assert first["sample"]["content_url"].endswith("/content/")
    # Asking again while holding a live lease returns the same task.
    assert c.post(f"/api/v1/projects/{project.id}/tasks/next/").json()["id"] == first["id"]
    # Another annotator gets a different task.
    other = api(lead).post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    assert other["id"] != first["id"]
    # Skip: the caller gets another task; the skipped one goes back to the queue for others.
    assert c.post(f"/api/v1/tasks/{first['id']}/skip/").status_code == 204
    second = c.post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    assert second["id"] not in (first["id"], other["id"])
    r = c.post(f"/api/v1/tasks/{second['id']}/annotations/", {"result": {"label": "3"}, "active_seconds": 2.5}, format="json")
    assert r.status_code == 201, r.content
    ann = r.json()
    assert ann["active_seconds"] == 2.5 and ann["lease_to_submit_s"] >= 0
    sample = c.get(f"/api/v1/samples/{second['sample']['id']}/").json()
    assert sample["label"] == "3" and sample["labeled"] is True
    # Submitting twice is refused.
    r = c.post(f"/api/v1/tasks/{second['id']}/annotations/", {"result": {"label": "3"}}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_done"


def test_label_outside_project_labels_is_422_and_nothing_stored(api, annotator, project, round_of_10):
    from apps.labeling.models import Annotation

    c = api(annotator)
    task = c.post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    for result in ({"label": "cat"}, {"label": 3}, "3", {"label": "3", "extra": 1}, {}):
        r = c.post(f"/api/v1/tasks/{task['id']}/annotations/", {"result": result}, format="json")
        assert r.status_code == 422, (result, r.content)
        assert r.json()["error"]["code"] in ("invalid_label", "invalid_result")
    assert Annotation.objects.count() == 0


def test_cannot_submit_without_the_lease(api, annotator, lead, project, round_of_10):
    task = api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/").json()
    r = api(lead).post(f"/api/v1/tasks/{task['id']}/annotations/", {"result": {"label": "1"}}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "task_taken"  # the annotator holds it


def test_expired_lease_returns_the_task(project, annotator, lead, round_of_10):
    from apps.labeling.models import Task
    from apps.labeling.services import task_lease_next

    task = task_lease_next(project=project, user=annotator)
    past = timezone.now() - timedelta(seconds=1)
    Task.objects.filter(pk=task.pk).update(available_at=past, lease_expires_at=past)
    again = task_lease_next(project=project, user=lead)
    assert again.pk == task.pk and again.leased_by_id == lead.pk


def test_queue_empty_is_204(api, annotator, lead, project, round_of_10):
    from apps.labeling.services import annotation_submit, task_lease_next

    while (task := task_lease_next(project=project, user=lead)) is not None:
        annotation_submit(task=task, user=lead, result={"label": "1"})
    assert api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/").status_code == 204


def test_round_skips_samples_it_cannot_read(project, lead, digits, django_capture_on_commit_callbacks):
    from apps.labeling.models import Task
    from apps.labeling.services import round_create
    from apps.samples.services import IngestItem, samples_ingest

    push_digits(project, digits, 30)
    samples_ingest(project=project, items=[IngestItem(external_id="remote", uri="https://example.invalid/x.png")])
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, budget=31, strategy="random")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    assert rnd.selected == 30 and rnd.details["unreadable"] == 1
    assert not Task.objects.filter(sample__external_id="remote").exists()


def test_queued_rounds_hold_their_budget(api, lead, project, digits):
    """Two rounds started before either runs cannot together overspend the budget."""
    from apps.projects.services import project_update

    push_digits(project, digits, 30)
    project_update(project=project, label_budget=10)
    c = api(lead)
    # No on_commit capture: the rounds stay queued, as when no worker has picked them up yet.
    assert c.post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 10, "strategy": "random"}, format="json").status_code == 202
    r = c.post(f"/api/v1/projects/{project.id}/rounds/", {"budget": 1, "strategy": "random"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "budget_exceeded"
    assert c.get(f"/api/v1/projects/{project.id}/").json()["budget"]["reserved"] == 10


def test_bad_and_foreign_uris(api, lead, project, digits, django_capture_on_commit_callbacks, settings, tmp_path):
    """storage:// is not a way into other projects' files; file:// must lie under the allowed roots;
    an undecodable file behind an allowed URI is recorded and left out of rounds, not fatal."""
    from apps.labeling.services import round_create
    from apps.samples.models import Sample

    c = api(lead)
    for uri in ("storage://models/1/v1-run1/model.pt", "storage://../../etc/passwd"):
        r = c.post(f"/api/v1/projects/{project.id}/samples/", {"samples": [{"uri": uri}]}, format="json")
        assert r.status_code == 201  # kept as a reference...
        sample_id = r.json()["samples"][0]["id"]
        content = c.get(f"/api/v1/samples/{sample_id}/content/")
        assert content.status_code == 409 and content.json()["error"]["code"] == "content_unavailable"  # ...never read
    r = c.post(f"/api/v1/projects/{project.id}/samples/", {"samples": [{"uri": "file:///etc/passwd"}]}, format="json")
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["code"] == "uri_not_allowed"
    settings.LOOPLAB = dict(settings.LOOPLAB, URI_ROOTS=[str(tmp_path)])
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    good = tmp_path / "good.png"
    good.write_bytes(digits[3][0])
    r = c.post(f"/api/v1/projects/{project.id}/samples/",
               {"samples": [{"uri": good.as_uri()}, {"uri": (tmp_path / "junk.png").as_uri()}]}, format="json")
    assert r.status_code == 201
    push_digits(project, digits, 10)
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, budget=11, strategy="random")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    assert rnd.selected == 11  # 10 pushed + the good file:// one; junk and storage:// left out
    assert Sample.objects.get(uri=(tmp_path / "junk.png").as_uri()).embed_error.startswith("cannot decode")


def test_ids_that_are_not_ascii_digits_are_404(api, lead, project):
    for path in ("/api/v1/projects/%C2%B2/", "/api/v1/samples/%C2%B2/", "/api/v1/tasks/%C2%B2/skip/"):
        r = api(lead).get(path) if "skip" not in path else api(lead).post(path)
        assert r.status_code == 404, (path, r.status_code)


def test_round_recomputes_embeddings_of_an_older_feature_version(project, lead, digits,
                                                                 django_capture_on_commit_callbacks):
    """Embeddings stored by an older label-free extractor are recomputed, never compared with new ones."""
    import numpy as np

    from apps.labeling.services import round_create
    from apps.samples.models import Sample
    from apps.samples.selectors import label_free_space
    from ml.features import label_free_embeddings
    from ml.modalities.image import load_images

    push_digits(project, digits, 30)  # not embedded yet: on-commit callbacks (the embed job) do not run here
    stale = list(Sample.objects.filter(project=project).order_by("id")[:12])
    for s in stale:
        s.embedding, s.embedding_space = np.zeros(128, np.float32).tobytes(), "label_free"  # a v1 row
    Sample.objects.bulk_update(stale, ["embedding", "embedding_space"])
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, budget=10, strategy="kmeans")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    assert label_free_space().startswith("label_free:v")
    rows = Sample.objects.filter(pk__in=[s.pk for s in stale]).order_by("id")
    assert {r.embedding_space for r in rows} == {label_free_space()}
    by_ext = {f"d{i}": png for i, (png, _) in enumerate(digits[:30])}
    fresh = label_free_embeddings("image", load_images([by_ext[r.external_id] for r in rows]))
    assert np.allclose(np.stack([np.frombuffer(r.embedding, np.float32) for r in rows]), fresh, atol=1e-5)
