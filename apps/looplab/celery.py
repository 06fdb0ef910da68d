"""The Celery application. Workers: `celery -A apps.looplab worker -Q default,ml_cpu`."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.looplab.settings")

app = Celery("looplab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
