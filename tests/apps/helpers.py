"""Helpers that build state through services, as a user of the API would."""
from __future__ import annotations

from apps.samples.services import IngestItem, samples_ingest


def push_digits(project, digits, n: int, *, start: int = 0, metadata=None):
    items = [IngestItem(external_id=f"d{i}", content=png, metadata=(metadata(i) if metadata else {"n": i}))
             for i, (png, _) in enumerate(digits[start:start + n], start=start)]
    return samples_ingest(project=project, items=items)


def truth_by_sample(project, digits):
    """The digit each stored sample shows (from its external_id), to annotate like an oracle."""
    from apps.samples.models import Sample

    return {pk: str(digits[int(ext[1:])][1]) for pk, ext in
            Sample.objects.filter(project=project).values_list("id", "external_id")}


def label_all_open(project, user, truth, *, flip_every: int = 0, flip_by: int = 0, flipped: set | None = None,
                   active_seconds: float = 1.5) -> int:
    """Submit the true digit (``truth``) for every task open to ``user``; how many were submitted. With
    ``flip_every``, every ``flip_every``-th submission (the first included) is the digit ``flip_by`` further
    on instead, and its sample id goes into ``flipped``."""
    from apps.labeling.services import annotation_submit, task_lease_next

    n = 0
    while True:
        task = task_lease_next(project=project, user=user)
        if task is None:
            return n
        label = truth[task.sample_id]
        if flip_every and n % flip_every == 0:
            label = str((int(label) + flip_by) % 10)
            flipped.add(task.sample_id)
        annotation_submit(task=task, user=user, result={"label": label}, active_seconds=active_seconds)
        n += 1


def run_round(project, lead, capture, *, budget: int, strategy: str, **constraints):
    """Start a selection round and run its job (``capture``: pytest-django's django_capture_on_commit_callbacks);
    the round, succeeded."""
    from apps.labeling.services import round_create

    with capture(execute=True):
        rnd = round_create(project=project, user=lead, budget=budget, strategy=strategy, **constraints)
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    return rnd


def train_digits(project, lead, annotator, digits, capture, *, n: int, epochs: int, labeled: int | None = None,
                 metadata=None):
    """Push ``n`` digits, label ``labeled`` of them (all by default) through a random round, train; the run,
    succeeded (and deployed when the project's gate is on). ``capture`` is pytest-django's
    django_capture_on_commit_callbacks (runs the queued jobs)."""
    from apps.labeling.services import round_create
    from apps.training.services import training_run_create

    with capture(execute=True):
        push_digits(project, digits, n, metadata=metadata)
        round_create(project=project, user=lead, budget=n if labeled is None else labeled, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    with capture(execute=True):
        run = training_run_create(project=project, user=lead, epochs=epochs)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the POSTs it gets (path, headers, JSON body, raw body)
    and answers with ``statuses`` in turn (the last one repeats); ``location`` is sent with 3xx answers."""

    def __init__(self, statuses=(204,), location: str = ""):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.statuses, self.location, self.got = list(statuses), location, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body),
                                     "raw": body})
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/hooks/drift"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
