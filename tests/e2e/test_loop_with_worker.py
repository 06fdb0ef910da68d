"""The whole loop through the public API over HTTP, against PostgreSQL, Redis and a real Celery worker."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import b64

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """A real worker process on Redis, with celery beat inside it (a 2 s tick), sharing the test database and
    the data dir with the live server."""
    import redis
    from django.db import connection

    from apps.looplab.celery import app

    broker = settings.CELERY_BROKER_URL  # the test settings' own Redis database
    assert broker.startswith("redis://")
    redis.Redis.from_url(broker).flushdb()
    old_eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="apps.looplab.settings", CELERY_BROKER_URL=broker,
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
               LOOPLAB_DATA_DIR=str(settings.DATA_DIR), CELERY_TASK_ALWAYS_EAGER="false",
               LOOPLAB_DRIFT_SCHEDULE_TICK_S="2")
    log = open(ROOT / "test-artifacts" / "e2e-worker.log", "w") if (ROOT / "test-artifacts").is_dir() else subprocess.DEVNULL
    proc = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "apps.looplab", "worker",
                             "-Q", "default,ml_cpu,ml_gpu", "-c", "1", "--without-gossip", "--without-mingle",
                             "--loglevel", "INFO", "--beat", "--schedule", str(Path(settings.DATA_DIR) / "beat-schedule")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    app.conf.task_always_eager = old_eager


def _poll(session, url, done, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = session.get(url).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting on {url}: {body}")


@pytest.mark.integration
@pytest.mark.slow
def test_whole_loop_through_the_api(live_server, celery_worker_process, digits):
    from django.db import connection

    from apps.accounts.services import token_get_or_create, user_create

    assert connection.vendor == "postgresql"
    lead = requests.Session()
    lead.headers["Authorization"] = f"Token {token_get_or_create(user=user_create(username='lead', role='lead'))}"
    annotator = requests.Session()
    annotator.headers["Authorization"] = f"Token {token_get_or_create(user=user_create(username='ann', role='annotator'))}"
    api = live_server.url + "/api/v1"

    r = lead.post(f"{api}/projects/", json={"name": "digits", "modality": "image", "labels": [str(i) for i in range(10)],
                                            "label_budget": 200, "confidence_threshold": 0.9})
    assert r.status_code == 201, r.text
    project = r.json()
    pid = project["id"]
    assert lead.post(f"{api}/projects/{pid}/members/", json={"username": "ann", "role": "annotator"}).status_code == 201

    # Push 300 real images in JSON batches.
    truth = {}
    for start in range(0, 300, 100):
        batch = [{"external_id": f"d{i}", "content": b64(digits[i][0]), "metadata": {"shift": "night" if i % 4 == 0 else "day"}}
                 for i in range(start, start + 100)]
        r = lead.post(f"{api}/projects/{pid}/samples/", json={"samples": batch})
        assert r.status_code == 201, r.text
        truth.update({s["id"]: str(digits[int(s["external_id"][1:])][1]) for s in r.json()["samples"]})
    assert len(truth) == 300

    # An auto round of 50, run by the worker.
    r = lead.post(f"{api}/projects/{pid}/rounds/", json={"budget": 50, "strategy": "auto"})
    assert r.status_code == 202, r.text
    rnd = _poll(lead, f"{api}/rounds/{r.json()['id']}/", lambda b: b["status"] in ("succeeded", "failed"))
    assert rnd["status"] == "succeeded", rnd
    assert rnd["selected"] == 50 and rnd["strategy_used"].startswith("auto")

    # Annotate through the API.
    labeled = 0
    while True:
        r = annotator.post(f"{api}/projects/{pid}/tasks/next/")
        if r.status_code == 204:
            break
        task = r.json()
        assert annotator.get(live_server.url + task["sample"]["content_url"]).status_code == 200
        r = annotator.post(f"{api}/tasks/{task['id']}/annotations/",
                           json={"result": {"label": truth[task["sample"]["id"]]}, "active_seconds": 1.0})
        assert r.status_code == 201, r.text
        labeled += 1
    assert labeled == 50

    # Train → evaluate → export, then deploy by hand (the gate is off).
    r = lead.post(f"{api}/projects/{pid}/training-runs/", json={})
    assert r.status_code == 202, r.text
    run = _poll(lead, f"{api}/training-runs/{r.json()['id']}/", lambda b: b["status"] in ("succeeded", "failed"), timeout=420)
    assert run["status"] == "succeeded", run
    assert [step["kind"] for step in run["steps"]] == ["train", "evaluate", "export", "deploy"]
    model = lead.get(f"{api}/models/{run['model']}/").json()
    report = model["eval_report"]
    assert report["n"] > 0 and 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["macro_f1"] <= 1.0
    assert set(report["per_class"]) == set(project["labels"])
    assert model["parity"]["top1_agreement"] == 1.0
    assert lead.get(live_server.url + model["confusion_url"]).headers["Content-Type"] == "image/png"
    r = lead.post(f"{api}/projects/{pid}/deployments/", json={"model": run["model"]})
    assert r.status_code == 201, r.text

    # Predict with the deployed model.
    r = lead.post(f"{api}/projects/{pid}/predict/", json={"content": b64(digits[1000][0])})
    assert r.status_code == 200, r.text
    assert r.json()["label"] in project["labels"] and r.json()["model"] == run["model"]

    # Production pushes ask for predictions; low-confidence ones are marked...
    batch = [{"external_id": f"d{i}", "content": b64(digits[i][0]), "metadata": {"source": "production"}}
             for i in range(300, 400)]
    r = lead.post(f"{api}/projects/{pid}/samples/", json={"samples": batch, "predict": True})
    assert r.status_code == 201, r.text
    pushed = r.json()["samples"]
    assert all(s["prediction"]["model"] == run["model"] for s in pushed)
    low = {s["id"] for s in pushed if s["prediction"]["confidence"] < 0.9}
    assert low, "expected some low-confidence production samples"

    # ...and the next round prefers them.
    r = lead.post(f"{api}/projects/{pid}/rounds/", json={"budget": 30, "strategy": "auto"})
    rnd2 = _poll(lead, f"{api}/rounds/{r.json()['id']}/", lambda b: b["status"] in ("succeeded", "failed"))
    assert rnd2["status"] == "succeeded", rnd2
    assert rnd2["model_version"] == run["model"]
    items = rnd2["items"]
    chosen_low = [item for item in items if item["sample"] in low]
    alloc = rnd2["details"]["allocation"]
    low_by_split = {}
    for s in pushed:
        if s["id"] in low:
            low_by_split[s["split"]] = low_by_split.get(s["split"], 0) + 1
    expected = sum(min(alloc[split], low_by_split.get(split, 0)) for split in alloc)
    assert len(chosen_low) == expected > 0
    assert all(item["sample"] in low for item in items[:expected]), "low-confidence samples come first in the queue"

    # Monitoring: schedule drift checks every hour; beat's next tick queues the first one (the last hour of
    # production) and the worker runs it.
    r = lead.patch(f"{api}/projects/{pid}/", json={"drift_check_hours": 1})
    assert r.status_code == 200 and r.json()["drift"]["schedule"]["every_hours"] == 1, r.text
    checks = _poll(lead, f"{api}/projects/{pid}/drift-checks/",
                   lambda b: b and b[0]["status"] in ("succeeded", "failed"), timeout=120)
    assert len(checks) == 1 and checks[0]["trigger"] == "schedule" and checks[0]["status"] == "succeeded", checks
    assert checks[0]["model"] == run["model"] and checks[0]["drifted"] in (True, False)
    status = lead.get(f"{api}/projects/{pid}/").json()["drift"]
    assert status["last"]["id"] == checks[0]["id"] and status["schedule"]["window_start"][:19] == checks[0]["window_end"][:19]
    time.sleep(5)  # more ticks: the next window is not due for an hour
    assert len(lead.get(f"{api}/projects/{pid}/drift-checks/").json()) == 1
