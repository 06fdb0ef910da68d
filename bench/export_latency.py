"""Serving runtimes compared: torch eager vs onnxruntime fp32 vs onnxruntime int8 (dynamic, static).

    python -m bench.export_latency [--quick] [--threads 2] [--rounds 3] [--models ...] [--learners ...]

For each of the three models (image CNN, audio CNN, PointNet classifier), trained briefly on the
project's real fixtures (scikit-learn digits as PNGs, espeak-ng spoken digits as WAVs, open3d
shape primitives as PLYs), each decoded through the same ``ml.modalities`` loaders the app uses:

- exports to ONNX (fp32), quantizes to int8 (dynamic: FC layers; static QDQ: convs + FC,
  calibrated on 256 training samples), checks parity with torch and accuracy on a held-out split;
- times the serving path of each runtime (``TrainedModel.predict_and_embed`` for torch,
  ``OnnxClassifier.run`` for onnxruntime; both return probabilities and embeddings) at batch 1 and
  64, with ``--threads`` threads, after warm-up, each runtime alone in a fresh process (so no
  thread pools compete), in ``--rounds`` rounds interleaved across runtimes; the round with the
  median p50 is reported, which is robust to other load on the machine;
- reports memory as the peak RSS of that serving process (imports + model + timing), so torch
  vs torch-free serving shows, and the peak RSS growth while timing;
- applies the deployment rule (:func:`ml.export.choose_runtime`: int8 only when >= 1.2x faster
  at every batch size with <= 1 accuracy point lost).

If a fixture cannot be built (e.g. espeak-ng missing) that model is benchmarked with random
initial weights on random inputs and the table says so.

Then every other learner of ``ml.learners`` (``--learners``, all four by default: ``CenterNetDetector``,
``FrameRegionLearner``, ``PointNetSegmentationLearner``, ``SegmentFitCuboidLearner``), each fitted briefly on its
task's fixture (the data builders of :mod:`bench._le_tasks`), exported with ``export_onnx()`` and checked with
``parity()`` on the items it is timed on, then timed at batch 1 and 16 (``--learner-batches``):

- end to end: ``learner.predict(contents)`` (torch) vs the runner ``ml.learners.runners.onnx_runner`` builds from
  the export (``runner.predict(contents)``, onnxruntime fp32 with the runner's own session options) on the same
  stored bytes: loading, the network and the shared numpy decoding;
- network only: the torch network vs the onnxruntime session on the same preprocessed input (one forward of what
  ``predict`` feeds its network; detection's ``predict`` runs two, image and mirror), and the network's share of
  end to end, which bounds what a faster runtime can gain end to end;
- each runtime in a fresh process as above (``--inprocess``: all in this process, torch threads = ``--threads``),
  torch with ``--threads`` threads and with one, the speed-up against the faster of the two.

Prints tables and writes ``bench/out/export_latency.json`` (``results``: the classifiers; ``learners``: a row per
learner).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench.report import OUT_DIR, REPO, median, print_table, write_report

TARGET_ORT_SPEEDUP_B1 = 1.5


# --------------------------------------------------------------------------------------------
# data: the project's real fixtures through the app's loaders


def _split(X: np.ndarray, y: np.ndarray, seed: int, n_val: int, n_test: int):
    perm = np.random.default_rng(seed).permutation(len(X))
    te, va, tr = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return (X[tr], y[tr]), (X[va], y[va]), (X[te], y[te])


def image_data(quick: bool):
    from fixtures.digits import digits_pngs
    from ml.modalities.image import load_images

    items = digits_pngs()
    if quick:
        items = items[:900]
    X = load_images([b for b, _ in items])
    y = np.array([c for _, c in items], dtype=np.int64)
    return X, y, 10, "fixtures.digits (scikit-learn digits as PNG) -> ml.modalities.image.load_images"


def audio_data(quick: bool):
    from fixtures.speech import espeak_available, spoken_digits
    from ml.modalities.audio import load_audio_batch

    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed")
    items = spoken_digits(n_per_class=15 if quick else 30)
    X = load_audio_batch([b for b, _ in items])
    y = np.array([c for _, c in items], dtype=np.int64)
    return X, y, 10, "fixtures.speech (espeak-ng spoken digits, WAV) -> ml.modalities.audio.load_audio_batch"


def pointcloud_data(quick: bool):
    from fixtures.shapes import SHAPE_LABELS, shapes
    from ml.modalities.pointcloud import load_points_batch

    items = shapes(n_per_class=12 if quick else 25, n_points=2048, fmt="ply")
    X = load_points_batch([b for b, _ in items], n_points=1024)
    y = np.array([c for _, c in items], dtype=np.int64)
    return X, y, len(SHAPE_LABELS), "fixtures.shapes (open3d primitives, PLY) -> ml.modalities.pointcloud.load_points_batch"


RANDOM_SHAPES = {"image": (3, 32, 32), "audio": (1, 64, 101), "pointcloud": (1024, 3)}


def random_data(modality: str, n: int = 300, n_classes: int = 10):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, *RANDOM_SHAPES[modality])).astype(np.float32)
    return X, rng.integers(0, n_classes, n).astype(np.int64), n_classes


# --------------------------------------------------------------------------------------------
# timing and memory in a fresh serving process per runtime


def worker_main(kind: str, model_path: str, npy: str, threads: int, seconds: float) -> None:
    """One runtime alone in this process: load, time at batch 1 and 64, report peak RSS (JSON line)."""
    X = np.load(npy)
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
        from ml.training import TrainedModel

        model = TrainedModel.load(model_path)
        runner = model.predict_and_embed
    else:
        from ml.export import OnnxClassifier

        model = OnnxClassifier(model_path, threads=threads)
        runner = model.run
    from ml.serving import measure_latency

    stats = measure_latency(runner, X, batch_sizes=(1, 64), warmup=5, min_seconds=seconds)
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    print(
        json.dumps(
            {
                "latency": stats,
                "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
                "torch_imported": "torch" in sys.modules,
            }
        )
    )


def run_worker(kind: str, model_path: Path, npy: Path, threads: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.export_latency", "--worker", kind, str(model_path), str(npy), str(threads), str(seconds)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker for {model_path.name} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# one model


def _median_round(rounds: list[dict]) -> dict:
    """Per batch size, the round whose p50 is the median of the rounds' p50s."""
    out = {}
    for bs in rounds[0]:
        ranked = sorted((r[bs] for r in rounds), key=lambda s: s["p50_ms"])
        out[bs] = dict(ranked[len(ranked) // 2], rounds_p50_ms=[round(s["p50_ms"], 4) for s in ranked])
    return out


def bench_model(modality: str, args, workdir: Path) -> dict:
    import torch

    from ml.export import (
        compare_runtimes,
        export_onnx,
        parity_report,
        quantize_dynamic_int8,
        quantize_static_int8,
        runtime_decision,
    )
    from ml.nets import build_net, default_arch
    from ml.training import TrainConfig, TrainedModel, train_classifier

    loaders = {"image": image_data, "audio": audio_data, "pointcloud": pointcloud_data}
    t0 = time.perf_counter()
    try:
        X, y, n_classes, source = loaders[modality](args.quick)
        trained = True
    except Exception as exc:  # fixture unavailable: random init, and say so
        X, y, n_classes = random_data(modality)
        source = f"random inputs, random-init weights ({type(exc).__name__}: {exc})"
        trained = False
    data_s = time.perf_counter() - t0
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = _split(X, y, 0, n_val=len(X) // 10, n_test=len(X) // 5)

    epochs = {"image": 6, "audio": 15, "pointcloud": 15}[modality]
    if args.quick:
        epochs = {"image": 3, "audio": 6, "pointcloud": 6}[modality]
    t0 = time.perf_counter()
    if trained:
        model = train_classifier(
            modality, X_tr, y_tr, X_va, y_va, n_classes=n_classes,
            config=TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, patience=4, seed=0),
        )
    else:
        arch = default_arch(modality)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = build_net(arch, n_classes)
        model = TrainedModel(
            modality=modality, n_classes=n_classes, arch=arch, state_dict=net.state_dict(), input_shape=X.shape[1:]
        )
    train_s = time.perf_counter() - t0

    paths = {
        "ort_fp32": workdir / f"{modality}.onnx",
        "ort_int8_dynamic": workdir / f"{modality}.int8-dynamic.onnx",
        "ort_int8_static": workdir / f"{modality}.int8-static.onnx",
    }
    pt_path = workdir / f"{modality}.pt"
    model.save(pt_path)
    t0 = time.perf_counter()
    export_onnx(model, paths["ort_fp32"])
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    quantize_dynamic_int8(paths["ort_fp32"], paths["ort_int8_dynamic"])
    quantize_static_int8(paths["ort_fp32"], paths["ort_int8_static"], X_tr[:256])
    quant_s = time.perf_counter() - t0

    parity = parity_report(model, paths["ort_fp32"], X_te)
    cmp = compare_runtimes(model, paths, X_te, y_te, threads=args.threads)

    # each runtime timed alone in a fresh process, rounds interleaved across runtimes
    X_bench = X_te if len(X_te) >= 64 else np.concatenate([X_te] * (64 // len(X_te) + 1))
    npy = workdir / f"{modality}.bench.npy"
    np.save(npy, X_bench)
    # torch_eager_1t: torch with one thread, for reference (torch's two-thread pool is often slower
    # on a 2-core machine with anything else running); the target compares with the faster torch
    targets = {
        "torch_eager": ("torch", pt_path, args.threads),
        "torch_eager_1t": ("torch", pt_path, 1),
        **{name: ("ort", p, args.threads) for name, p in paths.items()},
    }
    per_round: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(args.rounds or 3):
        for name, (kind, path, threads) in targets.items():
            per_round[name].append(run_worker(kind, path, npy, threads, args.seconds))
    latency = {name: _median_round([w["latency"] for w in runs]) for name, runs in per_round.items()}
    memory = {
        name: {
            "peak_rss_mb": median([w["peak_rss_mb"] for w in runs]),
            "torch_imported": runs[0]["torch_imported"],
            "peak_rss_growth_while_timing_mb": {bs: s.get("peak_rss_delta_mb") for bs, s in latency[name].items()},
        }
        for name, runs in per_round.items()
    }
    sizes = {
        "torch_eager": pt_path.stat().st_size,
        "torch_eager_1t": pt_path.stat().st_size,
        **{n: p.stat().st_size for n, p in paths.items()},
    }

    acc = {
        "torch_eager": cmp.reference_accuracy,
        "torch_eager_1t": cmp.reference_accuracy,
        **{n: r["accuracy"] for n, r in cmp.runtimes.items()},
    }
    decisions = {
        name: runtime_decision(latency["ort_fp32"], latency[name], acc["ort_fp32"], acc[name]).to_dict()
        for name in ("ort_int8_dynamic", "ort_int8_static")
    }
    passing = [n for n, d in decisions.items() if d["runtime"] == "int8"]
    chosen = max(passing, key=lambda n: decisions[n]["speedup"]) if passing else "ort_fp32"
    torch_b1 = min(latency["torch_eager"]["1"]["p50_ms"], latency["torch_eager_1t"]["1"]["p50_ms"])
    ort_vs_torch_b1 = torch_b1 / latency["ort_fp32"]["1"]["p50_ms"]
    return {
        "modality": modality,
        "arch": model.arch,
        "data": source,
        "trained": trained,
        "n_train": int(len(X_tr)),
        "n_test": int(len(X_te)),
        "epochs_run": len(model.history),
        "seconds": {"data": data_s, "train": train_s, "export": export_s, "quantize": quant_s},
        "parity_fp32": parity.to_dict(),
        "agreement": cmp.to_dict(),
        "accuracy": acc,
        "latency": latency,
        "serving_process_memory": memory,
        "model_bytes": sizes,
        "int8_decisions": decisions,
        "chosen_runtime": chosen,
        "ort_fp32_speedup_vs_torch_batch1": ort_vs_torch_b1,  # vs the faster of torch 2 threads / 1 thread
        "target_ort_fp32_speedup_batch1": TARGET_ORT_SPEEDUP_B1,
        "target_met": bool(ort_vs_torch_b1 >= TARGET_ORT_SPEEDUP_B1),
    }


# --------------------------------------------------------------------------------------------
# the learners beyond classification (ml.learners): detection, audio regions, point segmentation, cuboids

LEARNER_TASKS = ("detection", "regions", "segmentation", "cuboids")
LEARNER_BATCHES = (1, 16)
# items to fit on / to time on, and the epochs of the brief fit (None: the small config of bench._le_tasks, 40 for
# the detector: with fewer its heatmap is still flat and decoding keeps up to 50 boxes an image, which is not what a
# served detector costs); accuracy does not matter here, only a fitted network of the served size
LEARNER_SIZES = {
    "full": {"fit": 32, "bench": 32, "epochs": {"detection": None, "regions": 6, "segmentation": None, "cuboids": None}},
    "quick": {"fit": 16, "bench": 16, "epochs": {"detection": None, "regions": 2, "segmentation": 3, "cuboids": 4}},
}


def _learner_hooks(task: str, obj, kind: str):
    """``(preprocess(contents) -> per-item inputs, net(batch of per-item inputs) -> raw outputs,
    serve(contents) -> Predictions)`` for a fitted learner (``kind`` "torch") or its ONNX runner ("ort").

    The network-only call is one forward of what the serving path feeds its network for those items (detection's
    serving path runs two: the image and its mirror, for the flip uncertainty; regions runs one forward per clip,
    unpadded)."""
    if task == "detection":
        from ml.learners.detection import _load

        size = int(obj.image_size)
        fwd = obj._forward_fn() if kind == "torch" else obj._forward

        def pre(contents):
            return list(_load(list(contents), size))

        def net(items):
            return fwd(np.ascontiguousarray(np.stack(items), dtype=np.float32))

    elif task == "regions":
        from ml.learners.regions import clip_features

        max_s = float(obj.max_duration_s)
        if kind == "torch":
            import torch

            def fwd(x):
                with torch.no_grad():
                    probs, feats = obj.net_(torch.as_tensor(x))
                return probs[0].numpy(), feats[0].numpy()
        else:
            sess = obj._sess()

            def fwd(x):
                probs, feats = sess.run(["probs", "features"], {"input": x})
                return probs[0], feats[0]

        def pre(contents):
            return [clip_features(c, max_duration_s=max_s)[None] for c in contents]

        def net(items):
            return [fwd(x) for x in items]

    else:  # segmentation, cuboids: the PointNet segmenter on fixed-size chunks of every cloud
        from ml.learners._points import read_clouds, torch_forward

        chunker = obj._chunker() if kind == "torch" else obj._chunker
        fwd = torch_forward(obj.model_) if kind == "torch" else obj._forward

        def pre(contents):
            return [chunker.chunks(c)[0] for c in read_clouds(list(contents))]

        def net(items):
            X = np.concatenate(items)
            return [fwd(np.ascontiguousarray(X[s:s + 64])) for s in range(0, len(X), 64)]

    return pre, net, obj.predict


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def _load_learner_side(kind: str, task: str, workdir: Path):
    if kind == "torch":
        from ml.learners import get

        from bench._le_tasks import SPECS

        modality, task_type, _ = SPECS[task]
        return get(modality, task_type).from_bytes((workdir / f"{task}.learner").read_bytes())
    from ml.learners.runners import onnx_runner

    return onnx_runner((workdir / f"{task}.onnx").read_bytes(),
                       json.loads((workdir / f"{task}.manifest.json").read_text()))


def time_learner(kind: str, task: str, workdir: Path, threads: int, seconds: float,
                 batches: tuple[int, ...] = LEARNER_BATCHES, repeats: int | None = None) -> dict:
    """One side of one learner (the fitted learner with torch, or the runner onnxruntime builds from the export):
    end-to-end (``predict(contents)``) and network-only latency at each batch size."""
    import pickle

    from ml.serving import measure_latency

    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
    obj = _load_learner_side(kind, task, workdir)
    contents = pickle.loads((workdir / f"{task}.contents.pkl").read_bytes())
    pre, net, serve = _learner_hooks(task, obj, kind)
    items = _object_array(contents)
    inputs = _object_array(pre(contents))
    warm = 2 if repeats else 3
    e2e = measure_latency(lambda b: serve(list(b)), items, batch_sizes=batches, warmup=warm, min_seconds=seconds,
                          repeats=repeats)
    net_only = measure_latency(lambda b: net(list(b)), inputs, batch_sizes=batches, warmup=warm,
                               min_seconds=seconds, repeats=repeats)
    ort_threads = None
    if kind == "ort":
        sess = getattr(obj, "session", None) or getattr(getattr(obj, "_forward", None), "_session", None) \
            or (obj._sess() if hasattr(obj, "_sess") else None)
        if sess is not None:
            ort_threads = int(sess.get_session_options().intra_op_num_threads)  # 0: onnxruntime's default
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {"end_to_end": e2e, "network_only": net_only, "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
            "torch_imported": "torch" in sys.modules, "ort_intra_op_threads": ort_threads}


def learner_worker_main(kind: str, task: str, workdir: str, threads: int, seconds: float, batches: str,
                        repeats: str) -> None:
    stats = time_learner(kind, task, Path(workdir), threads, seconds, tuple(int(b) for b in batches.split(",")),
                         int(repeats) or None)
    print(json.dumps(stats))


def run_learner_worker(kind: str, task: str, workdir: Path, threads: int, seconds: float,
                       batches: tuple[int, ...], repeats: int | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.export_latency", "--learner-worker", kind, task, str(workdir), str(threads),
         str(seconds), ",".join(map(str, batches)), str(repeats or 0)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker for {task} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_learner(task: str, args, workdir: Path) -> dict:
    """Fit the task's default learner briefly on its fixture, export, check parity, time torch vs onnxruntime."""
    import inspect
    import pickle

    import torch

    from bench._le_tasks import _LEARNER, SPECS, _dataset, _labels
    from ml.learners import get

    modality, task_type, make = SPECS[task]
    sizes = LEARNER_SIZES["quick" if args.quick else "full"]
    n_fit, n_bench = args.learner_fit or sizes["fit"], args.learner_bench or sizes["bench"]
    cls = get(modality, task_type)
    labels = _labels(task)
    t0 = time.perf_counter()
    fit_ds = _dataset(make(n_fit, 1000, None, False), labels)
    bench_items = make(n_bench, 2000, None, True)
    contents = [c for c, _ in bench_items]
    data_s = time.perf_counter() - t0
    epochs = args.learner_epochs or sizes["epochs"][task] or _LEARNER[task]["epochs"]
    params = {**_LEARNER[task], "epochs": epochs, "random_state": 0}
    if "device" in inspect.signature(cls).parameters:
        params["device"] = "cpu"
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these small nets fit faster on one thread on 2 cores (bench._le_tasks)
    try:
        learner = cls(**params).fit(fit_ds)
    finally:
        torch.set_num_threads(threads)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    export = learner.export_onnx()
    export_s = time.perf_counter() - t0
    parity = learner.parity(export, contents)

    (workdir / f"{task}.learner").write_bytes(learner.to_bytes())
    (workdir / f"{task}.onnx").write_bytes(export.model)
    (workdir / f"{task}.manifest.json").write_text(json.dumps(export.manifest))
    (workdir / f"{task}.contents.pkl").write_bytes(pickle.dumps(contents))
    batches = tuple(args.learner_batches)
    repeats = args.learner_repeats or (5 if args.quick else None)
    targets = {"torch_eager": ("torch", args.threads), "torch_eager_1t": ("torch", 1), "ort_fp32": ("ort", args.threads)}
    per_round: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(args.rounds or (1 if args.quick else 3)):
        for name, (kind, threads_) in targets.items():
            timer = time_learner if args.inprocess else run_learner_worker
            per_round[name].append(timer(kind, task, workdir, threads_, args.seconds, batches, repeats))
    if args.inprocess:
        torch.set_num_threads(args.threads)
    latency = {part: {name: _median_round([w[part] for w in runs]) for name, runs in per_round.items()}
               for part in ("end_to_end", "network_only")}

    def speedups(part: str) -> dict:
        lat = latency[part]
        return {str(b): min(lat["torch_eager"][str(b)]["p50_ms"], lat["torch_eager_1t"][str(b)]["p50_ms"])
                / lat["ort_fp32"][str(b)]["p50_ms"] for b in batches}

    speed = {part: speedups(part) for part in ("end_to_end", "network_only")}
    # how much of the serving path the network is (the rest, loading and numpy decoding, is the same code for both
    # runtimes, so it bounds the end-to-end speed-up); detection's serving path runs two forwards (image, mirror)
    passes = 2 if task == "detection" else 1
    net_share = {name: {str(b): min(1.0, passes * latency["network_only"][name][str(b)]["p50_ms"]
                                    / latency["end_to_end"][name][str(b)]["p50_ms"]) for b in batches}
                 for name in targets}
    b1 = str(batches[0])
    return {
        "task": task,
        "modality": modality,
        "task_type": task_type,
        "learner": cls.__name__,
        "learner_params": {k: v for k, v in params.items()},
        "data": f"bench._le_tasks.SPECS[{task!r}] (the task's fixture): fit on {n_fit}, timed on {n_bench} others",
        "n_fit": n_fit,
        "n_bench": n_bench,
        "seconds": {"data": data_s, "fit": fit_s, "export": export_s},
        "onnx_bytes": len(export.model),
        "parity": parity.to_dict(),
        "batch_sizes": list(batches),
        "latency": latency,
        "serving_process_memory": {
            name: {"peak_rss_mb": median([w["peak_rss_mb"] for w in runs]), "torch_imported": runs[0]["torch_imported"]}
            for name, runs in per_round.items()},
        "threads": {"torch_eager": args.threads, "torch_eager_1t": 1,
                    "ort_fp32_intra_op": per_round["ort_fp32"][0]["ort_intra_op_threads"]},
        "timing_processes": "same process" if args.inprocess else "fresh process per runtime and round",
        # vs the faster of torch --threads / 1 thread, as for the classifiers
        "speedup_vs_torch": speed,
        "network_share_of_end_to_end": net_share,
        "network_passes_per_predict": passes,
        "ort_fp32_speedup_vs_torch_batch1": speed["end_to_end"][b1],
        "ort_fp32_network_speedup_vs_torch_batch1": speed["network_only"][b1],
        "target_ort_fp32_speedup_batch1": TARGET_ORT_SPEEDUP_B1,
        "target_met": bool(speed["end_to_end"][b1] >= TARGET_ORT_SPEEDUP_B1),
    }


LEARNER_HEADERS = ["learner", "task type", "parity", "maxdiff", "torch b1", "ORT b1", "e2e b1 x", "net b1 x",
                   "torch bN", "ORT bN", "e2e bN x", "net bN x", "target"]


def learner_rows(results: list[dict]) -> list[list]:
    rows = []
    for r in results:
        b1, bn = (str(b) for b in (r["batch_sizes"][0], r["batch_sizes"][-1]))
        e2e, s = r["latency"]["end_to_end"], r["speedup_vs_torch"]
        torch_ms = lambda b: min(e2e["torch_eager"][b]["p50_ms"], e2e["torch_eager_1t"][b]["p50_ms"])  # noqa: E731
        rows.append([r["learner"], r["task_type"], "pass" if r["parity"]["passed"] else "FAIL",
                     _fmt(r["parity"]["max_abs_diff"], ".1e"),
                     _fmt(torch_ms(b1), ".2f"), _fmt(e2e["ort_fp32"][b1]["p50_ms"], ".2f"),
                     _fmt(s["end_to_end"][b1]), _fmt(s["network_only"][b1]),
                     _fmt(torch_ms(bn), ".1f"), _fmt(e2e["ort_fp32"][bn]["p50_ms"], ".1f"),
                     _fmt(s["end_to_end"][bn]), _fmt(s["network_only"][bn]),
                     "met" if r["target_met"] else "NOT met"])
    return rows


def print_learner_results(results: list[dict]) -> None:
    if not results:
        return
    bn = results[0]["batch_sizes"][-1]
    print_table(LEARNER_HEADERS, learner_rows(results),
                title=f"learners: p50 ms end to end (faster torch of {results[0]['threads']['torch_eager']} threads / 1 "
                      f"thread vs ORT fp32), speed-ups end to end and network only, batch 1 and {bn}")
    for r in results:
        net, b = r["latency"]["network_only"], str(r["batch_sizes"][0])
        print(f"  {r['task']}: network only p50 ms b{b} torch {net['torch_eager'][b]['p50_ms']:.2f} / "
              f"1t {net['torch_eager_1t'][b]['p50_ms']:.2f} / ORT {net['ort_fp32'][b]['p50_ms']:.2f}; "
              f"network share of end to end b{b} torch {r['network_share_of_end_to_end']['torch_eager_1t'][b]:.0%} "
              f"/ ORT {r['network_share_of_end_to_end']['ort_fp32'][b]:.0%}; "
              f"ORT intra-op threads {r['threads']['ort_fp32_intra_op']} (0 = onnxruntime default); "
              f"fit {r['seconds']['fit']:.0f} s on {r['n_fit']}")


# --------------------------------------------------------------------------------------------
# report


def _fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


RUNTIMES = ("torch_eager", "torch_eager_1t", "ort_fp32", "ort_int8_dynamic", "ort_int8_static")
HEADERS = ["runtime", "b1 p50", "b1 p95", "b1 /s", "b64 p50", "b64 p95", "b64 /s", "acc", "agree", "maxdiff",
           "serve MB", "size KB"]


def print_results(results: list[dict]) -> None:
    for r in results:
        rows = []
        for name in RUNTIMES:
            lat = r["latency"][name]
            agree = r["agreement"]["runtimes"].get(name, {})
            mem = r["serving_process_memory"][name].get("peak_rss_mb")
            rows.append([name, _fmt(lat["1"]["p50_ms"], ".3f"), _fmt(lat["1"]["p95_ms"], ".3f"),
                         _fmt(lat["1"]["throughput_per_s"], ".0f"), _fmt(lat["64"]["p50_ms"], ".2f"),
                         _fmt(lat["64"]["p95_ms"], ".2f"), _fmt(lat["64"]["throughput_per_s"], ".0f"),
                         _fmt(r["accuracy"][name], ".3f"),
                         _fmt(agree.get("top1_agreement", 1.0 if name.startswith("torch") else None), ".3f"),
                         _fmt(agree.get("max_abs_diff"), ".1e"), _fmt(mem, ".0f"),
                         f"{r['model_bytes'][name] / 1024:.0f}"])
        print_table(HEADERS, rows, title=f"{r['modality']} (latency in ms)")
        dec = r["int8_decisions"]
        print(
            f"ORT fp32 vs faster torch at batch 1: {r['ort_fp32_speedup_vs_torch_batch1']:.2f}x "
            f"(target >= {TARGET_ORT_SPEEDUP_B1}x: {'met' if r['target_met'] else 'NOT met'}); "
            f"parity fp32: {'pass' if r['parity_fp32']['passed'] else 'FAIL'} "
            f"(max diff {r['parity_fp32']['max_abs_diff']:.1e}); chosen: {r['chosen_runtime']}"
        )
        for name, d in dec.items():
            print(f"  {name}: {d['runtime']} ({d['reason']})")
        print(f"data: {r['data']}; trained {r['epochs_run']} epochs on {r['n_train']}, tested on {r['n_test']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        kind, model_path, npy, threads, seconds = argv[1:6]
        worker_main(kind, model_path, npy, int(threads), float(seconds))
        return 0
    if argv[:1] == ["--learner-worker"]:
        kind, task, workdir, threads, seconds, batches, repeats = argv[1:8]
        learner_worker_main(kind, task, workdir, int(threads), float(seconds), batches, repeats)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="less data, fewer epochs, shorter timing")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved timing rounds per runtime (default 3; the learners: 1 with --quick)")
    parser.add_argument("--seconds", type=float, default=None, help="timing per batch size per round")
    parser.add_argument("--models", default="image,audio,pointcloud")
    parser.add_argument("--learners", default=",".join(LEARNER_TASKS),
                        help="the ml.learners tasks beyond classification to time ('' for none): "
                             + ", ".join(LEARNER_TASKS))
    parser.add_argument("--learner-batches", type=lambda s: [int(b) for b in s.split(",")],
                        default=list(LEARNER_BATCHES), help="batch sizes for the learners (first: the target's)")
    parser.add_argument("--learner-fit", type=int, default=None, help="items to fit each learner on")
    parser.add_argument("--learner-bench", type=int, default=None, help="items to time each learner on")
    parser.add_argument("--learner-epochs", type=int, default=None, help="epochs of each learner's brief fit")
    parser.add_argument("--inprocess", action="store_true",
                        help="time the learners' runtimes in this process (torch threads = ORT threads: --threads)")
    parser.add_argument("--learner-repeats", type=int, default=None,
                        help="timed calls per batch size for the learners (default: 5 with --quick, else by --seconds)")
    parser.add_argument("--out", default=str(OUT_DIR / "export_latency.json"))
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 1.0

    tasks = [t.strip() for t in args.learners.split(",") if t.strip()]
    for task in tasks:
        if task not in LEARNER_TASKS:
            parser.error(f"unknown learner task {task!r} (one of {', '.join(LEARNER_TASKS)})")

    import torch
    import onnxruntime

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    started = time.time()
    results, learner_results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for modality in [m.strip() for m in args.models.split(",") if m.strip()]:
            print(f"[{modality}] ...", flush=True)
            results.append(bench_model(modality, args, Path(tmp)))
        for task in tasks:
            print(f"[learner {task}] ...", flush=True)
            learner_results.append(bench_learner(task, args, Path(tmp)))
    report = {
        "command": " ".join(["python -m bench.export_latency", *argv]),
        "seconds_total": time.time() - started,
        "results": results,
        "learners": learner_results,
    }
    print_results(results)
    print_learner_results(learner_results)
    out = write_report("export_latency", report, path=args.out,
                       machine={"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                                "threads": args.threads})
    written = json.loads(out.read_text())
    machine, load = written["machine"], written["load"]
    print(
        f"\nmachine: {machine['cpu_model']}, {machine['cpus']} cores, {args.threads} threads per runtime; "
        f"load average before/after: {load['at_start'][0]:.1f} / {load['at_end'][0]:.1f}"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
