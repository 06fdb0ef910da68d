"""The Celery application. Workers: `celery -A apps.looplab worker -Q default,ml_cpu`."""
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.looplab.settings")

app = Celery("looplab")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _limit_torch_threads(**_):
    """Torch threads per worker process (LOOPLAB_TORCH_THREADS, default 1).

    With one process per core, one intra-op thread each is fastest: on a 2-core machine two torch
    threads made training and inference 2-4x slower (bench.export_latency, bench.label_to_serving).
    """
    from django.conf import settings

    threads = settings.LOOPLAB["TORCH_THREADS"]
    if threads:
        import torch

        torch.set_num_threads(threads)
