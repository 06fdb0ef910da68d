"""Label to serving: seconds from the last label submitted to the first prediction by the new model.

    python -m bench.label_to_serving [--backend embedded|postgres|all] [--samples 600] [--budget 300]
                                     [--repeat 2] [--epochs N]
    python -m bench.label_to_serving --task detection|regions|segmentation|cuboids [--samples N] [--budget N]

The demo-sized image project, everything through the API of a real gunicorn server, with a real
Celery worker (`celery -A apps.looplab worker -Q default,ml_cpu,ml_gpu -c 1`):
1. a lead creates a project (10 digit labels, auto_deploy on) and pushes ``--samples`` PNGs of
   scikit-learn's digits (fixtures.digits.digits_pngs(), JSON batches of 100, base64);
2. starts a selection round with ``--budget`` and waits for it (the worker embeds the samples first);
3. an annotator labels every task of the round (tasks/next -> annotations, with the true digit);
4. right after the last label the lead starts a training run; the bench polls the run and
   POST /predict/ (every 0.25 s) until a prediction comes from the run's model.

Reported: last label -> first prediction by the new model (target <= 60 s on 2 cores), its parts
(queueing before the run starts, each pipeline step, hand-offs between steps, deploy -> first
prediction), and the deployment's own label_to_serving_s (deployment time - last annotation time,
as the server records it). Backends: the embedded default (SQLite, kombu filesystem broker, which
polls once a second) and PostgreSQL + Redis (db 14, flushed afterwards).

``--task`` other than classification: the same protocol on the demo's project of that task type (the sizes and
learner params of ``make demo``'s "Digit scenes", "Spoken words", "Lamp parts" and "Street objects 3D"; see
``apps/looplab/management/commands/load_demo.py``): the fixture's contents are pushed, the annotator submits the
fixture's ground truth (boxes, regions, point labels, cuboids), the run is ``{"params": <the demo's>}`` (the
project's default learner), and the probe is a fixture item outside the pushed ones; the prediction counts once
``/predict/`` answers with the run's model. Target for these: <= 120 s on 2 cores.
"""
from __future__ import annotations

import argparse
import base64
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from bench.report import fmt, loadavg, machine_info, print_table, spread, write_report
from bench.stack import BenchError, Deadline, GunicornConfig, Stack, check, repeat_runs, session

TARGET_S = 60.0
POLL_S = 0.25


def _digits(n):
    from fixtures.digits import digits_pngs

    return [(png, {"label": str(label)}) for png, label in digits_pngs()[:n]]


def _scenes(n):
    from fixtures.detection import detection_scenes

    return detection_scenes(n, labels=("0", "1", "4", "7"))


def _clips(n):
    from fixtures.regions import region_clips

    return region_clips(n)


def _lamps(n):
    from fixtures.shapes import part_items

    return part_items(n, unlabeled=0.0)


def _cuboid_scenes(n):
    from fixtures.cuboids import cuboid_scenes

    return cuboid_scenes(n)


DEMO_SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


@dataclass(frozen=True)
class TaskSpec:
    """One task type's bench project: the API's project body, the fixture (n -> [(content, ground truth)]), the
    demo's sizes and the run's learner params (None: the built-in classification pipeline)."""
    project: dict
    items: Callable[[int], list]
    samples: int
    budget: int
    target_s: float
    params: dict | None = None


