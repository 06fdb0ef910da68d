"""Shared write helpers: idempotent requests and job state transitions."""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import BadRequest, Conflict, ErrorCode
from apps.core.models import IdempotencyRecord, JobStatus


def request_fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def idempotent_call(*, user, scope: str, key: str | None, fingerprint: str,
                    call: Callable[[], tuple[int, dict]]) -> tuple[int, dict, bool]:
    """Run ``call`` once per (user, scope, key); replay its response for repeats.

    Returns (status, body, replayed). The same key with another body raises Conflict (409).
    The record is written in the same transaction as the work, so a failed call leaves no record
    and can be retried; a concurrent repeat waits on the unique index, then replays.
    """
    if not key:
        status, body = call()
        return status, body, False
    if len(key) > 255:
        raise BadRequest("Idempotency-Key is longer than 255 characters.", code=ErrorCode.IDEMPOTENCY_KEY_INVALID)
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(user=user, scope=scope, key=key, request_hash=fingerprint)
        except IntegrityError:
            record = IdempotencyRecord.objects.get(user=user, scope=scope, key=key)
            if record.request_hash != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was already used with a different request body.",
                    code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
                    details={"key": key},
                )
            return record.status_code, record.response, True
        status, body = call()
        record.status_code = status
        record.response = json.loads(json.dumps(body, default=str))
        record.save(update_fields=["status_code", "response"])
        return status, body, False


def job_claim(obj, message: str = "started") -> bool:
    """Start a queued job, once: False when another delivery of its message already started it (the
    broker redelivers with acks_late), True when this call moved it from queued to running."""
    claimed = type(obj).objects.filter(pk=obj.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), progress=0.0, message=message, error="")
    if claimed:
        obj.refresh_from_db()
    return bool(claimed)


def job_start(obj, message: str = "started") -> None:
    type(obj).objects.filter(pk=obj.pk).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), progress=0.0, message=message, error="")
    obj.refresh_from_db()


def job_progress(obj, percent: float, message: str) -> None:
    percent = float(max(0.0, min(100.0, percent)))
    type(obj).objects.filter(pk=obj.pk).update(progress=percent, message=message[:500])
    obj.progress, obj.message = percent, message[:500]


def job_succeed(obj, message: str = "done", **fields) -> None:
    fields.update(status=JobStatus.SUCCEEDED, progress=100.0, message=message[:500], finished_at=timezone.now())
    type(obj).objects.filter(pk=obj.pk).update(**fields)
    obj.refresh_from_db()


def job_fail(obj, error: str) -> None:
    type(obj).objects.filter(pk=obj.pk).update(
        status=JobStatus.FAILED, error=error, message=error.splitlines()[0][:500] if error else "failed",
        finished_at=timezone.now())
    obj.refresh_from_db()
