"""Writes for samples: ingest (validated, deduplicated, split, stored) and embeddings."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from apps.core.errors import ErrorCode, PayloadTooLarge, ValidationFailed
from apps.core.jobs import job_enqueue
from apps.projects.models import Project
from apps.projects.selectors import split_for_hash
from apps.registry.runtime import current_model_runner, load_batch, predict_contents
from apps.samples import content as content_io
from apps.samples.models import EmbeddingJob, Sample
from apps.samples.points import sample_points
from apps.samples.selectors import label_free_space
from apps.samples.tasks import embed_job
from ml import modalities

log = logging.getLogger(__name__)

MAX_EXTERNAL_ID = 255
MAX_URI = 2000


@dataclass
class IngestItem:
    external_id: str = ""
    content: bytes | None = None
    uri: str | None = None
    metadata: dict = field(default_factory=dict)
    # derived samples (crops): the split is the parent's (no leak between splits), and the link to it
    split: str | None = None
    parent_id: int | None = None
    parent_shape: dict | None = None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL, and lone surrogates (no UTF-8 for them)


def _shown(text: str) -> str:
    """``text`` with the characters that cannot be stored (or sent back as UTF-8) written as \\uXXXX."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def unstorable_text(value, path: str) -> tuple[str, str] | None:
    """(field path, problem) for the first text in ``value`` (a string, or the keys and values of nested
    objects and lists) that PostgreSQL text and jsonb cannot store: a NUL character or an unpaired
    surrogate. None when all of it can be stored."""
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is None:
            return None
        what = "a NUL character" if found.group() == "\x00" else "an unpaired surrogate (not valid Unicode)"
        return path, f"holds {what}, which the database cannot store"
    if isinstance(value, dict):
        for key, inner in value.items():
            key_path = f"{path}.{_shown(str(key))}"
            if isinstance(key, str) and _UNSTORABLE.search(key):
                return key_path, "is a key that holds a NUL character or an unpaired surrogate, which the " \
                                 "database cannot store"
            found = unstorable_text(inner, key_path)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, inner in enumerate(value):
            found = unstorable_text(inner, f"{path}[{i}]")
            if found:
                return found
    return None


def _check_items(project: Project, items: list[IngestItem]) -> list[tuple[str, str, dict]]:
    """Validate every item before anything is written; returns (content_hash, format, info) per item.
    Text the database cannot store (NUL, unpaired surrogates) in external_id, uri or metadata (keys and
    values, at any depth) is refused with the field's path, the same for a JSON batch and a multipart push."""
    errors, out = [], []
    for index, item in enumerate(items):
        try:
            for name in ("external_id", "uri", "metadata"):
                found = unstorable_text(getattr(item, name), f"samples[{index}].{name}")
                if found:
                    field, problem = found
                    raise ValidationFailed(f"{field} {problem}.", code=ErrorCode.INVALID_TEXT, details={"field": field})
            if (item.content is None) == (not item.uri):
                raise ValidationFailed("Give exactly one of content (base64) or uri.", code=ErrorCode.CONTENT_OR_URI)
            if len(item.external_id) > MAX_EXTERNAL_ID:
                raise ValidationFailed(f"external_id is longer than {MAX_EXTERNAL_ID} characters.",
                                       code=ErrorCode.EXTERNAL_ID_TOO_LONG)
            if not isinstance(item.metadata, dict):
                raise ValidationFailed("metadata must be a JSON object.", code=ErrorCode.INVALID_METADATA)
            if item.content is not None:
                fmt, info = content_io.validate_content(project.modality, item.content,
                                                        long_audio=project.task_type == "audio_regions")
                out.append((hashlib.sha256(item.content).hexdigest(), fmt, info))
            else:
                if len(item.uri) > MAX_URI or "://" not in item.uri:
                    raise ValidationFailed("uri must be an absolute URI of at most 2000 characters.",
                                           code=ErrorCode.INVALID_URI)
                if content_io.uri_scheme(item.uri) == "file":  # any case: FILE:/// is read as file:///
                    try:
                        content_io.uri_path(item.uri)
                    except content_io.ContentUnavailable as exc:
                        raise ValidationFailed(f"{exc}; file:// URIs must lie under LOOPLAB_URI_ROOTS.",
                                               code=ErrorCode.URI_NOT_ALLOWED)
                out.append((hashlib.sha256(b"uri:" + item.uri.encode()).hexdigest(), "", {}))
        except ValidationFailed as exc:
            errors.append({"index": index, "code": exc.code, "message": exc.message,
                           **({"field": exc.details["field"]} if "field" in exc.details else {})})
        except Exception as exc:  # ml.errors.InvalidInput and friends
            from ml.errors import MLError

            if not isinstance(exc, MLError):
                raise
            errors.append({"index": index, "code": exc.code, "message": exc.message, **({"details": exc.details} if exc.details else {})})
    if errors:
        first = errors[0]
        raise ValidationFailed(
            f"{len(errors)} of {len(items)} samples are invalid; nothing was stored. "
            f"First: samples[{first['index']}]: {first['message']}",
            code=ErrorCode.INVALID_SAMPLES, details={"errors": errors})
    return out


