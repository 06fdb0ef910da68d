"""The embedded runtime's supervisor, on real processes (sh, sleep): restarts with backoff, stops everything.

Each test runs a Supervisor in a Python subprocess of its own (it installs signal handlers and blocks) and
reads what it logged.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from apps.core.supervisor import Backoff, describe_exit
from tests.apps.core.embedded import wait_for

ROOT = Path(__file__).resolve().parents[3]
RUNNER = """
import json, logging, sys
from apps.core.supervisor import Supervisor
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
spec = json.loads(sys.argv[1])
Supervisor(spec["children"], log=logging.getLogger("t"), grace=spec["grace"], backoff=spec["backoff"], poll=0.05).run()
"""


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run():
    backoff = Backoff(initial=1, cap=60, stable_after=60)
    assert [backoff.delay(uptime=0.5) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.delay(uptime=59) == 60  # not up long enough
    assert backoff.delay(uptime=61) == 1
    assert backoff.delay(uptime=3) == 2


def test_describe_exit():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def _supervise(tmp_path, children, *, grace=5.0, backoff=None):
    err = open(tmp_path / "supervisor.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(
        {"children": children, "grace": grace, "backoff": backoff or {}})], cwd=ROOT, stderr=err)
    err.close()
    return proc, tmp_path / "supervisor.log"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children(proc):
    return psutil.Process(proc.pid).children()


def test_a_crashing_child_is_restarted_with_growing_delays_while_the_other_keeps_running(tmp_path):
    proc, log = _supervise(tmp_path, {"crash": ["sh", "-c", "exit 3"], "steady": ["sleep", "30"]},
                           backoff={"initial": 0.1, "cap": 0.4})
    try:
        wait_for(lambda: log.read_text().count("crash started") >= 5, 10, "five starts of the crashing child")
        steady = [c for c in _children(proc) if c.name() == "sleep"]
        assert len(steady) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    text = log.read_text()
    delays = [line.rsplit("restarting in ", 1)[1] for line in text.splitlines() if line.startswith("crash (pid")]
    assert delays[:4] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s"], text
    assert "exited with code 3 after" in text
    assert text.count("steady started") == 1  # never restarted
    assert "received SIGTERM: stopping" in text and "steady (pid" in text and "was killed by SIGTERM" in text
    wait_for(lambda: not _alive(steady[0].pid), 5, "the steady child to be gone")


@pytest.mark.parametrize("grace, signals, why", [(0.5, 1, "after 0.5 s"), (60, 2, "after a second signal")])
def test_a_child_that_ignores_sigterm_is_killed_with_its_group_after_the_grace_period_or_a_second_ctrl_c(
        tmp_path, grace, signals, why):
    # sh ignores TERM and so does the sleep it starts; both are in the child's process group
    proc, log = _supervise(tmp_path, {"stubborn": ["sh", "-c", "trap '' TERM; sleep 30 & wait"]}, grace=grace)
    try:
        wait_for(lambda: any(c.name() == "sleep" for c in psutil.Process(proc.pid).children(recursive=True)), 10,
              "the stubborn child's sleep")
        tree = psutil.Process(proc.pid).children(recursive=True)
        started = time.monotonic()
        for _ in range(signals):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 3
    finally:
        proc.kill()
    assert f"stubborn (pid {tree[0].pid}) still running {why}: SIGKILL" in log.read_text()
    wait_for(lambda: not any(_alive(p.pid) for p in tree), 5, "every process of the group to be gone")


def test_a_killed_main_process_takes_what_it_started_with_it(tmp_path):
    # the child's own child (the sleep) is orphaned when sh dies; the supervisor kills the group
    proc, log = _supervise(tmp_path, {"parent": ["sh", "-c", "sleep 30 & wait"]}, backoff={"initial": 5})
    try:
        wait_for(lambda: any(c.name() == "sleep" for c in psutil.Process(proc.pid).children(recursive=True)), 10,
              "the child's sleep")
        sh = _children(proc)[0]
        orphan = sh.children()[0]
        sh.kill()
        wait_for(lambda: not _alive(orphan.pid), 5, "the orphaned sleep to be killed")
        assert f"parent (pid {sh.pid}) was killed by SIGKILL" in log.read_text()
        assert "(killed what was left of its process group); restarting in 5 s" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_do_not_outlive_a_killed_supervisor(tmp_path):
    proc, log = _supervise(tmp_path, {"a": ["sleep", "30"], "b": ["sleep", "30"]})
    try:
        wait_for(lambda: len(_children(proc)) == 2, 10, "two children")
        children = _children(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: not any(_alive(c.pid) for c in children), 5, "the children to get SIGTERM and exit")
    finally:
        proc.kill()
