"""The embedded default's environment for `manage.py` subprocesses in tests, and waiting on processes."""
import os
import time
from pathlib import Path


def embedded_env(data_dir: Path) -> dict[str, str]:
    """SQLite and kombu's filesystem transport under ``data_dir``: the test suite's DATABASE_URL,
    CELERY_BROKER_URL and settings module are dropped, so settings pick the embedded defaults."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "DATABASE_URL", "CELERY_BROKER_URL", "LOOPLAB_ENV", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE",
        "CELERY_TASK_ALWAYS_EAGER")}
    env["LOOPLAB_DATA_DIR"] = str(data_dir)
    return env


def wait_for(predicate, timeout: float, what: str, *, poll: float = 0.05, output: Path | None = None) -> None:
    """Call ``predicate`` every ``poll`` seconds until it holds; after ``timeout`` seconds an AssertionError
    naming ``what``, with the tail of the ``output`` file when given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    tail = f"; output:\n{output.read_text()[-4000:]}" if output is not None else ""
    raise AssertionError(f"timed out waiting for {what}{tail}")
