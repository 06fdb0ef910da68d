"""Thin Celery tasks: load by id, call one service."""
from celery import shared_task

from apps.training.models import TrainingRun


def _run(run_id: int):
    return TrainingRun.objects.select_related("project", "dataset_version").filter(pk=run_id).first()


@shared_task(name="looplab.training.train", acks_late=True, reject_on_worker_lost=True)
def train(run_id: int) -> None:
    from apps.training.services import training_run_train

    run = _run(run_id)
    if run is not None:
        training_run_train(run=run)


@shared_task(name="looplab.training.evaluate", acks_late=True, reject_on_worker_lost=True)
def evaluate(run_id: int) -> None:
    from apps.training.services import training_run_evaluate

    run = _run(run_id)
    if run is not None:
        training_run_evaluate(run=run)


@shared_task(name="looplab.training.export", acks_late=True, reject_on_worker_lost=True)
def export(run_id: int) -> None:
    from apps.training.services import training_run_export

    run = _run(run_id)
    if run is not None:
        training_run_export(run=run)


@shared_task(name="looplab.training.gate", acks_late=True, reject_on_worker_lost=True)
def gate(run_id: int) -> None:
    from apps.training.services import training_run_gate

    run = _run(run_id)
    if run is not None:
        training_run_gate(run=run)
