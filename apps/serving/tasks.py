"""Thin Celery tasks: load by id (or nothing, for beat's tick), call one service."""
from celery import shared_task


@shared_task(name="looplab.drift.check", acks_late=True, reject_on_worker_lost=True)
def run_drift_check(check_id: int) -> None:
    from apps.serving.drift import drift_check_run
    from apps.serving.models import DriftCheck

    check = DriftCheck.objects.select_related("project", "model_version__training_run__dataset_version").filter(
        pk=check_id).first()
    if check is not None:
        drift_check_run(check=check)


@shared_task(name="looplab.serving.schedule_drift_checks", acks_late=True, reject_on_worker_lost=True)
def schedule_drift_checks() -> int:
    """Celery beat's tick: queue the projects' scheduled drift checks that are due."""
    from apps.serving.drift import drift_checks_schedule

    return len(drift_checks_schedule())


@shared_task(name="looplab.serving.drift_alert", acks_late=True, reject_on_worker_lost=True)
def send_drift_alert(check_id: int, attempt: int = 1) -> None:
    """POST a drifted check's alert to the project's webhook (one attempt; the service queues retries)."""
    from apps.serving.drift import drift_alert_deliver
    from apps.serving.models import DriftCheck

    check = DriftCheck.objects.select_related("project").filter(pk=check_id).first()
    if check is not None:
        drift_alert_deliver(check=check, attempt=attempt)