# the shape task types at the sizes and params of load_demo's DEMO_PROJECTS (kept in step by hand: the bench
# never imports Django)
TASKS = {
    "classification": TaskSpec({"name": "Digits (bench)", "modality": "image", "labels": [str(i) for i in range(10)]},
                               _digits, 600, 300, TARGET_S),
    "detection": TaskSpec({"name": "Digit scenes (bench)", "modality": "image", "task_type": "detection",
                           "labels": ["0", "1", "4", "7"], "split_ratios": DEMO_SPLITS},
                          _scenes, 120, 60, 120.0, {"epochs": 40, "image_size": 64, "width": 16, "batch_size": 8,
                                                            "score_threshold": 0.3}),
    "regions": TaskSpec({"name": "Spoken words (bench)", "modality": "audio", "task_type": "audio_regions",
                         "labels": ["one", "three", "seven"], "split_ratios": DEMO_SPLITS},
                        _clips, 60, 30, 120.0, {"epochs": 12, "batch_size": 8, "width": 32}),
    "segmentation": TaskSpec({"name": "Lamp parts (bench)", "modality": "pointcloud", "task_type": "point_segmentation",
                              "labels": ["base", "pole", "shade"], "split_ratios": DEMO_SPLITS},
                             _lamps, 50, 25, 120.0, {"epochs": 15, "n_points": 256, "draws": 1, "batch_size": 8,
                                                     "arch": {"global_dim": 128, "embed_dim": 64}}),
    "cuboids": TaskSpec({"name": "Street objects 3D (bench)", "modality": "pointcloud", "task_type": "cuboids",
                         "labels": ["box", "cylinder", "sphere"], "split_ratios": DEMO_SPLITS},
                        _cuboid_scenes, 40, 24, 120.0, {"epochs": 10, "n_points": 512, "draws": 2, "batch_size": 4,
                                                        "arch": {"global_dim": 128, "embed_dim": 64}}),
}
SHAPE_KEYS = ("boxes", "polygons", "regions", "point_labels", "cuboids")


def _prediction_summary(prediction: dict) -> dict:
    out = {k: prediction[k] for k in ("label", "confidence", "model", "latency_ms") if k in prediction}
    out.update({f"n_{k}": len(prediction[k]) for k in SHAPE_KEYS if isinstance(prediction.get(k), list)})
    return out


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def wait_for(what: str, fn, deadline: Deadline, interval: float = POLL_S):
    while True:
        value = fn()
        if value is not None:
            return value
        deadline.check(what)
        time.sleep(interval)


