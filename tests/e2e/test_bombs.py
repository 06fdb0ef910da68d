"""Bombs against a real gunicorn (the production and embedded server), on the test's PostgreSQL database.

For each modality a file whose decoded size is 10x over its cap (small on disk: fixtures.bombs) is pushed as
a multipart upload and refused with a 4xx, while the gunicorn worker's peak RSS (VmHWM, reset before each
push through /proc/<pid>/clear_refs) stays within BOUND_MB of what it was before the push. Then request
bodies: a 300 MiB upload announced by Content-Length is a quick 413 without being read, and a chunked body
is refused at the cap while it streams (and one within the cap goes through).

The figures are printed (pytest -s) and written to test-artifacts/bombs.json when that folder exists.
"""
from __future__ import annotations

import io
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from fixtures import bombs

ROOT = Path(__file__).resolve().parents[2]
BOUND_MB = 150
MB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@pytest.fixture
def gunicorn_server(transactional_db, settings):
    """gunicorn apps.looplab.wsgi (one gthread worker, as deployed) on the test database and data dir."""
    import psutil
    from django.db import connection

    port = _free_port()
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="apps.looplab.settings",
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               LOOPLAB_DATA_DIR=str(settings.DATA_DIR), CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
               CELERY_TASK_ALWAYS_EAGER="false", LOOPLAB_STATEMENT_TIMEOUT_MS="0")
    for key in ("LOOPLAB_MAX_REQUEST_BYTES", "LOOPLAB_MAX_AUDIO_SAMPLES", "LOOPLAB_MAX_POINTS",
                "LOOPLAB_MAX_POINT_VALUES", "LOOPLAB_MAX_IMAGE_PIXELS", "LOOPLAB_MAX_LONG_AUDIO_SECONDS"):
        env.pop(key, None)  # the defaults are what is tested
    artifacts = ROOT / "test-artifacts"
    log = open(artifacts / "e2e-bombs-gunicorn.log", "w") if artifacts.is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "apps.looplab.wsgi", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "2", "--timeout", "120"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}")
        try:
            if requests.get(url + "/api/v1/", timeout=2).status_code < 500:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("gunicorn did not answer within 90 s")
        time.sleep(0.3)
    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 1
    yield url, port, workers[0].pid
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _sine_wav(seconds=1.0, sr=16000) -> bytes:
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _bomb_set() -> list[tuple[str, str, str, bytes, int]]:
    """(project key, name, description, bytes, decoded bytes as float32/uint8 a naive reader would hold)."""
    flac = bombs.cached("silence-96k-8ch-750s.flac",
                        lambda: bombs.flac_silence(frames=96000 * 750, sample_rate=96000, channels=8))
    issue = bombs.cached("silence-16k-1ch-7200s.flac",
                         lambda: bombs.flac_silence(frames=16000 * 7200, sample_rate=16000, channels=1))
    return [
        ("regions", "flac", "FLAC of silence, 750 s x 96 kHz x 8 channels = 576 M samples (10x the 57.6 M cap)",
         flac, 576_000_000 * 4),
        ("regions", "flac-issue", "the issue's FLAC: 2 h of 16 kHz silence = 115 M samples (2x the cap)",
         issue, 115_200_000 * 4),
        ("regions", "wav", "WAV whose header announces 576 M samples (10x the cap), 1 s in its body",
         bombs.wav_claiming(frames=288_000_000, sample_rate=48000, channels=2), 576_000_000 * 4),
        ("clouds", "pcd", "PCD binary_compressed, 3 M points x 100 float fields = 300 M values (10x the 30 M cap)",
         bombs.pcd_compressed_zeros(n_points=3_000_000, n_fields=100), 300_000_000 * 4),
        ("clouds", "ply", "PLY announcing 50 M vertices (10x the 5 M cap), 1,000 in its body",
         bombs.ply_claiming(n_points=50_000_000), 50_000_000 * 12),
        ("images", "png", "1-bit PNG, 20000 x 20000 = 400 M pixels (10x the 40 M cap)",
         bombs.png_flat(width=20000, height=20000), 400_000_000 * 3),
    ]


