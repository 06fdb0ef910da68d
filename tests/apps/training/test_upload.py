"""Bring your own model: a detector trained outside Looplab (a built-in learner fitted tiny on other scenes and
exported to ONNX) is uploaded with its manifest to a detection project through the API; it becomes a model version
that is evaluated on the project's test split, deployed by the gate, serves /predict/ in the task type's shape,
scores an `auto` round by its uncertainty with its boxes as pre-annotations, and embeds for a drift check. Bad files
(too large, truncated, external data, an opset outside the allow-list, a bad manifest, the wrong labels or task
type) are each a 4xx in the error shape with nothing stored; a non-lead gets 403."""
from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.apps.training.test_learners import LABELS, _detection_project, _label_all

DECODING_KEYS = ("method", "max_detections", "score_threshold", "nms_iou")


@pytest.fixture(scope="module")
def detector_export():
    """A CenterNet detector fitted tiny on scenes the project never sees (seconds on 2 cores), exported."""
    import torch

    from fixtures.detection import detection_scenes
    from ml.learners import Dataset
    from ml.learners.detection import CenterNetDetector

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scenes = detection_scenes(16, seed=11, labels=tuple(LABELS), size=64)
        data = Dataset(contents=[c for c, _ in scenes], targets=[t for _, t in scenes], labels=tuple(LABELS))
        det = CenterNetDetector(image_size=32, width=8, epochs=2, batch_size=8, device="cpu").fit(data)
        return det.export_onnx()
    finally:
        torch.set_num_threads(threads)


