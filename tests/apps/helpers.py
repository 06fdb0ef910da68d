"""Helpers that build state through services, as a user of the API would."""
from __future__ import annotations

from apps.samples.services import IngestItem, samples_ingest


def push_digits(project, digits, n: int, *, start: int = 0, metadata=None):
    items = [IngestItem(external_id=f"d{i}", content=png, metadata=(metadata(i) if metadata else {"n": i}))
             for i, (png, _) in enumerate(digits[start:start + n], start=start)]
    return samples_ingest(project=project, items=items)


def truth_by_sample(project, digits):
    """The digit each stored sample shows (from its external_id), to annotate like an oracle."""
    from apps.samples.models import Sample

    return {pk: str(digits[int(ext[1:])][1]) for pk, ext in
            Sample.objects.filter(project=project).values_list("id", "external_id")}


def label_all_open(project, user, truth) -> int:
    from apps.labeling.services import annotation_submit, task_lease_next

    n = 0
    while True:
        task = task_lease_next(project=project, user=user)
        if task is None:
            return n
        annotation_submit(task=task, user=user, result={"label": truth[task.sample_id]}, active_seconds=1.5)
        n += 1


def train_digits(project, lead, annotator, digits, capture, *, n: int, epochs: int):
    """Push ``n`` digits, label them all through a random round, train; the run, succeeded.
    ``capture`` is pytest-django's django_capture_on_commit_callbacks (runs the queued jobs)."""
    from apps.labeling.services import round_create
    from apps.training.services import training_run_create

    with capture(execute=True):
        push_digits(project, digits, n)
        round_create(project=project, user=lead, budget=n, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    with capture(execute=True):
        run = training_run_create(project=project, user=lead, epochs=epochs)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run
