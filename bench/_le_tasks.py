"""Label efficiency for the task types beyond classification: ``python -m bench.label_efficiency --task T``.

    python -m bench.label_efficiency --task detection --quick     # also regions, segmentation, cuboids

Protocol (per task and seed; both strategies see the same pool, test set and first labels: paired):

- data: the task's fixture as stored bytes (PNG scenes, WAV clips, PLY clouds) with their targets: a pool
  of ``pool`` items and a held-out test set of ``test`` items drawn with other fixture seeds (regions: the
  test clips are spoken by unseen voices, ``fixtures.regions.TEST_INSTANCES``);
- ``initial`` random labels, then ``rounds`` batches of ``batch``: after every batch the task's default
  learner (``ml.learners.get(modality, task_type)`` with the small config below) is trained from scratch on
  the labeled items and scored on the test set with its own ``evaluate()`` (the primary metric);
- strategies: ``auto`` = :func:`ml.selection.uncertain_diverse` on the learner's ``predict()`` of the
  unlabeled pool (per-sample ``uncertainty`` and ``embedding``), ``random`` = a uniform batch;
- figures: the mean curve over seeds of each strategy; labels ``auto`` needs to reach random's final mean
  metric (linear interpolation, :func:`bench._le_metrics.labels_to_reach`) and % fewer than random's
  labels; whether ``auto`` >= random - 1 point at every round (on the mean); the paired per-seed difference
  at the last round.

Output: a table on stdout, ``bench/out/label_efficiency_<task>[_quick].json`` (report envelope, per seed
too) and ``bench/out/label_efficiency_<task>[_quick].png`` (metric vs labels, mean over seeds).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from bench._le_metrics import labels_to_reach, mean_std, pct_fewer
from bench.report import OUT_DIR, REPO, format_table, write_report

TASKS = ("detection", "regions", "segmentation", "cuboids")
STRATEGIES = ("auto", "random")


@dataclass(frozen=True)
class TaskConfig:
    task: str
    pool: int
    test: int
    initial: int
    batch: int
    rounds: int
    learner: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    variant: str | None = None  # the fixture's variant (None: its default)
    diversity_factor: float = 5.0
    quick: bool = False


def _detection(n: int, seed: int, variant: str | None, test: bool):
    from fixtures.detection import detection_scenes

    return detection_scenes(n, seed=seed, variant=variant or "main", labels=("0", "1", "4", "7"))


def _regions(n: int, seed: int, variant: str | None, test: bool):
    from fixtures.regions import TEST_INSTANCES, TRAIN_INSTANCES, region_clips

    return region_clips(n, seed=seed, variant=variant or "quiet", instances=TEST_INSTANCES if test else TRAIN_INSTANCES)


def _segmentation(n: int, seed: int, variant: str | None, test: bool):
    from fixtures.shapes import part_items

    return part_items(n, seed, variant or "default")


def _cuboids(n: int, seed: int, variant: str | None, test: bool):
    from fixtures.cuboids import cuboid_scenes

    return cuboid_scenes(n, seed, variant or "default")


def _labels(task: str) -> tuple[str, ...]:
    if task == "detection":
        return ("0", "1", "4", "7")
    if task == "regions":
        from fixtures.regions import REGION_LABELS
        return tuple(REGION_LABELS)
    if task == "segmentation":
        from fixtures.shapes import PART_LABELS
        return tuple(PART_LABELS)
    from fixtures.cuboids import CUBOID_LABELS
    return tuple(CUBOID_LABELS)


# task -> (modality, task type, fixture maker(n, seed, variant, test))
SPECS: dict[str, tuple[str, str, Callable]] = {
    "detection": ("image", "detection", _detection),
    "regions": ("audio", "audio_regions", _regions),
    "segmentation": ("pointcloud", "point_segmentation", _segmentation),
    "cuboids": ("pointcloud", "cuboids", _cuboids),
}

# small learner configs (the learners' test-suite sizes) so a quick run of one task takes minutes on 2 cores
_LEARNER = {
    # 40 epochs (the learner's default): at 8-40 images an epoch is 1-3 steps, and 15 epochs (the test's, on
    # 120 images) left mAP@0.5 near 0 up to 32 labels in the first quick run
    "detection": dict(image_size=64, width=16, epochs=40, batch_size=16, lr=5e-3),
    "regions": dict(epochs=12, batch_size=8, width=32),
    "segmentation": dict(epochs=6, n_points=256, draws=1, batch_size=8, arch={"global_dim": 128, "embed_dim": 64}),
    "cuboids": dict(epochs=10, n_points=512, draws=2, batch_size=4, arch={"global_dim": 128, "embed_dim": 64}),
}

QUICK = {t: TaskConfig(t, pool=80, test=30, initial=8, batch=8, rounds=4, learner=_LEARNER[t], seeds=(0, 1, 2),
                       quick=True) for t in TASKS}
FULL = {t: TaskConfig(t, pool=150, test=60, initial=10, batch=10, rounds=6, learner=_LEARNER[t],
                      seeds=tuple(range(5))) for t in TASKS}


def _dataset(items, labels):
    from ml.learners import Dataset

    return Dataset(contents=[c for c, _ in items], targets=[t for _, t in items], labels=labels)


def _fit_eval(cls, cfg: TaskConfig, pool_ds, test_ds, labeled: np.ndarray, seed: int):
    t0 = time.perf_counter()
    learner = cls(**cfg.learner, random_state=seed).fit(pool_ds.subset(np.sort(labeled)))
    fit_s = time.perf_counter() - t0
    rep = learner.evaluate(test_ds)
    return learner, rep, fit_s


def run_seed(cfg: TaskConfig, seed: int, log=print) -> dict:
    """Both strategies' curves on one seed (same pool, test set and initial labels)."""
    from ml.learners import get
    from ml.selection import uncertain_diverse

    modality, task_type, make = SPECS[cfg.task]
    labels = _labels(cfg.task)
    cls = get(modality, task_type)
    pool_ds = _dataset(make(cfg.pool, 1000 + seed, cfg.variant, False), labels)
    test_ds = _dataset(make(cfg.test, 2000 + seed, cfg.variant, True), labels)
    rng = np.random.default_rng([seed, 13])
    initial = np.sort(rng.choice(cfg.pool, size=cfg.initial, replace=False))
    learner0, rep0, fit0 = _fit_eval(cls, cfg, pool_ds, test_ds, initial, seed)
    out = {"seed": seed, "primary": rep0.primary, "strategies": {}}
    for strategy in STRATEGIES:
        labeled = initial.copy()
        learner, rep, fit_s = learner0, rep0, fit0
        ns, values, fits, select_s = [len(labeled)], [float(rep.metrics[rep.primary])], [fit_s], []
        for r in range(cfg.rounds):
            rest = np.setdiff1d(np.arange(cfg.pool), labeled)
            if len(rest) == 0:
                break
            t0 = time.perf_counter()
            if strategy == "auto":
                pred = learner.predict([pool_ds.contents[i] for i in rest])
                pick = uncertain_diverse(pred.uncertainty, pred.embedding, cfg.batch,
                                         diversity_factor=cfg.diversity_factor, random_state=seed * 1000 + r)
                new = rest[pick]
            else:
                new = np.random.default_rng([seed, 17, r]).choice(rest, size=min(cfg.batch, len(rest)), replace=False)
            select_s.append(time.perf_counter() - t0)
            labeled = np.concatenate([labeled, new])
            learner, rep, fit_s = _fit_eval(cls, cfg, pool_ds, test_ds, labeled, seed)
            ns.append(len(labeled))
            values.append(float(rep.metrics[rep.primary]))
            fits.append(fit_s)
        out["strategies"][strategy] = {"ns": ns, "values": values, "fit_seconds": fits, "select_seconds": select_s}
        log(f"  {cfg.task} seed {seed} {strategy}: " + ", ".join(f"{n}: {v:.3f}" for n, v in zip(ns, values)))
    return out


