"""Thin Celery tasks: the job runner claims a check by id (or nothing, for beat's tick), one service runs it.
The task names are older than this app (serving held drift monitoring) and stay: queued messages, routes and
the beat schedule name them."""
from celery import shared_task

from apps.core.jobs import job_enqueue, job_kind_register, job_task_execute
from apps.monitoring.models import DriftCheck


@shared_task(bind=True, name="looplab.drift.check", acks_late=True, reject_on_worker_lost=True)
def run_drift_check(self, check_id: int) -> None:
    from apps.monitoring.drift import drift_check_run

    job_task_execute(self, DriftCheck, check_id, start_message="loading the serving model",
                     body=lambda job: drift_check_run(check=job.job, job=job))


@shared_task(name="looplab.serving.schedule_drift_checks", acks_late=True, reject_on_worker_lost=True)
def schedule_drift_checks() -> int:
    """Celery beat's tick: queue the projects' scheduled drift checks that are due."""
    from apps.monitoring.drift import drift_checks_schedule

    return len(drift_checks_schedule())


@shared_task(name="looplab.serving.drift_alert", acks_late=True, reject_on_worker_lost=True)
def send_drift_alert(check_id: int, attempt: int = 1) -> None:
    """POST a drifted check's alert to the project's webhook (one attempt; the service queues retries)."""
    from apps.monitoring.alerts import drift_alert_deliver

    check = DriftCheck.objects.select_related("project").filter(pk=check_id).first()
    if check is not None:
        drift_alert_deliver(check=check, attempt=attempt)


job_kind_register(DriftCheck, enqueue=lambda check: job_enqueue(check, run_drift_check, check.pk))
