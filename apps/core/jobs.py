"""The one job runner: every background job (rounds, training steps, exports, label and drift checks,
embedding batches) is a database row (:class:`apps.core.models.JobFields`) run through :func:`job_execute`.

What it guarantees, and how:

- **Claim.** A delivery of the job's Celery message claims the row under a row lock: it records the Celery
  task id, the worker (``host:pid``), a heartbeat and the attempt number. A row that is already finished is
  left alone (a duplicate message does nothing).
- **Reclaim.** A row that is ``running`` is taken over by (a) a redelivery of the *same* task id (Celery
  redelivers a message at once when the pool process running it is killed, ``reject_on_worker_lost``)
  unless its owner is a live process on this host with a fresh heartbeat, or (b) any delivery once the
  heartbeat is older than ``LOOPLAB_JOB_STALE_S``.
- **Heartbeat.** While a job runs in a worker, a thread beats every ``LOOPLAB_JOB_HEARTBEAT_S``; progress
  calls beat too. A killed process stops beating, so its job goes stale.
- **Sweeper.** :func:`jobs_sweep` (celery beat, every ``LOOPLAB_JOB_SWEEP_S``) re-enqueues stale running
  jobs and queued jobs whose message has not been picked up for ``LOOPLAB_JOB_QUEUED_STALE_S`` (the
  message may be gone: a whole worker killed on a broker without redelivery). After
  ``LOOPLAB_JOB_MAX_ATTEMPTS`` claims the job ends ``failed`` with the reason.
- **Cancel.** :func:`job_cancel` ends a queued job at once and asks a running one to stop; it stops at its
  next progress point (``JobCancelled`` raised there) and ends ``cancelled``.
- **Exactly once.** Every write of the job's state after the claim is conditional on still holding the claim
  (the row's ``task_id``/``attempts``); a job body that writes its results in a transaction calls
  :meth:`JobContext.succeed` inside it, so a run that lost its claim rolls its results back.

Job kinds register with :func:`job_kind_register` (from each app's ``tasks`` module), which tells the sweeper how
to enqueue a row again; ``core`` imports no app.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from apps.core.errors import DomainError
from apps.core.models import JobStatus

log = logging.getLogger(__name__)

TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
HOST = socket.gethostname()


def _conf(name: str) -> float:
    return float(settings.LOOPLAB_JOBS[name])


class JobCancelled(Exception):
    """Raised at a progress point of a job whose cancel was requested."""


class JobLost(Exception):
    """Raised at a progress point of a job another delivery has reclaimed: this run must write nothing."""


# -- kinds --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobKind:
    model: Any  # the JobFields model
    enqueue: Callable[[Any], None]  # (row) -> send its Celery message (called inside a transaction)
    name: str
    on_end: Callable[[Any, str], None] | None = None  # (row, status) after the runner ended it outside its body
    sent_on_create: bool = True  # False: a queued row may legitimately have no message yet (a later pipeline step)


_KINDS: dict[str, JobKind] = {}


def job_kind_register(model, *, enqueue: Callable[[Any], None],
                      on_end: Callable[[Any, str], None] | None = None, sent_on_create: bool = True) -> None:
    """Tell the sweeper how to enqueue a row of ``model`` again, and what to do when the runner ends a row
    outside its body (out of attempts, cancelled before it started): e.g. fail the training run of a step."""
    label = model._meta.label
    _KINDS[label] = JobKind(model=model, enqueue=enqueue, name=label, on_end=on_end, sent_on_create=sent_on_create)


def job_kinds() -> list[JobKind]:
    """Every registered kind (each app's ``tasks`` module registers its own; imported here first)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    return list(_KINDS.values())


def _ended_outside(model, pk: int, status: str) -> None:
    kind = _KINDS.get(model._meta.label)
    if kind is not None and kind.on_end is not None:
        row = model.objects.filter(pk=pk).first()
        if row is not None:
            transaction.on_commit(lambda: kind.on_end(row, status))


# -- enqueue ----------------------------------------------------------------------------------------

def job_enqueue(job, task, *args) -> None:
    """Mark ``job`` as sent and send ``task(*args)`` when the current transaction commits."""
    type(job).objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    transaction.on_commit(lambda: task.delay(*args))


# -- claim --------------------------------------------------------------------------------------------

def _owner_dead_here(worker: str) -> bool:
    """True when ``worker`` (``host:pid``) names a process on this host that no longer runs (or this very
    process). An owner on another host cannot be checked from here: only its heartbeat tells."""
    host, _, pid = (worker or "").rpartition(":")
    if host != HOST or not pid.isdigit():
        return False
    pid_i = int(pid)
    if pid_i == os.getpid():
        return True
    try:
        os.kill(pid_i, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _heartbeat_stale(row, before) -> bool:
    """A running row's heartbeat is older than ``before`` (a row from before the runner has none: its start,
    else its creation, counts)."""
    beat = row.heartbeat_at or row.started_at or row.created_at
    return beat is None or beat < before


def _fail_exhausted(model, pk: int, attempts: int) -> None:
    reason = (f"Stopped after {attempts} attempts: the worker running this job stopped each time (killed, out of "
              f"memory or lost). Try again, or give the worker more memory.")
    model.objects.filter(pk=pk).exclude(status__in=TERMINAL).update(
        status=JobStatus.FAILED, error=reason, message=reason[:500], finished_at=timezone.now())
    log.error("%s %s failed: %s", model.__name__, pk, reason)
    _ended_outside(model, pk, JobStatus.FAILED)


def job_claim(model, pk: int, *, task_id: str, message: str = "started"):
    """Claim the job for this delivery; returns the row, or None when this delivery must do nothing
    (finished, cancelled, gone, or running in a live owner)."""
    now = timezone.now()
    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=pk).first()
        if row is None or row.status in TERMINAL:
            return None
        if row.cancel_requested:
            model.objects.filter(pk=pk).update(status=JobStatus.CANCELLED, message="cancelled", finished_at=now)
            _ended_outside(model, pk, JobStatus.CANCELLED)
            return None
        if row.status == JobStatus.RUNNING:
            stale = _heartbeat_stale(row, now - timedelta(seconds=_conf("STALE_S")))
            same_task = bool(task_id) and row.task_id == task_id
            if not (stale or (same_task and _owner_dead_here(row.worker))):
                log.info("job %s %s is running in %s: this delivery does nothing", model.__name__, pk, row.worker)
                return None
            log.warning("job %s %s: reclaiming from %s (%s)", model.__name__, pk, row.worker,
                        "stale heartbeat" if stale else "redelivered after its worker stopped")
        if row.attempts >= _conf("MAX_ATTEMPTS"):
            _fail_exhausted(model, pk, row.attempts)
            return None
        attempt = row.attempts + 1
        note = f" (attempt {attempt})" if attempt > 1 else ""
        model.objects.filter(pk=pk).update(
            status=JobStatus.RUNNING, task_id=task_id or "", worker=f"{HOST}:{os.getpid()}", heartbeat_at=now,
            attempts=attempt, started_at=row.started_at or now, progress=0.0, message=(message + note)[:500],
            error="")
        row.refresh_from_db()
        return row


# -- running ------------------------------------------------------------------------------------------

class JobContext:
    """What a job body gets: ``progress`` (heartbeat, cancel point), ``succeed`` (conditional on the claim)."""

    def __init__(self, job, *, parent=None, parent_span: tuple[float, float] = (0.0, 100.0),
                 parent_prefix: str = ""):
        self.job = job
        self.model = type(job)
        self.parent = parent
        self.parent_span = parent_span
        self.parent_prefix = parent_prefix
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.finished = False
        self._last_check = 0.0
        self._delay = float(settings.LOOPLAB_JOBS.get("PROGRESS_DELAY_S", 0.0))

    def _mine(self):
        return self.model.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, task_id=self.job.task_id,
                                         attempts=self.job.attempts)

    def _check(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_check >= 1.0:
            self._last_check = now
            row = self.model.objects.filter(pk=self.job.pk).values("status", "task_id", "attempts",
                                                                   "cancel_requested").first()
            if row is None or row["status"] != JobStatus.RUNNING or row["task_id"] != self.job.task_id \
                    or row["attempts"] != self.job.attempts:
                self.lost.set()
            elif row["cancel_requested"] or self._parent_cancelled():
                self.cancelled.set()
        if self.lost.is_set():
            raise JobLost(f"{self.model.__name__} {self.job.pk} was reclaimed by another delivery")
        if self.cancelled.is_set():
            raise JobCancelled()

    def _parent_cancelled(self) -> bool:
        if self.parent is None:
            return False
        return bool(type(self.parent).objects.filter(pk=self.parent.pk, cancel_requested=True).exists())

    def beat(self) -> None:
        self._mine().update(heartbeat_at=timezone.now())

    def progress(self, percent: float, message: str) -> None:
        """Record progress (0-100) and a message; the point where a cancelled or reclaimed job stops."""
        percent = float(max(0.0, min(100.0, percent)))
        message = str(message)[:500]
        if self._delay:  # fault-injection knob for tests: widen the window in which a job is running
            time.sleep(self._delay)
        self._mine().update(progress=percent, message=message, heartbeat_at=timezone.now())
        self.job.progress, self.job.message = percent, message
        if self.parent is not None:
            lo, hi = self.parent_span
            type(self.parent).objects.filter(pk=self.parent.pk).exclude(status__in=TERMINAL).update(
                progress=lo + (hi - lo) * percent / 100.0, message=f"{self.parent_prefix}{message}"[:500])
        self._check()

    def succeed(self, message: str = "done", **fields) -> None:
        """Finish the job (call it inside the transaction that writes the job's results): raises JobLost,
        rolling that transaction back, when another delivery holds the job now."""
        self._check(force=True)  # a cancel asked before the end wins; a lost claim writes nothing
        fields.update(status=JobStatus.SUCCEEDED, progress=100.0, message=str(message)[:500],
                      finished_at=timezone.now())
        if not self._mine().update(**fields):
            self.lost.set()
            raise JobLost(f"{self.model.__name__} {self.job.pk} was reclaimed before it finished")
        self.finished = True
        self.job.refresh_from_db()


class _Heartbeat(threading.Thread):
    """Beats for a job running in a worker, and notices a cancel request or a lost claim in between progress
    points (the body then stops at its next one)."""

    def __init__(self, ctx: JobContext):
        super().__init__(daemon=True, name=f"heartbeat-{ctx.model.__name__}-{ctx.job.pk}")
        self.ctx = ctx
        self.stop = threading.Event()

    def run(self) -> None:
        interval = _conf("HEARTBEAT_S")
        try:
            while not self.stop.wait(interval):
                try:
                    if not self.ctx._mine().update(heartbeat_at=timezone.now()):
                        self.ctx.lost.set()
                    elif self.ctx.model.objects.filter(pk=self.ctx.job.pk, cancel_requested=True).exists() \
                            or self.ctx._parent_cancelled():
                        self.ctx.cancelled.set()
                except Exception:  # a database blip: try again at the next beat
                    log.warning("heartbeat of %s %s failed", self.ctx.model.__name__, self.ctx.job.pk, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()


def _expected_errors() -> tuple[type[BaseException], ...]:
    try:
        from ml.errors import MLError
    except ImportError:  # pragma: no cover
        return (DomainError,)
    return (DomainError, MLError)


def job_execute(model, pk: int, *, task_id: str | None, body: Callable[[JobContext], Any], eager: bool = False,
                start_message: str = "started", parent=None, parent_span=(0.0, 100.0), parent_prefix: str = "",
                on_end: Callable[[Any, str], None] | None = None) -> str | None:
    """Claim job ``pk`` of ``model`` and run ``body(ctx)``; returns the job's final status, or None when this
    delivery did nothing.

    ``body`` returns None or ``(message, fields)`` for :meth:`JobContext.succeed`, unless it called
    ``ctx.succeed`` itself. Expected errors (typed domain and ml errors) fail the job with their message; any
    other exception fails it with the traceback in ``error``. ``on_end(job, status)`` runs after the job
    ended (succeeded, failed or cancelled) in this delivery.
    """
    job = job_claim(model, pk, task_id=task_id or f"inline-{uuid.uuid4()}", message=start_message)
    if job is None:
        return None
    ctx = JobContext(job, parent=parent, parent_span=parent_span, parent_prefix=parent_prefix)
    heartbeat = None
    if not eager:
        heartbeat = _Heartbeat(ctx)
        heartbeat.start()
    status = None
    try:
        result = body(ctx)
        if not ctx.finished:
            message, fields = result if result else ("done", {})
            ctx.succeed(message, **fields)
        status = JobStatus.SUCCEEDED
    except JobLost:
        log.warning("%s %s: another delivery holds it now; this run wrote nothing", model.__name__, pk)
        return None
    except JobCancelled:
        if not ctx._mine().update(status=JobStatus.CANCELLED, message="cancelled", finished_at=timezone.now()):
            return None  # another delivery holds it now: its ending is its own
        status = JobStatus.CANCELLED
    except _expected_errors() as exc:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if not ctx._mine().update(status=JobStatus.FAILED, error=detail, message=detail.splitlines()[0][:500],
                                  finished_at=timezone.now()):
            return None
        status = JobStatus.FAILED
    except Exception as exc:  # a bug or an unreadable input: recorded on the row for the user, and logged
        log.exception("%s %s failed", model.__name__, pk)
        detail = str(exc) or type(exc).__name__
        if not ctx._mine().update(status=JobStatus.FAILED,
                                  error=f"{type(exc).__name__}: {detail}\n\n{traceback.format_exc()}",
                                  message=f"{type(exc).__name__}: {detail}".splitlines()[0][:500],
                                  finished_at=timezone.now()):
            return None
        status = JobStatus.FAILED
    finally:
        if heartbeat is not None:
            heartbeat.stop.set()
            heartbeat.join(timeout=5)
    job.refresh_from_db()
    if on_end is not None:
        on_end(job, status)
    return status


def job_task_execute(task, model, pk: int, body, **kwargs) -> str | None:
    """:func:`job_execute` from inside a Celery task (``bind=True``): the task id and eagerness from its request."""
    request = task.request
    return job_execute(model, pk, task_id=request.id, eager=bool(getattr(request, "is_eager", False)),
                       body=body, **kwargs)


# -- cancel ---------------------------------------------------------------------------------------------

def job_cancel(job) -> bool:
    """Cancel ``job``: a queued one ends ``cancelled`` now; a running one is asked to stop and ends
    ``cancelled`` at its next progress point. Returns False when the job had already ended."""
    model = type(job)
    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=job.pk).first()
        if row is None or row.status in TERMINAL:
            return False
        if row.status == JobStatus.QUEUED:
            model.objects.filter(pk=job.pk).update(cancel_requested=True, status=JobStatus.CANCELLED,
                                                   message="cancelled before it started", finished_at=timezone.now())
        else:
            model.objects.filter(pk=job.pk).update(cancel_requested=True, message="cancelling…")
    job.refresh_from_db()
    return True


# -- the sweeper ----------------------------------------------------------------------------------------

def jobs_sweep(*, now=None) -> dict[str, int]:
    """Re-enqueue running jobs whose heartbeat is stale and queued jobs whose message has waited too long;
    fail those out of attempts. Returns counts by action. Rows written before the runner existed (no
    heartbeat, never marked sent) are treated the same way, by their start or creation time."""
    from django.db.models import Q

    now = now or timezone.now()
    kinds = job_kinds()
    stale_before = now - timedelta(seconds=_conf("STALE_S"))
    queued_before = now - timedelta(seconds=_conf("QUEUED_STALE_S"))
    counts = {"requeued_running": 0, "requeued_queued": 0, "failed": 0, "cancelled": 0}
    for kind in kinds:
        model = kind.model
        stale_ids = list(model.objects.filter(status=JobStatus.RUNNING).filter(
            Q(heartbeat_at__lt=stale_before)
            | Q(heartbeat_at__isnull=True, started_at__lt=stale_before)
            | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=stale_before))
            .values_list("pk", flat=True)[:200])
        waiting = model.objects.filter(status=JobStatus.QUEUED).filter(
            Q(enqueued_at__lt=queued_before)
            | (Q(enqueued_at__isnull=True, created_at__lt=queued_before) if kind.sent_on_create else Q(pk__in=[])))
        waiting_ids = list(waiting.values_list("pk", flat=True)[:200])
        for pk in stale_ids + waiting_ids:
            try:
                _sweep_one(kind, pk, now, stale_before, queued_before, counts)
            except Exception:  # one bad row must not stop the sweep of the others
                log.exception("sweeper: %s %s could not be swept", kind.name, pk)
    return counts


