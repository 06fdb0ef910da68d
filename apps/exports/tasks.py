"""Thin Celery task: load by id, call one service."""
from celery import shared_task

from apps.exports.models import Export


@shared_task(name="looplab.exports.run", acks_late=True, reject_on_worker_lost=True)
def run_export(export_id: int) -> None:
    from apps.exports.services import export_run

    export = Export.objects.select_related("project", "dataset_version").filter(pk=export_id).first()
    if export is not None:
        export_run(export=export)
