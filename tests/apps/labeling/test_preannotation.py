"""Pre-annotations: each annotation of a task that opened with the model's prediction records how much of it the
annotator kept (Annotation.preannotation); the project's stats and page total it with active time with vs
without a pre-annotation."""
import pytest

from tests.apps.helpers import run_round, train_digits

BOXES = ["digit", "stroke"]


def test_classification_round_from_a_deployed_model_records_kept_labels(
        client, project, lead, annotator, digits, django_capture_on_commit_callbacks):
    from apps.labeling.models import Annotation, Task
    from apps.labeling.selectors import preannotation_stats
    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.projects.services import project_update
    from tests.apps.helpers import push_digits

    capture = django_capture_on_commit_callbacks
    project_update(project=project, auto_deploy=True)
    run = train_digits(project, lead, annotator, digits, capture, n=60, epochs=3)
    push_digits(project, digits, 20, start=60)
    rnd = run_round(project, lead, capture, budget=6, strategy="least_confidence")
    assert rnd.model_version_id == run.model_id
    tasks = list(Task.objects.filter(round=rnd))
    assert tasks and all(t.prediction and t.prediction["model"] == run.model_id for t in tasks)
    accepted = changed = 0
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        predicted = task.prediction["label"]
        # accept the model's label on even sample ids, change it on odd ones
        label = predicted if task.sample_id % 2 == 0 else str((int(predicted) + 1) % 10)
        annotation = annotation_submit(task=task, user=annotator, result={"label": label}, active_seconds=1.0)
        accepted, changed = accepted + (label == predicted), changed + (label != predicted)
        assert annotation.preannotation == {"model": run.model_id, "kind": "label", "n_predicted": 1,
                                            "kept": int(label == predicted), "edited": int(label != predicted),
                                            "deleted": 0, "added": 0}
    stats = preannotation_stats(project=project)
    assert stats["annotations"] == accepted + changed == len(tasks)
    assert stats["kind"] == "label" and stats["kept"] == accepted and stats["kept_rate"] == accepted / len(tasks)
    # the first 60 were labeled before any model (no prediction): 1.5 s each (label_all_open); these 1.0 s
    assert stats["with_prediction"] == {"mean_active_seconds": pytest.approx(1.0), "n": len(tasks)}
    assert stats["without_prediction"] == {"mean_active_seconds": pytest.approx(1.5), "n": 60}
    assert Annotation.objects.filter(task__project=project, preannotation__isnull=True).count() == 60

    client.force_login(lead)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert f"{round(100 * accepted / len(tasks))}% of predicted labels accepted" in page
    assert f"1.0 s per task with a pre-annotation (n={len(tasks)}), 1.5 s without (n=60)" in page


@pytest.fixture
def boxes_project(lead, annotator, digits, django_capture_on_commit_callbacks):
    from apps.projects.services import membership_set, project_create
    from tests.apps.helpers import push_digits

    p = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=BOXES, label_budget=50)
    membership_set(project=p, user=annotator, role="annotator")
    push_digits(p, digits, 4)
    run_round(p, lead, django_capture_on_commit_callbacks, budget=4, strategy="random")
    return p


