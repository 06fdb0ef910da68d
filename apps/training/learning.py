"""Training runs on a learner of :mod:`ml.learners`: every task type, and a team's plug-in, through one contract.

A run whose ``config["learner"]`` names a learner (every task type but classification always does; a
classification run does when a learner is asked for, e.g. an installed plug-in) runs these step bodies instead of
the built-in classification pipeline's (``apps.training.services``):

- **train**: the frozen dataset version's train split (stored contents and the chosen annotations' results, per
  sample weights from the run's ``weights``), the val split to validate on; ``Learner.fit`` with the job's
  progress (a cancel stops it at the next epoch); the fitted learner's blob is the checkpoint.
- **evaluate**: the learner's predictions (an uploaded model's, ``learner == "upload"``, through its ONNX runner:
  it has no learner blob) on the test split scored by the task type's reference metrics
  (:func:`ml.metrics.evaluate`), per class and per metadata slice; the deployed model on the same samples; the
  paired comparison of the two (:func:`ml.metrics.compare.compare_reports`: McNemar or a sign-flip permutation
  test, per class and per slice with Holm's correction), which the gate reads; the learning curve.
- **export**: ``Learner.export_onnx`` and the parity check of onnxruntime against the learner on up to
  ``PARITY_SAMPLES`` samples (decoding included); a failed check fails the run, so what serves is what was
  evaluated. Serving runs the ONNX file through :func:`ml.learners.runners.onnx_runner` and the manifest.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.files import file_put
from apps.labeling.models import Annotation
from apps.projects.models import Project
from apps.registry.models import ModelVersion
from apps.registry.runtime import load_batch, model_runner
from apps.registry.selectors import current_deployment
from apps.registry.services import model_version_create, model_version_update
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.samples.selectors import metadata_slices
from apps.training.models import TrainingRun

log = logging.getLogger(__name__)

UPLOAD = "upload"  # config["learner"] of an uploaded ONNX model's run and its ModelVersion.learner (apps.training.upload)
PARITY_SAMPLES = 32  # samples on which the ONNX export is checked against the learner
CURVE_VERSIONS = 8  # the learning curve re-scores at most this many versions (the newest ones)
MIN_SLICE = 5  # a metadata slice needs this many samples to get its own figures


def learner_resolve(*, project: Project, learner: str | None) -> str | None:
    """The learner a new run of ``project`` uses: ``learner`` when given (it must be registered for the project's
    modality and task type), else the default one; None for a classification project without ``learner`` (the
    built-in classification pipeline)."""
    from ml.learners import UnknownLearner, available, get

    if learner is None and project.task_type == "classification":
        return None
    try:
        return get(project.modality, project.task_type, learner).name
    except UnknownLearner:
        names = available(project.modality, project.task_type)
        raise ValidationFailed(
            f"No learner {learner!r} for {project.task_type} on {project.modality}; "
            f"available: {', '.join(names) or 'none'}.", code=ErrorCode.UNKNOWN_LEARNER,
            details={"learner": learner, "available": names}) from None


def learner_params(*, cls: type, epochs: int | None, seed: int, params: dict | None) -> dict:
    """Constructor arguments for a learner class: the run's seed as ``random_state`` and its ``epochs`` where the
    class takes them, then ``params`` (names the class does not take are refused before anything is queued)."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    out = {}
    if "random_state" in accepted:
        out["random_state"] = int(seed)
    if epochs is not None and "epochs" in accepted:
        out["epochs"] = int(epochs)
    unknown = sorted(set(params or {}) - accepted)
    if unknown:
        raise ValidationFailed(f"The learner does not take {', '.join(unknown)}.", code=ErrorCode.INVALID_PARAMS,
                               details={"unknown": unknown, "accepted": sorted(accepted)})
    out.update(params or {})
    epochs_given = out.get("epochs")
    if epochs_given is not None and (isinstance(epochs_given, bool) or not isinstance(epochs_given, int)
                                     or not 1 <= epochs_given <= MAX_EPOCHS):
        raise ValidationFailed(f"epochs must be an integer in 1..{MAX_EPOCHS}.", code=ErrorCode.INVALID_PARAMS,
                               details={"field": "epochs", "value": repr(epochs_given)[:40]})
    _check_learner_params(cls, out)
    return out


MAX_EPOCHS = 500  # as the run's own epochs field


