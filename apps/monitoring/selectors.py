"""Reads of drift monitoring: a project's monitor, its checks and where its schedule stands."""
from __future__ import annotations

import datetime

from django.utils import timezone

from apps.core.ids import get_by_id
from apps.monitoring.models import MAX_WINDOW_HOURS, DriftCheck, DriftMonitor
from apps.projects.models import Project
from apps.samples.models import Sample


def drift_monitor_get(*, project) -> DriftMonitor:
    """The project's drift monitor; for a project that never changed a drift setting, an unsaved one with the
    defaults (no schedule, no auto-flag, no alerts): what the project's drift settings were before the monitor
    had its own table. Reading never writes. A project read with ``select_related("drift_monitor")`` costs no
    query (the project list)."""
    relation = Project._meta.get_field("drift_monitor")
    if relation.is_cached(project):
        monitor = relation.get_cached_value(project)
    else:
        monitor = DriftMonitor.objects.filter(project=project).first()
    # (project_id, not project=: an unsaved default must not be cached on the project as its monitor)
    return monitor if monitor is not None else DriftMonitor(project_id=project.pk)


def drift_check_get(*, check_id):
    return get_by_id(DriftCheck.objects.select_related("project", "model_version"), check_id, "Drift check")


def drift_checks_for_project(*, project):
    return DriftCheck.objects.filter(project=project).select_related("model_version").order_by("-id")


def drift_check_witnesses(*, check) -> list[dict]:
    """The witnesses with what a lead needs to look at them, and their state now (labeled, flagged)."""
    found = Sample.objects.in_bulk([w["sample"] for w in check.witnesses])
    out = []
    for w in check.witnesses:
        s = found.get(w["sample"])
        if s is None:  # deleted since
            continue
        out.append({"sample": s.pk, "score": w["score"], "external_id": s.external_id,
                    "content_url": f"/api/v1/samples/{s.pk}/content/", "predicted_label": s.predicted_label,
                    "confidence": s.confidence, "labeled": s.label is not None, "drift_flagged": s.drift_flagged})
    return out


def drift_schedule_next(*, project, now=None) -> dict | None:
    """Where a project's scheduled checks stand: ``{"every_hours", "auto_flag", "window_start", "due_at"}``,
    or None when the project has no schedule. The next window starts where the last scheduled check's
    window ended (the first one looks back one interval) and is due once it is one interval long."""
    monitor = drift_monitor_get(project=project)
    if not monitor.drift_check_hours:
        return None
    now = now or timezone.now()
    every = datetime.timedelta(hours=monitor.drift_check_hours)
    last = (DriftCheck.objects.filter(project=project, trigger="schedule").order_by("-window_end")
            .values_list("window_end", flat=True).first())
    start = max(last or now - every, now - datetime.timedelta(hours=MAX_WINDOW_HOURS))
    return {"every_hours": monitor.drift_check_hours, "auto_flag": monitor.drift_auto_flag,
            "window_start": start, "due_at": start + every}


def drift_last_check(*, project) -> dict | None:
    """The latest finished check: id, window, trigger, drifted, p-value, flagged (None before the first)."""
    last = (DriftCheck.objects.filter(project=project, status="succeeded").order_by("-window_end", "-id").first())
    if last is None:
        return None
    return {"id": last.pk, "trigger": last.trigger, "window_start": last.window_start, "window_end": last.window_end,
            "drifted": (last.report or {}).get("drifted"), "p_value": (last.report or {}).get("p_value"),
            "flagged": last.flagged}


def drift_status(*, project) -> dict:
    """Drift monitoring at a glance: the latest finished check (``last``, :func:`drift_last_check`) and the
    schedule (:func:`drift_schedule_next`, None when off)."""
    return {"last": drift_last_check(project=project), "schedule": drift_schedule_next(project=project)}
