"""Django settings. Everything that differs between machines comes from the environment via env().

Two runtimes (see DESIGN.md):
- embedded (default): SQLite, Celery on kombu's filesystem transport, files under LOOPLAB_DATA_DIR.
- production (LOOPLAB_ENV=production): PostgreSQL (DATABASE_URL), Redis (CELERY_BROKER_URL),
  S3-compatible storage (LOOPLAB_STORAGE=s3), secrets and hosts required.
"""
from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from apps.looplab.env import env

BASE_DIR = Path(__file__).resolve().parents[2]
LOOPLAB_ENV = env("LOOPLAB_ENV", "embedded")
if LOOPLAB_ENV not in ("embedded", "production"):
    raise ImproperlyConfigured(f"LOOPLAB_ENV must be 'embedded' or 'production', not {LOOPLAB_ENV!r}.")
PRODUCTION = LOOPLAB_ENV == "production"
DATA_DIR = Path(env("LOOPLAB_DATA_DIR", str(BASE_DIR / "var"))).resolve()
# What the app writes (the SQLite database, media, models, exports, logs, the broker's messages) is this user's
# only: files 0600, directories 0700. Set here because every entry point (manage.py, gunicorn, celery) loads
# the settings before it writes anything, and the processes it starts inherit the mask.
os.umask(0o077)

DEBUG = env("DEBUG", False, cast=bool)


