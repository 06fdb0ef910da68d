"""Concurrency against the real PostgreSQL: separate connections per thread (transactional_db)."""
import threading
from collections import Counter

import pytest
from django.db import connection


@pytest.mark.django_db(transaction=True)
def test_20_threads_claim_500_tasks_no_double_lease(make_user, lead):
    from apps.labeling.models import Task
    from apps.labeling.services import task_lease_next
    from apps.projects.services import project_create
    from apps.samples.services import IngestItem, samples_ingest

    assert connection.vendor == "postgresql"
    project = project_create(user=lead, name="queue", modality="image", labels=["a", "b"], label_budget=1000)
    results = samples_ingest(project=project, items=[IngestItem(external_id=str(i), uri=f"s3://bucket/pool/{i}.png")
                                                     for i in range(500)])
    from django.utils import timezone

    now = timezone.now()
    Task.objects.bulk_create([Task(project=project, sample_id=r["id"], priority=float(i % 7), available_at=now)
                              for i, r in enumerate(results)])
    users = [make_user(f"a{i}") for i in range(20)]
    claimed: list[tuple[int, int]] = []
    lock = threading.Lock()
    errors = []

    def worker(user):
        from django.db import connection as conn

        try:
            while True:
                task = task_lease_next(project=project, user=user)
                if task is None:
                    return
                with lock:
                    claimed.append((task.pk, user.pk))
                # Hand the lease back as "done" so this annotator can claim the next one.
                Task.objects.filter(pk=task.pk).update(state="done")
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    counts = Counter(pk for pk, _ in claimed)
    assert len(counts) == 500, f"{500 - len(counts)} tasks never leased"
    assert max(counts.values()) == 1, "a task was leased twice"
    assert len({u for _, u in claimed}) > 1


@pytest.mark.django_db(transaction=True)
def test_same_idempotency_key_10_concurrent_requests(lead, digits):
    from rest_framework.test import APIClient

    from apps.accounts.services import token_get_or_create
    from apps.projects.services import project_create
    from apps.samples.models import Sample
    from tests.conftest import b64

    project = project_create(user=lead, name="idem", modality="image", labels=[str(i) for i in range(10)])
    token = token_get_or_create(user=lead)
    body = {"samples": [{"external_id": f"d{i}", "content": b64(png), "metadata": {"i": i}}
                        for i, (png, _) in enumerate(digits[:30])]}
    responses, barrier = [], threading.Barrier(10)

    def call():
        from django.db import connection as conn

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        barrier.wait()
        r = client.post(f"/api/v1/projects/{project.id}/samples/", body, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
        responses.append((r.status_code, r.json()))
        conn.close()

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(responses) == 10
    assert {status for status, _ in responses} == {201}
    bodies = [body for _, body in responses]
    assert all(b == bodies[0] for b in bodies), "replayed bodies differ"
    assert [s["status"] for s in bodies[0]["samples"]] == ["created"] * 30
    assert Sample.objects.filter(project=project).count() == 30
