"""Training speed on the CPU and on a CUDA GPU: the four networks of ml.nets, trained with ml.training.

    .venv/bin/python -m bench.train_device --make-data       # fixtures -> the app's loaders -> an .npz
    .venv/bin/python -m bench.train_device [--devices cpu,cuda] [--epochs 10] [--threads N] [--models ...]

Two modes, so that the data can be built where the fixtures' tools live (Pillow, espeak-ng,
soundfile, librosa, open3d) and the timing can run on a bare GPU machine:

- ``--make-data`` builds ``--data`` (default ``bench/out/train_device_data.npz``, compressed) from
  the project's real fixtures through the loaders the app uses at ingest:
  600 scikit-learn digits as PNGs (``fixtures.digits.digits_pngs`` -> ``ml.modalities.image.load_images``,
  ``(3, 32, 32)``), 400 espeak-ng spoken digits as WAVs (``fixtures.speech.spoken_digits(40)`` ->
  ``ml.modalities.audio.load_audio_batch``, log-mel ``(1, 64, 101)``), 304 open3d shape clouds as
  PLYs (``fixtures.shapes.shapes(38)`` -> ``ml.modalities.pointcloud.load_points_batch``, 1,024
  points) and 100 part-labelled lamps (``fixtures.shapes.part_shapes(100)``, 2,048 points, normalised
  and farthest-point resampled to 1,024 with ``ml.modalities.pointcloud``'s ``normalize_points`` /
  ``resample_points``, which carries the per-point labels; this is what ``load_points`` does to a file).
- the timing mode reads that file and imports only numpy, torch and ``ml.training`` (no fixtures,
  no open3d). Each model is trained with the app's ``TrainConfig`` defaults (batch 64, lr 1e-3,
  AdamW, cosine decay, augmentation, deterministic algorithms, per-epoch batch-norm re-estimation
  and validation) and its default architecture, for exactly ``--epochs`` epochs (early stopping
  off: patience > epochs), once per device, on the same 80/20 split (seed 0). A one-epoch warm-up
  on a few samples precedes each model on each device (CUDA context, cuDNN, kernels), unless
  ``--no-warmup``.

Reported per model and device: epochs run, total seconds of the ``train_*`` call, first epoch and
steady-state seconds per epoch (median of epochs 2..N; an epoch includes the batch-norm
re-estimation and the validation pass), training samples per second at the steady state, the
validation accuracy of the kept weights (segmentation: mean IoU over the parts, and point
accuracy), peak GPU memory, and the CUDA speed-up over the CPU (steady-state epoch and total).
Prints a table and writes ``bench/out/train_device.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import OUT_DIR, REPO, machine_info, median, print_table, write_report

DATA_PATH = OUT_DIR / "train_device_data.npz"
MODELS = {  # key -> (modality, task, name in the table)
    "image": ("image", "classification", "image CNN"),
    "audio": ("audio", "classification", "audio log-mel CNN"),
    "pointcloud": ("pointcloud", "classification", "PointNet classifier"),
    "segmentation": ("pointcloud", "segmentation", "PointNet segmenter"),
}
N_DIGITS, N_SPOKEN_PER_CLASS, N_SHAPES_PER_CLASS, N_LAMPS, N_POINTS = 600, 40, 38, 100, 1024
VAL_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# --make-data: real fixtures through the app's loaders (needs the fixtures' tools)


def make_data(path: Path) -> dict:
    from fixtures.digits import digits_pngs
    from fixtures.shapes import PART_LABELS, SHAPE_LABELS, part_shapes, shapes
    from fixtures.speech import espeak_available, spoken_digits
    from ml.modalities.audio import load_audio_batch
    from ml.modalities.image import load_images
    from ml.modalities.pointcloud import load_points_batch, normalize_points, resample_points

    if not espeak_available():
        raise SystemExit("--make-data needs espeak-ng for the spoken digits (apt-get install espeak-ng)")
    arrays, sources, seconds = {}, {}, {}

    t0 = time.perf_counter()
    items = digits_pngs()[:N_DIGITS]
    arrays["image_X"] = load_images([b for b, _ in items])
    arrays["image_y"] = np.array([c for _, c in items], dtype=np.int64)
    arrays["image_n_classes"] = np.int64(10)
    sources["image"] = f"fixtures.digits.digits_pngs()[:{N_DIGITS}] (PNG) -> ml.modalities.image.load_images"
    seconds["image"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    items = spoken_digits(N_SPOKEN_PER_CLASS)
    arrays["audio_X"] = load_audio_batch([b for b, _ in items])
    arrays["audio_y"] = np.array([c for _, c in items], dtype=np.int64)
    arrays["audio_n_classes"] = np.int64(10)
    sources["audio"] = (f"fixtures.speech.spoken_digits({N_SPOKEN_PER_CLASS}) (espeak-ng WAV) -> "
                        "ml.modalities.audio.load_audio_batch")
    seconds["audio"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    items = shapes(N_SHAPES_PER_CLASS, n_points=2048, fmt="ply")
    arrays["pointcloud_X"] = load_points_batch([b for b, _ in items], n_points=N_POINTS)
    arrays["pointcloud_y"] = np.array([c for _, c in items], dtype=np.int64)
    arrays["pointcloud_n_classes"] = np.int64(len(SHAPE_LABELS))
    sources["pointcloud"] = (f"fixtures.shapes.shapes({N_SHAPES_PER_CLASS}, n_points=2048) (open3d primitives, PLY) "
                             f"-> ml.modalities.pointcloud.load_points_batch(n_points={N_POINTS})")
    seconds["pointcloud"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    X, Y = [], []
    for pts, labels in part_shapes(N_LAMPS, seed=0, n_points=2048):
        sampled, idx = resample_points(normalize_points(pts), N_POINTS, random_state=0)
        X.append(sampled)
        Y.append(labels[idx])
    arrays["segmentation_X"] = np.stack(X).astype(np.float32)
    arrays["segmentation_y"] = np.stack(Y).astype(np.uint8)  # 3 parts; int64 at load
    arrays["segmentation_n_classes"] = np.int64(len(PART_LABELS))
    sources["segmentation"] = (f"fixtures.shapes.part_shapes({N_LAMPS}, n_points=2048) (open3d lamps, per-point parts) "
                               f"-> ml.modalities.pointcloud normalize_points + resample_points({N_POINTS})")
    seconds["segmentation"] = time.perf_counter() - t0

    for key, src in sources.items():
        arrays[f"{key}_source"] = np.asarray(src)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    summary = {
        key: {"X": list(arrays[f"{key}_X"].shape), "n_classes": int(arrays[f"{key}_n_classes"]),
              "seconds": round(seconds[key], 1), "source": sources[key]}
        for key in MODELS
    }
    return {"path": str(path), "bytes": path.stat().st_size, "datasets": summary}


# --------------------------------------------------------------------------------------------
# timing (numpy, torch and ml.training only)


def load_data(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"{path} not found: build it with `python -m bench.train_device --make-data` "
                         "where the fixtures' tools are installed")
    with np.load(path, allow_pickle=False) as z:
        out = {}
        for key in MODELS:
            X, y = z[f"{key}_X"], z[f"{key}_y"].astype(np.int64)
            perm = np.random.default_rng(0).permutation(len(X))
            n_val = int(round(len(X) * VAL_FRACTION))
            va, tr = perm[:n_val], perm[n_val:]
            out[key] = {
                "X_train": np.ascontiguousarray(X[tr]), "y_train": y[tr],
                "X_val": np.ascontiguousarray(X[va]), "y_val": y[va],
                "n_classes": int(z[f"{key}_n_classes"]), "source": str(z[f"{key}_source"]),
            }
    return out


def mean_iou(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """Mean over classes (present in the truth or the prediction) of points' IoU, pooled over clouds."""
    ious = []
    for c in range(n_classes):
        p, t = pred == c, truth == c
        union = int(np.sum(p | t))
        if union:
            ious.append(int(np.sum(p & t)) / union)
    return float(np.mean(ious))


