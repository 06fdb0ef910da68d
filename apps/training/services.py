"""Train → evaluate → export → gate, each step a Celery task that records itself in a PipelineStep row.

Each step runs through the job runner (apps.core.jobs): claimed with its task id and a heartbeat, taken
over when its worker dies, cancellable at its progress points. Steps are safe to run twice: a step that
already succeeded is skipped and the next one is enqueued; the files a step writes keep their names.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.core.files import file_put
from apps.core.jobs import JobContext, job_cancel, job_enqueue, job_execute
from apps.core.models import JobStatus
from apps.labeling.models import Annotation
from apps.labeling.selectors import annotations_final
from apps.projects.models import Project
from apps.registry.models import ModelVersion
from apps.registry.runtime import load_batch, model_runner
from apps.registry.selectors import current_deployment, model_checkpoint_load
from apps.registry.services import deployment_create, model_version_create, model_version_update
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.samples.selectors import metadata_slices
from apps.training import tasks
from apps.training.learning import (UPLOAD, learner_evaluate, learner_export, learner_params, learner_resolve,
                                    learner_train, result_digest, sample_weights, weights_check)
from apps.training.models import DatasetVersion, PipelineStep, StepKind, TrainingRun

log = logging.getLogger(__name__)

MIN_LABELS = 10
MIN_SHAPE_LABELS = 8  # boxes, regions, points, cuboids: labeled training samples (each holds many shapes)
STAGES = {StepKind.TRAIN: (0.0, 70.0), StepKind.EVALUATE: (70.0, 85.0), StepKind.EXPORT: (85.0, 97.0),
          StepKind.DEPLOY: (97.0, 100.0)}


# -- dataset versions ---------------------------------------------------------------------------

@transaction.atomic
def dataset_version_freeze(*, project: Project) -> DatasetVersion:
    """Freeze the labeled samples (ids, labels, splits); reuse the latest version if nothing changed.

    Classification: items ``[sample_id, label_index, split]`` (the samples' settled labels). Every other task
    type: items ``[sample_id, annotation_id, split, result_digest]``, one per done task, the annotation it stands
    for (:func:`apps.labeling.selectors.annotation_chosen`) and a digest of its result: a review correction makes
    the next freeze a new version, and a run of this version refuses an annotation whose result changed since.

    Serialised per project (row lock), so concurrent freezes (a training run, an export) never race
    for the same version number."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    index = project.label_index
    if project.task_type == "classification":
        rows = (Sample.objects.filter(project=project, label__isnull=False)
                .order_by("id").values_list("id", "label", "split"))
        items = [[pk, index[label], split] for pk, label, split in rows if label in index]
        digest = hashlib.sha256(json.dumps([project.labels, items]).encode()).hexdigest()
        per_label = {label: sum(1 for item in items if item[1] == i) for label, i in index.items()}
    else:
        chosen = annotations_final(project=project)
        items = [[a.sample_id, a.pk, a.sample.split, result_digest(a.final_result)] for a in chosen]
        digest = hashlib.sha256(json.dumps([project.labels, items]).encode()).hexdigest()
        per_label = shape_counts(project=project, results=[a.final_result for a in chosen])
    latest = DatasetVersion.objects.filter(project=project).order_by("-number").first()
    if latest is not None and latest.digest == digest:
        return latest
    counts = {split: sum(1 for item in items if item[2] == split) for split in ("train", "val", "test")}
    counts["per_label"] = per_label
    last_label_at = Annotation.objects.filter(sample__project=project).aggregate(last=Max("created_at"))["last"]
    return DatasetVersion.objects.create(
        project=project, number=(latest.number + 1 if latest else 1), labels=list(project.labels),
        items=items, digest=digest, counts=counts, last_label_at=last_label_at)


def shape_counts(*, project: Project, results: list[dict]) -> dict[str, int]:
    """label → how many shapes (boxes, polygons, regions, cuboids; for point segmentation, samples with points)
    of that label the results hold."""
    counts = dict.fromkeys(project.labels, 0)
    for result in results:
        if project.task_type == "point_segmentation":
            for i in {v for v in result.get("point_labels") or [] if isinstance(v, int) and 0 <= v < len(project.labels)}:
                counts[project.labels[i]] += 1
            continue
        for key in ("boxes", "polygons", "regions", "cuboids"):
            for shape in result.get(key) or []:
                if shape.get("label") in counts:
                    counts[shape["label"]] += 1
    return counts


# -- training runs --------------------------------------------------------------------------------

def training_run_create(*, project: Project, user, epochs: int | None = None, seed: int = 0,
                        learner: str | None = None, params: dict | None = None,
                        weights: dict | None = None) -> TrainingRun:
    """Queue a training run on the project's frozen labels.

    ``learner`` names a learner of :mod:`ml.learners` registered for the project's modality and task type (a
    plug-in's name, say); by default a classification project trains the built-in pipeline and every other task
    type its default learner. ``params`` are the learner's constructor arguments; ``weights`` per-class and
    per-slice training weights (:func:`apps.training.learning.sample_weights`), recorded on the run and the model
    card."""
    name = learner_resolve(project=project, learner=learner)
    if name is None and params:
        raise ValidationFailed("params apply to a named learner; the built-in classification pipeline takes epochs "
                               "and seed.", code=ErrorCode.INVALID_PARAMS, details={"params": sorted(params)})
    if name is not None:
        from ml.learners import get

        learner_params(cls=get(project.modality, project.task_type, name), epochs=epochs, seed=seed, params=params)
    weights = weights_check(project=project, weights=weights)
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # serialise run numbers
        dataset = dataset_version_freeze(project=project)
        n_train = dataset.counts.get("train", 0)
        if project.task_type == "classification":
            classes = {item[1] for item in dataset.items if item[2] == "train"}
            if n_train < MIN_LABELS or len(classes) < 2:
                raise ValidationFailed(
                    f"Training needs at least {MIN_LABELS} labeled training samples in at least 2 classes; "
                    f"this project has {n_train} in {len(classes)}.", code=ErrorCode.NOT_ENOUGH_LABELS,
                    details={"labeled_train": n_train, "classes": len(classes)})
        elif n_train < MIN_SHAPE_LABELS:
            raise ValidationFailed(
                f"Training needs at least {MIN_SHAPE_LABELS} labeled training samples; this project has {n_train}.",
                code=ErrorCode.NOT_ENOUGH_LABELS, details={"labeled_train": n_train})
        number = (TrainingRun.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        config = {"epochs": int(epochs or settings.LOOPLAB["TRAIN_EPOCHS"]), "seed": int(seed)}
        if name is not None:  # a learner keeps its own default epochs unless the run names some
            config = {"epochs": int(epochs) if epochs else None, "seed": int(seed), "learner": name,
                      "params": dict(params or {})}
        if weights:
            config["weights"] = weights
        run = TrainingRun.objects.create(
            project=project, number=number, dataset_version=dataset, created_by=user, message="queued",
            config=config)
        PipelineStep.objects.bulk_create([PipelineStep(training_run=run, kind=kind) for kind in StepKind.values])
        _enqueue(run, StepKind.TRAIN)
    return run


def _step_task(kind: str):
    return {StepKind.TRAIN: tasks.train, StepKind.EVALUATE: tasks.evaluate,
            StepKind.EXPORT: tasks.export, StepKind.DEPLOY: tasks.gate}[kind]


def _enqueue(run: TrainingRun, kind: str) -> None:
    job_enqueue(PipelineStep.objects.get(training_run=run, kind=kind), _step_task(kind), run.pk)


def pipeline_step_enqueue(*, step: PipelineStep) -> None:
    """Send a step's message again (the job runner's sweeper, for a step whose worker died)."""
    job_enqueue(step, _step_task(step.kind), step.training_run_id)


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """Cancel a training run: queued steps end at once, a running step stops at its next progress point
    (its model version, if the train step already wrote one, stays as it is). False-free: a finished run
    raises Conflict."""
    if not job_cancel(run):
        raise Conflict(f"Training run {run.pk} has already ended ({run.status}).", code=ErrorCode.JOB_FINISHED,
                       details={"status": run.status})
    for step in PipelineStep.objects.filter(training_run=run).exclude(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED)):
        job_cancel(step)
    if not PipelineStep.objects.filter(training_run=run, status=JobStatus.RUNNING).exists():
        TrainingRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.CANCELLED, message="cancelled", finished_at=timezone.now())
    run.refresh_from_db()
    return run


