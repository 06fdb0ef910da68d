"""Similar-sample search latency: GET /api/v1/samples/{id}/similar/ on a project of 100k embedded samples.

    python -m bench.similar_search [--samples 100000] [--requests 300] [--k 10]

State (before the clock starts): a project and a lead through the API; the samples through the
ingest service (URI-only, 1,000 a call); then each sample gets a 128-d float32 embedding in the
label-free space, from seeded Gaussian clusters. These are written with one UPDATE per batch, not
computed, because the search is what is measured. gunicorn (`-w 3 gthread x 2`) on PostgreSQL.

Two server configurations on the same database:
- `cached`: the default. Each web process keeps a faiss index per (project, space)
  (apps/samples/similar.py). A request checks the space's fingerprint (count, sum and max of its ids)
  and then searches.
- `uncached`: `LOOPLAB_SIMILAR_CACHE_VECTORS=0`. Every request loads the whole space from the
  database and searches it exactly. This is what the endpoint did before the index, one numpy scan
  per request.

For each: the first request per web process (which builds the index), then `--requests` requests
for random samples from one client (p50/p95/p99). The answers are checked against a brute-force
search of the same embeddings.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from bench.report import latency_summary, print_table, write_report
from bench.stack import Stack, _stop_group, check, session

BUILD = """
import numpy as np
from django.db import connection
from apps.projects.models import Project
from apps.samples.models import Sample
from apps.samples.selectors import label_free_space
from apps.samples.services import IngestItem, samples_ingest

project = Project.objects.get(pk=params["project"])
n = params["samples"]
for start in range(0, n, 1000):
    samples_ingest(project=project, items=[IngestItem(external_id=f"s{i:07d}", uri=f"s3://bench/similar/{i:07d}.png")
                                           for i in range(start, min(n, start + 1000))])
ids = np.array(Sample.objects.filter(project=project).order_by("id").values_list("id", flat=True))
rng = np.random.default_rng(0)
centres = rng.normal(size=(200, 128)).astype(np.float32)
space = label_free_space()
with connection.cursor() as cur:
    for start in range(0, len(ids), 5000):
        chunk = ids[start:start + 5000]
        E = centres[rng.integers(0, 200, len(chunk))] + 0.35 * rng.normal(size=(len(chunk), 128)).astype(np.float32)
        E /= np.linalg.norm(E, axis=1, keepdims=True)
        cur.executemany("UPDATE samples_sample SET embedding = %s, embedding_space = %s WHERE id = %s",
                        [(E[i].astype(np.float32).tobytes(), space, int(chunk[i])) for i in range(len(chunk))])
    cur.execute("ANALYZE samples_sample")
result = {"ids": ids.tolist()}
"""

TRUTH = """
import numpy as np
from apps.samples.models import Sample
rows = list(Sample.objects.filter(project_id=params["project"]).exclude(embedding_space="")
            .order_by("id").values_list("id", "embedding"))
ids = np.array([r[0] for r in rows])
M = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
out = {}
for q in params["queries"]:
    d = np.linalg.norm(M - M[np.searchsorted(ids, q)], axis=1)
    order = [int(i) for i in ids[np.argsort(d, kind="stable")] if int(i) != q][: params["k"]]
    out[str(q)] = order
result = out
"""


def measure(stack: Stack, token: str, ids: list[int], requests: int, k: int, label: str) -> dict:
    s = session(token)
    rng = random.Random(1)
    first = []
    for _ in range(3):  # one per web process, most likely: the index build (or the full load)
        t0 = time.perf_counter()
        r = s.get(stack.url(f"/api/v1/samples/{rng.choice(ids)}/similar/?k={k}"), timeout=300)
        first.append(time.perf_counter() - t0)
        check(r, 200)
    lat, answers = [], {}
    for _ in range(requests):
        q = rng.choice(ids)
        t0 = time.perf_counter()
        r = s.get(stack.url(f"/api/v1/samples/{q}/similar/?k={k}"), timeout=300)
        lat.append(time.perf_counter() - t0)
        check(r, 200)
        answers[q] = [x["sample"]["id"] for x in r.json()["results"]]
    return {"first_s": first, "latency": latency_summary(lat), "answers": answers}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.similar_search", description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    out = {"samples": args.samples, "k": args.k, "runs": {}}
    with Stack("postgres", name="similar") as stack:
        token = stack.token("lead")
        r = session(token).post(stack.url("/api/v1/projects/"), json={
            "name": "similar", "modality": "image", "labels": ["a", "b"]}, timeout=30)
        check(r, 201)
        project = r.json()["id"]
        t0 = time.perf_counter()
        ids = stack.django(BUILD, timeout=1800, project=project, samples=args.samples)["ids"]
        stack.log(f"{len(ids)} embedded samples in {time.perf_counter() - t0:.0f}s")
        for label, env in (("cached", None), ("uncached", "0")):
            if env is not None:
                _stop_group(stack.server)
                stack.env["LOOPLAB_SIMILAR_CACHE_VECTORS"] = env
                stack.start_server()
            run = measure(stack, token, ids, args.requests if label == "cached" else max(20, args.requests // 10),
                          args.k, label)
            truth = stack.django(TRUTH, project=project, k=args.k, queries=list(run["answers"])[:50])
            agree = np.mean([len(set(truth[str(q)]) & set(run["answers"][q])) / args.k for q in list(run["answers"])[:50]])
            run["recall_at_k"] = float(agree)
            del run["answers"]
            out["runs"][label] = run
    rows = [[label, f"{max(run['first_s']):.3f}", f"{run['latency']['p50_ms']:.1f}", f"{run['latency']['p95_ms']:.1f}",
             f"{run['latency']['p99_ms']:.1f}", f"{run['recall_at_k']:.3f}"] for label, run in out["runs"].items()]
    print_table(["server", "first s (max of 3)", "p50 ms", "p95 ms", "p99 ms", f"recall@{args.k}"], rows,
                title=f"GET samples/{{id}}/similar/?k={args.k} on {args.samples:,} embedded samples (PostgreSQL)")
    print(f"wrote {write_report('similar_search', out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