def _embedded_secret_key() -> str:
    """A per-installation key kept in the data dir, so the embedded runtime needs no setup."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env("SECRET_KEY")
    # Django's check --deploy rule, enforced at start: a short or guessable key signs sessions and CSRF tokens.
    if (len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
            or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)):
        raise ImproperlyConfigured(
            f"Environment variable SECRET_KEY is too weak for production: it needs at least "
            f"{SECRET_KEY_MIN_LENGTH} characters, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, and no "
            f"{SECRET_KEY_INSECURE_PREFIX!r} prefix (it has {len(SECRET_KEY)} characters). Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    ALLOWED_HOSTS = env("ALLOWED_HOSTS", cast=list)
    CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS", [], cast=list)
else:
    SECRET_KEY = env("SECRET_KEY", None) or _embedded_secret_key()
    ALLOWED_HOSTS = env("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"], cast=list)
    CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS", [], cast=list)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.accounts",
    "apps.projects",
    "apps.registry",
    "apps.samples",
    "apps.labeling",
    "apps.training",
    "apps.serving",
    "apps.monitoring",
    "apps.exports",
    "apps.web",
    "apps.looplab",  # the project package: load_demo (it builds a project across apps)
]

MIDDLEWARE = [
    "apps.core.uploads.RequestSizeLimitMiddleware",  # first: a too-large body is refused before anything reads it
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.StatementTimeoutMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "apps.looplab.urls"
WSGI_APPLICATION = "apps.looplab.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "labeling_ui" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL from DATABASE_URL, or SQLite in the data dir.
# On PostgreSQL every statement of a web request is cancelled after this long (503 query_timeout); 0 = off.
# Celery workers are not bound by it (apps.core.middleware).
LOOPLAB_STATEMENT_TIMEOUT_MS = env("LOOPLAB_STATEMENT_TIMEOUT_MS", 10000, cast=int)
if PRODUCTION:
    _database_url = env("DATABASE_URL")
else:
    _database_url = env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'looplab.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env("DB_CONN_MAX_AGE", 60, cast=int))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # WAL lets the web process read while the worker writes; a generous lock timeout serialises writers.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A database file made before the mask above (SQLite gives its -wal and -shm files the database's mode).
    for _suffix in ("", "-wal", "-shm"):
        _sqlite_file = Path(f"{DATABASES['default']['NAME']}{_suffix}")
        if _sqlite_file.exists() and _sqlite_file.stat().st_mode & 0o077:
            _sqlite_file.chmod(0o600)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in lockout (django-axes), on the sign-in page and the admin's: after LOGIN_FAILURE_LIMIT wrong passwords
# for one username from one address, that pair is refused (even the right password) for the cool-off, counted
# from the last attempt. Per pair, so one attacker cannot lock everyone out. `manage.py axes_reset` unlocks.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env("LOOPLAB_LOGIN_LOCKOUT", True, cast=bool)
AXES_FAILURE_LIMIT = env("LOOPLAB_LOGIN_FAILURE_LIMIT", 5, cast=int)
AXES_COOLOFF_TIME = timedelta(minutes=env("LOOPLAB_LOGIN_COOLOFF_MINUTES", 15.0, cast=float))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "apps.accounts.lockout.lockout_response"
# Behind N reverse proxies (LOOPLAB_NUM_PROXIES=N) the client address is read from X-Forwarded-For, for the
# lockout and the API throttles alike; with 0 (the default) that header is ignored, so it cannot be forged.
NUM_PROXIES = env("LOOPLAB_NUM_PROXIES", 0, cast=int)
AXES_CLIENT_IP_CALLABLE = "apps.accounts.lockout.client_address"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Files: local media dir, or S3-compatible object storage through django-storages.
STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
_NODE = BASE_DIR / "labeling_ui" / "node_modules"
# Our ES modules, plus the browser builds of the npm packages in labeling_ui/package.json (installed by
# `npm ci`, never copied into git), under /static/vendor/<name>/.
STATICFILES_DIRS = [
    BASE_DIR / "labeling_ui" / "static",
    ("vendor/three", _NODE / "three" / "build"),
    ("vendor/three-addons", _NODE / "three" / "examples" / "jsm"),
    ("vendor/wavesurfer", _NODE / "wavesurfer.js" / "dist"),
]
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGE_BACKEND = env("LOOPLAB_STORAGE", "local")
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("S3_BUCKET"),
            "endpoint_url": env("S3_ENDPOINT_URL", None),
            "region_name": env("S3_REGION", None),
            "access_key": env("S3_ACCESS_KEY_ID", None),
            "secret_key": env("S3_SECRET_ACCESS_KEY", None),
            "default_acl": None,
            "file_overwrite": True,
            "querystring_auth": True,
        },
    }
elif STORAGE_BACKEND == "local":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    raise ImproperlyConfigured(f"LOOPLAB_STORAGE must be 'local' or 's3', not {STORAGE_BACKEND!r}.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# Request size: a JSON batch of 1,000 base64 images is a few MB. Every request body (JSON, a multipart
# file, chunked) larger than this is a 413 before it is read (apps.core.uploads).
LOOPLAB_MAX_REQUEST_BYTES = env("LOOPLAB_MAX_REQUEST_BYTES", 64 * 1024 * 1024, cast=int)
DATA_UPLOAD_MAX_MEMORY_SIZE = LOOPLAB_MAX_REQUEST_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
FILE_UPLOAD_PERMISSIONS = 0o600  # stored files, whether written from memory or moved from a temporary file
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Rates are "N/second|minute|hour|day". Generous for people and scripts (the test suite and the
    # benchmarks never reach them); token_failure counts wrong or expired API tokens per client address.
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.accounts.throttles.AnonRateThrottle",
        "apps.accounts.throttles.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env("LOOPLAB_THROTTLE_ANON", "120/minute"),
        "user": env("LOOPLAB_THROTTLE_USER", "10000/minute"),
        "token_failure": env("LOOPLAB_THROTTLE_TOKEN_FAILURES", "20/minute"),
    },
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.exceptions.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Looplab API",
    "DESCRIPTION": "Public API v1 of Looplab: push samples, select under a budget, label, train, deploy, predict.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # drf-spectacular's default hook, then the error shape and its code table (apps.core.schema)
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "apps.core.schema.add_error_responses"],
}

# Celery: broker from CELERY_BROKER_URL (Redis in production) or kombu's filesystem transport.
if PRODUCTION:
    CELERY_BROKER_URL = env("CELERY_BROKER_URL")
else:
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
# The cache holds the API throttles' counters: in production one Redis shared by every web process
# (LOOPLAB_CACHE_URL, by default the broker's), otherwise each process's memory.
_cache_url = env("LOOPLAB_CACHE_URL", CELERY_BROKER_URL if PRODUCTION and CELERY_BROKER_URL.startswith("redis") else "")
if _cache_url:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url,
                          "KEY_PREFIX": "looplab"}}
CELERY_TASK_ALWAYS_EAGER = env("CELERY_TASK_ALWAYS_EAGER", False, cast=bool)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True  # every job records its own state in the database
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env("CELERY_TASK_SOFT_TIME_LIMIT", 3600, cast=int)
CELERY_TASK_TIME_LIMIT = env("CELERY_TASK_TIME_LIMIT", 3900, cast=int)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Training runs on ml_gpu where a GPU worker listens (LOOPLAB_TRAIN_QUEUE=ml_gpu), else on ml_cpu.
LOOPLAB_TRAIN_QUEUE = env("LOOPLAB_TRAIN_QUEUE", "ml_cpu")
CELERY_TASK_ROUTES = {
    "looplab.samples.*": {"queue": "ml_cpu"},
    "looplab.drift.*": {"queue": "ml_cpu"},
    "looplab.labeling.*": {"queue": "ml_cpu"},
    "looplab.training.train": {"queue": LOOPLAB_TRAIN_QUEUE},
    "looplab.training.*": {"queue": "ml_cpu"},
    "looplab.serving.*": {"queue": "default"},
    "looplab.core.*": {"queue": "default"},
}

# celery beat (`celery -A apps.looplab beat`; the embedded default runs it inside its worker): the tick that
# queues scheduled drift checks (projects' drift_check_hours).
CELERY_BEAT_SCHEDULE = {
    "looplab-schedule-drift-checks": {
        "task": "looplab.serving.schedule_drift_checks",
        "schedule": env("LOOPLAB_DRIFT_SCHEDULE_TICK_S", 300.0, cast=float),
    },
    # the job runner's sweeper (apps.core.jobs.jobs_sweep): re-enqueues jobs whose worker died
    "looplab-sweep-jobs": {
        "task": "looplab.core.sweep_jobs",
        "schedule": env("LOOPLAB_JOB_SWEEP_S", 60.0, cast=float),
    },
}

# The job runner (apps.core.jobs): a running job beats every HEARTBEAT_S; one silent for STALE_S belongs to a
# dead worker and is taken over; a queued job whose message waited QUEUED_STALE_S is sent again; a job is
# claimed at most MAX_ATTEMPTS times. PROGRESS_DELAY_S (tests only) slows every progress point down.
LOOPLAB_JOBS = {
    "HEARTBEAT_S": env("LOOPLAB_JOB_HEARTBEAT_S", 15.0, cast=float),
    "STALE_S": env("LOOPLAB_JOB_STALE_S", 120.0, cast=float),
    "QUEUED_STALE_S": env("LOOPLAB_JOB_QUEUED_STALE_S", 1800.0, cast=float),
    "MAX_ATTEMPTS": env("LOOPLAB_JOB_MAX_ATTEMPTS", 3, cast=int),
    "PROGRESS_DELAY_S": env("LOOPLAB_JOB_PROGRESS_DELAY_S", 0.0, cast=float),
}

# Looplab behaviour.
LOOPLAB = {
    "MAX_BATCH": env("LOOPLAB_MAX_BATCH", 1000, cast=int),
    "MAX_IMAGE_PIXELS": env("LOOPLAB_MAX_IMAGE_PIXELS", 40_000_000, cast=int),
    "MAX_AUDIO_SECONDS": env("LOOPLAB_MAX_AUDIO_SECONDS", 30.0, cast=float),
    "MAX_LONG_AUDIO_SECONDS": env("LOOPLAB_MAX_LONG_AUDIO_SECONDS", 7200.0, cast=float),
    # decoded-size caps, checked from the header before decoding (a decompression bomb is refused, code too_large):
    # audio frames x channels (57.6 M: 10 min of 48 kHz stereo, 1 h of 16 kHz mono), points, points x fields
    "MAX_AUDIO_SAMPLES": env("LOOPLAB_MAX_AUDIO_SAMPLES", 57_600_000, cast=int),
    "MAX_POINTS": env("LOOPLAB_MAX_POINTS", 5_000_000, cast=int),
    "MAX_POINT_VALUES": env("LOOPLAB_MAX_POINT_VALUES", 30_000_000, cast=int),
    # the largest sample file read into memory (file:// references; pushes are capped by LOOPLAB_MAX_REQUEST_BYTES):
    # 57.6 M samples as a float64 WAV fit
    "MAX_CONTENT_BYTES": env("LOOPLAB_MAX_CONTENT_BYTES", 512 * 1024 * 1024, cast=int),
    "LEASE_SECONDS": env("LOOPLAB_LEASE_SECONDS", 600, cast=int),
    "TRAIN_EPOCHS": env("LOOPLAB_TRAIN_EPOCHS", 40, cast=int),
    # the built-in classification pipeline: below 200 training labels, keep the network or a linear probe on the
    # label-free embeddings, whichever validates better (apps.training.services._train)
    "FIRST_MODEL_CHOICE": env("LOOPLAB_FIRST_MODEL_CHOICE", True, cast=bool),
    "TORCH_THREADS": env("LOOPLAB_TORCH_THREADS", 1, cast=int),  # per worker process; 0 = torch's default
    "EMBED_BATCH": env("LOOPLAB_EMBED_BATCH", 256, cast=int),
    "URI_ROOTS": env("LOOPLAB_URI_ROOTS", [], cast=list),
    # similar-sample search keeps an index per (project, embedding space) up to this many vectors
    "SIMILAR_CACHE_VECTORS": env("LOOPLAB_SIMILAR_CACHE_VECTORS", 200_000, cast=int),
    # export: also quantize classifiers to int8 and serve int8 when >= 1.2x faster with <= 1 point lost
    "EXPORT_INT8": env("LOOPLAB_EXPORT_INT8", True, cast=bool),
    "EXPORT_TIMING_S": env("LOOPLAB_EXPORT_TIMING_S", 0.5, cast=float),  # per runtime and batch size
    # drift alerts to loopback, private or link-local addresses are refused unless this is on
    "WEBHOOK_ALLOW_PRIVATE": env("LOOPLAB_WEBHOOK_ALLOW_PRIVATE", False, cast=bool),
    # bring your own model: the largest ONNX file POST .../models/upload/ accepts (the request body is also capped
    # by LOOPLAB_MAX_REQUEST_BYTES, which is checked first: raise both for a larger model)
    "MAX_MODEL_UPLOAD_BYTES": env("LOOPLAB_MAX_MODEL_UPLOAD_BYTES", 200 * 1024 * 1024, cast=int),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT", True, cast=bool)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env("SECURE_HSTS_SECONDS", 31536000, cast=int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env("SECURE_HSTS_PRELOAD", False, cast=bool)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is the operator's decision (it lets anyone submit the domain to browsers' lists).
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