def _load_split(run: TrainingRun, splits: tuple[str, ...], limit: int | None = None, *, blobs_out: list | None = None,
                ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(model inputs, label indices, sample ids) of the run's samples on ``splits``; their stored contents are
    appended to ``blobs_out`` when given."""
    items = [item for item in run.dataset_version.items if item[2] in splits][:limit]
    if not items:
        return np.zeros((0,)), np.zeros((0,), dtype=np.int64), []
    samples = Sample.objects.in_bulk([item[0] for item in items])
    blobs, labels, ids = [], [], []
    for pk, label_index, _ in items:
        sample = samples.get(pk)
        if sample is None:
            continue
        blobs.append(content_io.read_content(sample))
        labels.append(label_index)
        ids.append(pk)
    X = load_batch(run.project.modality, blobs)
    if blobs_out is not None:
        blobs_out.extend(blobs)
    return X, np.asarray(labels, dtype=np.int64), ids


def pipeline_step_ended(step: PipelineStep, status: str | None) -> None:
    """After a step ended (in its own delivery, or failed by the sweeper): move the run on, or end it."""
    run = TrainingRun.objects.select_related("project", "dataset_version").get(pk=step.training_run_id)
    kind = step.kind
    if status == JobStatus.SUCCEEDED:
        if run.cancel_requested:  # cancelled after the step's last progress point: the run stops here
            TrainingRun.objects.filter(pk=run.pk).exclude(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED)).update(
                status=JobStatus.CANCELLED, message=f"cancelled after {kind}", finished_at=timezone.now())
            return
        if kind != StepKind.DEPLOY:  # the gate writes its own decision as the run's message
            TrainingRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(progress=STAGES[kind][1],
                                                                                  message=f"{kind} done")
        _after(run, kind)
    elif status == JobStatus.FAILED:
        TrainingRun.objects.filter(pk=run.pk).exclude(status__in=(JobStatus.SUCCEEDED, JobStatus.CANCELLED)).update(
            status=JobStatus.FAILED, error=f"{kind} failed: {step.error}"[:20000],
            message=f"{kind} failed: {step.message}"[:500], finished_at=timezone.now())
    elif status == JobStatus.CANCELLED:
        TrainingRun.objects.filter(pk=run.pk).exclude(status__in=(JobStatus.SUCCEEDED, JobStatus.FAILED)).update(
            status=JobStatus.CANCELLED, message=f"cancelled during {kind}", finished_at=timezone.now())


def training_step_run(*, run_id: int, kind: str, task_id: str | None = None, eager: bool = True) -> str | None:
    """Run one pipeline step of run ``run_id`` through the job runner; failure fails the run with the error
    recorded. Returns the step's final status, or None when this delivery had nothing to do."""
    step = PipelineStep.objects.select_related("training_run").filter(training_run_id=run_id, kind=kind).first()
    if step is None:
        return None
    run = TrainingRun.objects.select_related("project", "dataset_version").get(pk=run_id)
    if step.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        # delivered twice, or the step ended and its worker died before moving the run on: do that now
        pipeline_step_ended(step, step.status)
        return None
    if run.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return None
    TrainingRun.objects.filter(pk=run.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), message=f"{kind} started")
    TrainingRun.objects.filter(pk=run.pk).update(stage=kind)
    if run.config.get("learner") == UPLOAD:
        # an uploaded model (apps.training.upload): train and export were recorded as done when it was accepted
        body = {StepKind.TRAIN: _uploaded, StepKind.EVALUATE: learner_evaluate, StepKind.EXPORT: _uploaded,
                StepKind.DEPLOY: _gate}[kind]
    elif run.config.get("learner"):
        body = {StepKind.TRAIN: learner_train, StepKind.EVALUATE: learner_evaluate, StepKind.EXPORT: learner_export,
                StepKind.DEPLOY: _gate}[kind]
    else:
        body = {StepKind.TRAIN: _train, StepKind.EVALUATE: _evaluate, StepKind.EXPORT: _export,
                StepKind.DEPLOY: _gate}[kind]

    def run_body(job: JobContext):
        result = body(run, job.progress) or {}
        with transaction.atomic():  # the step's end and the run's next move commit together
            job.succeed(f"{kind} done", result=result)
            pipeline_step_ended(job.job, JobStatus.SUCCEEDED)

    def on_end(step, status):
        if status != JobStatus.SUCCEEDED:  # success moved the run on inside run_body's transaction
            pipeline_step_ended(step, status)

    return job_execute(PipelineStep, step.pk, task_id=task_id, eager=eager, body=run_body,
                       start_message=f"{kind} started", parent=run, parent_span=STAGES[kind],
                       parent_prefix=f"{kind}: ", on_end=on_end)


