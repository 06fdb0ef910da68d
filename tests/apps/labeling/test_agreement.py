"""Agreement: kappas against hand-checked examples, pair scores per task type, and the API."""
import math

import pytest

from apps.labeling import agreement as ag


def test_cohen_kappa_hand_checked():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 → po = 0.7, pe = 0.5*0.6 + 0.5*0.4 = 0.5 → κ = 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert math.isclose(ag.cohen_kappa(a, b), 0.4)
    from sklearn.metrics import cohen_kappa_score

    assert math.isclose(ag.cohen_kappa(a, b), cohen_kappa_score(a, b))
    assert ag.cohen_kappa(["x", "x"], ["x", "x"]) == 1.0 and ag.cohen_kappa([], []) is None


def test_fleiss_kappa_hand_checked():
    # Fleiss (1971) worked example as on Wikipedia: 10 subjects, 14 raters, 5 categories → κ ≈ 0.210.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    ratings = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert round(ag.fleiss_kappa(ratings), 3) == 0.210
    # Two raters: Fleiss' kappa uses pooled marginals (Scott's pi), yes = 55/100, no = 45/100 → pe = 0.505, po = 0.7 → 0.195 / 0.495.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert math.isclose(ag.fleiss_kappa([[x, y] for x, y in zip(a, b)]), (0.7 - 0.505) / (1 - 0.505))


def test_pair_scores():
    box = {"label": "cat", "x": 0.0, "y": 0.0, "w": 0.5, "h": 0.5}
    shifted = dict(box, x=0.25)  # overlap 0.25*0.5 over union 0.375 → 1/3
    assert math.isclose(ag.detection_pair({"boxes": [box]}, {"boxes": [shifted]}), 1 / 3)
    # Hungarian matching is order-free; an unmatched extra box counts 0; another label never matches.
    other = {"label": "cat", "x": 0.6, "y": 0.6, "w": 0.2, "h": 0.2}
    assert math.isclose(ag.detection_pair({"boxes": [box, other]}, {"boxes": [other, box]}), 1.0)
    assert math.isclose(ag.detection_pair({"boxes": [box, other]}, {"boxes": [box]}), 0.5)
    assert ag.detection_pair({"boxes": [box]}, {"boxes": [dict(box, label="dog")]}) == 0.0
    assert ag.detection_pair({"boxes": []}, {"boxes": [], "polygons": []}) == 1.0
    # Regions: per-label IoU of time spans, unions merged.
    a = {"regions": [{"label": "s", "start": 0, "end": 2}, {"label": "s", "start": 1, "end": 3}]}
    b = {"regions": [{"label": "s", "start": 2, "end": 4}]}
    assert math.isclose(ag.regions_pair(a, b), 1 / 4)
    assert math.isclose(ag.regions_pair(dict(a, label="x"), dict(a, label="y")), 0.5)
    # Points: fraction equal.
    assert ag.points_pair({"point_labels": [0, 1, 1, -1]}, {"point_labels": [0, 1, 2, -1]}) == 0.75
    # Cuboids: 3D IoU with yaw; a unit-offset pair of 2 m cubes → 1/3; a 45° turn of the same cube → √2/2.
    c = {"label": "car", "center": [0, 0, 0], "size": [2, 2, 2], "yaw": 0.0}
    assert math.isclose(ag.cuboid_iou(c, dict(c, center=[1, 0, 0])), 1 / 3)
    assert math.isclose(ag.cuboid_iou(c, dict(c, yaw=math.pi / 4)), math.sqrt(2) / 2)
    assert math.isclose(ag.cuboid_iou(c, dict(c, center=[0, 0, 1])), 1 / 3)
    assert ag.cuboids_pair({"cuboids": [c]}, {"cuboids": [dict(c, center=[9, 9, 9])]}) == 0.0


def test_compute_per_task_per_annotator_overall():
    tasks = [(1, [("a", {"label": "x"}), ("b", {"label": "x"})]),
             (2, [("a", {"label": "x"}), ("b", {"label": "y"})]),
             (3, [("a", {"label": "y"}), ("b", {"label": "y"})]),
             (4, [("a", {"label": "y"})])]  # one annotation: left out
    out = ag.agreement_compute(task_type="classification", tasks=tasks)
    assert [r["task"] for r in out["per_task"]] == [1, 2, 3]
    assert [r["score"] for r in out["per_task"]] == [1.0, 0.0, 1.0]
    assert out["overall"]["kappa_kind"] == "cohen"
    assert math.isclose(out["overall"]["kappa"], ag.cohen_kappa(["x", "x", "y"], ["x", "y", "y"]))
    assert {r["annotator"]: r["pairs"] for r in out["per_annotator"]} == {"a": 3, "b": 3}
    three = tasks[:3] + [(5, [("a", {"label": "x"}), ("b", {"label": "x"}), ("c", {"label": "y"})])]
    out = ag.agreement_compute(task_type="classification", tasks=three)
    assert out["overall"]["kappa_kind"] == "fleiss"
    assert math.isclose(out["per_task"][-1]["score"], 1 / 3)


@pytest.fixture
def boxes_by_two(lead, annotator, django_capture_on_commit_callbacks, digits):
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import membership_set, project_create
    from apps.samples.services import IngestItem, samples_ingest

    project = project_create(user=lead, name="boxes", modality="image", task_type="detection", labels=["cat", "dog"],
                             annotations_per_task=2)
    membership_set(project=project, user=annotator, role="annotator")
    samples_ingest(project=project, items=[IngestItem(external_id=f"s{i}", content=png) for i, (png, _) in enumerate(digits[:2])])
    with django_capture_on_commit_callbacks(execute=True):
        round_create(project=project, user=lead, budget=2, strategy="random")
    box = {"label": "cat", "x": 0.0, "y": 0.0, "w": 0.5, "h": 0.5}
    for user, shift in ((lead, 0.0), (annotator, 0.25)):
        while (task := task_lease_next(project=project, user=user)) is not None:
            annotation_submit(task=task, user=user, result={"boxes": [dict(box, x=shift)]})
    return project


def test_agreement_api(api, lead, annotator, outsider, boxes_by_two):
    project = boxes_by_two
    r = api(lead).get(f"/api/v1/projects/{project.id}/agreement/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["task_type"] == "detection" and len(body["per_task"]) == 2
    assert all(math.isclose(t["score"], 1 / 3) for t in body["per_task"])
    assert {a["annotator"] for a in body["per_annotator"]} == {"lead", "annotator"}
    assert math.isclose(body["overall"]["score"], 1 / 3) and body["overall"]["tasks"] == 2
    assert api(annotator).get(f"/api/v1/projects/{project.id}/agreement/").status_code == 403
    assert api(outsider).get(f"/api/v1/projects/{project.id}/agreement/").status_code == 404


def test_rejected_annotations_leave_agreement(api, lead, annotator, boxes_by_two):
    from apps.labeling.models import Annotation
    from apps.labeling.review import annotation_review

    project = boxes_by_two
    ann = Annotation.objects.filter(task__project=project, annotator=annotator).first()
    annotation_review(annotation=ann, user=lead, action="reject", comment="off by a quarter")
    body = api(lead).get(f"/api/v1/projects/{project.id}/agreement/").json()
    assert len(body["per_task"]) == 1
