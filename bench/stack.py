"""The process stack of the service benchmarks: a real gunicorn server (and optionally a real Celery
worker) as subprocesses, on a fresh PostgreSQL database or on the embedded default (SQLite +
kombu's filesystem broker), in a temporary LOOPLAB_DATA_DIR.

Everything binds to 127.0.0.1. Everything started here is torn down on exit, on Ctrl-C and on
SIGTERM: the server and worker process groups, the PostgreSQL database, the Redis broker db, the
temp dir. Loops are bounded and every wait has a time limit.

The parent process never imports Django: it talks HTTP like a production client, and runs
management commands / short Django scripts as subprocesses with the same environment as the server.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import REPO

PY = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BACKENDS = ("postgres", "embedded")


class BenchError(RuntimeError):
    pass


def _sigterm_to_exit(signum, frame):  # so `with Stack(...)` tears down on SIGTERM too
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _sigterm_to_exit)


# -- time limits ---------------------------------------------------------------------------------

class Deadline:
    """A wall-clock budget for a whole benchmark; loops check it and stop instead of running on."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def check(self, what: str) -> None:
        if self.expired():
            raise BenchError(f"time limit of {self.seconds:.0f}s reached while {what}")


# -- the stack: database, broker, server, worker ---------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started (start_new_session), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@dataclass
class GunicornConfig:
    workers: int = 3
    threads: int = 2
    worker_class: str = "gthread"
    timeout: int = 120
    keepalive: int = 30

    def args(self) -> list[str]:
        return ["-w", str(self.workers), "-k", self.worker_class, "--threads", str(self.threads),
                "--timeout", str(self.timeout), "--graceful-timeout", "5", "--keep-alive", str(self.keepalive)]

    def describe(self) -> str:
        return f"gunicorn apps.looplab.wsgi -w {self.workers} -k {self.worker_class} --threads {self.threads}"


