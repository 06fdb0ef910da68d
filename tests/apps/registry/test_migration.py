"""The registry's migrations move ModelVersion and Deployment in Django's state only: a database from before the
move (main's last migrations), holding a deployed model with real ONNX files, migrates forward, keeps its rows
and ids, and the deployed model predicts."""
import datetime
import tempfile
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# the last migration of every app before the registry existed (main at ccbeaa9)
BEFORE = [("accounts", "0002_api_tokens_hashed"), ("core", "0001_initial"), ("projects", "0004_webhook_secret_rotation"),
          ("samples", "0006_job_runner"), ("labeling", "0005_job_runner"), ("training", "0003_job_runner"),
          ("serving", "0004_job_runner"), ("exports", "0002_job_runner")]
LABELS = [str(i) for i in range(10)]


def _tiny_model_files(digits) -> tuple[bytes, bytes]:
    """A real classifier of the digits, trained and exported with ml/: (torch checkpoint, ONNX file)."""
    from ml import modalities
    from ml.export import export_onnx
    from ml.training import TrainConfig, train_classifier

    X = modalities.get("image").load_batch([png for png, _ in digits[:120]])
    y = np.array([label for _, label in digits[:120]])
    model = train_classifier("image", X, y, None, None, n_classes=len(LABELS),
                             config=TrainConfig(epochs=2, seed=0, device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model.pt")
        export_onnx(model, Path(tmp) / "model.onnx")
        return (Path(tmp) / "model.pt").read_bytes(), (Path(tmp) / "model.onnx").read_bytes()


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # migrations run outside a test transaction
def test_a_deployed_model_survives_the_move_to_the_registry_and_predicts(digits):
    checkpoint, onnx = _tiny_model_files(digits)
    type_ids = {model: ContentType.objects.get_or_create(app_label="registry", model=model)[0].pk
                for model in ("modelversion", "deployment")}
    executor = _migrate(BEFORE + [("registry", None)])  # the registry app itself unapplied too
    try:
        old = executor.loader.project_state(BEFORE).apps
        assert not any(m._meta.app_label == "registry" for m in old.get_models())
        project = old.get_model("projects", "Project").objects.create(
            name="before the registry", modality="image", task_type="classification", labels=LABELS)
        dataset = old.get_model("training", "DatasetVersion").objects.create(
            project=project, number=1, labels=LABELS, items=[], digest="0" * 64, counts={"train": 120},
            last_label_at=datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc))
        run = old.get_model("training", "TrainingRun").objects.create(
            project=project, number=1, dataset_version=dataset, config={"epochs": 2, "seed": 0}, status="succeeded")
        folder = f"models/{project.pk}/run{run.pk}"
        mv = old.get_model("training", "ModelVersion").objects.create(
            project=project, training_run=run, version=1, modality="image", labels=LABELS,
            checkpoint=default_storage.save(f"{folder}/model.pt", ContentFile(checkpoint)),
            onnx=default_storage.save(f"{folder}/model.onnx", ContentFile(onnx)), runtime="fp32")
        run.model = mv
        run.save(update_fields=["model"])
        deployment = old.get_model("serving", "Deployment").objects.create(
            project=project, model_version=mv, reason="gate", label_to_serving_s=12.5)
        rnd = old.get_model("labeling", "Round").objects.create(
            project=project, number=1, strategy="margin", budget=5, model_version=mv)
        log = old.get_model("serving", "PredictionLog").objects.create(
            project=project, model_version=mv, label="3", confidence=0.9, latency_ms=1.0)
        ContentType.objects.clear_cache()  # contenttypes itself is never migrated back here
        assert {model: ContentType.objects.get(app_label=app, model=model).pk
                for app, model in (("training", "modelversion"), ("serving", "deployment"))} == type_ids
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from apps.labeling.models import Round
    from apps.registry.models import Deployment, ModelVersion
    from apps.registry.runtime import _CACHE, load_batch
    from apps.registry.selectors import current_deployment, model_checkpoint_load
    from apps.serving.models import PredictionLog

    ContentType.objects.clear_cache()
    assert {ct.model: ct.pk for ct in ContentType.objects.filter(app_label="registry")} == type_ids  # followed
    from apps.serving.services import predict_one
    from apps.training.models import TrainingRun

    moved = ModelVersion.objects.get(pk=mv.pk)
    assert (moved.project_id, moved.training_run_id, moved.version, moved.onnx.name, moved.checkpoint.name) == (
        project.pk, run.pk, 1, mv.onnx.name, mv.checkpoint.name)
    assert TrainingRun.objects.get(pk=run.pk).model_id == mv.pk
    assert Round.objects.get(pk=rnd.pk).model_version_id == mv.pk
    assert PredictionLog.objects.get(pk=log.pk).model_version_id == mv.pk
    assert Deployment.objects.get(pk=deployment.pk).label_to_serving_s == 12.5
    serving = current_deployment(project=moved.project)
    assert serving.pk == deployment.pk and serving.model_version_id == mv.pk

    _CACHE.clear()  # ids are reused between transactional tests: load this model, not a cached one
    png = digits[500][0]
    prediction = predict_one(project=moved.project, data=png)
    assert prediction["model"] == mv.pk and prediction["label"] in LABELS
    assert set(prediction["scores"]) == set(LABELS)
    assert PredictionLog.objects.filter(model_version=moved).count() == 2
    # the torch checkpoint loads too (evaluation, BALD)
    probs = model_checkpoint_load(model_version=moved).predict_proba(load_batch("image", [png]))
    assert probs.shape == (1, len(LABELS))
    _CACHE.clear()
