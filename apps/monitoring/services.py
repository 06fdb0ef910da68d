"""Writes of a project's drift settings (its :class:`~apps.monitoring.models.DriftMonitor`): the schedule,
auto-flag, the alert webhook and its signing secret. The checks themselves are in :mod:`apps.monitoring.drift`,
their alerts in :mod:`apps.monitoring.alerts`."""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.monitoring.models import MAX_WINDOW_HOURS, DriftMonitor
from apps.monitoring.selectors import drift_monitor_get
from apps.projects.models import Project
from apps.projects.services import project_update

DRIFT_MONITOR_FIELDS = ("drift_check_hours", "drift_auto_flag", "drift_webhook_url")  # what a lead changes
WEBHOOK_SECRET_OVERLAP = timedelta(hours=24)  # after a rotation, alerts carry the old secret's signature too


def _validate(fields: dict) -> None:
    unknown = set(fields) - set(DRIFT_MONITOR_FIELDS)
    if unknown:
        raise ValidationFailed(f"These fields cannot be changed: {sorted(unknown)}.", code=ErrorCode.READ_ONLY_FIELDS)
    if fields.get("drift_check_hours") is not None:
        if not 1 <= fields["drift_check_hours"] <= MAX_WINDOW_HOURS:
            raise ValidationFailed(f"drift_check_hours must be within 1..{MAX_WINDOW_HOURS} (or null: no schedule).",
                                   code=ErrorCode.INVALID_DRIFT_SCHEDULE,
                                   details={"drift_check_hours": fields["drift_check_hours"]})
    if fields.get("drift_webhook_url"):
        try:
            URLValidator(schemes=["http", "https"])(fields["drift_webhook_url"])
        except ValidationError:
            raise ValidationFailed("drift_webhook_url must be an http(s) URL (or empty: no alerts).",
                                   code=ErrorCode.INVALID_WEBHOOK_URL) from None
        if len(fields["drift_webhook_url"]) > 500:
            raise ValidationFailed("drift_webhook_url is longer than 500 characters.",
                                   code=ErrorCode.INVALID_WEBHOOK_URL)


def drift_monitor_update(*, project: Project, **fields) -> DriftMonitor:
    """Change the project's drift settings (``drift_check_hours``, ``drift_auto_flag``, ``drift_webhook_url``);
    the monitor is made by the first change. Alerts are signed with a per-project secret, made with the first
    URL and forgotten, with its predecessor, when the URL is removed."""
    _validate(fields)
    with transaction.atomic():
        monitor, _ = DriftMonitor.objects.select_for_update().get_or_create(project=project)
        if "drift_webhook_url" in fields:
            if not fields["drift_webhook_url"]:
                fields.update(drift_webhook_secret="", drift_webhook_secret_previous="",
                              drift_webhook_secret_rotated_at=None)
            elif not monitor.drift_webhook_secret:
                fields["drift_webhook_secret"] = secrets.token_hex(32)
        for key, value in fields.items():
            setattr(monitor, key, value)
        monitor.save(update_fields=list(fields) or None)
    return monitor


def drift_monitor_webhook_secret_rotate(*, project: Project) -> DriftMonitor:
    """A new signing secret for the project's drift alerts (when the old one leaked, or on a schedule). For
    WEBHOOK_SECRET_OVERLAP afterwards, alerts also carry ``X-Looplab-Signature-Previous`` made with the old
    secret, so a receiver can switch to the new one without refusing alerts in between."""
    monitor = drift_monitor_get(project=project)
    if not monitor.drift_webhook_url:
        raise Conflict("There is no alert webhook to sign for: set drift_webhook_url first.", code=ErrorCode.NO_WEBHOOK)
    monitor.drift_webhook_secret_previous = monitor.drift_webhook_secret
    monitor.drift_webhook_secret = secrets.token_hex(32)
    monitor.drift_webhook_secret_rotated_at = timezone.now()
    monitor.save(update_fields=["drift_webhook_secret", "drift_webhook_secret_previous",
                                "drift_webhook_secret_rotated_at"])
    return monitor


def project_settings_update(*, project: Project, **fields) -> Project:
    """PATCH projects/{id}/: the project's own settings through :func:`apps.projects.services.project_update`,
    its drift settings through :func:`drift_monitor_update`, in one transaction (a refused drift setting
    leaves the rest unchanged too). Project fields are checked first, as when they were one model."""
    drift = {key: fields.pop(key) for key in DRIFT_MONITOR_FIELDS if key in fields}
    with transaction.atomic():
        if fields or not drift:
            project = project_update(project=project, **fields)
        if drift:
            drift_monitor_update(project=project, **drift)
    return project
