"""Shared API plumbing that knows no app: job rows, idempotent replays, query flags. The project-scoped base
views (the access rule) are in :mod:`apps.projects.views`."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.response import Response

from apps.core.errors import ErrorCode, ValidationFailed
from apps.core.services import idempotent_call, request_fingerprint


def query_bool(value: str | None, name: str = "parameter") -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValidationFailed(f"{name} must be true or false; got {value!r}.", code=ErrorCode.INVALID_FILTER)


class JobOut(serializers.Serializer):
    """What every job row shows (apps.core.models.JobFields): status, progress, message, timings, error."""

    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_s = serializers.FloatField(allow_null=True)
    attempts = serializers.IntegerField(help_text="how often a worker claimed the job (more than 1: it was taken "
                                                  "over after a worker stopped)")
    cancel_requested = serializers.BooleanField()


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="same key + same body replays the first response (no second job); another body → 409")


def idempotent_response(request, *, scope: str, call) -> Response:
    """Run ``call`` (-> (status, body)) once per caller, ``scope`` and Idempotency-Key; a repeat replays the
    first response with ``Idempotent-Replayed: true`` (apps.core.services.idempotent_call)."""
    code, body, replayed = idempotent_call(user=request.user, scope=scope, key=request.headers.get("Idempotency-Key"),
                                           fingerprint=request_fingerprint(request.body), call=call)
    response = Response(body, status=code)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response
