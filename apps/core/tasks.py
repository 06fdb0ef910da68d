"""Thin Celery task: celery beat's tick for the job runner's sweeper."""
from celery import shared_task


@shared_task(name="looplab.core.sweep_jobs", acks_late=True, reject_on_worker_lost=True)
def sweep_jobs() -> dict:
    """Re-enqueue jobs whose worker died, fail those out of attempts (apps.core.jobs.jobs_sweep)."""
    from apps.core.jobs import jobs_sweep

    return jobs_sweep()
