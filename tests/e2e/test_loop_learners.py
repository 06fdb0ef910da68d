"""Every task type learns, end to end: the whole loop over HTTP with token auth (a production service and an
annotator's client), against PostgreSQL, Redis and a real Celery worker (the fixture of test_loop_with_worker).

- A detection project: push scenes, label a random round, train the built-in detector (train → evaluate → export
  → gate), serve its boxes, an ``auto`` round scored by its uncertainty whose tasks carry its boxes as
  pre-annotations, edited and submitted, then a second run compared with the deployed model and gated.
- An image classification project trained by the example plug-in ``sklearn-probe`` (an entry point installed by
  ``make install``): deployed by the gate, serving, an ``auto`` round on its probabilities, a second plug-in run
  compared with it, then a built-in CNN run compared with the deployed plug-in version.
"""
from __future__ import annotations

import pytest
import requests

from tests.conftest import b64
from tests.e2e.test_loop_with_worker import _poll, celery_worker_process  # noqa: F401  (a fixture)

DET_LABELS = ["0", "1", "4", "7"]
DET_FAST = {"epochs": 25, "image_size": 64, "width": 16, "batch_size": 8}
SPLITS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _sessions(live_server):
    from apps.accounts.services import token_get_or_create, user_create

    lead = requests.Session()
    lead.headers["Authorization"] = f"Token {token_get_or_create(user=user_create(username='lead', role='lead'))}"
    annotator = requests.Session()
    annotator.headers["Authorization"] = \
        f"Token {token_get_or_create(user=user_create(username='ann', role='annotator'))}"
    return lead, annotator, live_server.url + "/api/v1"


def _project(lead, api, **fields) -> dict:
    r = lead.post(f"{api}/projects/", json={"modality": "image", "split_ratios": SPLITS, "auto_deploy": True,
                                            **fields})
    assert r.status_code == 201, r.text
    project = r.json()
    r = lead.post(f"{api}/projects/{project['id']}/members/", json={"username": "ann", "role": "annotator"})
    assert r.status_code == 201, r.text
    return project


def _round(lead, api, pid, budget, strategy) -> dict:
    r = lead.post(f"{api}/projects/{pid}/rounds/", json={"budget": budget, "strategy": strategy})
    assert r.status_code == 202, r.text
    rnd = _poll(lead, f"{api}/rounds/{r.json()['id']}/", lambda b: b["status"] in ("succeeded", "failed", "cancelled"))
    assert rnd["status"] == "succeeded", rnd
    assert rnd["selected"] == budget, rnd
    return rnd


def _annotate(annotator, api, pid, answer) -> list[dict]:
    """Lease every open task as the annotator and submit ``answer(task)``; returns the tasks as leased."""
    tasks = []
    while (r := annotator.post(f"{api}/projects/{pid}/tasks/next/")).status_code != 204:
        assert r.status_code == 200, r.text
        task = r.json()
        tasks.append(task)
        r = annotator.post(f"{api}/tasks/{task['id']}/annotations/",
                           json={"result": answer(task), "active_seconds": 2.0})
        assert r.status_code == 201, r.text
    return tasks


def _train(lead, api, pid, body) -> tuple[dict, dict]:
    r = lead.post(f"{api}/projects/{pid}/training-runs/", json=body)
    assert r.status_code == 202, r.text
    run = _poll(lead, f"{api}/training-runs/{r.json()['id']}/",
                lambda b: b["status"] in ("succeeded", "failed", "cancelled"), timeout=300)
    assert run["status"] == "succeeded", run
    assert [step["kind"] for step in run["steps"]] == ["train", "evaluate", "export", "deploy"]
    model = lead.get(f"{api}/models/{run['model']}/").json()
    return run, model


def _gate(run) -> dict:
    return [step for step in run["steps"] if step["kind"] == "deploy"][0]["result"]


def _deployed(lead, api, pid) -> int:
    r = lead.get(f"{api}/projects/{pid}/deployments/")
    assert r.status_code == 200, r.text
    return r.json()["model"]


def _iou(a, b) -> float:
    x0, y0 = max(a["x"], b["x"]), max(a["y"], b["y"])
    x1, y1 = min(a["x"] + a["w"], b["x"] + b["w"]), min(a["y"] + a["h"], b["y"] + b["h"])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a["w"] * a["h"] + b["w"] * b["h"] - inter
    return inter / union if union > 0 else 0.0


def _edit(prediction: dict, truth: dict) -> dict:
    """What an annotator does with a pre-annotation: keep each predicted box that matches a true object (same
    label, IoU >= 0.5) as it is, delete the others, draw the missed objects."""
    kept, boxes = set(), []
    for true in truth["boxes"]:
        match = next((i for i, p in enumerate(prediction["boxes"]) if i not in kept and p["label"] == true["label"]
                      and _iou(p, true) >= 0.5), None)
        if match is None:
            boxes.append(dict(true))
        else:
            kept.add(match)
            boxes.append({k: prediction["boxes"][match][k] for k in ("label", "x", "y", "w", "h")})
    return {"boxes": boxes}


