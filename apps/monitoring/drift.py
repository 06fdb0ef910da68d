"""Drift checks: is production moving away from what the serving model was trained on?

A check compares two windows in the serving model's own embedding space, with its probabilities:
- the reference: the training split of the dataset version the serving model was trained on;
- production: the samples pushed in the last ``window_hours``, the reference's own samples left out.

At most 1,000 samples of each are scored; ml.drift subsamples to that anyway. The check then runs
``ml.drift.detect_drift``: one permutation test on the embeddings (MMD and novelty), PSI of the top-1 confidence and
of the predicted classes, and per-metadata-slice figures. Its witnesses are the production samples
most unlike the reference. A lead can send them back to labeling (:func:`drift_check_flag`), or the
project does it by itself (its monitor's ``drift_auto_flag``); rounds then take them first, like low-confidence
samples.

Checks run when a lead asks (:func:`drift_check_create`) or on the project's schedule (its monitor's
``drift_check_hours``): celery beat calls :func:`drift_checks_schedule`, which covers production in
consecutive windows. A check that finds drift POSTs an alert to the monitor's ``drift_webhook_url``
(:func:`apps.monitoring.alerts.drift_alert_deliver`, retried with backoff).
"""
from __future__ import annotations

import logging

from datetime import timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from ml.drift import detect_drift

from apps.core.errors import Conflict, ErrorCode, ValidationFailed
from apps.core.jobs import JobContext, job_enqueue
from apps.monitoring.models import MAX_WINDOW_HOURS, DriftCheck, DriftMonitor
from apps.monitoring.selectors import drift_monitor_get, drift_schedule_next
from apps.monitoring.tasks import run_drift_check, send_drift_alert
from apps.projects.models import Project
from apps.registry.runtime import model_runner
from apps.registry.selectors import current_deployment
from apps.samples.models import Sample
from apps.samples.selectors import metadata_slices
from apps.samples.services import samples_features, samples_flag_drifted

log = logging.getLogger(__name__)

MIN_WINDOW = 20
MAX_WINDOW = 1000
CHUNK = 256
WITNESSES = 50


def _reference_ids(model_version) -> list[int]:
    items = model_version.training_run.dataset_version.items or []
    return [int(item[0]) for item in items if item[2] == "train"]


def _production_ids(project, *, start, end, exclude: set[int]) -> list[int]:
    """The window's samples, newest first, at most MAX_WINDOW, without the reference's own samples."""
    ids = []
    for sid in (Sample.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
                .order_by("-id").values_list("id", flat=True).iterator(chunk_size=2000)):
        if sid not in exclude:
            ids.append(sid)
            if len(ids) == MAX_WINDOW:
                break
    return ids


def _window_size(project, deployment, *, start, end) -> int:
    """Production samples in [start, end) that a check would compare (capped at MAX_WINDOW)."""
    reference = set(_reference_ids(deployment.model_version))
    return len(_production_ids(project, start=start, end=end, exclude=reference))


def _queue(*, project, deployment, start, end, user, trigger: str) -> DriftCheck:
    with transaction.atomic():
        check = DriftCheck.objects.create(project=project, model_version=deployment.model_version, created_by=user,
                                          trigger=trigger, window_start=start, window_end=end, message="queued")
        job_enqueue(check, run_drift_check, check.pk)
    return check


def drift_check_create(*, project, user, window_hours: float | None = None, since=None) -> DriftCheck:
    """Queue a drift check of production (the last ``window_hours``, default 24, or everything pushed
    ``since`` a time) against the serving model's training data."""
    deployment = current_deployment(project=project)
    if deployment is None:
        raise ValidationFailed("A drift check compares production with the serving model's training data; "
                               "deploy a model first.", code=ErrorCode.NO_DEPLOYMENT)
    end = timezone.now()
    if since is not None and window_hours is not None:
        raise ValidationFailed("Give window_hours or since, not both.", code=ErrorCode.INVALID_WINDOW)
    if since is not None:
        window_hours = (end - since).total_seconds() / 3600.0
    window_hours = 24.0 if window_hours is None else float(window_hours)
    if not 0 < window_hours <= MAX_WINDOW_HOURS:
        raise ValidationFailed(f"The window must be between 0 and {MAX_WINDOW_HOURS} hours long.",
                               code=ErrorCode.INVALID_WINDOW, details={"window_hours": window_hours})
    start = end - timedelta(hours=window_hours)
    n = _window_size(project, deployment, start=start, end=end)
    if n < MIN_WINDOW:
        raise ValidationFailed(f"{n} samples outside the training data were pushed in the last {window_hours:.3g} h; "
                               f"a drift check needs at least {MIN_WINDOW}.", code=ErrorCode.NOT_ENOUGH_SAMPLES,
                               details={"samples": n, "needed": MIN_WINDOW, "window_hours": window_hours})
    return _queue(project=project, deployment=deployment, start=start, end=end, user=user, trigger="manual")


