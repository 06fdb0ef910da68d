"""A statement timeout for web requests on PostgreSQL.

Every query a web request makes runs under ``statement_timeout = LOOPLAB_STATEMENT_TIMEOUT_MS`` (0 turns it
off), so that no request (a hostile filter, a query plan gone wrong) holds a web worker and a database backend
for longer than that. Celery workers never run this middleware, so jobs keep the server's default.

The timeout is set on the request's own connection before the request's first query (a request that makes
none, or runs without a database, is left alone) and reset at its end. Django's connections are per thread,
so this holds with gunicorn threads, and resetting (rather than setting once when a connection opens) keeps
persistent connections (CONN_MAX_AGE) correct whatever ran on them before. A SET made inside a transaction
is undone if that transaction rolls back, so it is made again before each query until one runs outside the
request's transactions. If the reset cannot run, the connection is closed rather than reused with the request's limit.
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
        limit = _StatementTimeout(int(timeout_ms), outer_atomic_blocks=len(connection.atomic_blocks))
        try:
            with connection.execute_wrapper(limit):
                return self.get_response(request)
        finally:
            if limit.applied:
                _reset()

    def process_exception(self, request, exception):
        """Views outside DRF (pages): a cancelled statement is a 503 too, not a 500."""
        if is_query_timeout(exception):
            return query_timeout_response(request)
        return None


class _StatementTimeout:
    """A query wrapper (connection.execute_wrapper) that sets the timeout before the query it wraps."""

    def __init__(self, timeout_ms: int, outer_atomic_blocks: int = 0):
        self.value = f"{timeout_ms}ms"
        self.outer = outer_atomic_blocks  # atomic blocks open before the request (0, except under a test case)
        self.applied = False  # set at least once: reset at the end
        self.durable = False  # set outside the request's transactions: holds for the rest of the request
        self._setting = False

    def __call__(self, execute, sql, params, many, context):
        if not self.durable and not self._setting:
            db = context["connection"]
            self._setting = True
            try:
                with db.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, false)", [self.value])
            finally:
                self._setting = False
            self.applied = True
            self.durable = len(db.atomic_blocks) <= self.outer
        return execute(sql, params, many, context)


def _reset() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    except DatabaseError:
        if connection.in_atomic_block:
            return  # the enclosing transaction rolls back, and the SET with it
        log.warning("Could not reset statement_timeout; closing the connection", exc_info=True)
        connection.close()