def _sweep_one(kind: JobKind, pk: int, now, stale_before, queued_before, counts: dict) -> None:
    model = kind.model
    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=pk).first()
        if row is None:
            return
        if row.status == JobStatus.RUNNING and _heartbeat_stale(row, stale_before):
            if row.cancel_requested:
                model.objects.filter(pk=pk).update(status=JobStatus.CANCELLED, message="cancelled", finished_at=now)
                _ended_outside(model, pk, JobStatus.CANCELLED)
                counts["cancelled"] += 1
                return
            if row.attempts >= _conf("MAX_ATTEMPTS"):
                _fail_exhausted(model, pk, row.attempts)
                counts["failed"] += 1
                return
            model.objects.filter(pk=pk).update(
                status=JobStatus.QUEUED,
                message=f"requeued: the worker running it stopped (attempt {row.attempts} of "
                        f"{int(_conf('MAX_ATTEMPTS'))})")
            log.warning("sweeper: %s %s had a stale heartbeat (worker %s); requeued", kind.name, pk, row.worker)
            counts["requeued_running"] += 1
        elif row.status == JobStatus.QUEUED and (row.enqueued_at or row.created_at) < queued_before \
                and (row.enqueued_at or kind.sent_on_create):
            log.warning("sweeper: %s %s queued since %s with no worker on it; sent again", kind.name, pk,
                        row.enqueued_at or row.created_at)
            counts["requeued_queued"] += 1
        else:
            return
        row.refresh_from_db()
        kind.enqueue(row)