def samples_ingest(*, project: Project, items: list[IngestItem], predict: bool = False) -> list[dict]:
    """Store new samples (all or nothing) and return one result per item, in request order."""
    max_batch = settings.LOOPLAB["MAX_BATCH"]
    if not items:
        raise ValidationFailed("samples must not be empty.", code=ErrorCode.EMPTY_BATCH)
    if len(items) > max_batch:
        raise PayloadTooLarge(f"At most {max_batch} samples per request; got {len(items)}.",
                              code=ErrorCode.BATCH_TOO_LARGE, details={"max_batch": max_batch, "got": len(items)})
    checked = _check_items(project, items)
    for attempt in range(3):
        try:
            with transaction.atomic():
                results, created_ids = _insert(project, items, checked)
                break
        except IntegrityError:
            # A concurrent request stored some of the same content first: those are duplicates now.
            if attempt == 2:
                raise
    if predict:
        _attach_predictions(project, items, results)
    if created_ids:
        embedding_jobs_create(project=project, sample_ids=created_ids)
    return results


def _existing(project: Project, hashes: list[str]) -> dict[str, tuple[int, str]]:
    """content_hash -> (id, split) of the samples the project already has among ``hashes``."""
    if connection.vendor == "postgresql":
        # One array parameter instead of 1,000 placeholders (client-side binding parses each one).
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT content_hash, id, split FROM {connection.ops.quote_name(Sample._meta.db_table)} "
                           "WHERE project_id = %s AND content_hash = ANY(%s)", [project.pk, list(set(hashes))])
            rows = cursor.fetchall()
    else:
        rows = Sample.objects.filter(project=project, content_hash__in=set(hashes)).values_list("content_hash", "id", "split")
    return {h: (pk, split) for h, pk, split in rows}