def aggregate(cfg: TaskConfig, units: list[dict]) -> dict:
    res: dict = {"primary": units[0]["primary"], "seeds": [u["seed"] for u in units], "strategies": {}}
    for s in STRATEGIES:
        curves = np.asarray([u["strategies"][s]["values"] for u in units], dtype=float)
        fits = [f for u in units for f in u["strategies"][s]["fit_seconds"]]
        selects = [f for u in units for f in u["strategies"][s]["select_seconds"]]
        res["strategies"][s] = {"ns": units[0]["strategies"][s]["ns"], "mean": curves.mean(axis=0).tolist(),
                                "std": curves.std(axis=0).tolist(), "fit_seconds_mean": float(np.mean(fits)),
                                "select_seconds_mean": float(np.mean(selects or [0.0]))}
    a, r = res["strategies"]["auto"], res["strategies"]["random"]
    ns = a["ns"]
    target = r["mean"][-1]
    needed = labels_to_reach(ns, a["mean"], target)
    diff_pts = [100.0 * (x - y) for x, y in zip(a["mean"], r["mean"])]
    per_seed_final = [100.0 * (u["strategies"]["auto"]["values"][-1] - u["strategies"]["random"]["values"][-1])
                      for u in units]
    per_seed_pct = []
    for u in units:
        ua, ur = u["strategies"]["auto"], u["strategies"]["random"]
        per_seed_pct.append(pct_fewer(labels_to_reach(ua["ns"], ua["values"], ur["values"][-1]), ur["ns"][-1]))
    res["figures"] = {
        "random_final": target,
        "auto_final": a["mean"][-1],
        "labels_auto_needs_for_random_final": needed,
        "random_labels": ns[-1],
        "pct_fewer_labels": pct_fewer(needed, ns[-1]),
        "auto_minus_random_points_by_round": diff_pts,
        "auto_ge_random_minus_1pt_every_round": bool(all(d >= -1.0 - 1e-9 for d in diff_pts)),
        "final_diff_points_per_seed": per_seed_final,
        "final_diff_points": mean_std(per_seed_final),
        "pct_fewer_per_seed": per_seed_pct,
    }
    return res


