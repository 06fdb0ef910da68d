from celery import shared_task

from apps.projects.models import Project


@shared_task(name="looplab.samples.embed", acks_late=True, reject_on_worker_lost=True)
def embed_samples(project_id: int, sample_ids: list[int]) -> int:
    from apps.samples.services import samples_embed

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    return samples_embed(project=project, sample_ids=sample_ids)


@shared_task(name="looplab.samples.label_check", acks_late=True, reject_on_worker_lost=True)
def run_label_check(check_id: int) -> None:
    from apps.samples.models import LabelCheck
    from apps.samples.quality import label_check_run

    check = LabelCheck.objects.select_related("project").filter(pk=check_id).first()
    if check is not None:
        label_check_run(check=check)
