"""Approximate vs exact embedding search on 1,000,000 clustered 128-d vectors.

    .venv/bin/python -m bench.index_recall              # 1M vectors, IVF (kind="auto")
    .venv/bin/python -m bench.index_recall --n 200000
    .venv/bin/python -m bench.index_recall --hnsw       # also build an HNSW index (slow on 2 cores)

Builds ml.index.EmbeddingIndex with kind="auto" (IVF above 50,000 vectors, nprobe tuned on stored
vectors so that recall@10 >= 0.95) and kind="flat" (exact) over the same cached vectors
(bench/out/cache/, shared with bench.selection_scale), then measures on held-out queries drawn from
the same blobs:

- recall@10 of the approximate index against exact search (ml.index.measure_recall),
- single-query latency and throughput (one query per call, as the "similar samples" endpoint does),
- batch throughput (all queries in one call).

If the recall on the tuning queries falls short of the target, nprobe is raised until it holds; the
reported recall is measured on separate evaluation queries. Target: >= 30x the single-query throughput
of exact search at recall@10 >= 0.95.

Prints a table and writes bench/out/index_recall.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.selection_scale import make_pool, make_queries

from bench.report import OUT_DIR, REPO, loadavg, machine_info, median, print_table, write_report


def single_query_latencies(index, Q: np.ndarray, k: int) -> list[float]:
    out = []
    for q in Q:
        t0 = time.perf_counter()
        index.search(q[None, :], k)
        out.append(time.perf_counter() - t0)
    return out


def summarize(name, index, build_s, lat, batch_s, n_batch, recall, param) -> dict:
    p50 = median(lat)
    return {
        "index": name,
        "structure": index.structure_,
        "build_s": build_s,
        "param": param,
        "recall_at_10": recall,
        "single_p50_ms": p50 * 1000,
        "single_mean_ms": statistics.fmean(lat) * 1000,
        "single_qps": len(lat) / sum(lat),
        "batch_qps": n_batch / batch_s,
        "n_single_queries": len(lat),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--blobs", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=1000, help="evaluation queries")
    ap.add_argument("--exact-queries", type=int, default=100, help="single queries timed on the exact index")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--hnsw", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import faiss

    from ml.index import EmbeddingIndex, measure_recall

    X, _ = make_pool(args.n, args.dim, args.blobs, args.seed)
    Q_all = make_queries(args.queries + 200, args.dim, args.blobs, args.seed)
    Q_tune, Q = Q_all[:200], Q_all[200:]
    ids = np.arange(args.n, dtype=np.int64)
    rows = []

    t0 = time.perf_counter()
    flat = EmbeddingIndex(args.dim, kind="flat").add(ids, X)
    flat_build = time.perf_counter() - t0
    lat = single_query_latencies(flat, Q[: args.exact_queries], args.k)
    t0 = time.perf_counter()
    flat.search(Q, args.k)
    batch = time.perf_counter() - t0
    rows.append(summarize("exact (flat)", flat, flat_build, lat, batch, len(Q), 1.0, "-"))

    t0 = time.perf_counter()
    ivf = EmbeddingIndex(args.dim, kind="auto", random_state=args.seed).add(ids, X)
    ivf_build = time.perf_counter() - t0
    tuned = {"nprobe": ivf.nprobe_, "tuned_recall": ivf.tuned_recall_, "nlist": int(ivf._index.nlist)}
    # hold the target on fresh tuning queries too (separate from the evaluation queries)
    if measure_recall(ivf, Q_tune, args.k) < args.target:
        tuned["retuned_on_fresh_queries"] = ivf.tune(queries=Q_tune, k=args.k, target_recall=args.target)
    recall = measure_recall(ivf, Q, args.k)
    lat = single_query_latencies(ivf, Q, args.k)
    t0 = time.perf_counter()
    ivf.search(Q, args.k)
    batch = time.perf_counter() - t0
    rows.append(summarize("approx (auto)", ivf, ivf_build, lat, batch, len(Q), recall,
                          f"nlist={ivf._index.nlist} nprobe={ivf._index.nprobe}"))

    if args.hnsw:
        t0 = time.perf_counter()
        hnsw = EmbeddingIndex(args.dim, kind="hnsw", random_state=args.seed).add(ids, X)
        hnsw_build = time.perf_counter() - t0
        if measure_recall(hnsw, Q_tune, args.k) < args.target:
            hnsw.tune(queries=Q_tune, k=args.k, target_recall=args.target)
        recall_h = measure_recall(hnsw, Q, args.k)
        lat = single_query_latencies(hnsw, Q, args.k)
        t0 = time.perf_counter()
        hnsw.search(Q, args.k)
        batch = time.perf_counter() - t0
        rows.append(summarize("approx (hnsw)", hnsw, hnsw_build, lat, batch, len(Q), recall_h, f"efSearch={hnsw.ef_search_}"))

    base = rows[0]["single_qps"]
    for r in rows:
        r["single_speedup_vs_exact"] = r["single_qps"] / base
        r["batch_speedup_vs_exact"] = r["batch_qps"] / rows[0]["batch_qps"]
    load = loadavg()
    result = {
        "n": args.n,
        "dim": args.dim,
        "k": args.k,
        "target_recall": args.target,
        "ivf_tuning": tuned,
        "rows": rows,
        "meets_target": bool(rows[1]["recall_at_10"] >= args.target and rows[1]["single_speedup_vs_exact"] >= 30),
    }
    print(f"\nrecall@{args.k} and single-query speed on {args.n:,} x {args.dim} float32, "
          f"{machine_info()['cpus']} CPUs, load average {load[0] if load else float('nan'):.1f}")
    print_table(["index", "params", "build s", "recall@10", "p50 ms", "QPS", "speedup", "batch QPS"],
                [[r["index"], r["param"], f"{r['build_s']:.1f}", f"{r['recall_at_10']:.3f}", f"{r['single_p50_ms']:.2f}",
                  f"{r['single_qps']:.0f}", f"{r['single_speedup_vs_exact']:.1f}x", f"{r['batch_qps']:.0f}"] for r in rows], align="llrrrrrr")
    print(f"target: recall@{args.k} >= {args.target} at >= 30x the exact single-query throughput -> "
          f"{'met' if result['meets_target'] else 'NOT met'}")
    out = write_report("index_recall", result, path=OUT_DIR / "index_recall.json",
                       machine={"faiss_threads": faiss.omp_get_max_threads()})
    print(f"\nwrote {out.relative_to(REPO)}")
    return result


if __name__ == "__main__":
    main()
