"""The same loop for audio and point clouds: the spine assumes no modality."""
import base64

import pytest


def _items(modality):
    if modality == "audio":
        from fixtures import SPOKEN_LABELS
        from fixtures.speech import spoken_digits

        return SPOKEN_LABELS, spoken_digits(8)
    from fixtures import SHAPE_LABELS
    from fixtures.shapes import shapes

    return SHAPE_LABELS, shapes(10)


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["audio", "pointcloud"])
def test_train_deploy_predict(api, lead, annotator, modality, django_capture_on_commit_callbacks):
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from apps.training.services import training_run_create

    labels, items = _items(modality)
    project = project_create(user=lead, name=modality, modality=modality, labels=labels, auto_deploy=True)
    membership_set(project=project, user=annotator, role="annotator")
    with django_capture_on_commit_callbacks(execute=True):
        results = samples_ingest(project=project, items=[IngestItem(external_id=str(i), content=data)
                                                         for i, (data, _) in enumerate(items)])
        round_create(project=project, user=lead, budget=len(items), strategy="auto")
    truth = {r["id"]: labels[items[int(r["external_id"])][1]] for r in results}
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        annotation_submit(task=task, user=annotator, result={"label": truth[task.sample_id]})
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_create(project=project, user=lead, epochs=6)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    body = api(lead).get(f"/api/v1/models/{run.model_id}/").json()
    assert body["parity"]["top1_agreement"] == 1.0
    assert body["eval_report"]["n"] > 0
    # export also made an int8 model and decided which one serves, with its reason
    report = body["runtime_report"]
    assert body["runtime"] == report["decision"]["runtime"] in ("fp32", "int8") and report["decision"]["reason"]
    assert report["int8"]["top1_agreement"] >= 0.8 and set(report["int8"]["latency"]) == {"1", "64"}
    r = api(lead).post(f"/api/v1/projects/{project.id}/predict/",
                       {"content": base64.b64encode(items[0][0]).decode()}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["label"] in labels and r.json()["model"] == run.model_id


def test_pipeline_step_delivered_twice_does_not_run_twice(lead, project, digits, django_capture_on_commit_callbacks, annotator):
    """A redelivered Celery message for a finished step only re-queues the next step; a second training
    of the same run never creates a second model."""
    from apps.registry.models import ModelVersion
    from apps.training.services import training_step_run
    from tests.apps.helpers import train_digits

    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=60, epochs=2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        training_step_run(run_id=run.pk, kind="train")  # the same message again
    assert ModelVersion.objects.filter(training_run=run).count() == 1
    assert len(callbacks) == 1  # only the next step was re-enqueued
