"""Production settings pass Django's deployment checks; a missing required value fails loudly."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PRODUCTION = {
    "LOOPLAB_ENV": "production",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "looplab.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/looplab",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "DJANGO_SETTINGS_MODULE": "apps.looplab.settings",
}


def _manage(*args, env_overrides, drop=()):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "LOOPLAB_DATA_DIR", "CELERY_BROKER_URL", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(env_overrides, LOOPLAB_DATA_DIR=str(ROOT / "var" / "check-deploy"))
    for key in drop:
        env.pop(key, None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_passes_under_production_settings():
    proc = _manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS"])
def test_production_without_a_required_value_fails_loudly(missing):
    proc = _manage("check", env_overrides=PRODUCTION, drop=(missing,))
    assert proc.returncode != 0
    assert f"Environment variable {missing} is required but not set" in proc.stderr


def test_a_bad_value_names_the_variable():
    proc = _manage("check", env_overrides=dict(PRODUCTION, DEBUG="maybe"))
    assert proc.returncode != 0 and "DEBUG='maybe'" in proc.stderr


def test_debug_is_off_unless_asked(settings):
    from apps.looplab.env import env

    assert env("LOOPLAB_SURELY_UNSET_FLAG", False, cast=bool) is False
    os.environ["LOOPLAB_TEST_FLAG"] = "yes"
    try:
        assert env("LOOPLAB_TEST_FLAG", False, cast=bool) is True
    finally:
        del os.environ["LOOPLAB_TEST_FLAG"]


@pytest.mark.parametrize("weak", [
    "s3cr3",  # 5 characters: what production started with
    "x" * 49,  # one short of Django's minimum
    "ab" * 40,  # long, but 2 distinct characters
    "django-insecure-" + secrets.token_urlsafe(50),  # startproject's placeholder
])
def test_production_refuses_a_weak_secret_key(weak):
    proc = _manage("check", env_overrides=dict(PRODUCTION, SECRET_KEY=weak))
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr and "SECRET_KEY is too weak for production" in proc.stderr
    assert weak not in proc.stderr  # the key itself is not echoed into logs


def test_embedded_accepts_a_short_secret_key():
    """Only production refuses: the embedded default on a laptop keeps whatever key it was given."""
    env = {k: v for k, v in PRODUCTION.items() if k != "LOOPLAB_ENV"}
    proc = _manage("check", env_overrides=dict(env, SECRET_KEY="s3cr3"))
    assert proc.returncode == 0, proc.stderr