def _uploaded(run: TrainingRun, progress) -> dict:
    """An uploaded model's train and export steps: nothing to do. Both are recorded as done when the file is
    accepted, so a delivery of either only moves the run on (the export's, queued after evaluate, queues the gate)."""
    return {"uploaded": True}


def _after(run: TrainingRun, kind: str) -> None:
    order = list(StepKind.values)
    position = order.index(kind)
    if position + 1 < len(order):
        _enqueue(run, order[position + 1])
    else:
        run.refresh_from_db()
        TrainingRun.objects.filter(pk=run.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.SUCCEEDED, progress=100.0, message=(run.message or "done")[:500],
            finished_at=timezone.now())


PROBE_MODALITIES = ("image", "audio", "pointcloud")  # the modalities with label-free embeddings (ml.features)


def _train(run: TrainingRun, progress) -> dict:
    """The built-in classification pipeline's train step. With fewer than PROBE_MAX_LABELS training labels the
    first model is chosen by validation (:mod:`ml.learners.probe`): the network and a linear probe on the label-free
    embeddings are scored on the val split when it has MIN_VAL_SAMPLES samples or more, else by k-fold
    cross-validation on the training labels; the better one is kept (a tie goes to the probe). When the probe
    wins the run goes on as a learner run (``config["learner"] = "probe"``: evaluate and export are the learner
    steps). The choice and its reason are ``config["selection"]``, shown on the model card."""
    from ml.learners.probe import MIN_VAL_SAMPLES, PROBE_MAX_LABELS, cross_validate_choice
    from ml.training import TrainConfig, train_classifier

    project = run.project
    progress(1, "loading the dataset")
    train_blobs: list[bytes] = []
    val_blobs: list[bytes] = []
    X_train, y_train, train_ids = _load_split(run, ("train",), blobs_out=train_blobs)
    X_val, y_val, _ = _load_split(run, ("val",), blobs_out=val_blobs)
    weights = None
    if run.config.get("weights"):
        metas = dict(Sample.objects.filter(pk__in=train_ids).values_list("id", "metadata"))
        weights = sample_weights(run=run, targets=[{"label": run.dataset_version.labels[i]} for i in y_train],
                                 metas=[metas.get(pk) or {} for pk in train_ids])
    config = TrainConfig(epochs=run.config["epochs"], seed=run.config["seed"])
    n_labels = len(project.labels)
    compare = (settings.LOOPLAB.get("FIRST_MODEL_CHOICE", True) and len(y_train) < PROBE_MAX_LABELS
               and project.modality in PROBE_MODALITIES)
    choice = probe = E_train = None
    if compare:
        from ml.learners.probe import probe_class

        probe = probe_class(project.modality)(random_state=int(run.config["seed"]))
        progress(2, f"embedding {len(y_train)} training samples for the linear probe")
        E_train = probe.embed(train_blobs)
        if len(y_val) < MIN_VAL_SAMPLES:
            progress(3, f"choosing the first model: network vs linear probe, cross-validated on {len(y_train)} labels")
            choice = cross_validate_choice(project.modality, X_train, E_train, y_train, n_labels,
                                           train_config=config, sample_weight=weights, random_state=run.pk,
                                           progress=lambda p, m: progress(3 + 0.3 * p, m))
            if choice.chosen == "probe":
                return _keep_probe(run, probe, E_train, y_train, weights, choice, progress)
    X_fit, y_fit, w_fit = X_train, y_train, weights
    if len(y_val) < 5:
        # Too few validation labels for early stopping: hold out every 7th training sample instead.
        hold = np.arange(len(y_train)) % 7 == 0
        X_val, y_val = X_train[hold], y_train[hold]
        X_fit, y_fit = X_train[~hold], y_train[~hold]
        w_fit = weights[~hold] if weights is not None else None
    start = 35 if choice is not None else 3
    progress(start, f"training on {len(y_fit)} samples, validating on {len(y_val)}")
    model = train_classifier(project.modality, X_fit, y_fit, X_val, y_val, n_classes=n_labels,
                             config=config, sample_weight=w_fit,
                             progress=lambda p, m: progress(start + (98 - start) / 100 * p, m))
    if compare and choice is None:  # a val split large enough to compare on (the network early-stopped on it)
        from ml.learners.probe import choose_model

        probe.fit_embeddings(E_train, y_train, list(run.dataset_version.labels), sample_weight=weights)
        probe_acc = float(np.mean(probe.probs_of_embeddings(probe.embed(val_blobs)).argmax(axis=1) == y_val))
        cnn_acc = float(np.mean(model.predict_proba(X_val).argmax(axis=1) == y_val))
        choice = choose_model(probe_acc, cnn_acc, len(y_val), "val split")
        if choice.chosen == "probe":
            return _keep_probe(run, probe, E_train, y_train, weights, choice, progress)
    selection = choice.to_dict() if choice is not None else None
    if selection is None and len(y_train) >= PROBE_MAX_LABELS:
        selection = {"chosen": "cnn", "why": f"network: {len(y_train)} training labels (>= {PROBE_MAX_LABELS})"}
    if selection is not None:
        TrainingRun.objects.filter(pk=run.pk).update(config={**run.config, "selection": selection})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        model.save(path)
        name = file_put(name=f"models/{project.pk}/run{run.pk}/model.pt", content=ContentFile(path.read_bytes()))
    with transaction.atomic():
        mv = model_version_create(project=project, training_run=run, labels=list(run.dataset_version.labels),
                                  checkpoint=name, history=model.history)
        TrainingRun.objects.filter(pk=run.pk).update(model=mv)
    version = mv.version
    best = min(model.history, key=lambda h: h.get("val_loss", float("inf"))) if model.history else {}
    return {"model": mv.pk, "version": version, "n_train": int(len(y_fit)), "n_val": int(len(y_val)),
            "epochs_run": len(model.history), "best_val_acc": best.get("val_acc"), "selection": selection}


