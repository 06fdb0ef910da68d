"""Every task type learns: a detection project's labels train a learner of ml.learners, which is evaluated by
COCO mAP, exported to ONNX with a parity check, gated, deployed and served; the next round is picked by its
uncertainty and its tasks carry its boxes as pre-annotations."""
import base64

import pytest

LABELS = ["0", "1", "4", "7"]
FAST = {"epochs": 25, "image_size": 64, "width": 16, "batch_size": 8}


def _detection_project(lead, annotator, n: int, *, seed: int = 0):
    from fixtures.detection import detection_scenes

    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest

    project = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=LABELS,
                             auto_deploy=True, split_ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    membership_set(project=project, user=annotator, role="annotator")
    scenes = detection_scenes(n, seed=seed, labels=tuple(LABELS), size=64)
    results = samples_ingest(project=project, items=[
        IngestItem(external_id=f"s{i}", content=png, metadata={"light": "dark" if i % 4 == 0 else "day"})
        for i, (png, _) in enumerate(scenes)])
    truth = {r["id"]: scenes[int(r["external_id"][1:])][1] for r in results}
    return project, scenes, truth


def _label_all(project, annotator, truth, limit: int | None = None) -> int:
    from apps.labeling.services import annotation_submit, task_lease_next

    n = 0
    while (limit is None or n < limit) and (task := task_lease_next(project=project, user=annotator)) is not None:
        annotation_submit(task=task, user=annotator, result=truth[task.sample_id], active_seconds=2.0)
        n += 1
    return n


