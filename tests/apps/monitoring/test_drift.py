"""Drift checks: production vs the serving model's training data, and sending the drifted samples back."""
import io

import pytest
from PIL import Image, ImageOps

from tests.apps.helpers import Receiver, run_round, train_digits


def _inverted(png: bytes) -> bytes:
    """The same digit as a negative (light strokes on dark): a new camera setting, say."""
    img = ImageOps.invert(Image.open(io.BytesIO(png)).convert("L"))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _same_draws(request):
    """A round's random picks and a drift check's permutations are seeded by their database ids, which depend on
    every test that ran before. Start those ids at a base of this test's own (PostgreSQL's setval is not rolled
    back, and the bases are far above what other tests reach, so no id is used twice), so the test sees the
    same draws in any suite order: a statistical assertion at alpha 0.05 is otherwise a 5% flake."""
    import zlib

    from django.db import connection

    from apps.labeling.models import Round
    from apps.monitoring.models import DriftCheck

    if connection.vendor != "postgresql":
        return
    base = 10_000_000 * (1 + zlib.crc32(request.node.name.encode()) % 150)
    with connection.cursor() as cursor:
        for model in (Round, DriftCheck):
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)", [model._meta.db_table, base])


@pytest.fixture
def serving(request, lead, annotator, project, digits, django_capture_on_commit_callbacks, settings):
    """A digits project with a model trained on 120 labels and deployed by the gate. It serves fp32: export picks
    int8 by timing it, which varies with the machine's load, and the embeddings (so the p-values) with it."""
    from apps.projects.services import project_update
    from apps.registry.selectors import current_deployment

    _same_draws(request)
    settings.LOOPLAB = {**settings.LOOPLAB, "EXPORT_INT8": False}

    project_update(project=project, auto_deploy=True)
    train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=200, labeled=120, epochs=4,
                 metadata=lambda i: {"camera": "old"})
    assert current_deployment(project=project) is not None
    return project


def _push(project, items, django_capture_on_commit_callbacks):
    from apps.samples.services import IngestItem, samples_ingest

    with django_capture_on_commit_callbacks(execute=True):
        samples_ingest(project=project, items=[IngestItem(external_id=e, content=c, metadata=m) for e, c, m in items])