def _keep_probe(run: TrainingRun, probe, E_train, y_train, weights, choice, progress) -> dict:
    """The probe won the first-model choice: fit it on every training label, store it as a learner version
    (``learner="probe"``) and turn the run into a learner run, so evaluate and export are the learner steps."""
    project = run.project
    progress(95, f"keeping the linear probe ({choice.why})")
    probe.fit_embeddings(E_train, y_train, list(run.dataset_version.labels), sample_weight=weights)
    name = file_put(name=f"models/{project.pk}/run{run.pk}/model.learner", content=ContentFile(probe.to_bytes()))
    config = {**run.config, "learner": probe.name, "params": probe.get_params(), "selection": choice.to_dict()}
    with transaction.atomic():
        mv = model_version_create(project=project, training_run=run, labels=list(run.dataset_version.labels),
                                  checkpoint=name, history=[])
        model_version_update(model_version=mv, task_type=project.task_type, learner=probe.name)
        TrainingRun.objects.filter(pk=run.pk).update(model=mv, config=config)
    run.config = config
    return {"model": mv.pk, "version": mv.version, "learner": probe.name, "n_train": int(len(y_train)),
            "selection": choice.to_dict()}


def _metadata_slices(sample_ids: list[int]) -> dict[str, np.ndarray]:
    """Slices from metadata keys with few distinct scalar values (e.g. time_of_day=night), 5 samples or more."""
    metas = dict(Sample.objects.filter(pk__in=sample_ids).values_list("id", "metadata"))
    slices = metadata_slices([metas.get(pk) or {} for pk in sample_ids])
    return {name: mask for name, (mask,) in slices.items() if mask.sum() >= 5}


