"""Selection at scale: pick 1,000 samples from a pool of 1,000,000 cached 128-d float32 embeddings.

    .venv/bin/python -m bench.selection_scale            # 1M pool, budget 1000
    .venv/bin/python -m bench.selection_scale --n 200000 # smaller pool

The pool is synthetic but clustered (seeded Gaussian blobs of unequal sizes), cached as .npy under
bench/out/cache/ so later runs only load it. Two phases of strategy "auto" are timed:

- cold start (no model): k-means cold start,
- model phase (probs given, every class >= 3 labels): margin with batch diversity.

For each: wall time and CPU time of the select() call (first call, then the median of --repeat
warm calls), and peak additional memory during the call, sampled from the process RSS every 2 ms
(faiss allocates outside Python, so tracemalloc alone would miss it) and from tracemalloc for numpy.
Targets: <= 5 s per call, peak additional memory <= 2x the embedding matrix (512 MB at 1M x 128).
Also reports selection quality: distinct blobs covered (cold start) vs random, and mean uncertainty
and blob coverage of the model-phase batch vs plain top-margin.

Prints a table and writes bench/out/selection_scale.json.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import tracemalloc

import numpy as np

from bench.report import OUT_DIR, REPO, loadavg, machine_info, median, print_table, write_report

CACHE_DIR = OUT_DIR / "cache"
PAGE = os.sysconf("SC_PAGE_SIZE")


def make_pool(n: int, dim: int, n_blobs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered embeddings (n, dim) float32 and the blob id of each row; cached on disk."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"pool_{n}_{dim}_{n_blobs}_{seed}.npy"
    lab_path = path.with_suffix(".blobs.npy")
    if path.exists() and lab_path.exists():
        return np.load(path), np.load(lab_path)
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(n_blobs, dim)).astype(np.float32)  # as in _blob_params
    weights = rng.pareto(1.5, n_blobs) + 0.05  # unequal blob sizes, a long tail of small ones
    lab = rng.choice(n_blobs, size=n, p=weights / weights.sum()).astype(np.int32)
    X = np.empty((n, dim), np.float32)
    step = 100_000
    for s in range(0, n, step):
        X[s: s + step] = rng.standard_normal((min(step, n - s), dim), dtype=np.float32)
        X[s: s + step] += centres[lab[s: s + step]]
    np.save(path, X)
    np.save(lab_path, lab)
    return X, lab


def _blob_params(dim: int, n_blobs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """make_pool's blob centres and blob probabilities (its generator's first two draws)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(n_blobs, dim)).astype(np.float32)
    weights = rng.pareto(1.5, n_blobs) + 0.05
    return centres, weights / weights.sum()


