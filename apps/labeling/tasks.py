"""Thin Celery tasks: the job runner claims the row (a round, a label check) by id, then one service runs it."""
from celery import shared_task

from apps.core.jobs import job_enqueue, job_kind_register, job_task_execute
from apps.labeling.models import LabelCheck, Round


@shared_task(bind=True, name="looplab.labeling.run_round", acks_late=True, reject_on_worker_lost=True)
def run_round(self, round_id: int) -> None:
    from apps.labeling.services import round_run

    job_task_execute(self, Round, round_id, start_message="loading the pool",
                     body=lambda job: round_run(rnd=job.job, job=job))


job_kind_register(Round, enqueue=lambda rnd: job_enqueue(rnd, run_round, rnd.pk))


# The name from before label checks moved here from samples: messages already queued still find the task.
@shared_task(bind=True, name="looplab.samples.label_check", acks_late=True, reject_on_worker_lost=True)
def run_label_check(self, check_id: int) -> None:
    from apps.labeling.quality import label_check_run

    job_task_execute(self, LabelCheck, check_id, start_message="loading the labeled samples",
                     body=lambda job: label_check_run(check=job.job, job=job))


job_kind_register(LabelCheck, enqueue=lambda check: job_enqueue(check, run_label_check, check.pk))