@pytest.mark.integration
@pytest.mark.slow
def test_bombs_and_oversized_bodies_against_gunicorn(gunicorn_server, digits):
    from apps.accounts.services import token_get_or_create, user_create
    from apps.projects.services import project_create
    from apps.samples.models import Sample
    from ml.modalities.pointcloud import points_to_ply

    url, port, worker = gunicorn_server
    lead = user_create(username="bomb-lead", password="pw-bomb-lead", role="lead")
    token = token_get_or_create(user=lead)
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    projects = {
        "images": project_create(user=lead, name="images", modality="image", labels=["a", "b"]),
        "regions": project_create(user=lead, name="regions", modality="audio", task_type="audio_regions", labels=["a"]),
        "clouds": project_create(user=lead, name="clouds", modality="pointcloud", labels=["a", "b"]),
    }

    def push(key, data, name):
        return http.post(f"{url}/api/v1/projects/{projects[key].id}/samples/",
                         files={"file": (name, data, "application/octet-stream")}, data={"external_id": name},
                         timeout=120)

    # Warm up the worker on legitimate files of each modality (imports, caches): these must still ingest.
    cloud = points_to_ply(np.random.default_rng(0).normal(size=(2048, 3)))
    for key, data, name in (("images", digits[0][0], "ok.png"), ("regions", _sine_wav(3.0), "ok.wav"),
                            ("clouds", cloud, "ok.ply")):
        r = push(key, data, name)
        assert r.status_code == 201, r.text
    report = {"server": "gunicorn apps.looplab.wsgi -w 1 --threads 2 (gthread)", "bound_mb": BOUND_MB,
              "rss_after_warmup_mb": round(_status_kb(worker, "VmRSS") / 1024, 1), "bombs": []}
    resettable = _reset_peak(worker)

    for key, name, description, data, decoded in _bomb_set():
        _reset_peak(worker)
        before = _status_kb(worker, "VmRSS" if resettable else "VmHWM")
        started = time.monotonic()
        r = push(key, data, name)
        seconds = time.monotonic() - started
        peak = _status_kb(worker, "VmHWM")
        row = {"bomb": name, "what": description, "file_bytes": len(data), "naive_decoded_mb": decoded // MB,
               "status": r.status_code, "code": (r.json().get("error") or {}).get("details", {}).get("errors", [{}])[0].get("code"),
               "rss_before_mb": round(before / 1024, 1), "peak_rss_mb": round(peak / 1024, 1),
               "growth_mb": round((peak - before) / 1024, 1), "seconds": round(seconds, 2)}
        report["bombs"].append(row)
        print(json.dumps(row))
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_samples"
        assert row["code"] in ("too_large", "corrupt_data"), row
        assert peak - before < BOUND_MB * 1024, row
    assert not Sample.objects.filter(external_id__in=[b[1] for b in _bomb_set()]).exists()

    # A 300 MiB multipart upload announced by Content-Length, of which 64 KiB is sent: a quick 413, unread.
    _reset_peak(worker)
    before = _status_kb(worker, "VmRSS" if resettable else "VmHWM")
    path = f"/api/v1/projects/{projects['images'].id}/samples/"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {300 * MB}\r\n\r\n").encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n"
                  + b"\0" * (64 * 1024))
        answer = _read_response(s)
    seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "payload_too_large"
    assert seconds < 10
    report["declared_300mib"] = {"status": 413, "seconds": round(seconds, 2),
                                 "growth_mb": round((_status_kb(worker, "VmHWM") - before) / 1024, 1)}

    # A chunked body streamed past the cap (64 MiB): refused while it streams, memory stays bounded.
    _reset_peak(worker)
    before = _status_kb(worker, "VmRSS" if resettable else "VmHWM")
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"\0" * MB
    sent = 0
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        try:
            while sent < 100 * MB and not select.select([s], [], [], 0)[0]:  # stop once the server answers
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed while we were still sending
        answer = _read_response(s)
    seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"]["received_bytes"] <= body["error"]["details"]["max_bytes"] + 64 * 1024
    chunked_growth = (_status_kb(worker, "VmHWM") - before) / 1024
    report["chunked_over_cap"] = {"status": 413, "sent_mb_before_refusal": sent // MB, "seconds": round(seconds, 2),
                                  "growth_mb": round(chunked_growth, 1)}
    assert chunked_growth < BOUND_MB

    # A chunked push within the cap goes through (the wrapper hands Django the body with its length).
    r = http.post(f"{url}{path}", data=_chunks(_multipart(digits[1][0], "xyz")),
                  headers={"Content-Type": "multipart/form-data; boundary=xyz"}, timeout=30)
    assert r.status_code == 201, r.text
    report["chunked_within_cap"] = {"status": r.status_code}

    print(json.dumps(report, indent=1))
    artifacts = ROOT / "test-artifacts"
    if artifacts.is_dir():
        (artifacts / "bombs.json").write_text(json.dumps(report, indent=1))


def _multipart(data: bytes, boundary: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()


def _chunks(data: bytes, size: int = 1000):
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _read_response(s: socket.socket) -> bytes:
    """Headers and the Content-Length body of one HTTP response."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = s.recv(65536)
        if not part:
            return data
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        part = s.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body
