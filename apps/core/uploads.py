"""Request bodies are refused by size before they are read (LOOPLAB_MAX_REQUEST_BYTES, default 64 MiB).

Two layers, one limit:

- :class:`RequestSizeLimitMiddleware` (Django, first in ``MIDDLEWARE``): a declared ``Content-Length``
  above the limit answers 413 ``payload_too_large`` in the error shape before anything reads the body,
  whatever its type (JSON, a multipart file part, a form). It runs under every server and the test client.
- :func:`limit_request_body` (WSGI, wraps the application in ``apps.looplab.wsgi``): a body sent without
  ``Content-Length`` (``Transfer-Encoding: chunked``; gunicorn passes it as ``wsgi.input`` with
  ``wsgi.input_terminated``) is counted while it is read, into a ``SpooledTemporaryFile`` (in memory up to
  ``SPOOL_MEMORY_BYTES``, then a temporary file) and refused with the same 413 at the first byte over the
  limit; a body within the limit reaches Django with its ``Content-Length`` set, so chunked pushes work
  (Django alone reads no body without a Content-Length). Memory and temporary disk stay within the limit.

Django's own ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (the same number) still bounds the non-file fields of a body.
"""
from __future__ import annotations

import json
import tempfile

from django.conf import settings
from django.http import JsonResponse

from apps.core.errors import ErrorCode

SPOOL_MEMORY_BYTES = 1 << 20  # a chunked body is kept in memory up to this size, then in a temporary file
READ_BYTES = 64 * 1024

CODE = ErrorCode.PAYLOAD_TOO_LARGE


def max_request_bytes() -> int:
    return int(settings.LOOPLAB_MAX_REQUEST_BYTES)


def _message(limit: int) -> str:
    return f"The request body is larger than the server accepts ({limit} bytes, LOOPLAB_MAX_REQUEST_BYTES)."


def _body(limit: int, received: int | None = None, declared: int | None = None) -> dict:
    details = {"max_bytes": limit}
    if declared is not None:
        details["content_length"] = declared
    if received is not None:
        details["received_bytes"] = received
    return {"error": {"code": CODE, "message": _message(limit), "details": details}}


class RequestSizeLimitMiddleware:
    """413 for a declared Content-Length over the limit, before the body is read (see the module doc)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH")
        if raw:
            try:
                declared = int(raw)
            except (TypeError, ValueError):
                declared = None  # Django reads such a body as empty
            limit = max_request_bytes()
            if declared is not None and declared > limit:
                response = JsonResponse(_body(limit, declared=declared), status=413)
                response["Content-Length"] = str(len(response.content))  # answered before CommonMiddleware
                return response
        return self.get_response(request)


def _too_large(start_response, limit: int, received: int):
    payload = json.dumps(_body(limit, received=received)).encode()
    start_response("413 Payload Too Large", [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(payload)))])
    return [payload]


def limit_request_body(app):
    """WSGI middleware: a body without Content-Length is read within the limit or refused (module doc)."""

    def wrapped(environ, start_response):
        if environ.get("CONTENT_LENGTH") or "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return app(environ, start_response)  # a declared length: RequestSizeLimitMiddleware judges it
        if not environ.get("wsgi.input_terminated"):
            return app(environ, start_response)  # this server does not stream chunked bodies: nothing to read
        limit = max_request_bytes()
        stream = environ["wsgi.input"]
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES, dir=settings.FILE_UPLOAD_TEMP_DIR)
        received = 0
        while True:
            chunk = stream.read(READ_BYTES)
            if not chunk:
                break
            received += len(chunk)
            if received > limit:
                spool.close()
                return _too_large(start_response, limit, received)
            spool.write(chunk)
        spool.seek(0)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(received)
        try:
            result = app(environ, start_response)
        except BaseException:
            spool.close()
            raise
        return _ClosingIterable(result, spool)

    return wrapped


class _ClosingIterable:
    """The application's response, closing the spooled body with it (WSGI calls close() when done)."""

    def __init__(self, result, spool):
        self._result = result
        self._spool = spool

    def __iter__(self):
        return iter(self._result)

    def close(self):
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._spool.close()
