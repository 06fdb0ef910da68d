"""Label checks for a task type without class labels: a point-segmentation project's label check cross-validates
the project's learner (the deployed version's, with its run's parameters) and ranks the lamps whose labels were
corrupted first, naming the shapes concerned."""
import copy

import numpy as np
import pytest

PARAMS = {"epochs": 6, "n_points": 256, "draws": 1, "batch_size": 8, "device": "cpu",
          "arch": {"global_dim": 128, "embed_dim": 64}}


@pytest.mark.slow
def test_segmentation_label_check_finds_relabeled_parts(api, lead, annotator, django_capture_on_commit_callbacks):
    from fixtures.shapes import PART_LABELS, part_items

    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from tests.apps.helpers import run_round

    capture = django_capture_on_commit_callbacks
    project = project_create(user=lead, name="lamps", modality="pointcloud", task_type="point_segmentation",
                             labels=list(PART_LABELS), auto_deploy=True)
    membership_set(project=project, user=annotator, role="annotator")
    items = part_items(40, 11)
    results = samples_ingest(project=project, items=[IngestItem(external_id=f"lamp{i}", content=c)
                                                     for i, (c, _) in enumerate(items)])
    truth = {r["id"]: copy.deepcopy(items[int(r["external_id"][4:])][1]) for r in results}
    rng = np.random.default_rng(0)
    corrupted = set()
    for pk in sorted(truth)[3::10]:  # 4 lamps: half of one part given another part's label
        y = np.asarray(truth[pk]["point_labels"])
        src = int(rng.integers(0, 3))
        idx = np.flatnonzero(y == src)
        y[idx[: max(20, len(idx) // 2)]] = (src + 1) % 3
        truth[pk]["point_labels"] = y.tolist()
        corrupted.add(pk)
    run_round(project, lead, capture, budget=40, strategy="random")
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        annotation_submit(task=task, user=annotator, result=truth[task.sample_id])

    client = api(lead)
    # the check needs a learner's parameters: those of the deployed version's run
    with capture(execute=True):
        r = client.post(f"/api/v1/projects/{project.id}/training-runs/", {"params": PARAMS}, format="json")
    assert client.get(f"/api/v1/training-runs/{r.json()['id']}/").json()["status"] == "succeeded"
    r = client.get(f"/api/v1/projects/{project.id}/label-issues/")  # in-request: classification only
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_task_type"
    with capture(execute=True):
        r = client.post(f"/api/v1/projects/{project.id}/label-checks/", {"limit": 10}, format="json")
    assert r.status_code == 202, r.content
    check = client.get(f"/api/v1/label-checks/{r.json()['id']}/").json()
    assert check["status"] == "succeeded", check
    assert check["space"] == "cross-validated pointnet (2 folds)" and check["n_checked"] == 40
    top = [f["sample"] for f in check["findings"][:8]]
    assert len(corrupted & set(top)) >= 3, (top, corrupted)
    first = check["findings"][0]
    assert first["kind"] == "label_issue" and first["annotation"] and first["review_status"] == "pending"
    assert first["issues"] and first["issues"][0]["kind"] == "mislabeled_points"
    assert first["label"] in PART_LABELS and first["suggested_label"] in PART_LABELS


def test_shape_label_check_needs_labels(api, lead):
    from apps.projects.services import project_create

    project = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=["a", "b"])
    r = api(lead).post(f"/api/v1/projects/{project.id}/label-checks/", {}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_enough_labels"
