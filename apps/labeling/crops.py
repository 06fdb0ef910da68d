"""Derived samples: a detection or point-segmentation project sends its objects, as crops, into a linked
classification project (say, the motorcycles a detector found, for a "which kind of motorcycle" project).

:func:`crops_send` cuts every object of the source project (its labeled shapes, or the deployed model's detections
at or above ``min_score``) out of its sample (:mod:`ml.crops`) and pushes the crops into the target project through
the normal ingest: each crop is a sample that links to its parent sample and the shape it shows
(``Sample.parent``, ``Sample.parent_shape``), inherits the parent's metadata (plus ``parent_label`` and
``crop_source``), is deduplicated by content like any push (sending twice adds nothing), and is put on the
**parent's split**, so a crop of a test image never trains the child's model. A round in the target project then
picks among the crops like any other samples.
"""
from __future__ import annotations

import logging

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.labeling.selectors import annotations_final
from apps.projects.models import Project
from apps.registry.runtime import current_model_runner
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.samples.services import IngestItem, samples_ingest

log = logging.getLogger(__name__)

SOURCES = ("labels", "predictions")
MAX_CROPS = 5000  # crops one call makes at most (it runs in the request; call again with ``after``)
MAX_PARENTS = 2000  # source samples one call reads at most
PREDICT_BATCH = 16
INGEST_BATCH = 500
MODALITY_OF_TASK = {"detection": "image", "point_segmentation": "pointcloud"}


def crops_send(*, project: Project, target: Project, source: str = "labels", min_score: float = 0.5,
               labels: list[str] | None = None, padding: float = 0.1, limit: int = 1000, after: int = 0) -> dict:
    """Send ``project``'s objects to ``target`` as samples; returns counts (parents read, objects found, crops
    created, duplicates, skipped) and the new sample ids. Refuses a target that is not a classification project
    of the same modality, an unknown source or label, and ``source="predictions"`` without a deployed model.

    Objects already sent (the same parent, shape and source) are skipped, so ``limit`` counts new objects; a call
    stops after ``limit`` objects or ``MAX_PARENTS`` source samples and answers ``next_after``: pass it as ``after``
    to go on with the next samples (None when every sample was read)."""
    from ml.crops import cloud_objects, crop_image, crop_points, image_objects
    from ml.errors import MLError

    if project.task_type not in MODALITY_OF_TASK:
        raise ValidationFailed(f"Objects are sent from detection and point-segmentation projects; this one is "
                               f"{project.task_type}.", code=ErrorCode.UNSUPPORTED_TASK_TYPE,
                               details={"task_type": project.task_type})
    if target.pk == project.pk or target.task_type != "classification" or target.modality != project.modality:
        raise ValidationFailed(f"The target must be another {project.modality} classification project.",
                               code=ErrorCode.INVALID_TARGET,
                               details={"target": target.pk, "modality": target.modality, "task_type": target.task_type})
    if source not in SOURCES:
        raise ValidationFailed(f"source must be one of {', '.join(SOURCES)}.", code=ErrorCode.INVALID_SOURCE,
                               details={"allowed": list(SOURCES)})
    unknown = sorted(set(labels or []) - set(project.labels))
    if unknown:
        raise ValidationFailed(f"Unknown label(s): {', '.join(unknown)}.", code=ErrorCode.INVALID_LABEL,
                               details={"unknown": unknown})
    if not (0.0 <= float(min_score) <= 1.0) or not (0.0 <= float(padding) <= 1.0):
        raise ValidationFailed("min_score and padding must be within 0..1.", code=ErrorCode.INVALID_SOURCE,
                               details={"min_score": min_score, "padding": padding})
    if not 1 <= int(limit) <= MAX_CROPS:
        raise ValidationFailed(f"limit must be between 1 and {MAX_CROPS}.", code=ErrorCode.INVALID_LIMIT)
    counts = {"parents": 0, "objects": 0, "created": 0, "duplicates": 0, "skipped": 0}

    sent = {(pk, kind, index, src) for pk, kind, index, src in Sample.objects.filter(
        project=target, parent__project=project).values_list(
        "parent_id", "parent_shape__kind", "parent_shape__index", "parent_shape__source")}
    if source == "labels":
        parents = ((a.sample, a.final_result) for a in annotations_final(project=project) if a.sample_id > after)
    else:
        runner = current_model_runner(project=project)
        if runner is None or not runner.is_learner:
            raise Conflict("No model of this project's task type is deployed; send labels, or deploy one first.",
                           code=ErrorCode.NO_DEPLOYMENT)
        parents = _predicted(Sample.objects.filter(project=project, pk__gt=after).order_by("id"), runner, counts)
    items: list[IngestItem] = []
    created: list[int] = []
    next_after = None

    def flush():
        if items:
            for r in samples_ingest(project=target, items=list(items)):
                counts["created" if r["status"] == "created" else "duplicates"] += 1
                if r["status"] == "created":
                    created.append(r["id"])
            items.clear()

    last_done = after
    for sample, content, result in _with_contents(parents, counts):
        if counts["objects"] >= limit or counts["parents"] >= MAX_PARENTS:
            next_after = last_done
            break
        counts["parents"] += 1
        if project.task_type == "detection":
            objects = image_objects(result, min_score=min_score if source == "predictions" else None, labels=labels)
        else:
            objects = [o for o in cloud_objects(result, project.labels, keep=labels)
                       if source == "labels" or o.get("score", 1.0) >= min_score]
        objects = [o for o in objects if (sample.pk, o["kind"], o["index"], source) not in sent]
        room = limit - counts["objects"]
        if len(objects) > room:  # this sample is not finished: the next call starts with it
            objects, next_after = objects[:room], last_done
        for obj in objects:
            counts["objects"] += 1
            try:
                data = (crop_image(content, obj["box"], padding=padding) if "box" in obj
                        else crop_points(content, obj["points"]))
            except MLError as exc:
                log.warning("crops: object %s of sample %s skipped: %s", obj["index"], sample.pk, exc)
                data = None
            if data is None:
                counts["skipped"] += 1
                continue
            shape = {"project": project.pk, "source": source, "label": obj["label"], "kind": obj["kind"],
                     "index": obj["index"]}
            if "box" in obj:
                shape["box"] = [round(v, 6) for v in obj["box"]]
            else:
                shape["n_points"] = obj["n_points"]
            if "score" in obj:
                shape["score"] = round(obj["score"], 6)
            items.append(IngestItem(
                external_id=f"{sample.external_id or sample.pk}#{obj['kind']}{obj['index']}"[:255], content=data,
                metadata={**(sample.metadata or {}), "parent_label": obj["label"], "crop_source": source},
                split=sample.split, parent_id=sample.pk, parent_shape=shape))
            if len(items) >= INGEST_BATCH:
                flush()
        if next_after is not None:
            break
        last_done = sample.pk
    flush()
    return {**counts, "target": target.pk, "samples": created, "next_after": next_after}