def drift_checks_schedule(*, now=None) -> list[DriftCheck]:
    """Queue the scheduled drift checks that are due (run by celery beat every
    ``LOOPLAB_DRIFT_SCHEDULE_TICK_S``). A project is due when its monitor has ``drift_check_hours``, a model
    serving, no scheduled check queued or running, and its next window
    (:func:`apps.monitoring.selectors.drift_schedule_next`) is one interval
    long. A window with fewer than MIN_WINDOW production samples is left to grow until the next tick."""
    now = now or timezone.now()
    queued = []
    for project_id in (DriftMonitor.objects.filter(drift_check_hours__isnull=False).order_by("project_id")
                       .values_list("project_id", flat=True)):
        try:
            with transaction.atomic():
                project = Project.objects.select_for_update().get(pk=project_id)  # one scheduler at a time per project
                deployment = current_deployment(project=project)
                plan = drift_schedule_next(project=project, now=now)
                if deployment is None or plan is None or plan["due_at"] > now:
                    continue
                if DriftCheck.objects.filter(project=project, trigger="schedule", status__in=("queued", "running")).exists():
                    continue
                if _window_size(project, deployment, start=plan["window_start"], end=now) < MIN_WINDOW:
                    continue
                queued.append(_queue(project=project, deployment=deployment, start=plan["window_start"], end=now,
                                     user=None, trigger="schedule"))
        except Exception:  # one project's failure must not stop the others' scheduled monitoring
            log.exception("drift schedule: project %s could not be checked", project_id)
    return queued


def _score(project, runner, ids: list[int], progress, lo: float, hi: float, what: str):
    """(samples that could be read, embeddings, probabilities or None) in the serving model's space, in chunks."""
    by_id = Sample.objects.in_bulk(ids)
    samples = [by_id[i] for i in ids if i in by_id]
    ok, E, P = [], [], []
    for start in range(0, len(samples), CHUNK):
        got, vectors, probs = samples_features(project=project, samples=samples[start:start + CHUNK], runner=runner)
        ok += got
        if got:
            E.append(vectors)
            P.append(probs)
        done = min(len(samples), start + CHUNK)
        progress(lo + (hi - lo) * done / max(1, len(samples)), f"scored {done} of {len(samples)} {what} samples")
    if not ok:
        return ok, None, None
    # class probabilities exist for classifiers only; boxes, regions, points and cuboids drift in embedding space
    return ok, np.concatenate(E), (np.concatenate(P) if all(p is not None for p in P) else None)


def drift_check_run(*, check: DriftCheck, job: JobContext) -> None:
    """The check's job (claimed by the job runner). Its result, the samples it flags and the alert it queues
    are written in one transaction."""
    progress = job.progress
    project, mv = check.project, check.model_version
    runner = model_runner(model_version=mv)
    reference = _reference_ids(mv)
    rng = np.random.default_rng(check.pk)
    if len(reference) > MAX_WINDOW:
        reference = sorted(rng.choice(reference, size=MAX_WINDOW, replace=False).tolist())
    production = _production_ids(project, start=check.window_start, end=check.window_end, exclude=set(reference))
    ref, E_ref, P_ref = _score(project, runner, reference, progress, 5, 45, "reference")
    prod, E_prod, P_prod = _score(project, runner, production, progress, 45, 85, "production")
    if len(ref) < MIN_WINDOW or len(prod) < MIN_WINDOW:
        raise ValidationFailed(f"Too few readable samples to compare: {len(ref)} reference, {len(prod)} "
                               f"production (at least {MIN_WINDOW} each).", code=ErrorCode.WINDOW_TOO_SMALL)
    progress(88, "testing for drift (MMD and novelty permutation test, PSI)")
    report = detect_drift(E_ref, E_prod, ref_probs=P_ref, prod_probs=P_prod,
                          slices=metadata_slices([s.metadata for s in ref], [s.metadata for s in prod]), top_k=WITNESSES, random_state=check.pk)
    witnesses = [{"sample": prod[i].pk, "score": score}
                 for i, score in zip(report.top_drift_indices, report.top_drift_scores) if score > 0]
    verdict = "drift" if report.drifted else "no drift"
    conf = f", confidence PSI {report.confidence_psi:.3f} ({report.confidence_level})" \
        if report.confidence_psi is not None else ""
    monitor = drift_monitor_get(project=project)
    with transaction.atomic():
        job.succeed(f"{verdict}: p = {report.p_value:.3f} ({_led_by(report)}) on {report.n_prod} production vs "
                    f"{report.n_ref} reference samples{conf}", report=report.to_dict(), witnesses=witnesses)
        if report.drifted and monitor.drift_auto_flag and witnesses:
            check.refresh_from_db()
            drift_check_flag(check=check)
        if report.drifted and monitor.drift_webhook_url:
            DriftCheck.objects.filter(pk=check.pk).update(alert_status="sending")
            transaction.on_commit(lambda: send_drift_alert.delay(check.pk))


def _led_by(report) -> str:
    """Which statistic of the test found the most: for the check's one-line message."""
    nov = report.novelty
    if report.statistic == "novelty" and nov:
        return (f"{100 * nov['share_prod']:.0f}% of production is farther from the training data than its own "
                f"{100 * nov['quantile']:.0f}th percentile, {100 * nov['share_expected']:.0f}% expected")
    return "MMD"


def drift_check_flag(*, check: DriftCheck) -> int:
    """Send the check's witnesses back to labeling: the unlabeled ones without a task are flagged, and rounds
    take flagged samples first. Returns how many were flagged now (0 on a repeat)."""
    if check.status != "succeeded":
        raise Conflict(f"The drift check is {check.status}; nothing to send yet.", code=ErrorCode.CHECK_NOT_READY,
                       details={"status": check.status})
    ids = [w["sample"] for w in check.witnesses]
    with transaction.atomic():
        n = samples_flag_drifted(project=check.project, sample_ids=ids)
        DriftCheck.objects.filter(pk=check.pk).update(flagged_at=check.flagged_at or timezone.now(),
                                                      flagged=check.flagged + n)
    check.refresh_from_db()
    return n

