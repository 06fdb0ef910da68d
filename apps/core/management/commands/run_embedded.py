"""Run the embedded default in the foreground: a web server and a Celery worker (with beat), until Ctrl-C.

Both run under :class:`apps.core.supervisor.Supervisor`: a crashed gunicorn master or Celery worker is started
again with backoff (gunicorn restarts its own crashed workers), and every start, crash and restart is logged to
stderr and to <data dir>/logs/embedded.log (rotated at 1 MB, 3 kept).
"""
import logging
import logging.handlers
import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.core.supervisor import Supervisor

LOG_FORMAT = "%(asctime)s embedded %(levelname)s: %(message)s"


def embedded_logger() -> logging.Logger:
    """The supervisor's log: stderr and <data dir>/logs/embedded.log."""
    log = logging.getLogger("looplab.embedded")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log_dir = settings.DATA_DIR / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stderr),
                logging.handlers.RotatingFileHandler(log_dir / "embedded.log", maxBytes=1_000_000, backupCount=3)]
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
    return log


class Command(BaseCommand):
    help = ("Run web (gunicorn) and a Celery worker for all queues, with the beat scheduler, in the foreground; "
            "restart either if it dies; Ctrl-C stops both.")

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--grace", type=float, default=10.0,
                            help="seconds a stopping process gets before it is killed (default 10)")
        parser.add_argument("--max-restart-delay", type=float, default=60.0,
                            help="cap of the restart delay, which starts at 1 s and doubles per crash (default 60)")

    def handle(self, *args, bind, web_workers, grace, max_restart_delay, **options):
        call_command("collectstatic", interactive=False, verbosity=0)
        env = dict(os.environ, DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "apps.looplab.settings"))
        bin_dir = os.path.dirname(sys.executable)
        children = {
            # --beat: the scheduler (scheduled drift checks) inside the one worker
            "worker": [os.path.join(bin_dir, "celery"), "-A", "apps.looplab", "worker",
                       "-Q", "default,ml_cpu,ml_gpu", "-c", "1", "--loglevel", "INFO", "--beat",
                       "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
            "web": [os.path.join(bin_dir, "gunicorn"), "apps.looplab.wsgi", "--bind", bind,
                    "--workers", str(web_workers), "--threads", "4", "--access-logfile", "-"],
        }
        log = embedded_logger()
        self.stdout.write(f"Looplab is running at http://{bind}/  (API docs: http://{bind}/api/docs/)  Ctrl-C stops it.")
        self.stdout.write(f"database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
                          f"broker: {settings.CELERY_BROKER_URL.split('://')[0]}, data: {settings.DATA_DIR}, "
                          f"log: {settings.DATA_DIR / 'logs' / 'embedded.log'}")
        self.stdout.flush()
        Supervisor(children, log=log, env=env, grace=grace,
                   backoff={"cap": max_restart_delay, "stable_after": max(60.0, max_restart_delay)}).run()