def _check_learner_params(cls: type, kwargs: dict) -> None:
    """Build the learner with these arguments and run its own parameter checks (``_check_params``, where it has
    one) now, so a bad value is a 422 before anything is queued instead of a failed run in the worker."""
    from ml.errors import MLError

    try:
        learner = cls(**kwargs)
        check = getattr(learner, "_check_params", None)
        if callable(check):
            check()
    except (MLError, TypeError, ValueError) as exc:
        raise ValidationFailed(f"The learner refuses these params: {getattr(exc, 'message', None) or exc}",
                               code=ErrorCode.INVALID_PARAMS, details={"params": sorted(kwargs)}) from None


def _learner_class(mv_or_run_project: Project, name: str) -> type:
    from ml.learners import get

    return get(mv_or_run_project.modality, mv_or_run_project.task_type, name)


def run_dataset(run: TrainingRun, splits: tuple[str, ...], *, limit: int | None = None):
    """The run's dataset version restricted to ``splits`` as an :class:`ml.learners.Dataset` (contents read from
    storage; a sample whose content is gone is left out and logged), with metadata slices and the run's
    per-sample weights."""
    from ml.learners import Dataset

    version = run.dataset_version
    labels = tuple(version.labels)
    items = [item for item in version.items if item[2] in splits][:limit]
    samples = Sample.objects.in_bulk([item[0] for item in items])
    if run.project.task_type == "classification":
        targets_by_pk = {pk: {"label": labels[index]} for pk, index, _ in items}
    else:
        anns = Annotation.objects.in_bulk([item[1] for item in items])
        targets_by_pk = {item[0]: anns[item[1]].final_result for item in items if item[1] in anns}
        changed = [item[0] for item in items if item[1] in anns and len(item) > 3
                   and result_digest(targets_by_pk[item[0]]) != item[3]]
        if changed:
            raise ValidationFailed(
                f"{len(changed)} label(s) of dataset version {version.number} changed after it was frozen (a review "
                "correction): train again to freeze the labels as they are now.", code=ErrorCode.DATASET_CHANGED,
                details={"samples": changed[:20]})
    contents, targets, ids, metas = [], [], [], []
    for item in items:
        pk = item[0]
        sample = samples.get(pk)
        if sample is None or pk not in targets_by_pk:
            continue
        try:
            contents.append(content_io.read_content(sample))
        except content_io.ContentUnavailable as exc:
            log.warning("training run %s: sample %s left out: %s", run.pk, pk, exc)
            continue
        targets.append(targets_by_pk[pk])
        ids.append(pk)
        metas.append(sample.metadata or {})
    slices = {name: mask for name, (mask,) in metadata_slices(metas).items() if mask.sum() >= MIN_SLICE} if metas else {}
    weights = sample_weights(run=run, targets=targets, metas=metas)
    return Dataset(contents=contents, targets=targets, labels=labels, sample_weight=weights, slices=slices, ids=ids)


MAX_WEIGHT = 100.0


def weights_check(*, project: Project, weights: dict | None) -> dict | None:
    """The run's training weights, checked: ``{"classes": {label: w}, "slices": [{"where": predicate,
    "weight": w}]}`` with known labels, predicates :func:`ml.slices.slice_mask` accepts, and weights in
    (0, MAX_WEIGHT]. None or empty → None."""
    from ml.slices import predicate_problem

    if not weights:
        return None

    def fail(message: str, field: str):
        raise ValidationFailed(message, code=ErrorCode.INVALID_WEIGHTS, details={"field": field})

    def weight(value, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < float(value) <= MAX_WEIGHT:
            fail(f"{field} must be a number in (0, {MAX_WEIGHT:g}].", field)
        return float(value)

    if not isinstance(weights, dict) or set(weights) - {"classes", "slices"}:
        fail("weights takes 'classes' (label → weight) and 'slices' (a list of {where, weight}).", "weights")
    classes = weights.get("classes") or {}
    if not isinstance(classes, dict):
        fail("weights.classes must map labels to weights.", "weights.classes")
    out = {"classes": {}, "slices": []}
    for label, value in classes.items():
        if label not in project.labels:
            fail(f"weights.classes names {label!r}, which is not one of the project's labels.", f"weights.classes.{label}")
        out["classes"][label] = weight(value, f"weights.classes.{label}")
    rules = weights.get("slices") or []
    if not isinstance(rules, list) or len(rules) > 20:
        fail("weights.slices must be a list of at most 20 {where, weight}.", "weights.slices")
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict) or set(rule) != {"where", "weight"}:
            fail("each slice weight is {\"where\": {metadata predicate}, \"weight\": w}.", f"weights.slices[{i}]")
        problem = predicate_problem(rule["where"])
        if problem is not None:
            key, reason = problem
            fail(f"weights.slices[{i}].where{'.' + key if key else ''}: {reason}", f"weights.slices[{i}].where")
        out["slices"].append({"where": rule["where"], "weight": weight(rule["weight"], f"weights.slices[{i}].weight")})
    return {k: v for k, v in out.items() if v} or None