def plot(cfg: TaskConfig, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for s, style in (("auto", {"color": "black", "lw": 2.4}), ("random", {"color": "tab:red", "lw": 2.0, "ls": "--"})):
        st = res["strategies"][s]
        ns, m, sd = np.asarray(st["ns"]), 100 * np.asarray(st["mean"]), 100 * np.asarray(st["std"])
        ax.plot(ns, m, marker="o", label=s, **style)
        ax.fill_between(ns, m - sd, m + sd, color=style["color"], alpha=0.12, lw=0)
    ax.axhline(100 * res["figures"]["random_final"], color="tab:red", lw=0.8, ls=":")
    ax.set_xlabel("labeled items")
    ax.set_ylabel(f"test {res['primary']} (x100)")
    ax.set_title(f"{cfg.task}: {res['primary']} vs labels (mean ± std, {len(res['seeds'])} seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_table_task(cfg: TaskConfig, res: dict) -> str:
    a, r = res["strategies"]["auto"], res["strategies"]["random"]
    rows = [[n, 100 * x, 100 * sx, 100 * y, 100 * sy, 100 * (x - y)]
            for n, x, sx, y, sy in zip(a["ns"], a["mean"], a["std"], r["mean"], r["std"])]
    f = res["figures"]
    t = format_table(["labels", "auto", "± std", "random", "± std", "auto - random"], rows,
                     title=f"{cfg.task}: test {res['primary']} x100 (mean over {len(res['seeds'])} seeds)")
    pf = f["pct_fewer_labels"]
    reach = (f"{f['labels_auto_needs_for_random_final']:.1f} labels ({pf:.1f}% fewer)" if pf is not None
             else "- (not reached)")
    per_seed = ", ".join(f"{d:+.1f}" for d in f["final_diff_points_per_seed"])
    t += (f"\nrandom's final {res['primary']}: {100 * f['random_final']:.1f} at {f['random_labels']} labels; "
          f"auto reaches it at {reach}"
          f"\nauto >= random - 1 point at every round (mean): {f['auto_ge_random_minus_1pt_every_round']}"
          f"\nlast round, auto - random per seed (points): {per_seed}")
    return t


def run_task(cfg: TaskConfig, *, out_dir: Path = OUT_DIR, tag: str | None = None, jobs: int = 1, log=print) -> dict:
    """Run one task's benchmark, write its JSON and PNG, return the report (with ``json`` and ``png`` paths)."""
    import torch

    from ml.training import resolve_device

    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    # one torch thread per process: these small nets train faster on one thread than on two on 2 cores
    torch.set_num_threads(max(1, int(os.environ.get("BENCH_TORCH_THREADS", "1"))))
    try:
        if jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=jobs) as ex:
                units = list(ex.map(_run_seed_quiet, [(cfg, s) for s in cfg.seeds]))
        else:
            units = [run_seed(cfg, s, log=log) for s in cfg.seeds]
        torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    res = aggregate(cfg, units)
    tag = tag or f"label_efficiency_{cfg.task}" + ("_quick" if cfg.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{tag}.png"
    plot(cfg, res, png)
    modality, task_type, _ = SPECS[cfg.task]
    device = resolve_device(cfg.learner.get("device", "auto"))
    report = {
        "task": cfg.task, "modality": modality, "task_type": task_type, "quick": cfg.quick,
        "config": {**asdict(cfg), "learner_class": None, "strategies": list(STRATEGIES),
                   "acquisition": f"ml.selection.uncertain_diverse(diversity_factor={cfg.diversity_factor})"},
        "seconds": time.perf_counter() - t_start,
        "results": res,
        "per_seed": units,
        "plot": str(png.relative_to(REPO) if png.is_relative_to(REPO) else png),
    }
    from ml.learners import get

    report["config"]["learner_class"] = get(modality, task_type).__name__
    path = write_report("label_efficiency", report, path=out_dir / f"{tag}.json",
                        machine={"device": str(device), "torch_threads": torch_threads, "jobs": jobs})
    report["json"] = str(path)
    report["png"] = str(png)
    return report


def _run_seed_quiet(args) -> dict:
    import torch

    torch.set_num_threads(1)
    cfg, seed = args
    return run_seed(cfg, seed, log=lambda m: None)


def config_for(task: str, *, quick: bool, seeds: int | None = None, variant: str | None = None) -> TaskConfig:
    cfg = (QUICK if quick else FULL)[task]
    kw = {}
    if seeds:
        kw["seeds"] = tuple(range(seeds))
    if variant:
        kw["variant"] = variant
    return replace(cfg, **kw) if kw else cfg