CURVE_VERSIONS = 12  # the learning curve re-scores at most this many versions (the newest ones)


def _learning_curve(mv: ModelVersion, X, y, report) -> dict:
    """This version and up to CURVE_VERSIONS - 1 earlier exported ones, all scored on this version's test
    split, so the curve's points differ only in the labels the models had."""
    from ml.evaluation import evaluate

    points = [{"model": mv.pk, "version": mv.version, "labels": mv.training_run.dataset_version.n_labeled,
               "accuracy": report.accuracy, "macro_f1": report.macro_f1}]
    earlier = (ModelVersion.objects.filter(project_id=mv.project_id, version__lt=mv.version, manifest__isnull=True)
               .exclude(onnx="")
               .select_related("training_run__dataset_version").order_by("-version")[:CURVE_VERSIONS - 1])
    for old in earlier:
        if list(old.labels) != list(mv.labels):  # another label set: not comparable
            continue
        # cache=False: re-scoring a dozen old versions must not push the serving model out of the cache
        r = evaluate(y, model_runner(model_version=old, cache=False).predict_proba(X), list(mv.labels))
        points.append({"model": old.pk, "version": old.version, "labels": old.training_run.dataset_version.n_labeled,
                       "accuracy": r.accuracy, "macro_f1": r.macro_f1})
    return {"n_test": int(len(y)), "points": sorted(points, key=lambda p: p["version"])}


