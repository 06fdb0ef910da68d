"""A foreground supervisor: keeps a few child processes running until it is told to stop (the embedded runtime).

- Each child runs in a process group of its own, so whatever it started (gunicorn's workers, Celery's pool and
  beat processes) goes with it: when a child's main process dies, what is left of its group is killed (orphans
  would keep the port or run a second beat), and the child is started again after a delay from its
  :class:`Backoff` (1 s doubling to 60 s while it keeps crashing, back to 1 s once it stayed up a minute).
- SIGINT (Ctrl-C) or SIGTERM stops everything: SIGTERM to each child (gunicorn and Celery shut down warmly),
  SIGKILL to each group after a grace period, or at once on a second Ctrl-C. On Linux each child also gets
  SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG), so no child outlives it.
- Every start, exit (code or signal, uptime) and restart delay goes to the given logger.

Why not supervisord or circus: neither backs off exponentially for a process that ran and then crashed
(supervisord restarts it at once, forever; its backoff only covers failed starts, linearly, and then gives
up), and both want a configuration of their own for what is here two command lines. The delay itself is one
line (:meth:`Backoff.delay`); a retry library's wait functions expect to drive the call they retry.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1


@dataclass
class Backoff:
    """Restart delays: ``initial`` doubling per crash up to ``cap``; a run of ``stable_after`` seconds resets it."""

    initial: float = 1.0
    cap: float = 60.0
    stable_after: float = 60.0
    crashes: int = 0

    def delay(self, *, uptime: float) -> float:
        """The wait before the next start of a process that has just died after ``uptime`` seconds."""
        if uptime >= self.stable_after:
            self.crashes = 0
        delay = min(self.cap, self.initial * 2 ** min(self.crashes, 32))
        self.crashes += 1
        return delay


@dataclass
class Child:
    name: str
    argv: list[str]
    backoff: Backoff
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    start_at: float = 0.0  # when the next start is due while proc is None
    restarts: int = 0


def describe_exit(returncode: int) -> str:
    """'exited with code 1' or 'was killed by SIGKILL' (Popen's negative return code is the signal)."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    """Signal every process left in the group; False when the group is empty."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _die_with_parent(parent: int):
    """A preexec_fn: the child gets SIGTERM when the supervisor dies (Linux); it exits if that already happened."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None

    def setup() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


class Supervisor:
    """Run ``children`` ({name: argv}) until SIGINT/SIGTERM, restarting any that dies. :meth:`run` blocks."""

    def __init__(self, children: dict[str, list[str]], *, log: logging.Logger, env: dict[str, str] | None = None,
                 grace: float = 10.0, backoff: dict | None = None, poll: float = 0.2):
        self.children = [Child(name, list(argv), Backoff(**(backoff or {}))) for name, argv in children.items()]
        self.log = log
        self.env = env
        self.grace = grace
        self.poll = poll
        self.stopping = False
        self.forced = False
        self.received: str | None = None

    # signals -------------------------------------------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        # flags only: logging here could re-enter a stream the main loop is writing to
        if self.stopping:
            self.forced = True
        self.stopping = True
        self.received = self.received or signal.Signals(signum).name

    # children ------------------------------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=self.env, stdin=subprocess.DEVNULL, process_group=0,
                                      preexec_fn=_die_with_parent(os.getpid()))
        child.started_at = time.monotonic()
        self.log.info("%s started (pid %d)%s", child.name, child.proc.pid,
                      f", restart {child.restarts}" if child.restarts else "")

    def _on_exit(self, child: Child, now: float) -> None:
        proc = child.proc
        left = _kill_group(proc.pid)  # its workers / pool / beat, orphaned now
        uptime = now - child.started_at
        delay = child.backoff.delay(uptime=uptime)
        child.proc, child.start_at = None, now + delay
        child.restarts += 1
        self.log.warning("%s (pid %d) %s after %.1f s up%s; restarting in %g s",
                         child.name, proc.pid, describe_exit(proc.returncode), uptime,
                         " (killed what was left of its process group)" if left else "", delay)

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                self._start(child)
            while not self.stopping:
                now = time.monotonic()
                for child in self.children:
                    if child.proc is not None:
                        if child.proc.poll() is not None:
                            self._on_exit(child, now)
                    elif now >= child.start_at:
                        self._start(child)
                time.sleep(self.poll)
        finally:
            self.stopping = True
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _stop_all(self) -> None:
        if self.received:
            self.log.info("received %s: stopping (a second Ctrl-C kills at once)", self.received)
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            self.log.info("stopping %s (pid %d): SIGTERM", child.name, child.proc.pid)
            try:
                child.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.grace
        while any(c.proc.poll() is None for c in running) and time.monotonic() < deadline and not self.forced:
            time.sleep(0.05)
        for child in running:
            if child.proc.poll() is None:
                self.log.warning("%s (pid %d) still running %s: SIGKILL", child.name, child.proc.pid,
                                 "after a second signal" if self.forced else f"after {self.grace:g} s")
                _kill_group(child.proc.pid)
                child.proc.wait()
            else:
                self.log.info("%s (pid %d) %s", child.name, child.proc.pid, describe_exit(child.proc.returncode))
        for child in self.children:
            if child.proc is not None:
                _kill_group(child.proc.pid)  # whatever a main process left behind