@pytest.mark.slow
def test_detection_project_learns_serves_and_preannotates(api, client, lead, annotator,
                                                         django_capture_on_commit_callbacks):
    from apps.labeling.models import Task
    from apps.registry.models import ModelVersion
    from tests.apps.helpers import run_round

    capture = django_capture_on_commit_callbacks
    project, scenes, truth = _detection_project(lead, annotator, 70)
    first = run_round(project, lead, capture, budget=47, strategy="random")
    assert _label_all(project, annotator, truth, limit=45) == 45  # two tasks stay open, without a prediction

    client = api(lead)
    with capture(execute=True):
        r = client.post(f"/api/v1/projects/{project.id}/training-runs/", {"params": FAST}, format="json")
    assert r.status_code == 202, r.content
    run = r.json()
    assert run["config"]["learner"] == "centernet" and run["config"]["params"] == FAST
    run = client.get(f"/api/v1/training-runs/{run['id']}/").json()
    assert run["status"] == "succeeded", run
    assert run["dataset_version"]["counts"]["per_label"]["7"] > 0
    model = client.get(f"/api/v1/models/{run['model']}/").json()
    assert model["task_type"] == "detection" and model["learner"] == "centernet"
    assert model["manifest"]["task_type"] == "detection" and model["manifest"]["labels"] == LABELS
    assert model["exported"] and model["parity"]["passed"] and model["parity"]["agreement"] == 1.0
    report = model["eval_report"]
    assert report["task_type"] == "detection" and report["primary"] == "map50"
    assert report["n"] == len(report["per_sample"]) == len(report["sample_ids"]) > 0
    assert set(report["per_class"]) <= set(LABELS) and report["metrics"]["map50"] > 0.3, report["metrics"]
    assert model["curve"]["metric"] == "map50" and model["curve"]["points"][0]["map50"] == report["metrics"]["map50"]

    # deployed by the gate (the first model); /predict/ answers in the task type's shape
    project.refresh_from_db()
    r = client.post(f"/api/v1/projects/{project.id}/predict/",
                    {"content": base64.b64encode(scenes[0][0]).decode()}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["model"] == run["model"] and isinstance(body["boxes"], list)
    for box in body["boxes"]:
        assert box["label"] in LABELS and 0 <= box["score"] <= 1 and 0 <= box["x"] <= 1 and box["w"] > 0

    # a task queued before the model was deployed opens with the deployed model's boxes as pre-annotations
    opened = api(annotator).post(f"/api/v1/projects/{project.id}/tasks/next/")
    assert opened.status_code == 200 and opened.json()["round"] == first.pk, opened.content
    assert opened.json()["prediction"]["model"] == run["model"] and isinstance(opened.json()["prediction"]["boxes"], list)
    _label_all(project, annotator, truth)

    # the next round is scored by the detector's uncertainty; its tasks carry its boxes as pre-annotations
    rnd = run_round(project, lead, capture, budget=10, strategy="auto")
    assert rnd.model_version_id == run["model"]
    assert rnd.strategy_used == "auto/margin_diverse"
    tasks = list(Task.objects.filter(round=rnd))
    assert len(tasks) == 10
    assert all(t.prediction["model"] == run["model"] and "boxes" in t.prediction for t in tasks)
    assert any(t.prediction["boxes"] for t in tasks)
    # the train picks are ranked by the detector's per-sample uncertainty (higher first), and they are more
    # uncertain than the train samples left in the pool
    from apps.registry.runtime import model_runner
    from apps.samples import content as content_io
    from apps.samples.models import Sample

    train_tasks = sorted((t for t in tasks if t.sample.split == "train"), key=lambda t: t.rank)
    scores = [t.score for t in train_tasks]
    assert train_tasks and scores == sorted(scores, reverse=True) and min(scores) > 0
    left = list(Sample.objects.filter(project=project, split="train", task__isnull=True))
    runner = model_runner(model_version=ModelVersion.objects.get(pk=run["model"]))
    left_u = runner.predict([content_io.read_content(s) for s in left]).uncertainty
    assert len(left) and sum(scores) / len(scores) > float(left_u.mean())

    # the deployed detector's boxes, cropped into a classification project
    from apps.projects.services import project_create

    child = project_create(user=lead, name="crops", modality="image", task_type="classification", labels=LABELS)
    with capture(execute=True):
        sent = client.post(f"/api/v1/projects/{project.id}/crops/",
                           {"target": child.id, "source": "predictions", "min_score": 0.3, "limit": 20},
                           format="json").json()
    assert sent["created"] > 0 and sent["objects"] <= 20, sent
    crop = Sample.objects.filter(project=child).select_related("parent").first()
    assert crop.parent_shape["source"] == "predictions" and crop.parent_shape["score"] >= 0.3
    assert crop.split == crop.parent.split

    # drift in the detector's embedding space: scenes of another kind (stripes, dark digits on light) drift
    from django.utils import timezone
    from fixtures.detection import detection_scenes

    from apps.samples.services import IngestItem, samples_ingest

    since = timezone.now().isoformat()
    shifted = detection_scenes(30, seed=5, variant="shifted", labels=tuple(LABELS), size=64)
    with capture(execute=True):
        samples_ingest(project=project, items=[IngestItem(external_id=f"p{i}", content=png)
                                               for i, (png, _) in enumerate(shifted)])
        r = client.post(f"/api/v1/projects/{project.id}/drift-checks/", {"since": since}, format="json")
    assert r.status_code == 202, r.content
    check = client.get(f"/api/v1/drift-checks/{r.json()['id']}/").json()
    assert check["status"] == "succeeded", check
    assert check["report"]["n_prod"] == 30 and check["report"]["drifted"], check["report"]
    assert check["report"]["confidence_psi"] is None  # no class probabilities for boxes

    # a second run is compared with the deployed one by a paired test on the same test samples
    _label_all(project, annotator, truth)
    with capture(execute=True):
        r = client.post(f"/api/v1/projects/{project.id}/training-runs/",
                        {"params": {**FAST, "epochs": 2}, "seed": 1}, format="json")
    second = client.get(f"/api/v1/training-runs/{r.json()['id']}/").json()
    assert second["status"] == "succeeded", second
    mv = ModelVersion.objects.get(pk=second["model"])
    assert mv.baseline_model_id == run["model"]
    cmp = mv.comparison
    assert cmp["test"]["method"] == "permutation" and 0 <= cmp["test"]["p_value"] <= 1
    assert cmp["task_type"] == "detection" and cmp["primary"] == "map50" and cmp["n"] == mv.eval_report["n"]
    assert set(cmp["per_class"]) <= set(LABELS) and "light=day" in cmp["per_slice"]
    assert cmp["regressed"] and cmp["reasons"]  # two epochs instead of 25: worse on the same test images

    # the model card shows the task type's figures, the paired comparison and a learning curve of mAP@0.5
    client.force_login(lead)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert "mAP@0.5" in page and "mAP@[.5:.95]" in page and "paired permutation test" in page
    assert '<svg class="curve"' in page and "Learning curve: mAP@0.5 of each model version" in page
    assert "<strong>regressed</strong>" in page
    gate = [s for s in second["steps"] if s["kind"] == "deploy"][0]["result"]
    assert gate["deployed"] is not cmp["regressed"], (gate, cmp["reasons"])


def test_training_refuses_unknown_learner_bad_params_and_weights(api, lead, annotator):
    project, _, _ = _detection_project(lead, annotator, 4)
    client = api(lead)
    listing = client.get(f"/api/v1/projects/{project.id}/learners/").json()
    assert listing["run_default"] == "centernet" and listing["task_type"] == "detection"
    [entry] = [e for e in listing["learners"] if e["name"] == "centernet"]
    assert entry["default"] and entry["params"]["epochs"] > 0 and entry["source"].startswith("ml.learners.detection:")
    url = f"/api/v1/projects/{project.id}/training-runs/"
    r = client.post(url, {"learner": "nope"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_learner"
    assert "centernet" in r.json()["error"]["details"]["available"]
    r = client.post(url, {"params": {"no_such_knob": 1}}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_params"
    for weights, field in (({"classes": {"9": 2}}, "weights.classes.9"),
                           ({"classes": {"7": 0}}, "weights.classes.7"),
                           ({"slices": [{"where": {"light": {"nope": 1}}, "weight": 3}]}, "weights.slices[0].where"),
                           ({"other": 1}, "weights")):
        r = client.post(url, {"weights": weights}, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_weights", r.content
        assert r.json()["error"]["details"]["field"] == field
    r = client.post(url, {}, format="json")  # 0 labeled training samples
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_labels"


def test_a_frozen_version_refuses_labels_corrected_since(lead, annotator, django_capture_on_commit_callbacks):
    """A shape project's dataset version holds each annotation's result digest: a review correction after the
    freeze makes a run of that version fail with dataset_changed instead of training on other labels."""
    from apps.core.errors import ValidationFailed
    from apps.labeling.models import Annotation
    from apps.labeling.review import annotation_review
    from apps.training.learning import run_dataset
    from apps.training.models import TrainingRun
    from apps.training.services import dataset_version_freeze
    from tests.apps.helpers import run_round

    project, _, truth = _detection_project(lead, annotator, 10)
    run_round(project, lead, django_capture_on_commit_callbacks, budget=10, strategy="random")
    _label_all(project, annotator, truth)
    version = dataset_version_freeze(project=project)
    assert all(len(item) == 4 for item in version.items)
    run = TrainingRun.objects.create(project=project, number=1, dataset_version=version, created_by=lead,
                                     config={"learner": "centernet", "seed": 0, "params": {}})
    assert len(run_dataset(run, ("train", "val", "test"))) == 10
    ann = Annotation.objects.filter(task__project=project).first()
    annotation_review(annotation=ann, user=lead, action="correct", result={"boxes": []})
    with pytest.raises(ValidationFailed) as err:
        run_dataset(run, ("train", "val", "test"))
    assert err.value.code == "dataset_changed" and err.value.details["samples"] == [ann.sample_id]
    assert dataset_version_freeze(project=project).number == version.number + 1  # the next freeze takes it
