"""How well ml.drift.detect_drift tells drift from noise, on the real fixtures (ML core, no server).

    .venv/bin/python -m bench.drift_detection             # 3 datasets, 100 trials per scenario
    .venv/bin/python -m bench.drift_detection --trials 10 --datasets digits
    .venv/bin/python -m bench.drift_detection --scales 1 --tag drift_detection_single   # one median kernel

A drift check compares a reference window (the serving model's training data) with a production
window. With checks on a schedule, both error rates matter: a false alarm sends ordinary samples
to the annotators (with ``drift_auto_flag``, without anyone looking), a missed shift leaves the
model to decay. This benchmark measures, per dataset and scenario, over ``--trials`` random draws:

- **no shift**: reference and production are disjoint random draws of the same data. The share of
  checks with p < 0.05 is the false-alarm rate (a calibrated test gives about 0.05);
- **new class**: production holds a share (5%, 10%, 20%) of one class that the reference never
  saw (a new kind of input). Detection rate (p < 0.05), and the precision of the witnesses: of
  the top ``min(20, injected)`` production samples by witness value, the share that are the new class;
- **prior shift**: production over-represents three classes (each 4x as likely). Detection rate.

Embeddings are the label-free ones (``ml.features``, the same path as the app's first round, cached
in bench/out/cache by bench.label_efficiency's loader): the app's checks use the serving model's
embeddings, which separate classes better, so these rates are a floor for the same window sizes.
Windows: reference 300 samples; production 100 and 300 (the 3D fixture has 800 samples, and the
windows never share or repeat a sample). ``detect_drift`` runs with its defaults
(200 permutations, alpha 0.05, RBF kernels at ``ml.drift.SCALES`` times the median distance and
the novelty statistics at ``ml.drift.NOVELTY_QUANTILES``; ``--scales 1 --novelty none`` measures
the single median-bandwidth kernel of fbfae29, ``--novelty none`` the four kernels of 1c38392).

Prints a table and writes bench/out/<tag>.json (default drift_detection).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench.report import OUT_DIR, print_table, write_report
from ml.drift import NOVELTY_QUANTILES, SCALES

DATASETS = {"digits": {}, "audio": {"n_per_class": 100}, "3d": {"n_per_class": 100}}
N_REF = 300
PROD_SIZES = (100, 300)
NEW_CLASS_SHARES = (0.05, 0.10, 0.20)
PRIOR_BOOST = 4.0
ALPHA = 0.05


def _draw(rng, idx: np.ndarray, n: int) -> np.ndarray:
    if len(idx) < n:  # repeated samples would look like drift to the test
        raise ValueError(f"need {n} distinct samples, have {len(idx)}")
    return rng.choice(idx, size=n, replace=False)


def trial(E: np.ndarray, y: np.ndarray, scenario: str, n_prod: int, share: float, seed: int, scales,
          novelty=NOVELTY_QUANTILES) -> dict:
    """One check: returns {"p", "drifted", "witness_precision" (new class only), "seconds"}."""
    from ml.drift import detect_drift

    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    new = int(rng.choice(classes)) if scenario == "new_class" else None
    pool = np.flatnonzero(y != new) if new is not None else np.arange(len(y))
    ref = _draw(rng, pool, N_REF)
    rest = np.setdiff1d(pool, ref)
    injected = 0
    if scenario == "none":
        prod = _draw(rng, rest, n_prod)
    elif scenario == "new_class":
        injected = max(1, int(round(share * n_prod)))
        prod = np.concatenate([_draw(rng, rest, n_prod - injected), _draw(rng, np.flatnonzero(y == new), injected)])
    elif scenario == "prior":
        boosted = rng.choice(classes, size=3, replace=False)
        w = np.where(np.isin(y[rest], boosted), PRIOR_BOOST, 1.0)
        prod = rng.choice(rest, size=n_prod, replace=False, p=w / w.sum())
    else:
        raise ValueError(scenario)
    t0 = time.perf_counter()
    rep = detect_drift(E[ref], E[prod], top_k=min(20, injected) if injected else 20, scales=scales,
                       novelty_quantiles=novelty, random_state=seed)
    out = {"p": rep.p_value, "drifted": rep.drifted, "seconds": time.perf_counter() - t0,
           "statistic": rep.statistic}
    if injected:
        top = np.asarray(rep.top_drift_indices)
        out["witness_precision"] = float(np.mean(y[prod[top]] == new))
    return out


def run(datasets, trials: int, scales, novelty=NOVELTY_QUANTILES) -> dict:
    from bench._le_data import load_dataset

    results = {}
    scenarios = [("none", 0.0)] + [("new_class", s) for s in NEW_CLASS_SHARES] + [("prior", 0.0)]
    for name in datasets:
        ds = load_dataset(name, cache_dir=OUT_DIR / "cache", **DATASETS[name])
        rows = []
        for scenario, share in scenarios:
            for n_prod in PROD_SIZES:
                got = [trial(ds.embeddings, ds.y, scenario, n_prod, share, seed=1000 * t + 7, scales=scales,
                             novelty=novelty)
                       for t in range(trials)]
                rate = float(np.mean([g["drifted"] for g in got]))
                row = {"scenario": scenario, "share": share, "n_ref": N_REF, "n_prod": n_prod, "trials": trials,
                       "rate_p_below_alpha": rate,
                       # Wilson 95% interval of that rate
                       "rate_ci95": _wilson(rate, trials),
                       "median_p": float(np.median([g["p"] for g in got])),
                       "seconds_per_check": float(np.mean([g["seconds"] for g in got])),
                       # of the checks that fired, the share where a novelty statistic was the largest
                       "novelty_led": float(np.mean([g["statistic"] == "novelty" for g in got if g["drifted"]]))
                       if any(g["drifted"] for g in got) else None}
                if scenario == "new_class":
                    row["witness_precision"] = float(np.mean([g["witness_precision"] for g in got]))
                rows.append(row)
                print(f"  {name:<6} {scenario:<9} {share:>4.0%} prod {n_prod:>3}: p<{ALPHA} in {rate:.0%} of {trials}"
                      + (f", witness precision {row['witness_precision']:.2f}" if "witness_precision" in row else ""),
                      flush=True)
        results[name] = {"n": int(len(ds.y)), "classes": int(ds.n_classes), "rows": rows}
    return results


def _wilson(rate: float, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [0.0, 1.0]
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def timing(scales, dim: int = 128, novelty=NOVELTY_QUANTILES) -> dict:
    """Seconds for one detect_drift call at the app's caps (1,000 vs 1,000, 200 permutations)."""
    from ml.drift import detect_drift

    rng = np.random.default_rng(0)
    R = rng.normal(size=(1000, dim)).astype(np.float32)
    Q = rng.normal(size=(1000, dim)).astype(np.float32)
    detect_drift(R[:50], Q[:50], scales=scales, novelty_quantiles=novelty)  # warm-up
    secs = []
    for s in range(3):
        t0 = time.perf_counter()
        detect_drift(R, Q, scales=scales, novelty_quantiles=novelty, random_state=s)
        secs.append(time.perf_counter() - t0)
    return {"n_ref": 1000, "n_prod": 1000, "dim": dim, "seconds_min": min(secs), "seconds_max": max(secs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--scales", default=",".join(str(c) for c in SCALES),
                    help="bandwidths as multiples of the median distance (default: ml.drift's; 1 = single kernel)")
    ap.add_argument("--novelty", default=",".join(str(q) for q in NOVELTY_QUANTILES),
                    help="novelty quantiles (default: ml.drift's); none = MMD alone, the check before the novelty test was added")
    ap.add_argument("--tag", default="drift_detection", help="output file stem")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    args = ap.parse_args(argv)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(names) - set(DATASETS)
    if unknown or args.trials < 1:
        ap.error(f"datasets must be among {sorted(DATASETS)} and --trials >= 1")
    t0 = time.perf_counter()
    scales = tuple(float(c) for c in args.scales.split(","))
    novelty = () if args.novelty.strip().lower() == "none" else tuple(float(q) for q in args.novelty.split(","))
    results = run(names, args.trials, scales, novelty)
    t = timing(scales, novelty=novelty)
    print(f"\none check at the app's caps (1,000 vs 1,000 x 128, 200 permutations): "
          f"{t['seconds_min']:.2f}-{t['seconds_max']:.2f} s")
    rows = []
    for name, res in results.items():
        for r in res["rows"]:
            label = r["scenario"] + (f" {r['share']:.0%}" if r["scenario"] == "new_class" else "")
            ci = f"{r['rate_p_below_alpha']:.0%} ({r['rate_ci95'][0]:.0%}-{r['rate_ci95'][1]:.0%})"
            wp = f"{r['witness_precision']:.2f}" if "witness_precision" in r else "-"
            rows.append([name, label, r["n_prod"], ci, wp])
    print()
    print_table(["dataset", "scenario", "prod", f"p < {ALPHA} (95% CI)", "witness prec."], rows, align="llrrr")
    out = write_report("drift_detection", {"alpha": ALPHA, "trials": args.trials, "scales": scales,
                                           "novelty_quantiles": novelty, "results": results, "timing": t,
                                           "seconds": time.perf_counter() - t0},
                       path=OUT_DIR / f"{args.tag}.json")
    print(f"\nwrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