def _probs_of(mv: ModelVersion, X: np.ndarray, ids: list[int]) -> np.ndarray:
    """A deployed classifier's probabilities on the test samples: the built-in one's on the model inputs, a
    learner's (a plug-in's) on the stored contents."""
    runner = model_runner(model_version=mv)
    if not runner.is_learner:
        return runner.predict_proba(X)
    samples = Sample.objects.in_bulk(ids)
    return np.asarray(runner.predict([content_io.read_content(samples[pk]) for pk in ids]).extra["probs"])


def _evaluate(run: TrainingRun, progress) -> dict:
    from ml.evaluation import compare_models, confusion_png, evaluate

    mv = ModelVersion.objects.get(pk=run.model_id)
    progress(5, "loading the test split")
    X, y, ids = _load_split(run, ("test",))
    if len(y) == 0:
        return {"skipped": "no labeled test samples: label some test-split samples to evaluate"}
    labels = list(mv.labels)
    model = model_checkpoint_load(model_version=mv)
    progress(30, f"evaluating on {len(y)} test samples")
    probs = model.predict_proba(X)
    slices = _metadata_slices(ids)
    report = evaluate(y, probs, labels, slices=slices)
    png = confusion_png(report, title=f"model v{mv.version} on {len(y)} test samples")
    png_name = file_put(name=f"models/{mv.project_id}/run{run.pk}/confusion.png", content=ContentFile(png))
    baseline = {}
    deployment = current_deployment(project=run.project)
    if deployment is not None and deployment.model_version_id != mv.pk:
        progress(70, "evaluating the deployed model on the same test set")
        old = deployment.model_version
        old_probs = _probs_of(old, X, ids)
        baseline = {"baseline_model": old,
                    "baseline_report": evaluate(y, old_probs, labels, slices=slices).to_dict(),
                    "comparison": compare_models(y, probs, old_probs, labels, slices=slices).to_dict()}
    progress(85, "scoring earlier versions on this test set (learning curve)")
    model_version_update(model_version=mv, eval_report=report.to_dict(), confusion_png=png_name,
                         curve=_learning_curve(mv, X, y, report), **baseline)
    return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "n_test": int(len(y)),
            "baseline_accuracy": (mv.baseline_report or {}).get("accuracy")}