def make_queries(n: int, dim: int, n_blobs: int, seed: int) -> np.ndarray:
    """Fresh samples from make_pool's distribution (same blobs, same blob sizes): held-out queries."""
    centres, p = _blob_params(dim, n_blobs, seed)
    rng = np.random.default_rng(seed + 1000)
    lab = rng.choice(n_blobs, size=n, p=p)
    return (centres[lab] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def make_probs(blobs: np.ndarray, n_blobs: int, n_classes: int, seed: int) -> np.ndarray:
    """Model probabilities (n, C): each blob has a main class and a sharpness; some blobs are ambiguous."""
    rng = np.random.default_rng(seed + 1)
    main = rng.integers(0, n_classes, n_blobs)
    second = (main + rng.integers(1, n_classes, n_blobs)) % n_classes
    sharp = rng.uniform(0.5, 6.0, n_blobs).astype(np.float32)
    n = len(blobs)
    P = np.empty((n, n_classes), np.float32)
    step = 200_000
    for s in range(0, n, step):
        b = blobs[s: s + step]
        logits = rng.standard_normal((len(b), n_classes), dtype=np.float32) * 0.7
        logits[np.arange(len(b)), main[b]] += sharp[b]
        logits[np.arange(len(b)), second[b]] += sharp[b] * 0.8
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        P[s: s + step] = logits
    return P


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Samples the process RSS in a thread; ``peak - start`` is the additional memory of the block."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval

    def __enter__(self):
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra(self) -> int:
        return self.peak - self.start


def run_phase(name: str, fn, repeat: int) -> dict:
    runs = []
    sel = None
    for _ in range(1 + repeat):
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            sel = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs.append({"wall_s": wall, "cpu_s": cpu, "rss_extra_mb": mem.extra / 2**20})
    tracemalloc.start()
    fn()
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    warm = runs[1:] or runs
    return {
        "phase": name,
        "strategy": sel.strategy,
        "selected": int(len(sel.indices)),
        "first_wall_s": runs[0]["wall_s"],
        "wall_s": median(r["wall_s"] for r in warm),
        "cpu_s": median(r["cpu_s"] for r in warm),
        "rss_extra_mb": max(r["rss_extra_mb"] for r in runs),
        "tracemalloc_peak_mb": tm_peak / 2**20,
        "runs": runs,
        "_selection": sel,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--blobs", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2, help="warm runs after the first call")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from ml.selection import margin, select

    t0 = time.perf_counter()
    X, blobs = make_pool(args.n, args.dim, args.blobs, args.seed)
    P = make_probs(blobs, args.blobs, args.classes, args.seed)
    prep_s = time.perf_counter() - t0
    matrix_mb = X.nbytes / 2**20
    labeled = np.full(args.classes, 5)

    cold = run_phase("cold start", lambda: select("auto", budget=args.budget, embeddings=X, random_state=1), args.repeat)
    model = run_phase(
        "model (margin)",
        lambda: select("auto", budget=args.budget, embeddings=X, probs=P, labeled_counts=labeled, random_state=1),
        args.repeat,
    )

    # selection quality
    rng = np.random.default_rng(args.seed)
    cov_cold = len(np.unique(blobs[cold["_selection"].indices]))
    cov_random = float(np.mean([len(np.unique(blobs[rng.choice(args.n, args.budget, replace=False)])) for _ in range(5)]))
    u = margin(P)
    top_plain = np.argpartition(-u, args.budget - 1)[: args.budget]
    sel_m = model["_selection"].indices
    quality = {
        "blobs_total": int(len(np.unique(blobs))),
        "cold_start_blobs_covered": int(cov_cold),
        "random_blobs_covered_mean": cov_random,
        "model_batch_mean_uncertainty": float(u[sel_m].mean()),
        "plain_margin_mean_uncertainty": float(u[top_plain].mean()),
        "pool_mean_uncertainty": float(u.mean()),
        "model_batch_blobs_covered": int(len(np.unique(blobs[sel_m]))),
        "plain_margin_blobs_covered": int(len(np.unique(blobs[top_plain]))),
    }
    for ph in (cold, model):
        ph.pop("_selection")
        ph["rss_extra_x_matrix"] = ph["rss_extra_mb"] / matrix_mb
        ph["meets_time_target"] = ph["wall_s"] <= 5.0
        ph["meets_memory_target"] = ph["rss_extra_mb"] <= 2 * matrix_mb

    load = loadavg()
    result = {
        "n": args.n,
        "dim": args.dim,
        "budget": args.budget,
        "embedding_matrix_mb": matrix_mb,
        "data_prep_s": prep_s,
        "phases": [cold, model],
        "quality": quality,
    }

    print(f"\nselect('auto', budget={args.budget}) on {args.n:,} x {args.dim} float32 embeddings "
          f"({matrix_mb:.0f} MB), {machine_info()['cpus']} CPUs, load average {load[0] if load else float('nan'):.1f}")
    print_table(["phase", "strategy", "first s", "wall s", "cpu s", "+RSS MB", "x matrix", "tracemalloc MB"],
                [[ph["phase"], ph["strategy"], f"{ph['first_wall_s']:.2f}", f"{ph['wall_s']:.2f}", f"{ph['cpu_s']:.2f}",
                  f"{ph['rss_extra_mb']:.0f}", f"{ph['rss_extra_x_matrix']:.2f}", f"{ph['tracemalloc_peak_mb']:.0f}"]
                 for ph in (cold, model)], align="llrrrrrr")
    print("targets: wall <= 5 s, additional memory <= 2x the matrix")
    q = quality
    print(f"\ncold start covers {q['cold_start_blobs_covered']} of {q['blobs_total']} blobs "
          f"(random: {q['random_blobs_covered_mean']:.0f});")
    print(f"model batch: mean margin-uncertainty {q['model_batch_mean_uncertainty']:.3f} "
          f"(plain top-margin {q['plain_margin_mean_uncertainty']:.3f}, pool {q['pool_mean_uncertainty']:.3f}), "
          f"blobs covered {q['model_batch_blobs_covered']} (plain top-margin {q['plain_margin_blobs_covered']})")
    out = write_report("selection_scale", result, path=OUT_DIR / "selection_scale.json")
    print(f"\nwrote {out.relative_to(REPO)}")
    return result


if __name__ == "__main__":
    main()