def _check(api, lead, project, django_capture_on_commit_callbacks, **body):
    with django_capture_on_commit_callbacks(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/drift-checks/", body, format="json")
    assert r.status_code == 202, r.content
    assert r.json()["status"] == "queued"
    detail = api(lead).get(f"/api/v1/drift-checks/{r.json()['id']}/").json()
    assert detail["status"] == "succeeded", detail
    return detail


@pytest.mark.slow
def test_a_new_kind_of_input_is_drift_and_goes_back_to_labeling(api, lead, annotator, serving, digits,
                                                                 django_capture_on_commit_callbacks):
    from apps.labeling.models import Task
    from apps.samples.models import Sample

    from django.utils import timezone

    project = serving
    since = timezone.now().isoformat()
    # production: 40 ordinary unseen digits and 60 negatives from a new camera
    _push(project, [(f"p{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:240])]
          + [(f"n{i}", _inverted(png), {"camera": "new"}) for i, (png, _) in enumerate(digits[240:300])],
          django_capture_on_commit_callbacks)
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    rep = body["report"]
    assert body["drifted"] is True and rep["p_value"] < 0.05 and body["p_value"] == rep["p_value"]
    assert rep["n_prod"] == 100 and rep["n_ref"] > 50  # the training split of the serving model's dataset
    assert body["message"].startswith("drift: p = ") and rep["statistic"] in ("mmd", "novelty")
    assert rep["novelty"]["share_prod"] > rep["novelty"]["share_expected"]
    assert rep["slices"]["camera=new"]["n_ref"] == 0 and rep["slices"]["camera=new"]["n_prod"] == 60
    witnesses = body["witnesses"]
    assert witnesses and [w["score"] for w in witnesses] == sorted((w["score"] for w in witnesses), reverse=True)
    top = witnesses[:20]
    assert sum(w["external_id"].startswith("n") for w in top) >= 18, [w["external_id"] for w in top]
    assert all(w["content_url"] == f"/api/v1/samples/{w['sample']}/content/" for w in witnesses)

    # send them back: they are flagged, and the next round takes them first
    r = api(lead).post(f"/api/v1/drift-checks/{body['id']}/flag/", {}, format="json")
    assert r.status_code == 200, r.content
    flagged = r.json()["flagged"]
    assert flagged == len(witnesses) and r.json()["check"]["flagged"] == flagged
    assert api(lead).post(f"/api/v1/drift-checks/{body['id']}/flag/", {}, format="json").json()["flagged"] == 0
    ids = {w["sample"] for w in witnesses}
    assert set(Sample.objects.filter(drift_flagged=True).values_list("id", flat=True)) == ids
    rnd = run_round(project, lead, django_capture_on_commit_callbacks, budget=30, strategy="margin")
    train_tasks = list(Task.objects.filter(round=rnd, sample__split="train").order_by("-priority", "id"))
    flagged_train = {s for s in ids if Sample.objects.get(pk=s).split == "train"}
    k = min(len(train_tasks), len(flagged_train))
    assert k >= 5 and all(t.sample_id in flagged_train for t in train_tasks[:k])  # flagged ones lead the queue


@pytest.mark.slow
def test_a_trickle_of_new_input_is_found_by_novelty(api, lead, serving, digits, django_capture_on_commit_callbacks):
    # 10 of 100 production samples come from a new camera: too few to move MMD, each far from the training data
    from django.utils import timezone

    project = serving
    since = timezone.now().isoformat()
    # 10 of 100: with the 84-sample reference the fixture gives, this was found (p 0.005-0.03) on 8 of 8
    # different labelled sets (2026-12-04, at 149b8a9); 6 of 100 only on 4 of 8 (p 0.01-0.15), though its 6 were always
    # the top witnesses. Which samples the fixture's random round labels depends on the round's id, so on
    # the tests that ran before (_same_draws now pins that): a 6-of-100 version failed in one suite order.
    _push(project, [(f"p{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:290])]
          + [(f"n{i}", _inverted(png), {"camera": "old"}) for i, (png, _) in enumerate(digits[290:300])],
          django_capture_on_commit_callbacks)
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    rep = body["report"]
    assert body["drifted"] is True and rep["statistic"] == "novelty", rep
    assert rep["novelty"]["share_prod"] >= 0.10 > rep["novelty"]["share_expected"]
    assert "% of production is farther from the training data than its own" in body["message"], body["message"]
    # the slice cannot tell (the camera tag is the same): the witnesses can
    assert sorted(w["external_id"] for w in body["witnesses"][:10]) == sorted(f"n{i}" for i in range(10))


@pytest.mark.slow
def test_more_of_the_same_is_not_drift(api, lead, serving, digits, django_capture_on_commit_callbacks):
    from django.utils import timezone

    project = serving
    since = timezone.now().isoformat()
    _push(project, [(f"p{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:280])],
          django_capture_on_commit_callbacks)
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    assert body["drifted"] is False and body["report"]["p_value"] >= 0.05, body["report"]
    assert body["message"].startswith("no drift: p = ")


def test_drift_check_needs_a_model_enough_samples_and_a_lead(api, lead, annotator, outsider, project, digits):
    from apps.monitoring.models import DriftCheck

    url = f"/api/v1/projects/{project.id}/drift-checks/"
    r = api(lead).post(url, {}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_deployment"
    assert api(annotator).post(url, {}, format="json").status_code == 403
    assert api(annotator).get(url).status_code == 403
    assert api(outsider).get(url).status_code == 404
    assert api(lead).get("/api/v1/drift-checks/123456/").status_code == 404
    assert api(lead).post("/api/v1/drift-checks/123456/flag/", {}, format="json").status_code == 404
    assert not DriftCheck.objects.exists()


@pytest.mark.slow
def test_drift_check_input_errors_with_a_model(api, lead, serving, digits, django_capture_on_commit_callbacks):
    from apps.monitoring.drift import drift_check_create, drift_check_flag
    from apps.monitoring.models import DriftCheck

    from django.utils import timezone

    url = f"/api/v1/projects/{serving.id}/drift-checks/"
    r = api(lead).post(url, {"since": timezone.now().isoformat()}, format="json")  # nothing pushed since
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_samples"
    assert r.json()["error"]["details"]["samples"] == 0
    r = api(lead).post(url, {"since": timezone.now().isoformat(), "window_hours": 2}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_window"
    for bad in (0, -3, 24 * 91):
        r = api(lead).post(url, {"window_hours": bad}, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_window"
    assert api(lead).post(url, {"window_hours": "soon"}, format="json").status_code in (400, 422)
    assert not DriftCheck.objects.exists()
    check = drift_check_create(project=serving, user=lead)  # queued, never run here: not on commit
    with pytest.raises(Exception) as ei:
        drift_check_flag(check=check)
    assert getattr(ei.value, "code", None) == "check_not_ready"


@pytest.mark.slow
def test_scheduled_checks_cover_consecutive_windows(api, lead, annotator, serving, digits,
                                                    django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from apps.monitoring.drift import drift_checks_schedule
    from apps.monitoring.models import DriftCheck
    from apps.monitoring.tasks import schedule_drift_checks

    project = serving
    t0 = timezone.now()
    assert drift_checks_schedule(now=t0) == []  # no schedule yet: nothing happens
    r = api(annotator).patch(f"/api/v1/projects/{project.id}/", {"drift_check_hours": 1}, format="json")
    assert r.status_code == 403
    r = api(lead).patch(f"/api/v1/projects/{project.id}/", {"drift_check_hours": 1}, format="json")
    assert r.status_code == 200 and r.json()["drift_check_hours"] == 1 and r.json()["drift_auto_flag"] is False
    plan = r.json()["drift"]["schedule"]
    assert plan["every_hours"] == 1 and r.json()["drift"]["last"] is None

    # first tick: the window is the last hour (the 80 unlabeled and the val/test digits of the fixture)
    project.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        first, = drift_checks_schedule(now=t0)
    first.refresh_from_db()
    assert first.trigger == "schedule" and first.created_by is None and first.status == "succeeded", first.message
    assert first.window_end == t0 and first.window_start == t0 - timedelta(hours=1)
    # not due again until the next window is an hour long
    assert drift_checks_schedule(now=t0 + timedelta(minutes=50)) == []
    # an hour later with only 5 new samples: too few, the window is left to grow
    _push(project, [(f"q{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:205])],
          django_capture_on_commit_callbacks)
    assert drift_checks_schedule(now=t0 + timedelta(minutes=61)) == []
    _push(project, [(f"q{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[205:240])],
          django_capture_on_commit_callbacks)
    # beat's task: the next window starts where the first ended and holds the 40 new samples
    with django_capture_on_commit_callbacks(execute=True):
        assert schedule_drift_checks.apply(kwargs={}).get() == 0  # real time: not an hour after t0 yet
        second, = drift_checks_schedule(now=t0 + timedelta(minutes=61))
    second.refresh_from_db()
    assert second.window_start == first.window_end and second.status == "succeeded", second.message
    assert second.report["n_prod"] == 40
    body = api(lead).get(f"/api/v1/projects/{project.id}/").json()
    assert body["drift"]["last"]["id"] == second.pk and body["drift"]["last"]["trigger"] == "schedule"
    assert body["drift"]["schedule"]["window_start"].startswith(second.window_end.isoformat()[:19])
    listed = api(lead).get(f"/api/v1/projects/{project.id}/drift-checks/").json()
    assert [c["trigger"] for c in listed] == ["schedule", "schedule"]

    # a queued scheduled check holds the next one back; turning the schedule off stops them
    DriftCheck.objects.filter(pk=second.pk).update(status="queued")
    assert drift_checks_schedule(now=t0 + timedelta(hours=5)) == []
    r = api(lead).patch(f"/api/v1/projects/{project.id}/", {"drift_check_hours": None}, format="json")
    assert r.status_code == 200 and r.json()["drift"]["schedule"] is None
    DriftCheck.objects.filter(pk=second.pk).update(status="succeeded")
    assert drift_checks_schedule(now=t0 + timedelta(hours=5)) == []
    assert DriftCheck.objects.count() == 2


def test_drift_schedule_settings_are_validated(api, lead, project):
    from django.conf import settings

    url = f"/api/v1/projects/{project.id}/"
    for bad in (0, 24 * 91):
        r = api(lead).patch(url, {"drift_check_hours": bad}, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_drift_schedule", r.content
    assert api(lead).patch(url, {"drift_check_hours": "often"}, format="json").status_code == 400
    r = api(lead).patch(url, {"drift_check_hours": 24, "drift_auto_flag": True}, format="json")
    assert r.status_code == 200 and r.json()["drift_check_hours"] == 24 and r.json()["drift_auto_flag"] is True
    # no model serving: the schedule is recorded, and the beat tick skips the project until one is deployed
    from apps.monitoring.drift import drift_checks_schedule

    assert drift_checks_schedule() == []
    beat = settings.CELERY_BEAT_SCHEDULE["looplab-schedule-drift-checks"]
    from apps.looplab.celery import app

    assert beat["task"] in app.tasks and beat["schedule"] > 0


@pytest.mark.slow
def test_auto_flag_sends_drifted_samples_back_and_the_project_list_shows_it(
        api, lead, serving, digits, client, django_capture_on_commit_callbacks):
    from django.utils import timezone

    from apps.samples.models import Sample

    project = serving
    r = api(lead).patch(f"/api/v1/projects/{project.id}/", {"drift_auto_flag": True}, format="json")
    assert r.status_code == 200
    since = timezone.now().isoformat()
    _push(project, [(f"p{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:240])]
          + [(f"n{i}", _inverted(png), {"camera": "new"}) for i, (png, _) in enumerate(digits[240:300])],
          django_capture_on_commit_callbacks)
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    assert body["drifted"] is True
    ids = {w["sample"] for w in body["witnesses"]}
    assert body["flagged"] == len(ids) > 0 and body["flagged_at"] is not None  # nobody pressed the button
    assert set(Sample.objects.filter(drift_flagged=True).values_list("id", flat=True)) == ids
    client.force_login(lead)
    html = client.get("/").content.decode()
    assert 'class="badge badge-bad"' in html and f"#{body['id']}" in html


@pytest.mark.slow
def test_a_drifted_check_alerts_the_webhook_with_retries(api, lead, annotator, serving, digits, settings,
                                                          django_capture_on_commit_callbacks):
    from django.utils import timezone

    from apps.monitoring.models import DriftCheck

    project = serving
    url = f"/api/v1/projects/{project.id}/"
    for bad in ("not a url", "ftp://example.com/x", "http://" + "a" * 500 + ".com/"):
        r = api(lead).patch(url, {"drift_webhook_url": bad}, format="json")
        assert r.status_code in (400, 422), r.content
    receiver = Receiver(statuses=(204,))
    try:
        r = api(lead).patch(url, {"drift_webhook_url": receiver.url, "drift_auto_flag": True}, format="json")
        assert r.status_code == 200 and r.json()["drift_webhook_url"] == receiver.url
        secret = r.json()["drift_webhook_secret"]
        assert len(secret) == 64  # made with the first URL, kept when the URL changes
        r = api(lead).patch(url, {"drift_webhook_url": receiver.url + "?v=1"}, format="json")
        assert r.json()["drift_webhook_secret"] == secret
        r = api(lead).patch(url, {"drift_webhook_url": receiver.url}, format="json")
        # a webhook URL and its secret are credentials: annotators do not see them
        seen = api(annotator).get(url).json()
        assert seen["drift_webhook_url"] == seen["drift_webhook_secret"] == ""
        assert all(p["drift_webhook_url"] == p["drift_webhook_secret"] == ""
                   for p in api(annotator).get("/api/v1/projects/").json())

        # more of the same: no drift, no alert
        since = timezone.now().isoformat()
        _push(project, [(f"p{i}", png, {"camera": "old"}) for i, (png, _) in enumerate(digits[200:260])],
              django_capture_on_commit_callbacks)
        calm = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
        assert calm["drifted"] is False and calm["alert_status"] == "" and receiver.got == []

        # a new camera: drift, witnesses sent to labeling by themselves, and one alert
        since = timezone.now().isoformat()
        _push(project, [(f"n{i}", _inverted(png), {"camera": "new"}) for i, (png, _) in enumerate(digits[260:330])],
              django_capture_on_commit_callbacks)
        body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
        assert body["drifted"] is True and body["alert_status"] == "sent" and body["alert_attempts"] == 1, body
        assert len(receiver.got) == 1
        hit = receiver.got[0]
        assert hit["path"] == "/hooks/drift" and hit["headers"]["X-Looplab-Event"] == "drift.detected"
        alert = hit["body"]
        assert alert["event"] == "looplab.drift.detected" and alert["project"] == {"id": project.id, "name": project.name}
        assert alert["check"]["id"] == body["id"] and alert["check"]["p_value"] == body["p_value"] < 0.05
        assert alert["check"]["sent_to_labeling"] == body["flagged"] > 0  # flagged before the alert went out
        assert alert["check"]["page"] == f"/projects/{project.id}/#drift" and alert["sent_at"]
        # signed: HMAC-SHA256 of the raw body with the project's secret
        import hashlib
        import hmac

        expected = "sha256=" + hmac.new(secret.encode(), hit["raw"], hashlib.sha256).hexdigest()
        assert hit["headers"]["X-Looplab-Signature"] == expected

        # the receiver fails twice, then takes it: three attempts, delivered
        receiver.statuses = [500, 503, 204]
        body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
        assert body["alert_status"] == "sent" and body["alert_attempts"] == 3, body
        assert len(receiver.got) == 4
        # it never takes it: five attempts, then failed, with the reason
        receiver.statuses = [500]
        body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
        assert body["alert_status"] == "failed" and body["alert_attempts"] == 5, body
        assert body["alert_error"] == "attempt 5 of 5: the receiver answered 500"
        assert len(receiver.got) == 9
    finally:
        receiver.close()
    # nobody listens any more: the connection error is recorded
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    assert body["alert_status"] == "failed" and "Connection" in body["alert_error"], body
    assert DriftCheck.objects.filter(project=project, alert_status="sent").count() == 2
    # by default the server refuses to call its own network (loopback here), at once and without retries
    settings.LOOPLAB = {**settings.LOOPLAB, "WEBHOOK_ALLOW_PRIVATE": False}
    body = _check(api, lead, project, django_capture_on_commit_callbacks, since=since)
    assert body["alert_status"] == "failed" and body["alert_attempts"] == 1, body
    assert body["alert_error"] == ("refused: the webhook's host '127.0.0.1' does not resolve to a public address "
                                   "(LOOPLAB_WEBHOOK_ALLOW_PRIVATE=true allows it)"), body
    r = api(lead).patch(url, {"drift_webhook_url": ""}, format="json")
    assert r.json()["drift_webhook_url"] == r.json()["drift_webhook_secret"] == ""
