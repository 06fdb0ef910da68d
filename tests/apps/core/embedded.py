"""The embedded default's environment for `manage.py` subprocesses in tests."""
import os
from pathlib import Path


def embedded_env(data_dir: Path) -> dict[str, str]:
    """SQLite and kombu's filesystem transport under ``data_dir``: the test suite's DATABASE_URL,
    CELERY_BROKER_URL and settings module are dropped, so settings pick the embedded defaults."""
    env = {k: v for k, v in os.environ.items() if k not in (
        "DATABASE_URL", "CELERY_BROKER_URL", "LOOPLAB_ENV", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE",
        "CELERY_TASK_ALWAYS_EAGER")}
    env["LOOPLAB_DATA_DIR"] = str(data_dir)
    return env
