"""Settings for the test suite: the real PostgreSQL and Redis of the development machine."""
import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/looplab")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LOOPLAB_DATA_DIR", tempfile.mkdtemp(prefix="looplab-test-"))
os.environ.setdefault("LOOPLAB_TRAIN_EPOCHS", "8")
# the network vs probe choice cross-validates three extra networks per small run: off for the suite's many small
# classification runs (they test the network's path); tests/apps/training/test_model_choice.py turns it on
os.environ.setdefault("LOOPLAB_FIRST_MODEL_CHOICE", "false")
os.environ.setdefault("LOOPLAB_EXPORT_TIMING_S", "0.05")  # int8 vs fp32 timing at export: short in tests
os.environ.setdefault("LOOPLAB_WEBHOOK_ALLOW_PRIVATE", "true")  # the alert tests listen on 127.0.0.1

from apps.looplab.settings import *  # noqa: E402,F401,F403

# Unit and API tests run jobs in-process; the integration tests start a real worker instead.
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Separate test databases for runs side by side on one machine: LOOPLAB_TEST_DB=test_looplab_mine.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("LOOPLAB_TEST_DB", "test_looplab")}  # noqa: F405