def _train(key: str, d: dict, config, *, n: int | None = None):
    from ml.training import train_classifier, train_segmenter

    modality, task, _ = MODELS[key]
    X_tr, y_tr, X_va, y_va = d["X_train"][:n], d["y_train"][:n], d["X_val"][:n], d["y_val"][:n]
    if task == "segmentation":
        return train_segmenter(X_tr, y_tr, X_va, y_va, n_classes=d["n_classes"], config=config)
    return train_classifier(modality, X_tr, y_tr, X_va, y_va, n_classes=d["n_classes"], config=config)


def time_one(key: str, d: dict, device: str, epochs: int, warmup: bool) -> dict:
    import torch

    from ml.training import TrainConfig

    if warmup:  # CUDA context, cuDNN handles and kernels, CPU thread pool: out of the timing
        _train(key, d, TrainConfig(epochs=1, device=device), n=96)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    # the app's defaults (batch 64, lr 1e-3, seed 0); patience > epochs: every epoch runs
    config = TrainConfig(epochs=epochs, patience=epochs + 1, device=device)
    t0 = time.perf_counter()
    model = _train(key, d, config)
    if cuda:
        torch.cuda.synchronize()
    total = time.perf_counter() - t0
    epoch_s = [h["seconds"] for h in model.history]
    steady = median(epoch_s[1:]) if len(epoch_s) > 1 else epoch_s[0]
    n_train = int(len(d["X_train"]))
    pred = model.predict(d["X_val"])
    row = {
        "model": key,
        "device": device,
        "epochs_run": len(model.history),
        "seconds": total,
        "first_epoch_s": epoch_s[0],
        "s_per_epoch": steady,
        "s_per_epoch_mean": total / len(epoch_s),
        "samples_per_s": n_train / steady,
        "epoch_seconds": epoch_s,
        "best_epoch": model.best_epoch,
        "val_acc": float(np.mean(pred == d["y_val"])),  # the kept (best-val-loss) weights; per point for segmentation
        "val_acc_last_epoch": model.history[-1]["val_acc"],
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    if MODELS[key][1] == "segmentation":
        row["val_miou"] = mean_iou(pred, d["y_val"], d["n_classes"])
    return row


def environment(devices: list[str]) -> dict:
    """torch, its threads and the GPU: added to the machine description of the report."""
    import torch

    env = {"torch": torch.__version__, "numpy": np.__version__,
           "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available()}
    if any(d.startswith("cuda") for d in devices):
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {
            "name": torch.cuda.get_device_name(0),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": list(torch.cuda.get_device_capability(0)),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            # training runs with torch's defaults here, as in the app: TF32 convolutions on Ampere+
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    return env


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-data", action="store_true", help="build --data from the fixtures, then exit")
    ap.add_argument("--data", default=str(DATA_PATH), help="the .npz of arrays (default %(default)s)")
    ap.add_argument("--devices", default=None, help="comma-separated, e.g. cpu,cuda (default: cpu, plus cuda if available)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per training, all run (default %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of %(default)s")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false", help="time the first training cold")
    ap.add_argument("--out", default=str(OUT_DIR / "train_device.json"))
    args = ap.parse_args(argv)

    if args.make_data:
        info = make_data(Path(args.data))
        for key, s in info["datasets"].items():
            print(f"{key:<13} {str(tuple(s['X'])):<20} {s['n_classes']:>3} classes  {s['seconds']:>6.1f} s  {s['source']}")
        print(f"wrote {info['path']} ({info['bytes'] / 2**20:.1f} MiB)")
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(models) - set(MODELS) or args.epochs < 1:
        ap.error(f"--models must be among {list(MODELS)} and --epochs >= 1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ([d.strip() for d in args.devices.split(",") if d.strip()] if args.devices
               else ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if any(d.startswith("cuda") for d in devices) and not torch.cuda.is_available():
        ap.error("cuda requested but torch sees no CUDA device")
    data = load_data(Path(args.data))
    env = environment(devices)
    started = time.perf_counter()
    rows = []
    for key in models:
        for device in devices:
            print(f"[{key} on {device}] {args.epochs} epochs on {len(data[key]['X_train'])} samples ...", flush=True)
            rows.append(time_one(key, data[key], device, args.epochs, args.warmup))
    speedups = {}
    for key in models:
        by_dev = {r["device"]: r for r in rows if r["model"] == key}
        if "cpu" in by_dev:
            speedups[key] = {
                d: {"epoch": by_dev["cpu"]["s_per_epoch"] / r["s_per_epoch"], "total": by_dev["cpu"]["seconds"] / r["seconds"]}
                for d, r in by_dev.items() if d != "cpu"
            }

    table = []
    for r in rows:
        sp = speedups.get(r["model"], {}).get(r["device"])
        table.append([
            MODELS[r["model"]][2], r["device"], str(r["epochs_run"]), f"{r['seconds']:.1f}",
            f"{r['first_epoch_s']:.2f}", f"{r['s_per_epoch']:.3f}", f"{r['samples_per_s']:,.0f}",
            f"{r['val_acc']:.3f}", _fmt(r.get("val_miou"), ".3f"), _fmt(r["peak_gpu_mib"], ",.0f"),
            "-" if sp is None else f"{sp['epoch']:.1f}x / {sp['total']:.1f}x",
        ])
    gpu = env.get("gpu")
    print_table(
        ["model", "device", "epochs", "total s", "1st epoch s", "s/epoch", "samples/s", "val acc", "val mIoU",
         "GPU MiB", "speed-up epoch / total"],
        table,
        title=(f"train_* with TrainConfig defaults (batch 64), {args.epochs} epochs, 80/20 split; "
               f"CPU: {machine_info()['cpu_model']}, {env['torch_threads']} torch threads"
               + (f"; GPU: {gpu['name']} (CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}, TF32 convs {gpu['cudnn_allow_tf32']})"
                  if gpu else "")),
    )
    print("s/epoch: median of epochs 2..N (an epoch includes batch-norm re-estimation and validation); "
          "samples/s: training samples per steady-state epoch second; val acc: per point for the segmenter")
    report = {
        "command": " ".join(["python -m bench.train_device", *argv]),
        "epochs": args.epochs,
        "warmup": args.warmup,
        "config": "TrainConfig defaults (batch_size 64, lr 1e-3, weight_decay 1e-4, seed 0, augment), patience epochs + 1",
        "data": {"path": os.path.relpath(args.data, REPO) if Path(args.data).is_absolute() else args.data,
                 **{k: {"n_train": len(data[k]["X_train"]), "n_val": len(data[k]["X_val"]),
                        "shape": list(data[k]["X_train"].shape[1:]), "n_classes": data[k]["n_classes"],
                        "source": data[k]["source"]} for k in models}},
        "results": rows,
        "speedup_vs_cpu": speedups,
        "seconds_total": time.perf_counter() - started,
    }
    out = write_report("train_device", report, path=args.out, machine=env)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