def _post(client, project, model: bytes, manifest, *, name: str = "detector.onnx"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    body = {"file": SimpleUploadedFile(name, model, content_type="application/octet-stream"),
            "manifest": manifest if isinstance(manifest, str) else json.dumps(manifest)}
    return client.post(f"/api/v1/projects/{project.id}/models/upload/", body, format="multipart")


def _nothing_stored(project) -> None:
    from django.core.files.storage import default_storage

    from apps.registry.models import ModelVersion
    from apps.training.models import TrainingRun

    assert not ModelVersion.objects.filter(project=project).exists()
    assert not TrainingRun.objects.filter(project=project).exists()
    assert not default_storage.exists(f"models/{project.pk}"), default_storage.listdir(f"models/{project.pk}")


@pytest.mark.slow
def test_uploaded_detector_is_evaluated_gated_served_and_scores_rounds(
        api, lead, annotator, detector_export, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    from apps.labeling.models import Task
    from apps.monitoring.drift import drift_check_create
    from apps.registry.models import ModelVersion
    from apps.registry.selectors import current_deployment
    from tests.apps.helpers import run_round

    capture = django_capture_on_commit_callbacks
    project, scenes, truth = _detection_project(lead, annotator, 70)
    run_round(project, lead, capture, budget=45, strategy="random")
    assert _label_all(project, annotator, truth) == 45

    client = api(lead)
    model = detector_export.model
    manifest = {**detector_export.manifest, "labels": list(detector_export.manifest["labels"])}
    with capture(execute=True):
        r = _post(client, project, model, manifest)
    assert r.status_code == 202, r.content
    body = r.json()
    mv_json, run = body["model"], body["training_run"]
    assert mv_json["learner"] == "upload" and mv_json["task_type"] == "detection" and mv_json["exported"]
    assert mv_json["manifest"]["labels"] == LABELS and mv_json["manifest"]["decoding"]["method"] == "centernet"
    assert run["config"] == {"learner": "upload", "upload": {"sha256": hashlib.sha256(model).hexdigest(),
                                                             "filename": "detector.onnx", "size": len(model)}}
    steps = {s["kind"]: s for s in run["steps"]}
    assert steps["train"]["status"] == steps["export"]["status"] == "succeeded"
    assert steps["train"]["result"]["uploaded"] and steps["export"]["result"]["validation"]["n_samples"] == 4
    assert not steps["export"]["result"]["validation"]["synthetic"]  # the test inference ran on project samples

    # the queued evaluation and the gate ran (on commit): evaluated on the test split, deployed by the gate
    run = client.get(f"/api/v1/training-runs/{run['id']}/").json()
    assert run["status"] == "succeeded", run
    steps = {s["kind"]: s for s in run["steps"]}
    assert steps["evaluate"]["status"] == "succeeded" and steps["evaluate"]["result"]["n_test"] > 0
    assert steps["deploy"]["result"]["deployed"] is True, steps["deploy"]["result"]
    mv = ModelVersion.objects.get(pk=mv_json["id"])
    assert not mv.checkpoint and default_storage.exists(mv.onnx.name)
    with default_storage.open(mv.onnx.name, "rb") as fh:
        assert fh.read() == model
    report = mv.eval_report
    assert report["task_type"] == "detection" and report["primary"] == "map50"
    test_ids = {item[0] for item in mv.training_run.dataset_version.items if item[2] == "test"}
    assert report["n"] == len(report["sample_ids"]) > 0 and set(report["sample_ids"]) == test_ids
    assert 0 <= report["metrics"]["map50"] <= 1 and mv.curve["points"][-1]["model"] == mv.pk
    deployment = current_deployment(project=project)
    assert deployment.model_version_id == mv.pk and deployment.reason == "gate"

    # /predict/ answers in the task type's shape
    r = client.post(f"/api/v1/projects/{project.id}/predict/", {"content": base64.b64encode(scenes[0][0]).decode()},
                    format="json")
    assert r.status_code == 200, r.content
    pred = r.json()
    assert pred["model"] == mv.pk and isinstance(pred["boxes"], list) and 0 <= pred["uncertainty"]
    for box in pred["boxes"]:
        assert box["label"] in LABELS and 0 <= box["score"] <= 1 and box["w"] > 0

    # an `auto` round is scored by its uncertainty; tasks carry its predictions as pre-annotations
    rnd = run_round(project, lead, capture, budget=8, strategy="auto")
    assert rnd.model_version_id == mv.pk and rnd.strategy_used == "auto/margin_diverse"
    tasks = list(Task.objects.filter(round=rnd))
    assert len(tasks) == 8 and all(t.prediction["model"] == mv.pk and "boxes" in t.prediction for t in tasks)
    train = sorted((t for t in tasks if t.sample.split == "train"), key=lambda t: t.rank)
    assert train and [t.score for t in train] == sorted((t.score for t in train), reverse=True)

    # drift embeds through it: a detector gives embeddings and no class probabilities
    with capture(execute=True):
        check = drift_check_create(project=project, user=lead, window_hours=1)
    check.refresh_from_db()
    assert check.status == "succeeded", check.error
    assert check.model_version_id == mv.pk and check.report["n_ref"] >= 20 and check.report["n_prod"] >= 20
    assert check.report["confidence_psi"] is None


@pytest.mark.slow
def test_bad_uploads_are_4xx_with_the_reason_and_store_nothing(api, lead, annotator, detector_export, settings,
                                                               tmp_path):
    import onnx

    project, _, _ = _detection_project(lead, annotator, 6)
    client = api(lead)
    model, manifest = detector_export.model, dict(detector_export.manifest)

    def refused(status: int, code: str, model=model, manifest=manifest) -> dict:
        r = _post(client, project, model, manifest)
        assert r.status_code == status, r.content
        error = r.json()["error"]
        assert error["code"] == code and error["message"], error
        _nothing_stored(project)
        return error

    # a non-lead may not upload
    r = _post(api(annotator), project, model, manifest)
    assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
    _nothing_stored(project)

    truncated = refused(422, "onnx_invalid", model=model[: len(model) // 2])
    assert truncated["details"]["check"] == "onnx_invalid"
    refused(422, "onnx_invalid", model=b"")

    proto = onnx.load_model_from_string(model)
    onnx.save_model(proto, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    external = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False).SerializeToString()
    error = refused(422, "onnx_external_data", model=external)
    assert error["details"]["location"] == "weights.bin"

    proto = onnx.load_model_from_string(model)
    proto.opset_import[0].version = 22
    refused(422, "onnx_opset", model=proto.SerializeToString())

    error = refused(422, "onnx_manifest", manifest={k: v for k, v in manifest.items() if k != "decoding"})
    assert error["details"]["path"] == "manifest.decoding"
    error = refused(422, "onnx_manifest", manifest={**manifest, "labels": ["0", "1", "4", "cat"]})
    assert error["details"]["path"] == "manifest.labels" and error["details"]["missing"] == ["7"]
    error = refused(422, "onnx_manifest", manifest={**manifest, "task_type": "classification"})
    assert error["details"]["path"] == "manifest.task_type"
    refused(422, "onnx_manifest", manifest="{not json")
    refused(422, "onnx_manifest", manifest="[1, 2]")
    # the graph is a detector's: a manifest whose input size differs fails the I/O or inference check
    error = refused(422, "onnx_io_mismatch", manifest={**manifest, "input": {**manifest["input"], "size": 48}})

    r = client.post(f"/api/v1/projects/{project.id}/models/upload/", {"manifest": json.dumps(manifest)},
                    format="multipart")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_body"

    settings.LOOPLAB = {**settings.LOOPLAB, "MAX_MODEL_UPLOAD_BYTES": len(model) - 1}
    error = refused(413, "onnx_too_large")
    assert error["details"]["max_bytes"] == len(model) - 1 and error["details"]["size_bytes"] == len(model)
    # a declared body that cannot fit is refused before it is read
    settings.LOOPLAB = {**settings.LOOPLAB, "MAX_MODEL_UPLOAD_BYTES": 1000}
    r = client.generic("POST", f"/api/v1/projects/{project.id}/models/upload/", b"x" * 10,
                       content_type="multipart/form-data; boundary=zzz", CONTENT_LENGTH=str(3 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "onnx_too_large"
    assert r.json()["error"]["details"]["content_length"] == 3 * 1024 * 1024
    _nothing_stored(project)


@pytest.mark.slow
def test_uploaded_classifier_is_deployed_by_hand_serves_labels_and_drift_reads_its_probabilities(
        api, lead, annotator, project, digits, django_capture_on_commit_callbacks):
    """A classification project (gate off) with the sklearn-probe plug-in's export fitted on other digits."""
    from looplab_sklearn_probe import SklearnProbe

    from apps.monitoring.drift import drift_check_create
    from apps.registry.models import ModelVersion
    from ml.learners import Dataset
    from tests.apps.helpers import label_all_open, push_digits, run_round, truth_by_sample

    capture = django_capture_on_commit_callbacks
    labels = [str(i) for i in range(10)]
    other = digits[1000:1300]
    probe = SklearnProbe().fit(Dataset(contents=[c for c, _ in other], targets=[{"label": str(y)} for _, y in other],
                                       labels=tuple(labels)))
    export = probe.export_onnx()
    push_digits(project, digits, 60)
    run_round(project, lead, capture, budget=45, strategy="random")
    assert label_all_open(project, annotator, truth_by_sample(project, digits)) == 45

    client = api(lead)
    with capture(execute=True):
        r = _post(client, project, export.model, export.manifest, name="probe.onnx")
    assert r.status_code == 202, r.content
    run = client.get(f"/api/v1/training-runs/{r.json()['training_run']['id']}/").json()
    assert run["status"] == "succeeded", run
    gate = [s for s in run["steps"] if s["kind"] == "deploy"][0]["result"]
    assert gate["deployed"] is False and "gate is off" in gate["reason"]
    mv = ModelVersion.objects.get(pk=run["model"])
    assert mv.learner == "upload" and mv.eval_report["task_type"] == "classification"
    assert mv.eval_report["metrics"]["accuracy"] > 0.5, mv.eval_report["metrics"]  # a real digit classifier

    r = client.post(f"/api/v1/projects/{project.id}/deployments/", {"model": mv.pk}, format="json")
    assert r.status_code == 201, r.content
    png, digit = digits[3]
    r = client.post(f"/api/v1/projects/{project.id}/predict/", {"content": base64.b64encode(png).decode()},
                    format="json")
    assert r.status_code == 200, r.content
    pred = r.json()
    assert pred["model"] == mv.pk and pred["label"] in labels and set(pred["scores"]) == set(labels)
    assert abs(sum(pred["scores"].values()) - 1) < 1e-3 and pred["confidence"] == max(pred["scores"].values())

    with capture(execute=True):
        check = drift_check_create(project=project, user=lead, window_hours=1)
    check.refresh_from_db()
    assert check.status == "succeeded", check.error
    assert check.model_version_id == mv.pk and check.report["confidence_psi"] is not None
