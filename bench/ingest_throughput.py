"""Ingest throughput: JSON batches of URI-only samples pushed through a real gunicorn server.

    python -m bench.ingest_throughput [--samples 100000] [--batch 1000] [--clients 4]
                                      [--backend postgres|embedded|all] [--repeat 2]

Each sample is ``{"external_id", "uri", "metadata": {"camera", "speed"}}`` with a unique URI, so
every one is created (none is a duplicate). Client threads (one keep-alive requests.Session each)
take batches from a shared counter until all are sent. Request bodies are encoded before the clock
starts (a production client runs on another machine; here it shares the 2 cores with the server).

Each push enqueues Celery "embed" messages (one per 256 new samples). No worker runs here, so they
just queue up: on Redis db 14 for PostgreSQL (flushed afterwards), as files in the temp data dir for
the embedded default. Target (issue 2): >= 20,000 samples/s on PostgreSQL.

Besides wall-clock throughput, the CPU time of the server processes, of the PostgreSQL backends and
of this client is measured per 1,000 samples; "cpu ceiling" = cores / CPU-seconds per sample, the
throughput that CPU alone allows when nothing else runs on the machine (the machine this runs on is
often shared, so wall-clock numbers depend on the load average printed next to them).
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import threading
import time

from bench.report import fmt, latency_summary, loadavg, machine_info, print_table, spread, write_report
from bench.stack import BenchError, Deadline, GunicornConfig, Stack, check, repeat_runs, session

TARGET_SAMPLES_PER_S = {"postgres": 20_000}


def build_bodies(run_tag: str, n_samples: int, batch: int, offset: int = 0) -> list[bytes]:
    rng = random.Random(run_tag)
    bodies = []
    for start in range(offset, offset + n_samples, batch):
        stop = min(start + batch, offset + n_samples)
        samples = [{"external_id": f"{run_tag}-{i:07d}",
                    "uri": f"s3://bench-camera-frames/{run_tag}/frame-{i:07d}.jpg",
                    "metadata": {"camera": f"cam-{i % 12}", "speed": round(rng.uniform(0, 130), 1)}}
                   for i in range(start, stop)]
        bodies.append(json.dumps({"samples": samples}, separators=(",", ":")).encode())
    return bodies


def push_all(stack: Stack, token: str, project_id: int, bodies: list[bytes], clients: int,
             deadline: Deadline) -> dict:
    url = stack.url(f"/api/v1/projects/{project_id}/samples/")
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    created = [0]
    errors: list[str] = []

    def client():
        s = session(token)
        s.headers["Content-Type"] = "application/json"
        try:
            while not errors and not deadline.expired():
                with lock:
                    i = next_index[0]
                    next_index[0] += 1
                if i >= len(bodies):
                    return
                t0 = time.perf_counter()
                r = s.post(url, data=bodies[i], timeout=120)
                dt = time.perf_counter() - t0
                if r.status_code != 201:
                    errors.append(f"batch {i}: {r.status_code} {r.text[:300]}")
                    return
                n = r.content.count(b'"status":"created"')
                with lock:
                    latencies.append(dt)
                    created[0] += n
        except Exception as exc:  # noqa: BLE001 - reported after the run
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            s.close()

    threads = [threading.Thread(target=client, name=f"client-{k}", daemon=True) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline.left()))
    wall = time.perf_counter() - t0
    if any(t.is_alive() for t in threads):
        errors.append("clients still running at the time limit")
    return {"wall_s": wall, "latencies": latencies, "created": created[0], "errors": errors}


def run_once(args, backend: str, repeat: int) -> dict:
    gconf = GunicornConfig(workers=args.workers, threads=args.threads)
    deadline = Deadline(args.time_limit)
    with Stack(backend, gunicorn=gconf, name="ingest") as stack:
        token = stack.token("bench-lead", "lead")
        s = session(token)
        project = check(s.post(stack.url("/api/v1/projects/"), json={
            "name": f"ingest bench {repeat}", "modality": "image", "labels": ["car", "truck", "bike"]}, timeout=30), 201).json()
        s.close()
        tag = f"r{repeat}-{int(time.time())}"
        warm = build_bodies(tag + "-warm", args.batch * max(2, args.clients), args.batch)
        bodies = build_bodies(tag, args.samples, args.batch)
        stack.log(f"warm-up: {len(warm)} requests, then {len(bodies)} timed requests of {args.batch} "
                  f"from {args.clients} client threads")
        warm_result = push_all(stack, token, project["id"], warm, args.clients, deadline)
        if warm_result["errors"]:
            raise BenchError(f"warm-up failed: {warm_result['errors'][:3]}\n{stack.server_log()}")
        load_before = loadavg()
        server_cpu0, db_cpu0, client_cpu0 = stack.server_cpu_seconds(), stack.db_cpu_seconds(), time.process_time()
        result = push_all(stack, token, project["id"], bodies, args.clients, deadline)
        client_cpu = time.process_time() - client_cpu0
        server_cpu = stack.server_cpu_seconds() - server_cpu0
        db_cpu = (stack.db_cpu_seconds() - db_cpu0) if db_cpu0 is not None else None
        if result["errors"]:
            raise BenchError(f"ingest failed: {result['errors'][:3]}\n{stack.server_log()}")
        expected = args.samples + args.batch * max(2, args.clients)
        if backend == "postgres":
            stored = stack.pg_query("SELECT count(*) FROM samples_sample WHERE project_id = %s", (project["id"],))[0][0]
        else:
            with sqlite3.connect(f"file:{stack.tmp / 'data' / 'looplab.sqlite3'}?mode=ro", uri=True, timeout=30) as db:
                stored = db.execute("SELECT count(*) FROM samples_sample WHERE project_id = ?", (project["id"],)).fetchone()[0]
        backlog = stack.broker_backlog()
    if stored != expected:
        raise BenchError(f"expected {expected} stored samples, found {stored}")
    lat = latency_summary(result["latencies"])
    # CPU per 1,000 samples (server processes, database backends, this client) and the throughput
    # that CPU alone would allow on the machine's cores if nothing else ran: load-independent-ish.
    per_k = {k: (v * 1000.0 / result["created"]) if v is not None else None
             for k, v in {"server": server_cpu, "database": db_cpu, "client": client_cpu}.items()}
    cpu_per_sample = sum(v for v in per_k.values() if v is not None) / 1000.0
    ceiling = (machine_info()["cpus"] / cpu_per_sample) if cpu_per_sample else None
    return {"backend": backend, "repeat": repeat, "samples": args.samples, "batch": args.batch,
            "clients": args.clients, "server": gconf.describe(), "created": result["created"],
            "wall_s": result["wall_s"], "samples_per_s": result["created"] / result["wall_s"],
            "requests": len(result["latencies"]), "latency": lat, "stored_in_db": stored,
            "broker_messages_queued": backlog,
            "cpu_s": {"server": server_cpu, "database": db_cpu, "client": client_cpu},
            "cpu_s_per_1000_samples": per_k, "cpu_bound_ceiling_samples_per_s": ceiling,
            "loadavg_before": load_before, "loadavg_after": loadavg()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--backend", choices=["postgres", "embedded", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=2, help="runs per backend, each on a fresh stack")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per run before giving up")
    args = parser.parse_args(argv)
    if args.samples < 1 or not 1 <= args.batch <= 1000 or args.clients < 1 or args.repeat < 1:
        parser.error("need samples >= 1, 1 <= batch <= 1000, clients >= 1, repeat >= 1")
    backends = ["postgres", "embedded"] if args.backend == "all" else [args.backend]
    machine = machine_info()
    runs = repeat_runs(backends, args.repeat, lambda backend, k: run_once(args, backend, k),
                       lambda run: f"{run['samples_per_s']:,.0f} samples/s, p99 {run['latency']['p99_ms']:.0f} ms, "
                                   f"load {run['loadavg_before']}")
    rows, summary = [], {}
    for run in runs:
        lat = run["latency"]
        rows.append([run["backend"], str(run["repeat"]), run["samples_per_s"], lat["p50_ms"], lat["p95_ms"], lat["p99_ms"],
                     run["wall_s"], *[run["cpu_s_per_1000_samples"][k] * 1000 if run["cpu_s_per_1000_samples"][k] is not None
                                      else None for k in ("server", "database", "client")],
                     run["cpu_bound_ceiling_samples_per_s"], run["broker_messages_queued"],
                     " ".join(f"{x:.2f}" for x in run["loadavg_before"])])
    for backend in backends:
        mine = [r for r in runs if r["backend"] == backend]
        best = max(mine, key=lambda r: r["samples_per_s"])
        target = TARGET_SAMPLES_PER_S.get(backend)
        summary[backend] = {"best_samples_per_s": best["samples_per_s"], "best_p99_ms": best["latency"]["p99_ms"],
                            "samples_per_s": spread([r["samples_per_s"] for r in mine]),
                            "p99_ms": spread([r["latency"]["p99_ms"] for r in mine]),
                            "target_samples_per_s": target,
                            "meets_target": (best["samples_per_s"] >= target) if target else None}
    print_table(["backend", "run", "samples/s", "p50 ms", "p95 ms", "p99 ms", "wall s", "server cpu ms/1k",
                 "db cpu ms/1k", "client cpu ms/1k", "cpu ceiling/s", "queued msgs", "load 1/5/15"], rows,
                title=f"Ingest: {args.samples:,} URI samples in batches of {args.batch} from {args.clients} clients; "
                      f"{runs[0]['server']}; {machine['cpus']} CPUs ({machine['cpu_model']})")
    print()
    for backend, s in summary.items():
        sp = s["samples_per_s"]
        verdict = "" if s["target_samples_per_s"] is None else (
            f"  target >= {s['target_samples_per_s']:,}: {'met' if s['meets_target'] else 'NOT met'}")
        print(f"{backend:>9}: best {fmt(s['best_samples_per_s'], 0)} samples/s (runs {fmt(sp['min'], 0)}..{fmt(sp['max'], 0)}, "
              f"spread {fmt(sp['spread_pct'])}%){verdict}")
    path = write_report("ingest_throughput", {"args": vars(args), "runs": runs, "summary": summary})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