def run_once(args, backend: str, repeat: int) -> dict:
    spec = TASKS[args.task]
    items = spec.items(args.samples + 1)  # the last one: the probe, never pushed
    if args.samples + 1 > len(items):
        raise BenchError(f"at most {len(items) - 1} samples")
    deadline = Deadline(args.time_limit)
    gconf = GunicornConfig(workers=args.workers, threads=args.threads)
    extra = {"LOOPLAB_TRAIN_EPOCHS": str(args.epochs)} if args.epochs else {}
    if args.torch_threads:  # intra-op threads of torch/onnxruntime/BLAS in the server and the worker
        extra.update({name: str(args.torch_threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    with Stack(backend, gunicorn=gconf, name="l2s", extra_env=extra) as stack:
        stack.start_worker("default,ml_cpu,ml_gpu", concurrency=1)
        lead = session(stack.token("bench-lead", "lead"))
        project = check(lead.post(stack.url("/api/v1/projects/"), json={
            **spec.project, "label_budget": max(400, args.budget), "confidence_threshold": 0.7, "auto_deploy": True},
            timeout=30), 201).json()
        pid = project["id"]
        annotator = session(stack.token("bench-annotator", "annotator", project=pid))
        t_push = time.perf_counter()
        truth = {}
        for start in range(0, args.samples, 100):
            chunk = range(start, min(args.samples, start + 100))
            body = {"samples": [{"external_id": f"item-{i:04d}", "content": base64.b64encode(items[i][0]).decode(),
                                 "metadata": {"source": args.task, "scanner": "a" if i % 3 else "b"}} for i in chunk]}
            out = check(lead.post(stack.url(f"/api/v1/projects/{pid}/samples/"), json=body, timeout=120), 201).json()
            for i, row in zip(chunk, out["samples"]):
                truth[row["id"]] = items[i][1]
        push_s = time.perf_counter() - t_push
        rnd = check(lead.post(stack.url(f"/api/v1/projects/{pid}/rounds/"), json={"budget": args.budget, "strategy": "auto"},
                              timeout=30), 202).json()
        t_round = time.perf_counter()

        def round_done():
            r = check(lead.get(stack.url(f"/api/v1/rounds/{rnd['id']}/"), timeout=30), 200).json()
            if r["status"] == "failed":
                raise BenchError(f"round failed: {r['error'][:2000]}\n{stack.worker_log()}")
            return r if r["status"] == "succeeded" else None

        rnd = wait_for("waiting for the selection round", round_done, deadline, 0.5)
        round_s = time.perf_counter() - t_round
        stack.log(f"pushed {args.samples} in {push_s:.1f}s; round selected {rnd['selected']} in {round_s:.1f}s; labeling")
        labeled, t_label = 0, time.perf_counter()
        while labeled <= args.budget + 5:
            deadline.check("labeling")
            r = annotator.post(stack.url(f"/api/v1/projects/{pid}/tasks/next/"), timeout=30)
            if r.status_code == 204:
                break
            task = check(r, 200).json()
            check(annotator.post(stack.url(f"/api/v1/tasks/{task['id']}/annotations/"),
                                 json={"result": truth[task["sample"]["id"]], "active_seconds": 1.5}, timeout=30), 201)
            labeled += 1
        t0 = time.perf_counter()  # the last label's 201 has arrived
        wall0 = time.time()
        label_s = t0 - t_label
        load_before = loadavg()
        body = {"epochs": args.epochs} if args.epochs else {}
        if spec.params is not None:
            body["params"] = spec.params
        run = check(lead.post(stack.url(f"/api/v1/projects/{pid}/training-runs/"), json=body, timeout=60), 201, 202).json()
        t_created = time.perf_counter()
        probe = {"content": base64.b64encode(items[args.samples][0]).decode()}  # an item the model has not seen
        state = {"run": run, "deployed_at": None, "run_done_at": None}

        def first_prediction():
            r = check(lead.get(stack.url(f"/api/v1/training-runs/{run['id']}/"), timeout=30), 200).json()
            state["run"] = r
            if r["status"] == "failed":
                raise BenchError(f"training run failed: {r['error'][:3000]}\n{stack.worker_log()}")
            if r["status"] == "succeeded" and state["run_done_at"] is None:
                state["run_done_at"] = time.perf_counter()
            if r["model"] is None:
                return None
            p = lead.post(stack.url(f"/api/v1/projects/{pid}/predict/"), json=probe, timeout=60)
            if p.status_code == 200 and p.json().get("model") == r["model"]:
                return time.perf_counter(), p.json()
            if p.status_code not in (200, 409):
                raise BenchError(f"predict -> {p.status_code}: {p.text[:500]}")
            if r["status"] == "succeeded" and "not deployed" in r["message"]:
                raise BenchError(f"the gate did not deploy the model: {r['message']}")
            return None

        t_pred, prediction = wait_for("waiting for the first prediction", first_prediction, deadline)
        total_s = t_pred - t0
        run = check(lead.get(stack.url(f"/api/v1/training-runs/{run['id']}/"), timeout=30), 200).json()
        deployment = check(lead.get(stack.url(f"/api/v1/projects/{pid}/deployments/"), timeout=30), 200).json()
        model = check(lead.get(stack.url(f"/api/v1/models/{run['model']}/"), timeout=30), 200).json()
        load_after = loadavg()
    steps = {s["kind"]: s for s in run["steps"]}
    order = [s["kind"] for s in run["steps"]]
    step_s = {k: steps[k]["duration_s"] for k in order}
    handoffs = {f"{a}->{b}": (_ts(steps[b]["started_at"]) - _ts(steps[a]["finished_at"]))
                for a, b in zip(order, order[1:]) if steps[a]["finished_at"] and steps[b]["started_at"]}
    run_started = _ts(run["started_at"])
    last_step_done = _ts(steps[order[-1]]["finished_at"])
    parts = {"label_to_run_created_s": t_created - t0,
             "run_queued_s": run_started - _ts(run["created_at"]) if run_started else None,
             **{f"step_{k}_s": v for k, v in step_s.items()},
             **{f"handoff_{k}_s": v for k, v in handoffs.items()},
             "deploy_to_first_prediction_s": (wall0 + total_s) - _ts(deployment["created_at"]),
             "pipeline_started_to_done_s": (last_step_done - run_started) if run_started and last_step_done else None}
    report = model.get("eval_report") or {}
    primary = report.get("primary", "accuracy")
    test_metric = (report.get("metrics") or {}).get(primary, report.get("accuracy"))
    return {"task": args.task, "metric": primary, "test_metric": test_metric,
            "learner": run["config"].get("learner"), "params": run["config"].get("params"), "backend": backend, "repeat": repeat, "server": gconf.describe(),
            "worker": "celery -A apps.looplab worker -Q default,ml_cpu,ml_gpu -c 1", "samples": args.samples,
            "budget": args.budget, "labeled": labeled, "push_s": push_s, "round_s": round_s, "labeling_s": label_s,
            "label_to_first_prediction_s": total_s, "deployment_label_to_serving_s": deployment["label_to_serving_s"],
            "parts": parts, "steps": run["steps"], "epochs": run["config"].get("epochs"),
            "dataset_counts": run["dataset_version"]["counts"], "test_accuracy": test_metric,
            "prediction": _prediction_summary(prediction),
            "loadavg_before": load_before, "loadavg_after": load_after}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "postgres", "all"], default="all")
    parser.add_argument("--task", choices=sorted(TASKS), default="classification",
                        help="the demo project's task type (classification: digits)")
    parser.add_argument("--samples", type=int, default=None,
                        help="items pushed (default: the demo's size; classification 600 digits)")
    parser.add_argument("--budget", type=int, default=None, help="the round's budget: tasks labeled (default: the "
                                                                  "demo's first round; classification 300)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the app's LOOPLAB_TRAIN_EPOCHS)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="set OMP/MKL/OPENBLAS_NUM_THREADS for server and worker (default: libraries decide)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per backend, each on a fresh stack")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds per run before giving up")
    args = parser.parse_args(argv)
    spec = TASKS[args.task]
    args.samples = spec.samples if args.samples is None else args.samples
    args.budget = spec.budget if args.budget is None else args.budget
    if not 20 <= args.budget <= args.samples:
        parser.error("need 20 <= budget <= samples")
    if args.epochs and spec.params is not None:
        parser.error("--epochs is the classification pipeline's; the other task types train the demo's params")
    target_s = spec.target_s
    backends = ["embedded", "postgres"] if args.backend == "all" else [args.backend]
    machine = machine_info()
    runs = repeat_runs(backends, args.repeat, lambda backend, k: run_once(args, backend, k),
                       lambda run: f"last label -> first prediction {run['label_to_first_prediction_s']:.1f} s "
                                   f"(server label_to_serving_s {fmt(run['deployment_label_to_serving_s'])}), "
                                   f"load {run['loadavg_before']}")
    kinds = [s["kind"] for s in runs[0]["steps"]]
    rows = []
    for run in runs:
        p = run["parts"]
        rows.append([run["backend"], str(run["repeat"]), run["label_to_first_prediction_s"],
                     run["deployment_label_to_serving_s"], p["run_queued_s"],
                     *[p.get(f"step_{k}_s") for k in kinds],
                     sum(v for k, v in p.items() if k.startswith("handoff_") and v is not None),
                     p["deploy_to_first_prediction_s"], run["test_accuracy"],
                     " ".join(f"{x:.2f}" for x in run["loadavg_before"])])
    print_table(["backend", "run", "label->predict s", "deploy label_to_serving_s", "queued s",
                 *[f"{k} s" for k in kinds], "hand-offs s", "deploy->predict s", f"test {runs[0]['metric']}", "load 1/5/15"], rows,
                title=f"Label to serving (s), {args.task} ({runs[0]['learner'] or 'built-in'}"
                      f"{' ' + str(runs[0]['params']) if runs[0]['params'] else ''}): {args.samples} items, "
                      f"{args.budget} labels{', epochs ' + str(runs[0]['epochs']) if runs[0]['epochs'] else ''}, "
                      f"torch threads {args.torch_threads or 'default'}; "
                      f"{runs[0]['server']}; {runs[0]['worker']}; {machine['cpus']} CPUs ({machine['cpu_model']})")
    summary = {}
    for backend in backends:
        mine = [r for r in runs if r["backend"] == backend]
        best = min(r["label_to_first_prediction_s"] for r in mine)
        summary[backend] = {"best_s": best, "label_to_first_prediction_s": spread([r["label_to_first_prediction_s"] for r in mine]),
                            "target_s": target_s, "meets_target": best <= target_s}
        sp = summary[backend]["label_to_first_prediction_s"]
        print(f"{backend:>9}: best {best:.1f} s (runs {fmt(sp['min'])}..{fmt(sp['max'])}); target <= {target_s:g} s: "
              f"{'met' if best <= target_s else 'NOT met'}")
    path = write_report("label_to_serving" if args.task == "classification" else f"label_to_serving_{args.task}", {"args": vars(args), "runs": runs, "summary": summary})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