def result_digest(result) -> str:
    """A short digest of an annotation result (what a dataset version froze)."""
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()[:16]


def sample_weights(*, run: TrainingRun, targets: list, metas: list[dict]) -> np.ndarray | None:
    """Per-sample training weights from the run's ``config["weights"]`` (``{"classes": {label: w}, "slices":
    [{"where": {...}, "weight": w}]}``); None when the run has none. A sample's weight is the product of its
    slices' weights and the largest weight of the classes its label holds."""
    spec = (run.config or {}).get("weights") or {}
    if not spec:
        return None
    from ml.metrics import class_masks
    from ml.slices import slice_mask

    w = np.ones(len(targets), dtype=np.float64)
    classes = spec.get("classes") or {}
    if classes:
        masks = class_masks(run.project.task_type, targets, list(run.dataset_version.labels))
        best = np.ones(len(targets), dtype=np.float64)
        seen = np.zeros(len(targets), dtype=bool)
        for label, weight in classes.items():
            mask = masks.get(label)
            if mask is None:
                continue
            best = np.where(mask & ~seen, float(weight), np.where(mask, np.maximum(best, float(weight)), best))
            seen |= mask
        w *= best
    for rule in spec.get("slices") or []:
        w[slice_mask(metas, rule["where"])] *= float(rule["weight"])
    return w


# -- the steps ---------------------------------------------------------------------------------------------------

def learner_train(run: TrainingRun, progress) -> dict:
    project = run.project
    config = run.config
    cls = _learner_class(project, config["learner"])
    progress(1, "loading the dataset")
    train = run_dataset(run, ("train",))
    val = run_dataset(run, ("val",))
    learner = cls(**learner_params(cls=cls, epochs=config.get("epochs"), seed=config.get("seed", 0),
                                   params=config.get("params")))
    progress(3, f"training {config['learner']} on {len(train)} samples, validating on {len(val)}")
    learner.fit(train, validation=val if len(val) else None, progress=lambda p, m: progress(3 + 0.95 * p, m))
    name = file_put(name=f"models/{project.pk}/run{run.pk}/model.learner", content=ContentFile(learner.to_bytes()))
    history = list(getattr(learner, "history_", None) or [])
    with transaction.atomic():
        mv = model_version_create(project=project, training_run=run, labels=list(run.dataset_version.labels),
                                  checkpoint=name, history=history)
        model_version_update(model_version=mv, task_type=project.task_type, learner=config["learner"])
        TrainingRun.objects.filter(pk=run.pk).update(model=mv)
    return {"model": mv.pk, "version": mv.version, "learner": config["learner"], "n_train": len(train),
            "n_val": len(val), "weighted": train.sample_weight is not None}


def learner_load(*, model_version: ModelVersion):
    """The fitted learner of a learner's model version (its checkpoint blob)."""
    cls = _learner_class(model_version.project, model_version.learner)
    with default_storage.open(model_version.checkpoint.name, "rb") as fh:
        return cls.from_bytes(fh.read())


def version_results(*, model_version: ModelVersion, contents: list[bytes], cache: bool = True) -> list[dict]:
    """Any exported version's results on ``contents`` (a learner's through its runner; a built-in classifier's
    probabilities decoded to ``{"label", "scores"}``), for scoring it on another version's test set."""
    runner = model_runner(model_version=model_version, cache=cache)
    if runner.is_learner:
        return list(runner.predict(contents).results)
    from ml.learners.classification import decode_probs

    probs = runner.predict_proba(load_batch(model_version.project.modality, contents))
    return decode_probs(np.asarray(probs), list(model_version.labels))[0]


