"""Drives the app from a separate process for the kill tests (tests/e2e/test_jobs_survive_kills.py), against
whatever database and broker the environment names (PostgreSQL + Redis, or the embedded SQLite + filesystem
broker). State is built through services, as users would build it.

    python -m tests.e2e.jobs_driver setup          # a digits project: labeled, trained, deployed; production pushed
    python -m tests.e2e.jobs_driver start KIND     # queue one job (round, training, export, label_check, drift_check)
    python -m tests.e2e.jobs_driver verify KIND ID # what the job left behind, as JSON

Each command prints one JSON object as its last line.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.looplab.settings")

N_LABELED = 60
N_PRODUCTION = 30


def _setup() -> dict:
    from django.conf import settings

    from apps.accounts.services import user_create
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from apps.training.services import training_run_create
    from fixtures.digits import digits_pngs
    from tests.apps.helpers import label_all_open, push_digits, truth_by_sample

    assert settings.CELERY_TASK_ALWAYS_EAGER, "setup runs its jobs in this process"
    digits = digits_pngs()
    lead = user_create(username="lead", password="pw-lead", role="lead")
    annotator = user_create(username="annotator", password="pw-annotator", role="annotator")
    project = project_create(user=lead, name="kills", modality="image", labels=[str(i) for i in range(10)],
                             label_budget=1000, confidence_threshold=0.7)
    membership_set(project=project, user=annotator, role="annotator")
    project.auto_deploy = True
    project.save(update_fields=["auto_deploy"])
    push_digits(project, digits, N_LABELED)
    round_create(project=project, user=lead, budget=N_LABELED, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    run = training_run_create(project=project, user=lead, epochs=2)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    push_digits(project, digits, N_PRODUCTION, start=N_LABELED)  # production after the model: a drift window
    return {"project": project.pk, "run": run.pk}


def _start(kind: str) -> dict:
    from django.db import transaction

    from django.contrib.auth import get_user_model

    from apps.projects.models import Project

    User = get_user_model()

    project = Project.objects.get(name="kills")
    lead = User.objects.get(username="lead")
    with transaction.atomic():
        if kind == "round":
            from apps.labeling.services import round_create

            job = round_create(project=project, user=lead, budget=10, strategy="random")
        elif kind == "training":
            from apps.training.services import training_run_create

            job = training_run_create(project=project, user=lead, epochs=3, seed=len(kind))
        elif kind == "export":
            from apps.exports.services import export_create

            job = export_create(project=project, user=lead, format="csv")
        elif kind == "label_check":
            from apps.labeling.quality import label_check_create

            job = label_check_create(project=project, user=lead, limit=10)
        elif kind == "drift_check":
            from apps.monitoring.drift import drift_check_create

            job = drift_check_create(project=project, user=lead, window_hours=24)
        else:
            raise SystemExit(f"unknown kind {kind}")
    return {"kind": kind, "id": job.pk, "table": type(job)._meta.db_table}


def _files(folder: str) -> list[str]:
    from django.core.files.storage import default_storage

    if not default_storage.exists(folder):
        return []
    _, files = default_storage.listdir(folder)
    return sorted(files)


def _verify(kind: str, pk: int) -> dict:
    from apps.core.models import JobStatus

    if kind == "round":
        from apps.labeling.models import Round, Task

        job = Round.objects.get(pk=pk)
        facts = {"tasks": Task.objects.filter(round=job).count(), "selected": job.selected}
    elif kind == "training":
        from apps.registry.models import ModelVersion
        from apps.training.models import TrainingRun

        job = TrainingRun.objects.get(pk=pk)
        facts = {"model_versions": ModelVersion.objects.filter(training_run=job).count(),
                 "steps": {s.kind: [s.status, s.attempts] for s in job.steps.all()},
                 "files": _files(f"models/{job.project_id}/run{job.pk}")}
    elif kind == "export":
        from apps.exports.models import Export

        job = Export.objects.get(pk=pk)
        facts = {"files": _files(f"exports/{job.project_id}/{job.pk}"), "filename": job.filename}
    elif kind == "label_check":
        from apps.labeling.models import LabelCheck

        job = LabelCheck.objects.get(pk=pk)
        facts = {"n_checked": job.n_checked, "findings": len(job.findings or [])}
    elif kind == "drift_check":
        from apps.monitoring.models import DriftCheck

        job = DriftCheck.objects.get(pk=pk)
        facts = {"has_report": bool(job.report), "n_prod": (job.report or {}).get("n_prod")}
    else:
        raise SystemExit(f"unknown kind {kind}")
    return {"status": job.status, "attempts": job.attempts, "error": job.error[:500],
            "succeeded": job.status == JobStatus.SUCCEEDED, **facts}


def main(argv: list[str]) -> None:
    import django

    django.setup()
    command = argv[0]
    if command == "setup":
        out = _setup()
    elif command == "start":
        out = _start(argv[1])
    elif command == "verify":
        out = _verify(argv[1], int(argv[2]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