@pytest.mark.integration
@pytest.mark.slow
def test_detection_loop_with_worker(live_server, celery_worker_process):  # noqa: F811
    from fixtures.detection import detection_scenes

    lead, annotator, api = _sessions(live_server)
    project = _project(lead, api, name="boxes", task_type="detection", labels=DET_LABELS)
    pid = project["id"]
    assert project["task_type"] == "detection"
    listing = lead.get(f"{api}/projects/{pid}/learners/").json()
    assert listing["run_default"] == "centernet"

    scenes = detection_scenes(60, seed=0, labels=tuple(DET_LABELS), size=64)
    truth = {}
    for start in range(0, 60, 30):
        batch = [{"external_id": f"s{i}", "content": b64(scenes[i][0]),
                  "metadata": {"light": "dark" if i % 4 == 0 else "day"}} for i in range(start, start + 30)]
        r = lead.post(f"{api}/projects/{pid}/samples/", json={"samples": batch})
        assert r.status_code == 201, r.text
        truth.update({s["id"]: scenes[int(s["external_id"][1:])][1] for s in r.json()["samples"]})
    assert len(truth) == 60

    # A random round (no model yet), labeled with the true boxes through the API.
    rnd = _round(lead, api, pid, 40, "random")
    assert rnd["model_version"] is None
    tasks = _annotate(annotator, api, pid, lambda task: truth[task["sample"]["id"]])
    assert len(tasks) == 40 and all(t["prediction"] is None for t in tasks)

    # The worker trains the detector; the gate deploys the first model.
    run, model = _train(lead, api, pid, {"params": DET_FAST})
    assert run["config"]["learner"] == "centernet" and run["config"]["params"] == DET_FAST
    assert model["task_type"] == "detection" and model["learner"] == "centernet" and model["exported"]
    assert model["manifest"]["task_type"] == "detection" and model["manifest"]["labels"] == DET_LABELS
    assert model["parity"]["passed"], model["parity"]
    report = model["eval_report"]
    assert report["task_type"] == "detection" and report["primary"] == "map50" and report["n"] > 0
    assert 0.0 < report["metrics"]["map50"] <= 1.0, report["metrics"]
    assert model["baseline_model"] is None and _gate(run)["deployed"], _gate(run)
    assert _deployed(lead, api, pid) == model["id"]

    r = lead.post(f"{api}/projects/{pid}/predict/", json={"content": b64(scenes[0][0])})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model["id"] and isinstance(body["boxes"], list)
    for box in body["boxes"]:
        assert box["label"] in DET_LABELS and 0 <= box["score"] <= 1 and 0 <= box["x"] <= 1 and box["w"] > 0

    # An auto round is scored by the detector's uncertainty; the annotator's tasks carry its boxes, which they
    # edit and submit.
    rnd = _round(lead, api, pid, 10, "auto")
    assert rnd["model_version"] == model["id"] and rnd["strategy_used"] == "auto/margin_diverse", rnd
    tasks = _annotate(annotator, api, pid, lambda task: _edit(task["prediction"], truth[task["sample"]["id"]]))
    assert len(tasks) == 10
    assert all(t["prediction"]["model"] == model["id"] and isinstance(t["prediction"]["boxes"], list)
               for t in tasks)
    assert any(t["prediction"]["boxes"] for t in tasks), "the detector found nothing to pre-annotate"

    # A second run on the larger dataset is compared with the deployed model on the same test images; the gate
    # deploys it exactly when it does not regress.
    second, model2 = _train(lead, api, pid, {"params": {**DET_FAST, "epochs": 10}, "seed": 1})
    assert second["dataset_version"]["number"] == run["dataset_version"]["number"] + 1
    assert model2["baseline_model"] == model["id"]
    cmp = model2["comparison"]
    assert cmp["task_type"] == "detection" and cmp["primary"] == "map50" and cmp["n"] == model2["eval_report"]["n"]
    assert cmp["test"]["method"] == "permutation" and 0 <= cmp["test"]["p_value"] <= 1
    gate = _gate(second)
    assert gate["deployed"] is not cmp["regressed"], (gate, cmp["reasons"])
    assert _deployed(lead, api, pid) == (model2["id"] if gate["deployed"] else model["id"])


