"""The one exception handler: every API error leaves as {"error": {"code", "message", "details"}}."""
from __future__ import annotations

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.errors import DomainError, ErrorCode
from ml.errors import InvalidInput, MissingDependency, MLError, TooLarge

try:
    from psycopg.errors import QueryCanceled
except ImportError:  # pragma: no cover - a SQLite-only install
    QueryCanceled = None

log = logging.getLogger(__name__)

DRF_CODES = {
    drf.ParseError: ErrorCode.MALFORMED_REQUEST,
    drf.AuthenticationFailed: ErrorCode.AUTHENTICATION_FAILED,
    drf.NotAuthenticated: ErrorCode.NOT_AUTHENTICATED,
    drf.PermissionDenied: ErrorCode.PERMISSION_DENIED,
    drf.NotFound: ErrorCode.NOT_FOUND,
    drf.MethodNotAllowed: ErrorCode.METHOD_NOT_ALLOWED,
    drf.NotAcceptable: ErrorCode.NOT_ACCEPTABLE,
    drf.UnsupportedMediaType: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    drf.Throttled: ErrorCode.THROTTLED,
    drf.ValidationError: ErrorCode.VALIDATION_ERROR,
}
DRF_FALLBACK_CODE = ErrorCode.ERROR  # an APIException of a class not in DRF_CODES

# ml's errors by type, first match wins (ml cannot import apps, so the status lives here, never in ml):
# over the caps 413, a missing optional package 501, any other refusal of the input 422.
ML_STATUS: tuple[tuple[type[MLError], int], ...] = (
    (TooLarge, 413),
    (MissingDependency, 501),
    (InvalidInput, 422),
    (MLError, 422),
)


def error_body(code: ErrorCode, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def ml_error_status(exc: MLError) -> int:
    return next(status for cls, status in ML_STATUS if isinstance(exc, cls))


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, MLError):
        return Response(error_body(exc.code, exc.message, exc.details), status=ml_error_status(exc))
    if is_query_timeout(exc):
        return Response(_QUERY_TIMEOUT_BODY, status=503)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is larger than the server accepts."),
                        status=413)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in DRF_CODES.items() if isinstance(exc, cls)), DRF_FALLBACK_CODE)
        reason = getattr(exc.detail, "code", None)
        if isinstance(exc, drf.AuthenticationFailed) and reason and reason != exc.default_code:
            code = reason  # a specific reason given where it was raised, e.g. token_expired
        if isinstance(exc, drf.ValidationError):
            details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            message = _first_message(exc.detail) or "Invalid input."
            return Response(error_body(code, message, _plain(details)), status=exc.status_code)
        headers = {}
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(math.ceil(exc.wait))
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # a 401 names the scheme (RFC 9110)
        if isinstance(exc, drf.ParseError):
            message = f"Malformed request body: {exc.detail}"
        else:
            message = str(exc.detail)
        return Response(error_body(code, message), status=exc.status_code, headers=headers)
    return None  # a real bug: Django's 500 handler takes it


_QUERY_TIMEOUT_BODY = error_body(
    ErrorCode.QUERY_TIMEOUT, "The request's database query ran past the server's time limit and was cancelled; "
    "narrow it (fewer or simpler filters, a smaller page) or try again later.")


def is_query_timeout(exc) -> bool:
    """A statement cancelled by PostgreSQL's statement_timeout (apps.core.middleware sets it for web requests)."""
    return QueryCanceled is not None and isinstance(exc, DatabaseError) and isinstance(exc.__cause__, QueryCanceled)


def query_timeout_response(request):
    if _is_api(request):
        return JsonResponse(_QUERY_TIMEOUT_BODY, status=503)
    return HttpResponse(_QUERY_TIMEOUT_BODY["error"]["message"], status=503, content_type="text/plain")


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _first_message(detail) -> str | None:
    if isinstance(detail, dict):
        for key, value in detail.items():
            msg = _first_message(value)
            if msg:
                return msg if key in ("non_field_errors", "detail") else f"{key}: {msg}"
    elif isinstance(detail, (list, tuple)):
        for value in detail:
            msg = _first_message(value)
            if msg:
                return msg
    elif detail:
        return str(detail)
    return None


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_404(request, exception=None):
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Not found."), status=404)


def json_500(request):
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse(error_body(ErrorCode.SERVER_ERROR, "Internal server error."), status=500)


def json_400(request, exception=None):
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    return JsonResponse(error_body(ErrorCode.BAD_REQUEST, "Bad request."), status=400)
