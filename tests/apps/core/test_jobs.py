"""The job runner (apps.core.jobs): claim, reclaim after a dead worker, attempts, cancel, the sweeper, and
results written only while the claim holds. Jobs here are real rounds and training runs built through services;
the integration test with a real worker being killed is tests/e2e/test_jobs_survive_kills.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.apps.helpers import push_digits


@pytest.fixture
def queued_round(lead, project, digits, django_capture_on_commit_callbacks):
    """A round whose message was sent but not run yet (what a broker holds)."""
    from apps.labeling.services import round_create

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 40)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        rnd = round_create(project=project, user=lead, budget=10, strategy="random")
    assert len(sent) == 1
    rnd.refresh_from_db()
    assert rnd.status == "queued" and rnd.enqueued_at is not None
    return rnd


def _run_round(pk: int, task_id: str):
    from apps.core.jobs import job_execute
    from apps.labeling.models import Round
    from apps.labeling.services import round_run

    return job_execute(Round, pk, task_id=task_id, eager=True,
                       body=lambda job: round_run(rnd=job.job, job=job))


def test_a_claim_records_task_id_worker_heartbeat_and_attempt(queued_round):
    from apps.core.jobs import HOST

    assert _run_round(queued_round.pk, "task-1") == "succeeded"
    queued_round.refresh_from_db()
    assert queued_round.task_id == "task-1" and queued_round.attempts == 1
    assert queued_round.worker.startswith(f"{HOST}:") and queued_round.heartbeat_at is not None
    assert queued_round.selected == 10 and queued_round.tasks.count() == 10
    # a duplicate of the finished job's message does nothing
    assert _run_round(queued_round.pk, "task-1") is None
    assert queued_round.tasks.count() == 10


def _as_if_running(job, *, task_id: str, worker: str, beat_ago_s: float = 0.0, attempts: int = 1):
    type(job).objects.filter(pk=job.pk).update(
        status="running", task_id=task_id, worker=worker, attempts=attempts, started_at=timezone.now(),
        heartbeat_at=timezone.now() - timedelta(seconds=beat_ago_s))


def test_redelivery_of_the_same_task_reclaims_a_job_whose_worker_died(queued_round):
    from apps.core.jobs import HOST

    _as_if_running(queued_round, task_id="task-1", worker=f"{HOST}:999999999")  # no such process
    assert _run_round(queued_round.pk, "task-1") == "succeeded"
    queued_round.refresh_from_db()
    assert queued_round.attempts == 2 and queued_round.tasks.count() == 10


def test_a_job_running_in_a_live_worker_is_not_taken_over(queued_round):
    import os

    from apps.core.jobs import HOST

    # another message for the same job while its worker (here: our parent process, alive) beats
    _as_if_running(queued_round, task_id="task-1", worker=f"{HOST}:{os.getppid()}")
    assert _run_round(queued_round.pk, "task-2") is None
    assert _run_round(queued_round.pk, "task-1") is None  # the same message again, owner alive and beating
    queued_round.refresh_from_db()
    assert queued_round.status == "running" and queued_round.attempts == 1 and queued_round.tasks.count() == 0


def test_a_stale_heartbeat_is_taken_over_by_any_delivery(queued_round, settings):
    _as_if_running(queued_round, task_id="task-1", worker="another-host:12",
                   beat_ago_s=settings.LOOPLAB_JOBS["STALE_S"] + 5)
    assert _run_round(queued_round.pk, "task-2") == "succeeded"
    queued_round.refresh_from_db()
    assert queued_round.task_id == "task-2" and queued_round.attempts == 2


def test_attempts_are_bounded_then_failed_with_the_reason(queued_round, settings):
    _as_if_running(queued_round, task_id="task-1", worker="another-host:12",
                   beat_ago_s=settings.LOOPLAB_JOBS["STALE_S"] + 5, attempts=settings.LOOPLAB_JOBS["MAX_ATTEMPTS"])
    assert _run_round(queued_round.pk, "task-9") is None
    queued_round.refresh_from_db()
    assert queued_round.status == "failed"
    assert "Stopped after 3 attempts" in queued_round.error and "killed" in queued_round.message
    assert queued_round.tasks.count() == 0


def test_results_are_written_only_while_the_claim_holds(queued_round):
    """A run that lost its claim mid-way (the sweeper gave the job to another worker) writes nothing: the
    round's tasks and its success are rolled back together."""
    from apps.core.jobs import job_execute
    from apps.labeling.models import Round
    from apps.labeling.services import round_run

    def body(job):
        real = job.progress

        def progress(percent, message):
            real(percent, message)
            if percent >= 90:  # reclaimed behind our back just before the tasks are written
                Round.objects.filter(pk=job.job.pk).update(task_id="someone-else")

        job.progress = progress
        return round_run(rnd=job.job, job=job)

    assert job_execute(Round, queued_round.pk, task_id="task-1", eager=True, body=body) is None
    queued_round.refresh_from_db()
    assert queued_round.tasks.count() == 0 and queued_round.status == "running"
    assert queued_round.task_id == "someone-else"


