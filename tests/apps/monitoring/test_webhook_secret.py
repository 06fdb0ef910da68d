"""Rotating the drift alerts' signing secret: a new one at once, the old one still signs for a day."""
from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from apps.projects.models import Project
from apps.monitoring.alerts import drift_alert_signatures
from apps.monitoring.models import DriftMonitor
from apps.monitoring.services import WEBHOOK_SECRET_OVERLAP

HOOK = "https://hooks.example.com/looplab"


def _sig(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_lead_rotates_the_secret_and_alerts_carry_both_signatures_for_a_day(api, lead, project):
    url = f"/api/v1/projects/{project.id}/"
    old = api(lead).patch(url, {"drift_webhook_url": HOOK}, format="json").json()["drift_webhook_secret"]
    assert len(old) == 64
    body = b'{"event": "looplab.drift.detected"}'
    assert drift_alert_signatures(project=Project.objects.get(pk=project.pk), body=body) == {
        "X-Looplab-Signature": _sig(old, body)}

    r = api(lead).post(f"/api/v1/projects/{project.id}/drift-webhook-secret/rotate/", {}, format="json")
    assert r.status_code == 200, r.content
    new = r.json()["drift_webhook_secret"]
    assert len(new) == 64 and new != old
    shown = api(lead).get(url).json()
    assert shown["drift_webhook_secret"] == new
    assert shown["drift_webhook_secret_rotated_at"] == r.json()["drift_webhook_secret_rotated_at"]

    fresh = Project.objects.get(pk=project.pk)
    # within the day: the new secret's signature, and the old one's beside it
    assert drift_alert_signatures(project=fresh, body=body) == {
        "X-Looplab-Signature": _sig(new, body), "X-Looplab-Signature-Previous": _sig(old, body)}
    # after it: the new one only
    later = DriftMonitor.objects.get(project=project).drift_webhook_secret_rotated_at + WEBHOOK_SECRET_OVERLAP + timedelta(seconds=1)
    assert drift_alert_signatures(project=fresh, body=body, now=later) == {"X-Looplab-Signature": _sig(new, body)}

    # rotating twice: the previous is the one just replaced
    newer = api(lead).post(f"/api/v1/projects/{project.id}/drift-webhook-secret/rotate/", {}, format="json").json()
    assert drift_alert_signatures(project=Project.objects.get(pk=project.pk), body=body) == {
        "X-Looplab-Signature": _sig(newer["drift_webhook_secret"], body), "X-Looplab-Signature-Previous": _sig(new, body)}

    # removing the webhook forgets every secret
    api(lead).patch(url, {"drift_webhook_url": ""}, format="json")
    gone = DriftMonitor.objects.get(project=project)
    assert (gone.drift_webhook_secret, gone.drift_webhook_secret_previous, gone.drift_webhook_secret_rotated_at) == ("", "", None)


def test_rotation_needs_a_lead_and_a_webhook(api, lead, annotator, outsider, project):
    rotate = f"/api/v1/projects/{project.id}/drift-webhook-secret/rotate/"
    r = api(lead).post(rotate, {}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_webhook", r.content
    api(lead).patch(f"/api/v1/projects/{project.id}/", {"drift_webhook_url": HOOK}, format="json")
    before = DriftMonitor.objects.get(project=project).drift_webhook_secret
    assert api(annotator).post(rotate, {}, format="json").status_code == 403
    assert api(outsider).post(rotate, {}, format="json").status_code in (403, 404)
    assert DriftMonitor.objects.get(project=project).drift_webhook_secret == before  # nothing half-done
    # annotators see neither the secret nor when it changed hands... the time is not a credential
    seen = api(annotator).get(f"/api/v1/projects/{project.id}/").json()
    assert seen["drift_webhook_secret"] == ""
