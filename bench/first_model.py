"""The first model: the network alone vs the pipeline's choice (network or linear probe, by validation).

    python -m bench.first_model                       # stress + digits, 20 and 50 labels, 5 seeds
    python -m bench.first_model --datasets stress --labels 20 --seeds 5 --epochs 40
    python -m bench.first_model --rounds 5 --seeds 10  # auto vs random: 5 rounds of 30 labels from none

Protocol (per dataset, seed and label count n): a stratified held-out third of the fixture is the test set; n
training labels are drawn uniformly from the rest (seeded); then, exactly as the built-in pipeline's train step
(:func:`apps.training.services._train`, no val split, so the CV path) does it:

- **network**: :func:`ml.training.train_classifier` with early stopping on every 7th training sample;
- **probe**: :func:`ml.learners.probe.fit_linear_probe` on the label-free embeddings of all n;
- **choice**: :func:`ml.learners.probe.cross_validate_choice` (3-fold CV of both on the n labels), then the chosen
  model's test accuracy (the network's when it is chosen, the probe's otherwise).

Prints a table (mean, min-max over seeds, how often the probe was chosen) and writes
``bench/out/first_model.json``. One torch thread.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402

from bench.report import OUT_DIR  # noqa: E402

FIXTURES = {"stress": ("fixtures.stress", "stress_pngs", (60, 0)), "digits": ("fixtures.digits", "digits_pngs", ())}


def _data(name: str):
    import importlib

    from ml import modalities
    from ml.features import label_free_embeddings

    module, fn, args = FIXTURES[name]
    items = getattr(importlib.import_module(module), fn)(*args)
    X = modalities.get("image").load_batch([b for b, _ in items])
    y = np.asarray([c for _, c in items], dtype=np.int64)
    return X, label_free_embeddings("image", X), y


def one(X, E, y, n: int, seed: int, epochs: int) -> dict:
    from sklearn.model_selection import StratifiedShuffleSplit

    from ml.learners.probe import cross_validate_choice, fit_linear_probe
    from ml.training import TrainConfig, train_classifier

    pool, test = next(StratifiedShuffleSplit(n_splits=1, test_size=1 / 3, random_state=seed).split(y, y))
    lab = np.random.default_rng([seed, 1]).choice(pool, size=n, replace=False)
    config = TrainConfig(epochs=epochs, seed=seed)
    t0 = time.perf_counter()
    hold = np.arange(n) % 7 == 0
    net = train_classifier("image", X[lab[~hold]], y[lab[~hold]], X[lab[hold]], y[lab[hold]], n_classes=10,
                           config=config)
    net_acc = float(np.mean(net.predict_proba(X[test]).argmax(axis=1) == y[test]))
    net_s = time.perf_counter() - t0
    W, b = fit_linear_probe(E[lab], y[lab], 10)
    probe_acc = float(np.mean((E[test] @ W.T + b).argmax(axis=1) == y[test]))
    t0 = time.perf_counter()
    choice = cross_validate_choice("image", X[lab], E[lab], y[lab], 10, train_config=config, random_state=seed)
    cv_s = time.perf_counter() - t0
    return {"seed": seed, "n": n, "network": net_acc, "probe": probe_acc, "chosen": choice.chosen,
            "chosen_accuracy": probe_acc if choice.chosen == "probe" else net_acc, "choice": choice.to_dict(),
            "network_seconds": net_s, "cv_seconds": cv_s}


def _proto(name: str):
    from bench._le_proto import select_proto

    return partial(select_proto, name)


def rounds_curve(strategy: str, E: np.ndarray, y: np.ndarray, seed: int, *, rounds: int = 5, batch: int = 30,
                 **options) -> list[float]:
    """The issue's loop on label-free embeddings: no label at first, then ``rounds`` rounds of ``batch`` labels
    picked by ``strategy`` (``ml.selection.select``; after the first round with the probe's probabilities, as the
    app's rounds are scored by a deployed probe), the probe refitted after each round; its test accuracy after
    each round."""
    from sklearn.model_selection import StratifiedShuffleSplit

    from ml.learners.probe import fit_linear_probe
    from ml.selection import select

    pool, test = next(StratifiedShuffleSplit(n_splits=1, test_size=1 / 3, random_state=seed).split(y, y))
    Ep, yp = E[pool], y[pool]
    labeled: list[int] = []
    accs = []
    W = b = None
    for r in range(rounds):
        unl = np.setdiff1d(np.arange(len(yp)), labeled)
        probs = None
        if W is not None:
            Z = Ep[unl] @ W.T + b
            Z = np.exp(Z - Z.max(axis=1, keepdims=True))
            probs = (Z / Z.sum(axis=1, keepdims=True)).astype(np.float32)
        extra = {"labeled_embeddings": Ep[labeled]} if labeled else {}
        sel = (_proto(strategy[len("proto:"):]) if strategy.startswith("proto:") else partial(select, strategy))(
                     budget=batch, embeddings=Ep[unl], probs=probs,
                     labeled_counts=np.bincount(yp[labeled], minlength=10) if labeled else np.zeros(10, np.int64),
                     n_classes=10, random_state=seed * 1009 + r, **extra, **options)
        labeled.extend(int(i) for i in unl[np.asarray(sel.indices)])
        lab = np.asarray(labeled)
        if len(np.unique(yp[lab])) >= 2:
            W, b = fit_linear_probe(Ep[lab], yp[lab], 10)
            accs.append(float(np.mean((E[test] @ W.T + b).argmax(axis=1) == y[test])))
        else:
            accs.append(float(np.mean(y[test] == yp[lab][0])))
    return accs


def main_rounds(args) -> int:
    """``--rounds``: auto vs random, the issue's protocol (rounds of 30 from no label), per seed."""
    out = {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        _, E, y = _data(name)
        rows = []
        for seed in range(args.seeds):
            a = rounds_curve("auto", E, y, seed, rounds=args.rounds)
            r = rounds_curve("random", E, y, seed, rounds=args.rounds)
            rows.append({"seed": seed, "auto": a, "random": r})
            print(f"{name:7s} seed={seed}: auto {' '.join(f'{v:.3f}' for v in a)} (mean {np.mean(a):.3f})  "
                  f"random {' '.join(f'{v:.3f}' for v in r)} (mean {np.mean(r):.3f})  "
                  f"{'auto >= random' if np.mean(a) >= np.mean(r) else 'AUTO BELOW RANDOM'}", flush=True)
        A, R = np.asarray([x["auto"] for x in rows]), np.asarray([x["random"] for x in rows])
        print(f"{name:7s} mean per round: auto {np.round(A.mean(0), 3).tolist()}  random {np.round(R.mean(0), 3).tolist()}; "
              f"auto's 5-round mean below random's on {int(np.sum(A.mean(1) < R.mean(1)))}/{len(rows)} seeds, "
              f"below at some round on {int(np.sum((A < R).any(1)))}/{len(rows)}")
        out[name] = rows
    path = args.out.replace(".json", "_rounds.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"\nwrote {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="stress,digits")
    ap.add_argument("--labels", default="20,50", help="training label counts, comma-separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40, help="the network's epochs (the app's default: 40)")
    ap.add_argument("--out", default=str(OUT_DIR / "first_model.json"))
    ap.add_argument("--rounds", type=int, default=0,
                    help="instead: auto vs random over this many rounds of 30 labels from none (the probe as model)")
    args = ap.parse_args(argv)
    if args.rounds:
        return main_rounds(args)
    import torch

    torch.set_num_threads(1)
    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        X, E, y = _data(name)
        for n in [int(v) for v in args.labels.split(",")]:
            for seed in range(args.seeds):
                r = {"dataset": name, **one(X, E, y, n, seed, args.epochs)}
                rows.append(r)
                print(f"{name:7s} n={n:3d} seed={seed}: network {r['network']:.3f} probe {r['probe']:.3f} "
                      f"chosen {r['chosen']:5s} -> {r['chosen_accuracy']:.3f}  ({r['choice']['why']})", flush=True)
    print("\ndataset  labels  network (min-max)       probe (min-max)         choice (min-max)        probe chosen")
    summary = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for n in dict.fromkeys(r["n"] for r in rows if r["dataset"] == name):
            sub = [r for r in rows if r["dataset"] == name and r["n"] == n]

            def fmt(key):
                v = np.asarray([r[key] for r in sub])
                return f"{v.mean():.3f} ({v.min():.2f}-{v.max():.2f})", float(v.mean()), float(v.min()), float(v.max())

            net, probe, chosen = fmt("network"), fmt("probe"), fmt("chosen_accuracy")
            k = sum(r["chosen"] == "probe" for r in sub)
            print(f"{name:8s} {n:6d}  {net[0]:22s}  {probe[0]:22s}  {chosen[0]:22s}  {k}/{len(sub)}")
            summary.append({"dataset": name, "labels": n, "network": net[1:], "probe": probe[1:],
                            "chosen": chosen[1:], "probe_chosen": k, "seeds": len(sub),
                            "cv_seconds_mean": float(np.mean([r["cv_seconds"] for r in sub]))})
    out = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "epochs": args.epochs,
           "summary": summary, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
