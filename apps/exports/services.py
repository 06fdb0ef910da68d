"""Exports: a Celery job writes a project's labels in one format and names the data it came from."""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

from django.core.files import File
from django.db import transaction

from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.files import file_put
from apps.core.jobs import JobContext, job_enqueue
from apps.exports import writers
from apps.exports.models import Export
from apps.exports.tasks import run_export
from apps.labeling.selectors import annotations_final
from apps.projects.models import Project
from apps.samples import content as content_io
from apps.samples.models import Sample
from apps.samples.points import sample_points
from apps.training.services import dataset_version_freeze

log = logging.getLogger(__name__)


def export_create(*, project: Project, user, format: str, reviewed_only: bool = False) -> Export:
    allowed = writers.FORMATS_BY_TASK_TYPE.get(project.task_type, ())
    if format not in allowed:
        raise ValidationFailed(f"A {project.task_type} project exports as {list(allowed)}; got {format!r}.",
                               code=ErrorCode.INVALID_FORMAT, details={"formats": list(allowed)})
    if reviewed_only and project.task_type == "classification":
        # Classification exports a frozen dataset version (the labels training uses), review or not.
        raise ValidationFailed("reviewed_only applies to shape exports; a classification export is a dataset "
                               "version of the current labels (rejected annotations already clear their label).",
                               code=ErrorCode.REVIEWED_ONLY_UNSUPPORTED)
    with transaction.atomic():
        export = Export.objects.create(project=project, format=format, created_by=user, message="queued",
                                       options={"reviewed_only": bool(reviewed_only)})

        job_enqueue(export, run_export, export.pk)
    return export


def export_items(*, export: Export) -> list[writers.Item]:
    """What an export writes, in sample id order; also records which data it was (version or annotation ids)."""
    project = export.project
    if project.task_type == "classification":
        version = dataset_version_freeze(project=project)
        samples = Sample.objects.in_bulk([pk for pk, _, _ in version.items])
        Export.objects.filter(pk=export.pk).update(dataset_version=version, digest=version.digest)
        export.dataset_version = version
        return [writers.Item(sample=samples[pk], result={"label": version.labels[index]}, label_index=index)
                for pk, index, _ in version.items if pk in samples]
    chosen = annotations_final(project=project, reviewed_only=bool(export.options.get("reviewed_only")))
    ids = [a.pk for a in chosen]
    digest = hashlib.sha256(json.dumps([[a.pk, a.final_result] for a in chosen], sort_keys=True).encode()).hexdigest()
    Export.objects.filter(pk=export.pk).update(annotation_ids=ids, digest=digest)
    return [writers.Item(sample=a.sample, result=a.final_result, annotation_id=a.pk) for a in chosen]


def _read_content(sample) -> bytes:
    return content_io.read_content(sample)


def _read_points(sample):
    return sample_points(sample=sample).data[:, :3]


def export_run(*, export: Export, job: JobContext) -> None:
    """The export's job (claimed by the job runner). Safe to run twice: a finished export is left alone, and
    a rerun after a killed worker writes the same file name again."""
    job.progress(0, "collecting labels")
    items = export_items(export=export)
    labels = list(export.dataset_version.labels if export.dataset_version_id else export.project.labels)
    job.progress(5, f"writing {len(items)} samples")
    step = max(1, len(items) // 50)

    def progress(done: int, total: int) -> None:
        if done == total or done % step == 0:
            job.progress(5 + 90 * done / max(1, total), f"wrote {done} of {total} samples")

    writer = writers.WRITERS[export.format]
    extra = {"yolo": {"read_content": _read_content}, "ply": {"read_points": _read_points}}.get(export.format, {})
    filename = writers.export_filename(project_name=export.project.name, format=export.format, export_id=export.pk)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / filename
        counts = writer(items, labels, out, progress, **extra)
        with open(out, "rb") as fh:
            name = file_put(name=f"exports/{export.project_id}/{export.pk}/{filename}", content=File(fh))
        size = out.stat().st_size
    source = (f"dataset v{export.dataset_version.number}" if export.dataset_version_id
              else f"{len(items)} annotations")
    job.succeed(f"exported {len(items)} samples from {source}", file=name, filename=filename,
                size_bytes=size, counts=counts)