def learner_evaluate(run: TrainingRun, progress) -> dict:
    from ml.metrics import class_masks, evaluate
    from ml.metrics.compare import compare_reports

    mv = ModelVersion.objects.select_related("project").get(pk=run.model_id)
    progress(5, "loading the test split")
    test = run_dataset(run, ("test",))
    if len(test) == 0:
        return {"skipped": "no labeled test samples: label some test-split samples to evaluate"}
    progress(20, f"evaluating on {len(test)} test samples")
    if mv.learner == UPLOAD or not mv.checkpoint:
        # an uploaded model has no learner to load: it is evaluated as it serves, through its ONNX runner
        results = version_results(model_version=mv, contents=list(test.contents))
    else:
        results = learner_load(model_version=mv).predict(test.contents).results
    report = evaluate(mv.task_type, results, test.targets, test.labels, test.slices)
    out = {**report.to_dict(), "sample_ids": list(test.ids)}
    baseline = {}
    deployment = current_deployment(project=run.project)
    if deployment is not None and deployment.model_version_id != mv.pk:
        old = deployment.model_version
        if old.task_type != mv.task_type or list(old.labels) != list(mv.labels):
            baseline = {"baseline_model": old, "comparison": {
                "regressed": False, "comparable": False,
                "reasons": ["the deployed model has another task type or label set; no paired comparison"]}}
        else:
            progress(60, "evaluating the deployed model on the same test set")
            old_report = evaluate(mv.task_type, version_results(model_version=old, contents=list(test.contents)),
                                  test.targets, test.labels, test.slices)
            cmp = compare_reports(old_report, report, slices=test.slices,
                                  classes=class_masks(mv.task_type, test.targets, test.labels), random_state=run.pk)
            baseline = {"baseline_model": old, "baseline_report": old_report.to_dict(), "comparison": cmp.to_dict()}
    progress(80, "scoring earlier versions on this test set (learning curve)")
    curve = _curve(mv, test, report)
    model_version_update(model_version=mv, eval_report=out, curve=curve, **baseline)
    return {"primary": report.primary, report.primary: report.metrics.get(report.primary), "n_test": len(test),
            "regressed": (baseline.get("comparison") or {}).get("regressed")}


def _curve(mv: ModelVersion, test, report) -> dict:
    from ml.metrics import evaluate

    primary = report.primary
    points = [{"model": mv.pk, "version": mv.version, "labels": mv.training_run.dataset_version.n_labeled,
               primary: report.metrics.get(primary)}]
    earlier = (ModelVersion.objects.filter(project_id=mv.project_id, task_type=mv.task_type, version__lt=mv.version)
               .exclude(onnx="").select_related("training_run__dataset_version", "project").order_by("-version")
               [:CURVE_VERSIONS - 1])
    for old in earlier:
        if list(old.labels) != list(mv.labels):
            continue
        results = version_results(model_version=old, contents=list(test.contents), cache=False)
        r = evaluate(mv.task_type, results, test.targets, test.labels)
        points.append({"model": old.pk, "version": old.version, "labels": old.training_run.dataset_version.n_labeled,
                       primary: r.metrics.get(primary)})
    return {"n_test": len(test), "metric": primary, "points": sorted(points, key=lambda p: p["version"])}


def learner_export(run: TrainingRun, progress) -> dict:
    mv = ModelVersion.objects.select_related("project").get(pk=run.model_id)
    learner = learner_load(model_version=mv)
    progress(10, "exporting to ONNX")
    export = learner.export_onnx()
    check = run_dataset(run, ("test",), limit=PARITY_SAMPLES)
    if len(check) == 0:
        check = run_dataset(run, ("val", "train"), limit=PARITY_SAMPLES)
    progress(50, f"checking ONNX against the learner on {len(check)} samples")
    parity = learner.parity(export, list(check.contents))
    if not parity.passed:
        raise RuntimeError(f"ONNX export disagrees with the learner: {parity.to_dict()}")
    name = file_put(name=f"models/{mv.project_id}/run{run.pk}/model.onnx", content=ContentFile(export.model))
    report = {"decision": {"runtime": "fp32", "reason": "int8 is measured for the built-in classifiers only"}}
    model_version_update(model_version=mv, onnx=name, manifest=dict(export.manifest), parity=parity.to_dict(),
                         runtime="fp32", runtime_report=report)
    return {"parity": parity.to_dict(), "runtime": "fp32"}
