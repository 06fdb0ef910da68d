"""Run the embedded default in the foreground: a web server and a Celery worker (with beat), until Ctrl-C."""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run web (gunicorn) and a Celery worker for all queues, with the beat scheduler, in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)

    def handle(self, *args, bind, web_workers, **options):
        call_command("collectstatic", interactive=False, verbosity=0)
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "apps.looplab.settings"))
        bin_dir = os.path.dirname(sys.executable)
        procs = {
            # --beat: the scheduler (scheduled drift checks) inside the one worker
            "worker": subprocess.Popen([os.path.join(bin_dir, "celery"), "-A", "apps.looplab", "worker",
                                        "-Q", "default,ml_cpu,ml_gpu", "-c", "1", "--loglevel", "INFO", "--beat",
                                        "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")], env=env),
            "web": subprocess.Popen([os.path.join(bin_dir, "gunicorn"), "apps.looplab.wsgi", "--bind", bind,
                                     "--workers", str(web_workers), "--threads", "4", "--access-logfile", "-"], env=env),
        }
        self.stdout.write(f"Looplab is running at http://{bind}/  (API docs: http://{bind}/api/docs/)  Ctrl-C stops it.")
        self.stdout.write(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
                          f"broker: {settings.CELERY_BROKER_URL.split('://')[0]}, data: {settings.DATA_DIR}")
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