def test_detection_counts_page_and_unreadable_predictions(client, boxes_project, lead, annotator):
    from apps.labeling.models import Task
    from apps.labeling.services import annotation_submit, task_lease_next

    project = boxes_project
    # the deployed detector's boxes as round_run writes them on the tasks (task type's shape + "model")
    prediction = {"model": 41, "boxes": [
        {"label": "digit", "x": 0.1, "y": 0.1, "w": 0.4, "h": 0.4, "score": 0.9},
        {"label": "stroke", "x": 0.6, "y": 0.6, "w": 0.2, "h": 0.2, "score": 0.5}], "polygons": []}
    tasks = list(Task.objects.filter(project=project).order_by("id"))
    Task.objects.filter(pk__in=[t.pk for t in tasks[:2]]).update(prediction=prediction)
    Task.objects.filter(pk=tasks[2].pk).update(prediction={"model": 41, "boxes": "garbled"})

    results = [  # moved the first box a little, deleted the second, added one
        {"boxes": [{"label": "digit", "x": 0.15, "y": 0.1, "w": 0.4, "h": 0.4},
                   {"label": "stroke", "x": 0.0, "y": 0.8, "w": 0.1, "h": 0.1}]},
        {"boxes": [{k: b[k] for k in ("label", "x", "y", "w", "h")} for b in prediction["boxes"]]},  # accepted
        {"boxes": []},  # the garbled prediction: not compared, still stored
        {"boxes": [{"label": "digit", "x": 0.2, "y": 0.2, "w": 0.3, "h": 0.3}]},  # no prediction
    ]
    plan = {t.pk: plan for t, plan in zip(tasks, zip(results, (4.0, 2.0, 9.0, 12.0)))}
    stored = {}
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        result, seconds = plan[task.pk]
        stored[task.pk] = annotation_submit(task=task, user=annotator, result=result, active_seconds=seconds)
    a = [stored[t.pk] for t in tasks]
    assert a[0].preannotation == {"model": 41, "kind": "shapes", "n_predicted": 2, "kept": 0, "edited": 1,
                                  "deleted": 1, "added": 1}
    assert a[1].preannotation == {"model": 41, "kind": "shapes", "n_predicted": 2, "kept": 2, "edited": 0,
                                  "deleted": 0, "added": 0}
    assert a[2].preannotation is None and a[3].preannotation is None

    client.force_login(annotator)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert ("Pre-annotations: 50% of predicted boxes and polygons kept unchanged, 25% edited, 25% deleted, "
            "1 added (over 2 annotations).") in page
    # with: the two compared and the garbled one (it opened with a prediction); without: the last
    assert "5.0 s per task with a pre-annotation (n=3), 12.0 s without (n=1)" in page


@pytest.mark.slow
def test_detection_round_from_a_deployed_learner_records_counts(lead, annotator, django_capture_on_commit_callbacks):
    """The whole path: a detector trained and deployed, a round writes its boxes on the tasks, submissions are
    compared with them (accepted as is: all kept; emptied: all deleted)."""
    from fixtures.detection import detection_scenes

    from apps.labeling.models import Task
    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from apps.training.services import training_run_create

    labels = ["0", "1", "4", "7"]
    capture = django_capture_on_commit_callbacks
    project = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=labels,
                             auto_deploy=True, split_ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    membership_set(project=project, user=annotator, role="annotator")
    scenes = detection_scenes(40, seed=0, labels=tuple(labels), size=64)
    rows = samples_ingest(project=project, items=[IngestItem(external_id=f"s{i}", content=png)
                                                  for i, (png, _) in enumerate(scenes)])
    truth = {r["id"]: scenes[int(r["external_id"][1:])][1] for r in rows}
    run_round(project, lead, capture, budget=30, strategy="random")
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        assert annotation_submit(task=task, user=annotator, result=truth[task.sample_id]).preannotation is None
    with capture(execute=True):
        run = training_run_create(project=project, user=lead,
                                  params={"epochs": 6, "image_size": 64, "width": 16, "batch_size": 8})
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    rnd = run_round(project, lead, capture, budget=10, strategy="auto")
    assert rnd.model_version_id == run.model_id
    tasks = list(Task.objects.filter(round=rnd))
    assert all(t.prediction["model"] == run.model_id for t in tasks) and any(t.prediction["boxes"] for t in tasks)
    n = 0
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        boxes = [{k: b[k] for k in ("label", "x", "y", "w", "h")} for b in task.prediction["boxes"]]
        accept = n % 2 == 0
        ann = annotation_submit(task=task, user=annotator, result={"boxes": boxes if accept else []})
        k = len(boxes)
        assert ann.preannotation == {"model": run.model_id, "kind": "shapes", "n_predicted": k, "kept": k if accept else 0,
                                     "edited": 0, "deleted": 0 if accept else k, "added": 0}
        n += 1
    assert n == len(tasks)
