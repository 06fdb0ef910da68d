"""Thin Celery task: the job runner claims the export by id, one service writes it."""
from celery import shared_task

from apps.core.jobs import job_enqueue, job_kind_register, job_task_execute
from apps.exports.models import Export


@shared_task(bind=True, name="looplab.exports.run", acks_late=True, reject_on_worker_lost=True)
def run_export(self, export_id: int) -> None:
    from apps.exports.services import export_run

    job_task_execute(self, Export, export_id, start_message="collecting labels",
                     body=lambda job: export_run(export=job.job, job=job))


job_kind_register(Export, enqueue=lambda export: job_enqueue(export, run_export, export.pk))
