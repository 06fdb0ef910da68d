from celery import shared_task

from apps.labeling.models import Round


@shared_task(name="looplab.labeling.run_round", acks_late=True, reject_on_worker_lost=True)
def run_round(round_id: int) -> None:
    from apps.labeling.services import round_run

    rnd = Round.objects.select_related("project").filter(pk=round_id).first()
    if rnd is not None:
        round_run(rnd=rnd)