@dataclass
class Stack:
    """``with Stack("postgres") as s:`` migrate a fresh database, start gunicorn, tear all down after.

    backend "postgres": DATABASE_URL to a fresh database, Celery broker Redis db 14 (flushed before
    and after). backend "embedded": LOOPLAB_ENV, DATABASE_URL and CELERY_BROKER_URL unset, so the
    app uses its defaults: SQLite and kombu's filesystem transport under LOOPLAB_DATA_DIR.
    """

    backend: str
    gunicorn: GunicornConfig = field(default_factory=GunicornConfig)
    name: str = "bench"
    extra_env: dict = field(default_factory=dict)
    start_timeout: float = 90.0
    verbose: bool = True

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise BenchError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        self.tmp: Path | None = None
        self.db_name: str | None = None
        self.port: int | None = None
        self.server: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.env: dict = {}

    # -- lifecycle
    def __enter__(self) -> "Stack":
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and exc_type is not KeyboardInterrupt and self.tmp is not None:
            print(f"--- gunicorn log (tail) ---\n{self.server_log(80)}", file=sys.stderr)
            if self.workers:
                print(f"--- celery log (tail) ---\n{self.worker_log(80)}", file=sys.stderr)
        self.teardown()

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _setup(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"looplab-{self.name}-"))
        env = {k: v for k, v in os.environ.items()
               if k not in ("LOOPLAB_ENV", "DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE",
                            "CELERY_TASK_ALWAYS_EAGER", "LOOPLAB_TRAIN_QUEUE")}
        env.update({"LOOPLAB_DATA_DIR": str(self.tmp / "data"), "DEBUG": "false", "LOG_LEVEL": "WARNING",
                    "DJANGO_SETTINGS_MODULE": "apps.looplab.settings", "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1"})
        if self.backend == "postgres":
            self.db_name = f"looplab_{self.name}_{os.getpid()}_{secrets.token_hex(3)}"
            self._pg_admin(f'CREATE DATABASE "{self.db_name}"')
            base = PG_ADMIN_URL.rsplit("/", 1)[0]
            env["DATABASE_URL"] = f"{base}/{self.db_name}"
            env["CELERY_BROKER_URL"] = REDIS_URL
            self._redis_flush()
        env.update(self.extra_env)
        self.env = env
        self.log(f"{self.backend}: data dir {self.tmp}" + (f", database {self.db_name}" if self.db_name else ""))
        self.manage("migrate", "--noinput", timeout=300)
        self.start_server()

    def teardown(self) -> None:
        for proc in self.workers:
            _stop_group(proc, timeout=20)
        self.workers = []
        if self.server is not None:
            _stop_group(self.server)
            self.server = None
        if self.db_name:
            try:
                self._pg_admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - report, keep tearing down
                print(f"warning: could not drop database {self.db_name}: {exc}", file=sys.stderr)
            self.db_name = None
        if self.backend == "postgres":
            try:
                self._redis_flush()
            except Exception as exc:  # noqa: BLE001
                print(f"warning: could not flush {REDIS_URL}: {exc}", file=sys.stderr)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # -- PostgreSQL / Redis
    @staticmethod
    def _pg_admin(sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def pg_query(self, sql: str, params=None) -> list[tuple]:
        """Run a read query on the benchmark's own PostgreSQL database."""
        import psycopg

        if not self.db_name:
            raise BenchError("pg_query needs the postgres backend")
        with psycopg.connect(self.env["DATABASE_URL"], connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    @staticmethod
    def _redis_flush() -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
        client.flushdb()
        client.close()

    def broker_backlog(self) -> int | None:
        """Messages waiting on the broker (Redis list lengths, or files in the filesystem broker)."""
        if self.backend == "postgres":
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
            try:
                return sum(client.llen(q) for q in ("default", "ml_cpu", "ml_gpu", "celery"))
            finally:
                client.close()
        folder = self.tmp / "data" / "broker" / "out"
        return sum(1 for _ in folder.iterdir()) if folder.exists() else None

    # -- subprocesses
    def manage(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run([PY, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise BenchError(f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return proc.stdout

    def token(self, username: str, role: str = "lead", project: int | None = None) -> str:
        """Create the user if needed and return its API token (last line of create_api_token)."""
        args = ["create_api_token", username, "--create", "--role", role]
        if project is not None:
            args += ["--project", str(project)]
        return self.manage(*args).strip().splitlines()[-1].strip()

    def django(self, code: str, timeout: float = 600, **params):
        """Run ``code`` in a fresh Python with Django set up and this stack's environment.

        ``params`` are available as the dict ``params``; the code sets ``result`` (JSON-serialisable),
        which is returned. For building large states fast (bulk ORM) and for checks after a run.
        """
        bootstrap = textwrap.dedent("""
            import json, sys, django
            django.setup()
            params = json.loads(sys.argv[1])
            result = None
            exec(compile(sys.argv[2], "<bench>", "exec"))
            print("\\n@@RESULT@@" + json.dumps(result, default=str))
        """)
        proc = subprocess.run([PY, "-c", bootstrap, json.dumps(params), textwrap.dedent(code)], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
            raise BenchError(f"django script failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start_server(self) -> None:
        self.port = _free_port()
        log = self.tmp / "gunicorn.log"
        self.server = subprocess.Popen(
            [PY, "-m", "gunicorn", "apps.looplab.wsgi", "--bind", f"127.0.0.1:{self.port}", *self.gunicorn.args(),
             "--access-logfile", "-" if os.environ.get("BENCH_ACCESS_LOG") else "/dev/null"],
            cwd=REPO, env=self.env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(log)
        self.log(f"server up: {self.gunicorn.describe()} on 127.0.0.1:{self.port}")

    def _wait_ready(self, log: Path) -> None:
        import requests

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.server.returncode}:\n{_tail(log)}")
            try:
                r = requests.get(self.url("/api/v1/projects/"), timeout=2)
                if r.status_code in (200, 401, 403):
                    # every worker imports the app lazily: warm them all with a few requests
                    for _ in range(self.gunicorn.workers * 3):
                        requests.get(self.url("/api/v1/projects/"), timeout=10)
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise BenchError(f"gunicorn did not answer within {self.start_timeout:.0f}s:\n{_tail(log)}")

    def start_worker(self, queues: str = "default,ml_cpu,ml_gpu", concurrency: int = 1,
                     ready_timeout: float = 90.0) -> subprocess.Popen:
        log = self.tmp / f"celery-{len(self.workers)}.log"
        proc = subprocess.Popen(
            [PY, "-m", "celery", "-A", "apps.looplab", "worker", "-Q", queues, "-c", str(concurrency),
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"bench{len(self.workers)}-{os.getpid()}@%h"],
            cwd=REPO, env=self.env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(proc)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"celery worker exited with {proc.returncode}:\n{_tail(log)}")
            if "ready." in _tail(log, 200):
                self.log(f"celery worker up: -Q {queues} -c {concurrency}")
                return proc
            time.sleep(0.25)
        raise BenchError(f"celery worker not ready within {ready_timeout:.0f}s:\n{_tail(log)}")

    def server_cpu_seconds(self) -> float:
        return session_cpu_seconds(self.server.pid) if self.server is not None else 0.0

    def db_cpu_seconds(self) -> float | None:
        """CPU of the PostgreSQL backends connected to this benchmark's database (None on SQLite)."""
        if not self.db_name:
            return None
        pids = [r[0] for r in self.pg_query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                            "AND pid <> pg_backend_pid()")]
        return pids_cpu_seconds(pids)

    def worker_log(self, n: int = 60) -> str:
        return "\n".join(_tail(self.tmp / f"celery-{i}.log", n) for i in range(len(self.workers))) if self.tmp else ""

    def server_log(self, n: int = 60) -> str:
        return _tail(self.tmp / "gunicorn.log", n) if self.tmp else ""


# -- HTTP client helpers ---------------------------------------------------------------------------

def repeat_runs(backends, repeat: int, run_once, describe) -> list[dict]:
    """``run_once(backend, k)`` for k = 1..``repeat`` on each backend in turn (each run on a fresh stack),
    printing ``describe(run)`` after each; the runs in that order."""
    runs = []
    for backend in backends:
        for k in range(1, repeat + 1):
            run = run_once(backend, k)
            runs.append(run)
            print(f"  {backend} #{k}: {describe(run)}", flush=True)
    return runs


def session(token: str, pool: int = 4):
    import requests
    from requests.adapters import HTTPAdapter

    s = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0)
    s.mount("http://", adapter)
    s.headers.update({"Authorization": f"Token {token}", "Accept": "application/json"})
    return s


def check(response, *codes: int):
    if response.status_code not in codes:
        raise BenchError(f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:1000]}")
    return response


# -- CPU accounting (Linux /proc) ------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces
    return raw[raw.rindex(")") + 2:].split()


def session_cpu_seconds(sid: int) -> float:
    """utime+stime of every live process in session ``sid`` (a process group we started)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and int(fields[3]) == sid:  # fields[3] is the session id (field 6 of stat)
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def pids_cpu_seconds(pids) -> float:
    total = 0.0
    for pid in pids:
        fields = _proc_stat(int(pid))
        if fields:
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total