def _with_contents(parents, counts):
    """(sample, content, result) for each (sample, result) or (sample, content, result) parent; unreadable samples
    are counted as skipped."""
    from ml.errors import MLError

    for parent in parents:
        if len(parent) == 3:
            yield parent
            continue
        sample, result = parent
        try:
            yield sample, content_io.read_content(sample), result
        except (content_io.ContentUnavailable, MLError) as exc:
            log.warning("crops: sample %s skipped: %s", sample.pk, exc)
            counts["skipped"] += 1


def _predicted(samples, runner, counts):
    """(sample, content, the deployed model's result) in batches of PREDICT_BATCH; a batch that fails is
    predicted one by one, and samples that cannot be read or predicted are counted as skipped."""
    from ml.errors import MLError

    batch = []

    def run(batch):
        try:
            results = runner.predict([c for _, c in batch]).results
            yield from ((s, c, r) for (s, c), r in zip(batch, results))
        except MLError:
            for s, c in batch:
                try:
                    yield s, c, runner.predict([c]).results[0]
                except MLError as exc:
                    log.warning("crops: sample %s skipped: %s", s.pk, exc)
                    counts["skipped"] += 1

    for sample in samples.iterator(chunk_size=500):
        try:
            batch.append((sample, content_io.read_content(sample)))
        except content_io.ContentUnavailable as exc:
            log.warning("crops: sample %s skipped: %s", sample.pk, exc)
            counts["skipped"] += 1
        if len(batch) >= PREDICT_BATCH:
            yield from run(batch)
            batch = []
    if batch:
        yield from run(batch)