INT8_CALIBRATION = 256  # training samples that calibrate static int8
INT8_EVAL = 512  # samples on which fp32 and int8 accuracy are compared


def _int8_choice(run: TrainingRun, model, fp32_path: Path, X, y, split: str, progress) -> dict:
    """Quantize to static int8, compare with fp32 on (X, y) and time both; decide what serving runs with
    ml.serving.runtime_decision (int8 only when >= 1.2x faster at batch 1 and 64 and <= 1 point lost).
    Returns the runtime report; writes ``int8.onnx`` beside ``fp32_path`` when quantization worked."""
    from ml.errors import MLError
    from ml.export import OnnxClassifier, compare_runtimes, quantize_static_int8
    from ml.serving import measure_latency, runtime_decision

    if run.project.task_type != "classification":
        return {"decision": {"runtime": "fp32", "reason": "int8 is chosen by accuracy, measured for classifiers only"}}
    if len(y) == 0:
        return {"decision": {"runtime": "fp32", "reason": "no labeled samples to compare int8 with fp32 on"}}
    progress(65, f"quantizing to int8 (static, calibrated on up to {INT8_CALIBRATION} training samples)")
    X_cal, _, _ = _load_split(run, ("train",), limit=INT8_CALIBRATION)
    int8_path = fp32_path.with_name("int8.onnx")
    try:
        quantize_static_int8(fp32_path, int8_path, X_cal if len(X_cal) else X[:INT8_CALIBRATION])
    except (MLError, ValueError, RuntimeError) as exc:  # an op onnxruntime cannot quantize: serve fp32
        return {"decision": {"runtime": "fp32", "reason": f"int8 quantization failed: {exc}"}}
    X, y = X[:INT8_EVAL], y[:INT8_EVAL]
    progress(75, f"comparing int8 with fp32 on {len(y)} {split} samples")
    cmp = compare_runtimes(model, {"fp32": fp32_path, "int8": int8_path}, X, y)
    progress(85, "timing fp32 and int8 at batch 1 and 64")
    seconds = float(settings.LOOPLAB["EXPORT_TIMING_S"])
    stats, sessions = {}, {}
    for name, path in (("fp32", fp32_path), ("int8", int8_path)):
        sessions[name] = OnnxClassifier(path)
        stats[name] = measure_latency(sessions[name].predict_proba, X, (1, 64), min_seconds=seconds)
    decision = runtime_decision(stats["fp32"], stats["int8"], cmp.runtimes["fp32"]["accuracy"],
                                cmp.runtimes["int8"]["accuracy"])
    meta = sessions["int8"].metadata
    return {
        "decision": decision.to_dict(), "eval_split": split, "n_eval": int(len(y)),
        "fp32": {**cmp.runtimes["fp32"], "latency": stats["fp32"]},
        "int8": {**cmp.runtimes["int8"], "latency": stats["int8"], "precision": meta.get("precision"),
                 "reduce_range": meta.get("reduce_range") == "true"},
    }