def _bulk_insert(project: Project, rows: list[dict]) -> list[int]:
    """INSERT new samples (dicts of Sample field values) and return their pks, in order.

    On PostgreSQL with psycopg 3 this is one COPY, with ids drawn from the table's sequence first:
    for 1,000 rows, building model instances and bulk_create's SQL compilation and client-side
    parameter binding cost several times the database's own work (the ingest hot path, issue 2).
    Other databases get bulk_create.
    """
    with connection.cursor() as cursor:
        raw = getattr(cursor, "cursor", None)
        if connection.vendor != "postgresql" or not hasattr(raw, "copy"):
            objs = [Sample(project=project, **row) for row in rows]
            Sample.objects.bulk_create(objs, batch_size=1000)
            return [obj.pk for obj in objs]
        meta = Sample._meta
        qn = connection.ops.quote_name
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        varying = [f for f in fields if f.attname in rows[0]]
        # Every other column has one value for the whole batch (project, defaults, created_at).
        template = Sample(project=project)
        constant = [f for f in fields if f.attname not in rows[0]]
        tail = [f.get_db_prep_save(f.pre_save(template, True), connection) for f in constant]
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [meta.db_table, meta.pk.column, len(rows)])
        ids = sorted(row[0] for row in cursor.fetchall())
        columns = ", ".join(qn(f.column) for f in [meta.pk, *varying, *constant])
        names = [f.attname for f in varying]
        json_names = {f.attname for f in varying if f.get_internal_type() == "JSONField"}
        # A unique violation (a concurrent push of the same content) must surface as Django's IntegrityError.
        with connection.wrap_database_errors, raw.copy(f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for pk, row in zip(ids, rows):
                copy.write_row([pk, *[json.dumps(row[name]) if name in json_names else row[name] for name in names], *tail])
    return ids


def _insert(project: Project, items: list[IngestItem], checked: list[tuple[str, str, dict]]):
    hashes = [h for h, _, _ in checked]
    existing = _existing(project, hashes)
    new_rows: dict[str, dict] = {}
    for item, (content_hash, fmt, info) in zip(items, checked):
        if content_hash in existing or content_hash in new_rows:
            continue
        name = ""
        if item.content is not None:
            name = content_io.storage_name(project.id, content_hash, fmt)
            content_io.store_content(name, item.content)
        new_rows[content_hash] = {
            "external_id": item.external_id, "content_hash": content_hash, "file": name, "uri": item.uri or "",
            "content_format": fmt, "content_info": info, "metadata": item.metadata,
            "split": item.split or split_for_hash(ratios=project.split_ratios, content_hash=content_hash),
            "parent_id": item.parent_id, "parent_shape": item.parent_shape}
    created = dict(zip(new_rows, _bulk_insert(project, list(new_rows.values())))) if new_rows else {}
    results, seen = [], set()
    for item, (content_hash, _, _) in zip(items, checked):
        if content_hash in existing or content_hash in seen:
            pk, split = existing.get(content_hash) or (created[content_hash], new_rows[content_hash]["split"])
            status = "duplicate"
        else:
            seen.add(content_hash)
            pk, split, status = created[content_hash], new_rows[content_hash]["split"], "created"
        results.append({"id": pk, "external_id": item.external_id, "status": status, "split": split})
    return results, list(created.values())


def _attach_predictions(project: Project, items: list[IngestItem], results: list[dict]) -> None:
    with_content = [(i, item.content) for i, item in enumerate(items) if item.content is not None]
    if not with_content:
        return
    predictions = predict_contents(project=project, blobs=[blob for _, blob in with_content],
                                   sample_ids=[results[i]["id"] for i, _ in with_content])
    if predictions is None:
        for i, _ in with_content:
            results[i]["prediction"] = None
        return
    for (i, _), prediction in zip(with_content, predictions):
        results[i]["prediction"] = prediction
    low = project.confidence_threshold
    updates = []
    for (i, _), prediction in zip(with_content, predictions):
        if "label" not in prediction or "confidence" not in prediction:  # boxes, regions, points: no single label
            continue
        updates.append(Sample(pk=results[i]["id"], predicted_label=prediction["label"],
                              confidence=prediction["confidence"], low_confidence=prediction["confidence"] < low))
    Sample.objects.bulk_update(updates, ["predicted_label", "confidence", "low_confidence"], batch_size=1000)


def _read_contents(samples: list[Sample]) -> tuple[list[Sample], list[bytes], list[Sample]]:
    """(readable samples, their contents, the unreadable ones with ``embed_error`` set, not yet saved)."""
    ok, blobs, failed = [], [], []
    for sample in samples:
        try:
            blobs.append(content_io.read_content(sample))
            ok.append(sample)
        except content_io.ContentUnavailable as exc:
            sample.embed_error = str(exc)[:300]
            failed.append(sample)
    return ok, blobs, failed


def samples_features(*, project: Project, samples: list[Sample], runner=None) -> tuple[list[Sample], np.ndarray, np.ndarray | None]:
    """Read, decode and embed samples (with the deployed model's runner, or label-free features).

    Returns (the samples that could be read and decoded, their embeddings, the model's probabilities
    or None without a runner). A sample whose content cannot be reached or decoded gets
    ``embed_error`` and is left out, so one bad file never fails a batch.
    """
    from ml.errors import MLError

    if runner is not None and runner.is_learner:
        ok, predictions = samples_predict(project=project, samples=samples, runner=runner)
        if predictions is None:
            return [], np.zeros((0, 1), np.float32), None
        probs = predictions.extra.get("probs")  # a classification learner's class probabilities
        return ok, predictions.embedding, None if probs is None else np.asarray(probs, dtype=np.float32)
    ok, blobs, failed = _read_contents(samples)
    arrays = []
    if ok:
        try:
            X = load_batch(project.modality, blobs)
        except MLError:  # find the bad ones one by one
            good = []
            for sample, blob in zip(ok, blobs):
                try:
                    arrays.append(load_batch(project.modality, [blob]))
                    good.append(sample)
                except MLError as exc:
                    sample.embed_error = f"cannot decode: {exc.message}"[:300]
                    failed.append(sample)
            ok = good
            X = np.concatenate(arrays) if arrays else None
    if failed:
        Sample.objects.bulk_update(failed, ["embed_error"], batch_size=500)
    if not ok:
        return [], np.zeros((0, 1), np.float32), None
    probs = np.asarray(runner.predict_proba(X), dtype=np.float32) if runner is not None else None
    return ok, np.asarray(embed_arrays(project=project, X=X, runner=runner), dtype=np.float32), probs


def samples_predict(*, project: Project, samples: list[Sample], runner):
    """A learner's predictions (:class:`ml.learners.Predictions`) for samples, by the deployed model version's
    runner (``runner.is_learner``). Returns (the samples that could be read and predicted, their predictions or
    None when none could). A sample whose content cannot be reached or decoded gets ``embed_error`` and is left
    out, so one bad file never fails a batch."""
    from ml.errors import MLError
    from ml.learners import Predictions

    ok, blobs, failed = _read_contents(samples)
    parts = []
    if ok:
        try:
            parts = [runner.predict(blobs)]
        except MLError:  # find the bad ones one by one
            good = []
            for sample, blob in zip(ok, blobs):
                try:
                    parts.append(runner.predict([blob]))
                    good.append(sample)
                except MLError as exc:
                    sample.embed_error = f"cannot decode: {exc.message}"[:300]
                    failed.append(sample)
            ok = good
    if failed:
        Sample.objects.bulk_update(failed, ["embed_error"], batch_size=500)
    if not ok:
        return [], None
    if len(parts) == 1:
        return ok, parts[0]
    extra = {}
    if all("probs" in p.extra for p in parts):
        extra["probs"] = np.concatenate([p.extra["probs"] for p in parts])
    return ok, Predictions(results=[r for p in parts for r in p.results],
                           uncertainty=np.concatenate([p.uncertainty for p in parts]),
                           embedding=np.concatenate([p.embedding for p in parts]), extra=extra)


def samples_flag_drifted(*, project: Project, sample_ids: list[int]) -> int:
    """Send samples of ``project`` back to labeling after a drift check found them unlike the training data:
    the unlabeled ones without a task are flagged (``drift_flagged``), and rounds take flagged samples first.
    Returns how many were flagged now (0 for samples flagged, labeled or in a task already)."""
    return (Sample.objects.filter(project=project, pk__in=sample_ids, label__isnull=True, task__isnull=True,
                                  drift_flagged=False)
            .update(drift_flagged=True))


def embedding_jobs_create(*, project: Project, sample_ids: list[int]) -> list[EmbeddingJob]:
    """Queue the embedding of these samples as jobs of at most LOOPLAB_EMBED_BATCH samples each."""
    batch = settings.LOOPLAB["EMBED_BATCH"]
    jobs = []
    with transaction.atomic():
        for i in range(0, len(sample_ids), batch):
            job = EmbeddingJob.objects.create(project=project, sample_ids=list(sample_ids[i:i + batch]),
                                              message="queued")
            job_enqueue(job, embed_job, job.pk)
            jobs.append(job)
    return jobs


def embedding_job_run(*, job_row: EmbeddingJob, job) -> None:
    """An embedding job (claimed by the job runner): embed what is not embedded yet; safe to run twice."""
    job.progress(0, f"embedding {len(job_row.sample_ids)} samples")
    n = samples_embed(project=job_row.project, sample_ids=list(job_row.sample_ids))
    job.succeed(f"embedded {n} samples", embedded=n)


def samples_embed(*, project: Project, sample_ids: list[int], space: str | None = None) -> int:
    """Compute and cache embeddings for these samples in the project's current space.

    The space is the deployed model's ("model:<id>") when one is deployed, else label-free features.
    Returns how many were embedded; unreadable samples get ``embed_error`` and are skipped.
    """
    runner = current_model_runner(project=project)
    space = space or (f"model:{runner.model_id}" if runner else label_free_space())
    samples = list(Sample.objects.filter(project=project, pk__in=sample_ids).exclude(embedding_space=space))
    ok, vectors, _ = samples_features(project=project, samples=samples,
                                      runner=runner if space.startswith("model:") else None)
    for sample, vector in zip(ok, vectors):
        sample.embedding = vector.tobytes()
        sample.embedding_space = space
        sample.embed_error = ""
    Sample.objects.bulk_update(ok, ["embedding", "embedding_space", "embed_error"], batch_size=500)
    if "points" in modalities.get(project.modality).views:  # the 3D tool's points view reads the cache
        _warm_point_caches(ok)
    return len(ok)


def _warm_point_caches(samples: list[Sample]) -> None:
    """Decode each cloud for the 3D tool now, in the background job, so the annotator's first open of
    a large cloud is served from the cache instead of waiting for the decode."""
    from ml.errors import MLError

    for sample in samples:
        try:
            sample_points(sample=sample)
        except (content_io.ContentUnavailable, MLError) as exc:
            log.warning("no point cache for sample %s: %s", sample.pk, exc)


def embed_arrays(*, project: Project, X: np.ndarray, runner=None) -> np.ndarray:
    if runner is not None:
        return runner.embed(X)
    from ml.features import label_free_embeddings

    return label_free_embeddings(project.modality, X)
