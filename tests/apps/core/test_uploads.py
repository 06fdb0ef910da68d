"""Request bodies are refused by size before they are read (apps.core.uploads), through the Django test
client and the WSGI wrapper; tests/e2e/test_bombs.py checks the same against a real gunicorn."""
from __future__ import annotations

import io
import json

import pytest

from apps.core.uploads import limit_request_body


class _Unreadable(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self):
        return True

    def read(self, *args, **kwargs):
        raise AssertionError("the request body was read")

    readline = readinto = read


def _assert_413(r, limit):
    assert r.status_code == 413, r.content
    body = r.json()
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["max_bytes"] == limit


def test_declared_length_over_the_cap_is_refused_unread(api, lead, project, settings):
    from apps.samples.models import Sample

    limit = settings.LOOPLAB_MAX_REQUEST_BYTES
    huge = 300 * 1024 * 1024  # a 300 MiB multipart upload, announced and never sent
    assert huge > limit
    r = api(lead).generic("POST", f"/api/v1/projects/{project.id}/samples/", b"",
                          content_type="multipart/form-data; boundary=xyz",
                          CONTENT_LENGTH=str(huge), **{"wsgi.input": _Unreadable()})
    _assert_413(r, limit)
    assert r.json()["error"]["details"]["content_length"] == huge
    assert not Sample.objects.filter(project=project).exists()


def test_multipart_and_json_bodies_over_the_cap(api, lead, project, digits, settings):
    from apps.samples.models import Sample

    settings.LOOPLAB_MAX_REQUEST_BYTES = 4096
    big = digits[0][0] + b"\0" * 8192  # the part alone is over the cap
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"file": io.BytesIO(big), "external_id": "x"},
                       format="multipart")
    _assert_413(r, 4096)
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/",
                       {"samples": [{"external_id": "y", "content": "A" * 8192}]}, format="json")
    _assert_413(r, 4096)
    assert not Sample.objects.filter(project=project).exists()
    # within the cap, the same push goes through
    r = api(lead).post(f"/api/v1/projects/{project.id}/samples/", {"file": io.BytesIO(digits[0][0])}, format="multipart")
    assert r.status_code == 201, r.content


def _call(app, environ):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


class _CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n=-1):
        out = super().read(n)
        self.bytes_read += len(out)
        return out


@pytest.mark.parametrize("size, allowed", [(1000, True), (4096, True), (4097, False), (10 * 1024 * 1024, False)])
def test_chunked_bodies_are_counted_while_read(settings, size, allowed):
    """A body without Content-Length (chunked, as gunicorn hands it over) is read up to the cap and no further."""
    settings.LOOPLAB_MAX_REQUEST_BYTES = 4096
    calls = []

    def app(environ, start_response):
        calls.append((environ["CONTENT_LENGTH"], environ["wsgi.input"].read()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    stream = _CountingStream(b"x" * size)
    environ = {"REQUEST_METHOD": "POST", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input": stream,
               "wsgi.input_terminated": True}
    status, headers, body = _call(limit_request_body(app), environ)
    if allowed:
        assert status == "200 OK" and calls == [(str(size), b"x" * size)]
    else:
        assert status.startswith("413") and not calls
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert stream.bytes_read <= 4096 + 64 * 1024  # stopped within one read of the cap, not at the end


def test_bodies_with_a_length_pass_the_wrapper_untouched(settings):
    settings.LOOPLAB_MAX_REQUEST_BYTES = 10

    def app(environ, start_response):
        start_response("200 OK", [])
        return [environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))]

    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "5", "wsgi.input": io.BytesIO(b"hello")}
    assert _call(limit_request_body(app), environ)[2] == b"hello"
