"""Drift alerts: a drifted check POSTs a signed JSON alert to its project's webhook (the monitor's
``drift_webhook_url``), with retries and backoff, and records the delivery on the check (``alert_*``)."""
from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.utils import timezone

from apps.monitoring import webhook
from apps.monitoring.models import DriftCheck
from apps.monitoring.selectors import drift_monitor_get
from apps.monitoring.services import WEBHOOK_SECRET_OVERLAP
from apps.monitoring.tasks import send_drift_alert

ALERT_ATTEMPTS = 5
ALERT_TIMEOUT_S = 10
ALERT_BACKOFF_S = 30  # the n-th retry waits ALERT_BACKOFF_S * 2 ** (n - 1) seconds


def drift_alert_payload(*, check: DriftCheck) -> dict:
    """The JSON a drift alert carries (``event`` = "looplab.drift.detected")."""
    report = check.report or {}
    project = check.project
    return {
        "event": "looplab.drift.detected",
        "project": {"id": project.pk, "name": project.name},
        "check": {
            "id": check.pk, "trigger": check.trigger, "model": check.model_version_id,
            "window_start": check.window_start.isoformat(), "window_end": check.window_end.isoformat(),
            "p_value": report.get("p_value"), "confidence_psi": report.get("confidence_psi"),
            "confidence_level": report.get("confidence_level"), "prediction_psi": report.get("prediction_psi"),
            "n_ref": report.get("n_ref"), "n_prod": report.get("n_prod"),
            "drifted_slices": sorted(name for name, sl in (report.get("slices") or {}).items() if sl.get("drifted")),
            "witnesses": len(check.witnesses), "sent_to_labeling": check.flagged,
            "api": f"/api/v1/drift-checks/{check.pk}/", "page": f"/projects/{project.pk}/#drift",
        },
    }


def drift_alert_signatures(*, project, body: bytes, now=None) -> dict[str, str]:
    """``X-Looplab-Signature: sha256=<hex HMAC-SHA256 of the body with the project's secret>``, and for a day
    after a rotation ``X-Looplab-Signature-Previous`` with the old secret, so receivers can switch over."""
    monitor = drift_monitor_get(project=project)

    def sign(secret: str) -> str:
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    out = {"X-Looplab-Signature": sign(monitor.drift_webhook_secret)}
    rotated = monitor.drift_webhook_secret_rotated_at
    if monitor.drift_webhook_secret_previous and rotated and (now or timezone.now()) < rotated + WEBHOOK_SECRET_OVERLAP:
        out["X-Looplab-Signature-Previous"] = sign(monitor.drift_webhook_secret_previous)
    return out


def drift_alert_deliver(*, check: DriftCheck, attempt: int = 1) -> bool:
    """POST the check's alert to the project's ``drift_webhook_url`` (its monitor's) once (a 2xx answer within
    ALERT_TIMEOUT_S counts) and record the outcome on the check; after a failure, queue the next attempt
    with exponential backoff, up to ALERT_ATTEMPTS. The body is signed: ``X-Looplab-Signature: sha256=``
    the hex HMAC-SHA256 of the raw body with the monitor's ``drift_webhook_secret``; it carries
    ``sent_at``, so a receiver can refuse replays. Returns whether this attempt was delivered; a check
    already delivered (a repeated message) is not sent again."""
    project = check.project
    url = drift_monitor_get(project=project).drift_webhook_url
    if check.alert_status == "sent" or not url:
        return False
    body = json.dumps({**drift_alert_payload(check=check), "sent_at": timezone.now().isoformat()}).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Looplab drift alert",
               "X-Looplab-Event": "drift.detected", **drift_alert_signatures(project=project, body=body)}
    try:
        error = webhook.post(url, body, headers, timeout=ALERT_TIMEOUT_S,
                             allow_private=settings.LOOPLAB["WEBHOOK_ALLOW_PRIVATE"])
    except webhook.WebhookRefused as refused:  # a setting, not a passing fault: no retries
        DriftCheck.objects.filter(pk=check.pk).update(
            alert_status="failed", alert_attempts=attempt,
            alert_error=f"refused: {refused} "
                        f"(LOOPLAB_WEBHOOK_ALLOW_PRIVATE=true allows it)")
        return False
    if not error:
        DriftCheck.objects.filter(pk=check.pk).update(alert_status="sent", alert_attempts=attempt, alert_error="",
                                                      alert_sent_at=timezone.now())
        return True
    last = attempt >= ALERT_ATTEMPTS
    DriftCheck.objects.filter(pk=check.pk).update(
        alert_status="failed" if last else "sending", alert_attempts=attempt,
        alert_error=f"attempt {attempt} of {ALERT_ATTEMPTS}: {error}"[:2000])
    if not last:
        send_drift_alert.apply_async((check.pk, attempt + 1), countdown=ALERT_BACKOFF_S * 2 ** (attempt - 1))
    return False
