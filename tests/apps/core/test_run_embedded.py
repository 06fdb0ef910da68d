"""`manage.py run_embedded` (make demo's runtime) heals: on SQLite and the filesystem broker, in a data dir of its
own, a SIGKILLed Celery worker or gunicorn master comes back while the rest keeps serving, and SIGINT (Ctrl-C)
leaves no process behind."""
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.apps.core.embedded import embedded_env, wait_for

ROOT = Path(__file__).resolve().parents[3]
GRACE_S = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except OSError:
        return None


def _child(supervisor: psutil.Process, program: str) -> psutil.Process | None:
    for child in supervisor.children():
        try:
            if any(Path(part).name == program for part in child.cmdline()[:2]):
                return child
        except psutil.NoSuchProcess:
            pass
    return None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_a_killed_worker_or_web_server_is_restarted_and_ctrl_c_stops_everything(tmp_path):
    data, output = tmp_path / "data", tmp_path / "output.log"
    env = embedded_env(data)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    port = _free_port()
    url = f"http://127.0.0.1:{port}/login/"
    with open(output, "wb") as out:
        proc = subprocess.Popen([sys.executable, "manage.py", "run_embedded", "--bind", f"127.0.0.1:{port}",
                                 "--web-workers", "1", "--grace", str(GRACE_S)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    supervisor = psutil.Process(proc.pid)
    everything: set[psutil.Process] = set()
    try:
        wait_for(lambda: _status(url) == 200, 60, "the web server", poll=0.2, output=output)
        wait_for(lambda: output.read_text().count(" ready.") == 1, 60, "the worker", poll=0.2, output=output)

        # 1. the Celery worker's main process dies: a new one starts; the web server answers throughout
        worker = _child(supervisor, "celery")
        worker_group = [worker, *worker.children(recursive=True)]  # its pool process and beat
        assert len(worker_group) >= 3
        everything.update(worker_group)
        worker.send_signal(signal.SIGKILL)
        answers = []

        def worker_back():
            answers.append(_status(url))
            new = _child(supervisor, "celery")
            return new is not None and new.pid != worker.pid and output.read_text().count(" ready.") == 2

        wait_for(worker_back, 60, "the worker's restart", poll=0.2, output=output)
        assert len(answers) >= 3 and set(answers) == {200}, answers
        assert not any(_alive(p) for p in worker_group)  # no orphaned pool process or second beat

        # 2. the gunicorn master dies: its workers go too, a new master serves
        web = _child(supervisor, "gunicorn")
        web_group = [web, *web.children(recursive=True)]
        everything.update(web_group)
        web.send_signal(signal.SIGKILL)

        def web_back():
            new = _child(supervisor, "gunicorn")
            return new is not None and new.pid != web.pid and _status(url) == 200

        wait_for(web_back, 60, "the web server's restart", poll=0.2, output=output)
        assert not any(_alive(p) for p in web_group)

        log = (data / "logs" / "embedded.log").read_text()
        assert f"worker (pid {worker.pid}) was killed by SIGKILL" in log
        assert f"web (pid {web.pid}) was killed by SIGKILL" in log
        assert log.count("restarting in 1 s") == 2, log
        assert f"worker (pid {worker.pid}) was killed by SIGKILL" in output.read_text()  # and on stderr

        # 3. Ctrl-C: every process is gone within the grace period (and a little)
        everything.update(supervisor.children(recursive=True))
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(GRACE_S + 10) == 0
        wait_for(lambda: not any(_alive(p) for p in everything), 5, "every process to be gone", poll=0.2, output=output)
        stopped_in = time.monotonic() - started
        assert stopped_in < GRACE_S + 5, stopped_in
        assert _status(url) is None
    finally:
        for p in [*everything, *(supervisor.children(recursive=True) if _alive(supervisor) else [])]:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.kill()
        proc.wait()
