"""The statement timeout of web requests (apps.core.middleware), on the suite's real PostgreSQL."""
from __future__ import annotations

import time

import pytest
from django.db import connection, transaction
from django.http import HttpResponse
from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


def _sleep(seconds: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


class _SlowApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        _sleep(float(request.query_params.get("s", "5")))
        return Response({"slept": True})


class _RollbackThenSlow(_SlowApi):
    """The request's first query runs in a transaction that rolls back (and takes a SET made there with it)."""

    def get(self, request):
        try:
            with transaction.atomic():
                _sleep(0)
                raise _Rollback
        except _Rollback:
            pass
        return super().get(request)


class _Rollback(Exception):
    pass


def _slow_page(request):
    _sleep(5)
    return HttpResponse("slept")


urlpatterns = [
    path("api/test-only/slow/", _SlowApi.as_view()),
    path("api/test-only/rollback-then-slow/", _RollbackThenSlow.as_view()),
    path("test-only/slow/", _slow_page),
    path("", include("apps.looplab.urls")),
]


def _statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


@pytest.fixture
def slow_urls(settings, transactional_db):
    """A real slow query on the request path, in autocommit as in production (transactional_db)."""
    settings.ROOT_URLCONF = __name__
    settings.LOOPLAB_STATEMENT_TIMEOUT_MS = 300
    return settings


def test_a_slow_api_query_is_cancelled_as_503(client, slow_urls):
    before = _statement_timeout()
    started = time.monotonic()
    r = client.get("/api/test-only/slow/")
    elapsed = time.monotonic() - started
    assert r.status_code == 503, r.content
    assert r.json()["error"]["code"] == "query_timeout"
    assert set(r.json()["error"]) == {"code", "message", "details"}
    assert elapsed < 3, elapsed  # cancelled at 0.3 s, not after pg_sleep's 5 s
    # The connection is reused, with the request's limit taken off again: jobs run without it.
    assert _statement_timeout() == before
    _sleep(0.5)  # longer than the web limit, outside a request: not cancelled
    assert client.get("/api/test-only/slow/?s=0.01").json() == {"slept": True}
    started = time.monotonic()
    r = client.get("/api/test-only/rollback-then-slow/")
    assert r.status_code == 503 and time.monotonic() - started < 3, r.content
    assert _statement_timeout() == before
    slow_urls.LOOPLAB_STATEMENT_TIMEOUT_MS = 0  # turns the limit off
    assert client.get("/api/test-only/slow/?s=0.5").status_code == 200


def test_a_slow_page_query_is_cancelled_as_503(client, slow_urls):
    r = client.get("/test-only/slow/")
    assert r.status_code == 503
    assert b"time limit" in r.content
