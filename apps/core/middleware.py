"""A statement timeout for web requests on PostgreSQL.

Every query a web request makes runs under ``statement_timeout = LOOPLAB_STATEMENT_TIMEOUT_MS`` (0 turns it
off), so that no request (a hostile filter, a query plan gone wrong) holds a web worker and a database backend
for longer than that. Celery workers never run this middleware, so jobs keep the server's default.

The timeout is set on the request's own connection at the start of the request and reset at its end.
Django's connections are per thread, so this holds with gunicorn threads, and resetting (rather than
setting once when a connection opens) keeps persistent connections (CONN_MAX_AGE) correct whatever ran on
them before. If the reset cannot run, the connection is closed rather than reused with the request's limit.
A statement cancelled by the timeout answers 503 ``query_timeout`` (apps.core.exceptions).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, connection

from apps.core.exceptions import is_query_timeout, query_timeout_response

log = logging.getLogger(__name__)


class StatementTimeoutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        timeout_ms = getattr(settings, "LOOPLAB_STATEMENT_TIMEOUT_MS", 0)
        if not timeout_ms or connection.vendor != "postgresql":
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{int(timeout_ms)}ms"])
        except DatabaseError:  # no database: a request that needs none still answers, the others fail as before
            log.warning("Could not set statement_timeout", exc_info=True)
            return self.get_response(request)
        try:
            return self.get_response(request)
        finally:
            _reset()

    def process_exception(self, request, exception):
        """Views outside DRF (pages): a cancelled statement is a 503 too, not a 500."""
        if is_query_timeout(exception):
            return query_timeout_response(request)
        return None


def _reset() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    except DatabaseError:
        if connection.in_atomic_block:
            return  # the enclosing transaction rolls back, and the SET with it
        log.warning("Could not reset statement_timeout; closing the connection", exc_info=True)
        connection.close()
