"""Killed workers lose no job. A real Celery worker (with beat, so the job runner's sweeper ticks) runs a
training run, a round, an export, a label check and a drift check; each is SIGKILLed mid-job, once by killing
the worker's pool process (what the kernel's OOM killer does) and once by killing the whole worker (its
process group: main process, pool, beat), after which a new worker is started. Every job must end
``succeeded`` exactly once: claimed twice (``attempts == 2``, which also proves the kill landed mid-job), one
model version, one set of files, the round's tasks written once.

Two runtimes: PostgreSQL + Redis (production) and the embedded default (SQLite + kombu's filesystem
transport, where a killed worker's message is gone and only the sweeper can bring the job back).
Jobs are slowed at each progress point (LOOPLAB_JOB_PROGRESS_DELAY_S) so a kill lands inside them.
The figures go to test-artifacts/kill-report.json.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["training", "round", "export", "label_check", "drift_check"]
MODES = ["pool", "whole"]
JOB_ENV = {
    "LOOPLAB_JOB_HEARTBEAT_S": "0.3",
    "LOOPLAB_JOB_STALE_S": "3",
    "LOOPLAB_JOB_SWEEP_S": "1",
    "LOOPLAB_JOB_QUEUED_STALE_S": "60",
    "LOOPLAB_JOB_PROGRESS_DELAY_S": "0.2",
    "LOOPLAB_DRIFT_SCHEDULE_TICK_S": "3600",
    "LOOPLAB_EXPORT_TIMING_S": "0.02",
    "LOOPLAB_EXPORT_INT8": "false",
    "CELERY_TASK_ALWAYS_EAGER": "false",
}


class Runtime:
    """One deployment of the app for the test: the environment of its processes, its worker, and a way to
    read a job row while the worker runs."""

    def __init__(self, name: str, env: dict, read_row, log_dir: Path):
        self.name, self.env, self.read_row, self.log_dir = name, env, read_row, log_dir
        self.worker: subprocess.Popen | None = None
        self.n_workers = 0

    def driver(self, *args: str, eager: bool = False) -> dict:
        env = dict(self.env, CELERY_TASK_ALWAYS_EAGER="true" if eager else "false")
        out = subprocess.run([sys.executable, "-m", "tests.e2e.jobs_driver", *args], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-4000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_worker(self) -> None:
        self.n_workers += 1
        log = open(self.log_dir / f"kill-worker-{self.name}-{self.n_workers}.log", "w")
        schedule = Path(self.env["LOOPLAB_DATA_DIR"]) / "beat-schedule"
        self.worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "apps.looplab", "worker", "-Q", "default,ml_cpu,ml_gpu",
             "-c", "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO", "--beat", "--schedule",
             str(schedule)], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_worker(self) -> None:
        """SIGKILL the whole worker: its process group (main process, pool, beat)."""
        try:
            os.killpg(self.worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.worker.wait(30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.kill_worker()

    def wait_row(self, table: str, where: str, params: tuple, done, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        row = None
        while time.monotonic() < deadline:
            row = self.read_row(table, where, params)
            if row is not None and done(row):
                return row
            assert self.worker.poll() is None, f"the worker exited ({self.worker.returncode}) waiting for {what}"
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}: {row}")


def _job_row(kind: str, started: dict) -> tuple[str, str, tuple]:
    """Where the claimed job's row is: a training run's claim is on its train step."""
    if kind == "training":
        return "training_pipelinestep", "training_run_id = {p} AND kind = 'train'", (started["id"],)
    return started["table"], "id = {p}", (started["id"],)


def _kill_and_finish(rt: Runtime, kind: str, mode: str) -> dict:
    started = rt.driver("start", kind)
    table, where, params = _job_row(kind, started)
    # killed once the job's body has reported progress: inside its work, not at the claim
    running = rt.wait_row(table, where, params,
                          lambda r: r["status"] == "running" and r["worker"] and r["progress"] > 0,
                          timeout=180, what=f"{kind} to start")
    pool_pid = int(running["worker"].rsplit(":", 1)[1])
    assert pool_pid != rt.worker.pid, "the job runs in a pool process, not the worker's main process"
    t_kill = time.monotonic()
    if mode == "pool":
        os.kill(pool_pid, signal.SIGKILL)
    else:
        rt.kill_worker()
        rt.start_worker()
    outer = ("training_trainingrun", "id = {p}", (started["id"],)) if kind == "training" else (table, where, params)
    rt.wait_row(*outer, lambda r: r["status"] in ("succeeded", "failed", "cancelled"), timeout=300,
                what=f"{kind} to end after the {mode} kill")
    final = rt.read_row(table, where, params)
    facts = rt.driver("verify", kind, str(started["id"]))
    # which path brought it back: the redelivered message (same task id) or the sweeper (a new message)
    facts["taken_over_by"] = "redelivery" if final["task_id"] == running["task_id"] else "sweeper"
    facts.update(kind=kind, mode=mode, runtime=rt.name, seconds_to_end_after_kill=round(time.monotonic() - t_kill, 1),
                 killed_at_progress=running["progress"])
    if kind == "training":  # the step that was killed was claimed twice; the run's own row is not claimed
        facts["attempts"] = facts["steps"]["train"][1]
    return facts


def _exactly_once(f: dict) -> bool:
    if not (f["succeeded"] and f["attempts"] == 2):
        return False
    if f["kind"] == "round":
        return f["tasks"] == f["selected"] == 10
    if f["kind"] == "training":
        return (f["model_versions"] == 1 and all(s == "succeeded" for s, _ in f["steps"].values())
                and f["files"] == ["confusion.png", "model.onnx", "model.pt"])
    if f["kind"] == "export":
        return f["files"] == [f["filename"]]
    if f["kind"] == "label_check":
        return (f["n_checked"] or 0) >= 20
    if f["kind"] == "drift_check":
        return f["has_report"] and f["n_prod"] >= 20
    return False


def _run_all(rt: Runtime, artifacts: Path) -> None:
    rt.driver("setup", eager=True)
    rt.start_worker()
    results = []
    try:
        for mode in MODES:
            for kind in KINDS:
                results.append(_kill_and_finish(rt, kind, mode))
    finally:
        rt.stop()
        report = artifacts / "kill-report.json"
        previous = json.loads(report.read_text()) if report.exists() else {}
        previous[rt.name] = results
        report.write_text(json.dumps(previous, indent=1))
    ok = [r for r in results if _exactly_once(r)]
    print(f"\n{rt.name}: {len(ok)} of {len(results)} killed jobs completed exactly once")
    for r in results:
        print(f"  {r['mode']:5s} {r['kind']:12s} {r['status']:9s} attempts={r['attempts']} "
              f"killed at {r['killed_at_progress']:.0f}%, taken over by the {r['taken_over_by']}, "
              f"ended {r['seconds_to_end_after_kill']} s later")
    assert len(ok) == len(results), [r for r in results if not _exactly_once(r)]


def _env_extra(data_dir: Path) -> dict:
    return {**JOB_ENV, "LOOPLAB_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


@pytest.mark.integration
@pytest.mark.slow
def test_killed_jobs_complete_exactly_once_on_postgres_and_redis(transactional_db, settings, tmp_path, artifacts):
    import redis
    from django.db import connection

    assert connection.vendor == "postgresql"
    broker = settings.CELERY_BROKER_URL
    assert broker.startswith("redis://")
    redis.Redis.from_url(broker).flushdb()
    db = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="apps.looplab.settings", CELERY_BROKER_URL=broker,
               DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}", **_env_extra(tmp_path))

    def read_row(table, where, params):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT status, progress, worker, attempts, task_id FROM {table} WHERE "
                           + where.format(p="%s"), params)
            got = cursor.fetchone()
        return dict(zip(("status", "progress", "worker", "attempts", "task_id"), got)) if got else None

    _run_all(Runtime("postgres+redis", env, read_row, artifacts), artifacts)


@pytest.mark.integration
@pytest.mark.slow
def test_killed_jobs_complete_exactly_once_on_the_embedded_default(tmp_path, artifacts):
    from tests.apps.core.embedded import embedded_env

    env = dict(embedded_env(tmp_path), DJANGO_SETTINGS_MODULE="apps.looplab.settings", **_env_extra(tmp_path))
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    db_file = tmp_path / "looplab.sqlite3"
    assert db_file.exists()

    def read_row(table, where, params):
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=10) as conn:
            got = conn.execute(f"SELECT status, progress, worker, attempts, task_id FROM {table} WHERE "
                               + where.format(p="?"), params).fetchone()
        return dict(zip(("status", "progress", "worker", "attempts", "task_id"), got)) if got else None

    _run_all(Runtime("embedded", env, read_row, artifacts), artifacts)
