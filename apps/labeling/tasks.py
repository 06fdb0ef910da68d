"""Thin Celery task: the job runner claims the round by id, then one service runs it."""
from celery import shared_task

from apps.core.jobs import job_enqueue, job_kind_register, job_task_execute
from apps.labeling.models import Round


@shared_task(bind=True, name="looplab.labeling.run_round", acks_late=True, reject_on_worker_lost=True)
def run_round(self, round_id: int) -> None:
    from apps.labeling.services import round_run

    job_task_execute(self, Round, round_id, start_message="loading the pool",
                     body=lambda job: round_run(rnd=job.job, job=job))


job_kind_register(Round, enqueue=lambda rnd: job_enqueue(rnd, run_round, rnd.pk))
