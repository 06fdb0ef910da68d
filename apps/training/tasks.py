"""Thin Celery tasks: one per pipeline step; the job runner claims the step by its run's id, one service runs it."""
from celery import shared_task

from apps.core.jobs import job_kind_register
from apps.training.models import PipelineStep, StepKind


def _step(task, run_id: int, kind: str) -> None:
    from apps.training.services import training_step_run

    training_step_run(run_id=run_id, kind=kind, task_id=task.request.id,
                      eager=bool(getattr(task.request, "is_eager", False)))


@shared_task(bind=True, name="looplab.training.train", acks_late=True, reject_on_worker_lost=True)
def train(self, run_id: int) -> None:
    _step(self, run_id, StepKind.TRAIN)


@shared_task(bind=True, name="looplab.training.evaluate", acks_late=True, reject_on_worker_lost=True)
def evaluate(self, run_id: int) -> None:
    _step(self, run_id, StepKind.EVALUATE)


@shared_task(bind=True, name="looplab.training.export", acks_late=True, reject_on_worker_lost=True)
def export(self, run_id: int) -> None:
    _step(self, run_id, StepKind.EXPORT)


@shared_task(bind=True, name="looplab.training.gate", acks_late=True, reject_on_worker_lost=True)
def gate(self, run_id: int) -> None:
    _step(self, run_id, StepKind.DEPLOY)


def _enqueue(step: PipelineStep) -> None:
    from apps.training.services import pipeline_step_enqueue

    pipeline_step_enqueue(step=step)


def _ended(step: PipelineStep, status: str) -> None:
    from apps.training.services import pipeline_step_ended

    pipeline_step_ended(step, status)


job_kind_register(PipelineStep, enqueue=_enqueue, on_end=_ended, sent_on_create=False)
