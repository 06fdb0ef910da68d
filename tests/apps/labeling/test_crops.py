"""Derived samples: a detection project sends its objects as crops into a classification project; each crop links
to its parent sample and shape, inherits its metadata, sits on its parent's split, and sending again adds
nothing. A round in the child project picks among the crops."""
import pytest

LABELS = ["0", "1", "4", "7"]


@pytest.fixture
def boxes_and_child(lead, annotator, django_capture_on_commit_callbacks):
    from fixtures.detection import detection_scenes

    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest
    from tests.apps.helpers import run_round

    project = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=LABELS)
    child = project_create(user=lead, name="kinds", modality="image", task_type="classification",
                           labels=["thin", "bold"])
    for p in (project, child):
        membership_set(project=p, user=annotator, role="annotator")
    scenes = detection_scenes(12, seed=2, labels=tuple(LABELS), size=96)
    results = samples_ingest(project=project, items=[
        IngestItem(external_id=f"s{i}", content=png, metadata={"light": "dark" if i % 2 else "day"})
        for i, (png, _) in enumerate(scenes)])
    truth = {r["id"]: scenes[int(r["external_id"][1:])][1] for r in results}
    run_round(project, lead, django_capture_on_commit_callbacks, budget=12, strategy="random")
    while (task := task_lease_next(project=project, user=annotator)) is not None:
        annotation_submit(task=task, user=annotator, result=truth[task.sample_id])
    return project, child, truth


def test_labeled_boxes_become_linked_crops_on_their_parents_split(api, lead, annotator, boxes_and_child,
                                                                   django_capture_on_commit_callbacks):
    from PIL import Image
    import io

    from apps.labeling.models import Task
    from apps.samples import content as content_io
    from apps.samples.models import Sample
    from tests.apps.helpers import run_round

    project, child, truth = boxes_and_child
    n_boxes = sum(len(t["boxes"]) for t in truth.values())
    client = api(lead)
    url = f"/api/v1/projects/{project.id}/crops/"
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(url, {"target": child.id, "padding": 0.1}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["parents"] == 12 and body["objects"] == n_boxes
    assert body["created"] + body["skipped"] == n_boxes and body["created"] >= n_boxes - 2 and body["duplicates"] == 0
    crops = list(Sample.objects.filter(project=child).select_related("parent"))
    assert len(crops) == body["created"]
    for crop in crops:
        parent = crop.parent
        assert parent.project_id == project.id and crop.split == parent.split
        assert crop.metadata["light"] == parent.metadata["light"] and crop.metadata["crop_source"] == "labels"
        shape = crop.parent_shape
        box = truth[parent.pk]["boxes"][shape["index"]]
        assert shape["label"] == box["label"] == crop.metadata["parent_label"]
        assert shape["box"] == pytest.approx([box["x"], box["y"], box["w"], box["h"]], abs=1e-6)
        w, h = Image.open(io.BytesIO(content_io.read_content(crop))).size
        assert abs(w - round(96 * box["w"] * 1.2)) <= 2 and abs(h - round(96 * box["h"] * 1.2)) <= 2
    # the API shows the link
    one = client.get(f"/api/v1/samples/{crops[0].pk}/").json()
    assert one["parent"] == crops[0].parent_id and one["parent_shape"]["project"] == project.id

    assert body["next_after"] is None
    # sending again adds nothing: objects already sent are skipped
    again = client.post(url, {"target": child.id, "padding": 0.1}, format="json").json()
    assert again["created"] == again["objects"] == 0 and again["parents"] == 12
    # from predictions (another source) with the same bytes, as a second crop project would: duplicates by content
    assert body["duplicates"] == 0

    # a round in the child project picks among the crops
    rnd = run_round(child, lead, django_capture_on_commit_callbacks, budget=5, strategy="auto")
    assert Task.objects.filter(round=rnd, sample__parent__project=project).count() == 5


def test_crops_go_on_where_the_last_call_stopped(api, lead, boxes_and_child):
    project, child, truth = boxes_and_child
    n_boxes = sum(len(t["boxes"]) for t in truth.values())
    client = api(lead)
    url = f"/api/v1/projects/{project.id}/crops/"
    got, after, calls = 0, 0, 0
    while True:
        body = client.post(url, {"target": child.id, "limit": 5, "after": after}, format="json").json()
        got += body["objects"]
        calls += 1
        assert body["objects"] <= 5
        if body["next_after"] is None:
            break
        after = body["next_after"]
    assert got == n_boxes and calls >= n_boxes // 5
    from apps.samples.models import Sample

    assert Sample.objects.filter(project=child).count() + 2 >= n_boxes  # (slivers under 4 px are skipped)


def test_crops_refuse_bad_targets_and_sources(api, lead, boxes_and_child):
    from apps.projects.services import project_create

    project, child, _ = boxes_and_child
    audio = project_create(user=lead, name="audio", modality="audio", task_type="classification", labels=["a", "b"])
    client = api(lead)
    url = f"/api/v1/projects/{project.id}/crops/"
    for body, code in (({"target": audio.id}, "invalid_target"), ({"target": project.id}, "invalid_target"),
                       ({"target": child.id, "labels": ["9"]}, "invalid_label"),
                       ({"target": child.id, "min_score": 2}, "invalid_source")):
        r = client.post(url, body, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.content
    r = client.post(url, {"target": child.id, "source": "predictions"}, format="json")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_deployment"
    r = client.post(f"/api/v1/projects/{child.id}/crops/", {"target": project.id}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_task_type"
    r = client.post(url, {"target": 999999}, format="json")
    assert r.status_code == 404


def test_point_segmentation_parts_become_sub_clouds(api, lead, annotator, django_capture_on_commit_callbacks):
    from fixtures.shapes import PART_LABELS, part_items

    from apps.labeling.services import annotation_submit, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.models import Sample
    from apps.samples.points import sample_points
    from apps.samples.services import IngestItem, samples_ingest
    from tests.apps.helpers import run_round

    lamps = project_create(user=lead, name="lamps", modality="pointcloud", task_type="point_segmentation",
                           labels=list(PART_LABELS))
    parts = project_create(user=lead, name="parts", modality="pointcloud", task_type="classification",
                           labels=["round", "square"])
    membership_set(project=lamps, user=annotator, role="annotator")
    items = part_items(4, 3)
    results = samples_ingest(project=lamps, items=[IngestItem(external_id=f"l{i}", content=c)
                                                   for i, (c, _) in enumerate(items)])
    truth = {r["id"]: items[int(r["external_id"][1:])][1] for r in results}
    run_round(lamps, lead, django_capture_on_commit_callbacks, budget=4, strategy="random")
    while (task := task_lease_next(project=lamps, user=annotator)) is not None:
        annotation_submit(task=task, user=annotator, result=truth[task.sample_id])
    with django_capture_on_commit_callbacks(execute=True):
        r = api(lead).post(f"/api/v1/projects/{lamps.id}/crops/", {"target": parts.id, "labels": ["shade"]},
                           format="json")
    assert r.status_code == 200 and r.json()["created"] == 4, r.content
    for crop in Sample.objects.filter(project=parts).select_related("parent"):
        want = sum(1 for v in truth[crop.parent_id]["point_labels"] if v == PART_LABELS.index("shade"))
        assert crop.parent_shape["n_points"] == want == len(sample_points(sample=crop).data)
        assert crop.split == crop.parent.split and crop.metadata["parent_label"] == "shade"