def test_cancel_a_queued_round_through_the_api(api, lead, queued_round):
    from apps.labeling.models import Round

    r = api(lead).post(f"/api/v1/rounds/{queued_round.pk}/cancel/")
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "cancelled" and r.json()["cancel_requested"] is True
    assert _run_round(queued_round.pk, "task-1") is None  # its message arrives later: nothing runs
    assert Round.objects.get(pk=queued_round.pk).tasks.count() == 0
    r = api(lead).post(f"/api/v1/rounds/{queued_round.pk}/cancel/")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"


def test_cancel_is_for_leads_and_members_only(api, annotator, outsider, queued_round):
    assert api(annotator).post(f"/api/v1/rounds/{queued_round.pk}/cancel/").status_code == 403
    r = api(outsider).post(f"/api/v1/rounds/{queued_round.pk}/cancel/")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_running_job_stops_at_its_next_progress_point(api, lead, queued_round):
    """Cancel while running answers 202; the body's next progress call raises, the job ends cancelled and
    writes no task."""
    from apps.core.jobs import job_execute
    from apps.labeling.models import Round
    from apps.labeling.services import round_run

    seen = {}

    def body(job):
        seen["answer"] = api(lead).post(f"/api/v1/rounds/{job.job.pk}/cancel/")
        return round_run(rnd=job.job, job=job)  # its first progress point stops it

    assert job_execute(Round, queued_round.pk, task_id="task-1", eager=True, body=body) == "cancelled"
    assert seen["answer"].status_code == 202 and seen["answer"].json()["status"] == "running"
    rnd = Round.objects.get(pk=queued_round.pk)
    assert rnd.status == "cancelled" and rnd.finished_at is not None and rnd.tasks.count() == 0


