"""Thin Celery tasks: the job runner claims the row by id, one service runs it."""
from celery import shared_task

from apps.core.jobs import job_enqueue, job_kind_register, job_task_execute
from apps.projects.models import Project
from apps.samples.models import EmbeddingJob


@shared_task(bind=True, name="looplab.samples.embed_job", acks_late=True, reject_on_worker_lost=True)
def embed_job(self, job_id: int) -> None:
    from apps.samples.services import embedding_job_run

    job_task_execute(self, EmbeddingJob, job_id, start_message="embedding",
                     body=lambda job: embedding_job_run(job_row=job.job, job=job))


@shared_task(name="looplab.samples.embed", acks_late=True, reject_on_worker_lost=True)
def embed_samples(project_id: int, sample_ids: list[int]) -> int:
    """The message format before embedding ran as jobs (looplab.samples.embed_job): still served, so messages
    queued by an older release are not lost on upgrade."""
    from apps.samples.services import samples_embed

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    return samples_embed(project=project, sample_ids=sample_ids)


job_kind_register(EmbeddingJob, enqueue=lambda row: job_enqueue(row, embed_job, row.pk))