def _export(run: TrainingRun, progress) -> dict:
    from ml.export import export_onnx, parity_report

    mv = ModelVersion.objects.get(pk=run.model_id)
    model = model_checkpoint_load(model_version=mv)
    progress(10, "exporting to ONNX")
    split = "test"
    X, y, _ = _load_split(run, ("test",))
    if len(X) == 0:
        split = "val"
        X, y, _ = _load_split(run, ("val", "train"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path)
        progress(50, "checking ONNX against torch")
        parity = parity_report(model, path, X[:256])
        if not parity.passed:
            raise RuntimeError(f"ONNX export disagrees with torch: {parity.to_dict()}")
        report = (_int8_choice(run, model, path, X, y, split, progress) if settings.LOOPLAB["EXPORT_INT8"]
                  else {"decision": {"runtime": "fp32", "reason": "int8 export is off (LOOPLAB_EXPORT_INT8)"}})
        folder = f"models/{mv.project_id}/run{run.pk}"
        name = file_put(name=f"{folder}/model.onnx", content=ContentFile(path.read_bytes()))
        int8_name = ""
        if path.with_name("int8.onnx").exists():
            int8_name = file_put(name=f"{folder}/model.int8.onnx", content=ContentFile(path.with_name("int8.onnx").read_bytes()))
    model_version_update(model_version=mv, onnx=name, parity=parity.to_dict(), onnx_int8=int8_name,
                         runtime=report["decision"]["runtime"], runtime_report=report)
    return {"parity": parity.to_dict(), "runtime": mv.runtime, "reason": report["decision"]["reason"]}


def _gate(run: TrainingRun, progress) -> dict:
    """Deploy automatically when the project's gate is on and the new model does not regress."""
    project = run.project
    mv = ModelVersion.objects.get(pk=run.model_id)
    progress(10, "deciding whether to deploy")  # the last point where a cancel stops a deploy
    if not project.auto_deploy:
        decision = {"deployed": False, "reason": "the project's deploy gate is off: a lead deploys by hand"}
    elif mv.eval_report is None:
        decision = {"deployed": False, "reason": "no evaluation on a test split, so no evidence it does not regress"}
    elif mv.comparison and mv.comparison.get("regressed"):
        decision = {"deployed": False, "reason": "regression against the deployed model", "comparison": mv.comparison}
    elif mv.comparison and mv.comparison.get("comparable") is False:
        decision = {"deployed": False, "reason": "not comparable with the deployed model (another task type or label "
                                                 "set): deploy it by hand", "comparison": mv.comparison}
    else:
        with transaction.atomic():
            Project.objects.select_for_update().filter(pk=project.pk).first()
            current = current_deployment(project=project)
            if current is not None and current.model_version_id == mv.pk:
                # an earlier attempt of this step deployed it, then its worker died before recording that
                decision = {"deployed": True, "deployment": current.pk, "reason": "deployed by the gate",
                            "label_to_serving_s": current.label_to_serving_s}
            elif (current.model_version_id if current else None) != mv.baseline_model_id:
                # Compared against a model that is no longer the one serving: no evidence either way.
                decision = {"deployed": False, "reason": "the deployed model changed after this one was evaluated; "
                                                         "deploy it by hand or train again"}
            else:
                deployment = deployment_create(project=project, model_version=mv, reason="gate")
                decision = {"deployed": True, "deployment": deployment.pk,
                            "reason": "no deployed model yet" if mv.baseline_model_id is None
                            else "no regression against the deployed model",
                            "label_to_serving_s": deployment.label_to_serving_s}
    TrainingRun.objects.filter(pk=run.pk).update(
        message=("deployed by the gate" if decision["deployed"] else f"not deployed: {decision['reason']}"))
    return decision