@pytest.fixture
def queued_run(lead, annotator, project, digits, django_capture_on_commit_callbacks):
    """A training run on 40 labeled digits whose first step's message was sent but not run yet."""
    from apps.labeling.services import round_create
    from apps.training.services import training_run_create
    from tests.apps.helpers import label_all_open, truth_by_sample

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 40)
        round_create(project=project, user=lead, budget=40, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    with django_capture_on_commit_callbacks(execute=False):
        run = training_run_create(project=project, user=lead, epochs=1)
    return run


def test_cancel_a_training_run_between_steps_ends_the_run(api, lead, queued_run):
    """Cancelling a run whose next step is queued (no step running) ends the run and its queued steps now."""
    from apps.training.models import TrainingRun
    from apps.training.services import training_step_run

    run = queued_run
    r = api(lead).post(f"/api/v1/training-runs/{run.pk}/cancel/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "cancelled"
    assert {s["kind"]: s["status"] for s in body["steps"]} == {
        "train": "cancelled", "evaluate": "cancelled", "export": "cancelled", "deploy": "cancelled"}
    assert training_step_run(run_id=run.pk, kind="train") is None  # the queued message arrives: nothing runs
    assert TrainingRun.objects.get(pk=run.pk).model_id is None


def test_a_step_out_of_attempts_fails_its_training_run(queued_run, settings, django_capture_on_commit_callbacks):
    from apps.core.jobs import jobs_sweep
    from apps.training.models import PipelineStep, TrainingRun

    run = queued_run
    step = PipelineStep.objects.get(training_run=run, kind="train")
    TrainingRun.objects.filter(pk=run.pk).update(status="running")
    _as_if_running(step, task_id="t", worker="gone:1", beat_ago_s=settings.LOOPLAB_JOBS["STALE_S"] + 5,
                   attempts=settings.LOOPLAB_JOBS["MAX_ATTEMPTS"])
    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_sweep()
    assert counts["failed"] == 1
    run.refresh_from_db()
    assert run.status == "failed" and "train failed" in run.message and "attempts" in run.error


def test_the_sweeper_requeues_stale_running_and_forgotten_queued_jobs(queued_round, settings,
                                                                      django_capture_on_commit_callbacks):
    from apps.core.jobs import jobs_sweep
    from apps.labeling.models import Round

    _as_if_running(queued_round, task_id="task-1", worker="gone:1", beat_ago_s=settings.LOOPLAB_JOBS["STALE_S"] + 5)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        counts = jobs_sweep()
    assert counts["requeued_running"] == 1 and len(sent) == 1
    rnd = Round.objects.get(pk=queued_round.pk)
    assert rnd.status == "queued" and "requeued" in rnd.message
    # its message is lost too (a whole worker killed on a broker without redelivery): sent again once it waited
    Round.objects.filter(pk=rnd.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.LOOPLAB_JOBS["QUEUED_STALE_S"] + 5))
    with django_capture_on_commit_callbacks(execute=True):
        counts = jobs_sweep()
    assert counts["requeued_queued"] == 1
    rnd.refresh_from_db()
    assert rnd.status == "succeeded" and rnd.tasks.count() == 10 and rnd.attempts == 2
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert jobs_sweep() == {"requeued_running": 0, "requeued_queued": 0, "failed": 0, "cancelled": 0}
    assert sent == []


@pytest.mark.parametrize("path,body", [
    ("rounds", {"budget": 5, "strategy": "random"}),
    ("exports", {"format": "csv"}),
])
def test_idempotency_key_on_posts_that_start_jobs(api, lead, project, digits, path, body,
                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 20)
    client = api(lead)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(f"/api/v1/projects/{project.pk}/{path}/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
        again = client.post(f"/api/v1/projects/{project.pk}/{path}/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 202, first.content
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert len(client.get(f"/api/v1/projects/{project.pk}/{path}/").json()) == 1
    other = client.post(f"/api/v1/projects/{project.pk}/{path}/", {**body, "x": 1}, format="json",
                        HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    without = client.post(f"/api/v1/projects/{project.pk}/{path}/", body, format="json")
    assert without.status_code == 202 and without.json()["id"] != first.json()["id"]


def test_file_put_replaces_what_an_earlier_attempt_left(settings, tmp_path):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from apps.core.files import file_put

    name = "models/0/run0/model.onnx"
    assert file_put(name=name, content=ContentFile(b"first attempt")) == name
    assert file_put(name=name, content=ContentFile(b"second attempt")) == name
    with default_storage.open(name) as fh:
        assert fh.read() == b"second attempt"
    folder, files = default_storage.listdir("models/0/run0")
    assert files == ["model.onnx"]


def test_a_cancel_after_the_last_progress_point_still_stops_the_job(lead, queued_round):
    """A cancel asked while the body does its last work (no progress point left) wins at the end: the round
    ends cancelled and its tasks are rolled back."""
    from apps.core.jobs import job_cancel, job_execute
    from apps.labeling.models import Round
    from apps.labeling.services import round_run

    def body(job):
        real = job.progress

        def progress(percent, message):
            real(percent, message)
            if percent >= 90:  # the lead cancels after the last progress point
                job_cancel(Round.objects.get(pk=job.job.pk))

        job.progress = progress
        return round_run(rnd=job.job, job=job)

    assert job_execute(Round, queued_round.pk, task_id="task-1", eager=True, body=body) == "cancelled"
    rnd = Round.objects.get(pk=queued_round.pk)
    assert rnd.status == "cancelled" and rnd.tasks.count() == 0


def test_a_step_that_ended_without_moving_its_run_on_is_repaired_by_a_redelivery(queued_run,
                                                                                django_capture_on_commit_callbacks):
    """The worker died after the step's end was written but before the run moved on (old rows, or a crash in
    between): the next delivery of the step's message moves the run on instead of leaving it running."""
    from apps.training.models import PipelineStep, TrainingRun
    from apps.training.services import training_step_run

    TrainingRun.objects.filter(pk=queued_run.pk).update(status="running")
    PipelineStep.objects.filter(training_run=queued_run, kind="train").update(status="failed", error="boom",
                                                                             message="boom")
    training_step_run(run_id=queued_run.pk, kind="train")
    run = TrainingRun.objects.get(pk=queued_run.pk)
    assert run.status == "failed" and "train failed" in run.message


def test_rows_from_before_the_runner_are_swept_too(queued_round, settings, django_capture_on_commit_callbacks):
    """A job left running by a worker that died before the runner existed has no heartbeat: its start counts."""
    from apps.core.jobs import jobs_sweep
    from apps.labeling.models import Round

    Round.objects.filter(pk=queued_round.pk).update(
        status="running", heartbeat_at=None, worker="", task_id="",
        started_at=timezone.now() - timedelta(seconds=settings.LOOPLAB_JOBS["STALE_S"] + 5))
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_sweep()["requeued_running"] == 1
    rnd = Round.objects.get(pk=queued_round.pk)
    assert rnd.status == "succeeded" and rnd.tasks.count() == 10