@pytest.mark.integration
@pytest.mark.slow
def test_plugin_learner_loop_with_worker(live_server, celery_worker_process, digits):  # noqa: F811
    lead, annotator, api = _sessions(live_server)
    labels = [str(i) for i in range(5)]  # five classes: 60 random train labels give each >= 3 (see the auto round)
    images = [png for png, label in digits if label < 5]
    classes = [str(label) for _, label in digits if label < 5]
    project = _project(lead, api, name="digits-probe", labels=labels)
    pid = project["id"]
    listing = lead.get(f"{api}/projects/{pid}/learners/").json()
    assert listing["run_default"] is None  # classification: the built-in pipeline unless a run names a learner
    [probe] = [e for e in listing["learners"] if e["name"] == "sklearn-probe"]
    assert probe["source"].startswith("looplab_sklearn_probe") and "C" in probe["params"], probe

    truth = {}
    for start in range(0, 200, 100):
        batch = [{"external_id": f"d{i}", "content": b64(images[i]),
                  "metadata": {"shift": "night" if i % 4 == 0 else "day"}} for i in range(start, start + 100)]
        r = lead.post(f"{api}/projects/{pid}/samples/", json={"samples": batch})
        assert r.status_code == 201, r.text
        truth.update({s["id"]: classes[int(s["external_id"][1:])] for s in r.json()["samples"]})

    rnd = _round(lead, api, pid, 100, "random")
    train_counts = {label: 0 for label in labels}
    for item in rnd["items"]:
        if item["split"] == "train":
            train_counts[truth[item["sample"]]] += 1
    assert len(_annotate(annotator, api, pid, lambda task: {"label": truth[task["sample"]["id"]]})) == 100

    # The plug-in trains in the worker; the gate deploys its first model.
    run, model = _train(lead, api, pid, {"learner": "sklearn-probe"})
    assert run["config"]["learner"] == "sklearn-probe"
    assert model["learner"] == "sklearn-probe" and model["task_type"] == "classification" and model["exported"]
    assert model["manifest"]["learner"] == "sklearn-probe" and model["manifest"]["labels"] == labels
    assert model["parity"]["passed"], model["parity"]
    report = model["eval_report"]
    assert report["primary"] == "accuracy" and report["metrics"]["accuracy"] > 0.5, report["metrics"]
    assert _gate(run)["deployed"] and _deployed(lead, api, pid) == model["id"]

    r = lead.post(f"{api}/projects/{pid}/predict/", json={"content": b64(images[500])})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == model["id"] and body["label"] in labels and set(body["scores"]) == set(labels)
    assert abs(sum(body["scores"].values()) - 1.0) < 1e-4 and body["confidence"] == max(body["scores"].values())

    # An auto round on the plug-in's probabilities (margin with batch diversity once every class has 3 train
    # labels, the cold start's coverage before); the tasks carry its labels as pre-annotations.
    rnd = _round(lead, api, pid, 30, "auto")
    warm = min(train_counts.values()) >= 3
    assert rnd["model_version"] == model["id"], rnd
    assert rnd["strategy_used"] == ("auto/margin_diverse" if warm else "auto/cold_start_typicality"), train_counts
    tasks = _annotate(annotator, api, pid, lambda task: {"label": truth[task["sample"]["id"]]})
    assert len(tasks) == 30
    for t in tasks:
        scores = t["prediction"]["scores"]
        assert t["prediction"]["model"] == model["id"] and t["prediction"]["label"] == max(scores, key=scores.get)

    # A second plug-in run on 30 more labels is compared with the deployed one by a paired test on the same test
    # samples; the gate deploys it exactly when it does not regress.
    second, model2 = _train(lead, api, pid, {"learner": "sklearn-probe", "params": {"max_iter": 500}})
    assert second["config"]["params"]["max_iter"] == 500
    assert model2["baseline_model"] == model["id"]
    cmp = model2["comparison"]
    assert cmp["test"]["method"] == "mcnemar" and 0 <= cmp["test"]["p_value"] <= 1, cmp
    assert cmp["n"] == model2["eval_report"]["n"] and "shift=day" in cmp["per_slice"]
    gate = _gate(second)
    assert gate["deployed"] is not cmp["regressed"], (gate, cmp["reasons"])
    deployed = _deployed(lead, api, pid)
    assert deployed == (model2["id"] if gate["deployed"] else model["id"])

    # A built-in CNN run is compared with the deployed plug-in version (its probabilities on the same samples).
    cnn, model3 = _train(lead, api, pid, {"epochs": 3})
    assert model3["learner"] == "" and model3["manifest"] is None
    cmp = model3["comparison"]
    assert model3["baseline_model"] == deployed
    assert model3["baseline_report"]["n"] == model3["eval_report"]["n"] == cmp["new"]["n"] > 0
    # no label came in since the plug-in's run: the built-in path scores the deployed plug-in version on the same
    # test samples exactly as the plug-in's own evaluation did
    plugin_report = model2["eval_report"] if deployed == model2["id"] else model2["baseline_report"]
    assert model3["baseline_report"]["accuracy"] == pytest.approx(plugin_report["metrics"]["accuracy"], abs=1e-9)
    assert "mcnemar" in cmp and "regressed" in cmp, cmp
    gate = _gate(cnn)
    assert gate["deployed"] is not cmp["regressed"], (gate, cmp)
