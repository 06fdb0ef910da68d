"""Every export format, read back with a real parser (pycocotools, xml.etree, numpy, csv, json, yaml)."""
from __future__ import annotations

import csv
import io
import json
import math
import wave
import zipfile
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from tests.apps.helpers import push_digits


def _wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _annotated_project(lead, *, modality, task_type, labels, contents, results, capture, review=None,
                       external_ids=None):
    """A project with one task per content, each annotated through the services with ``results[i]``."""
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import project_create
    from apps.samples.services import IngestItem, samples_ingest

    project = project_create(user=lead, name=f"{task_type} export", modality=modality, task_type=task_type, labels=labels)
    external_ids = external_ids or [f"s{i}" for i in range(len(contents))]
    samples_ingest(project=project, items=[IngestItem(external_id=e, content=c) for e, c in zip(external_ids, contents)])
    with capture(execute=True):
        round_create(project=project, user=lead, budget=len(contents), strategy="random")
    by_sample = {}
    while (task := task_lease_next(project=project, user=lead)) is not None:
        i = external_ids.index(task.sample.external_id)
        by_sample[i] = annotation_submit(task=task, user=lead, result=results[i])
    assert len(by_sample) == len(contents)
    return project, by_sample


def _export(api, lead, project, fmt, capture, **extra):
    c = api(lead)
    with capture(execute=True):
        r = c.post(f"/api/v1/projects/{project.id}/exports/", {"format": fmt, **extra}, format="json")
    assert r.status_code == 202, r.content
    body = c.get(f"/api/v1/exports/{r.json()['id']}/").json()
    assert body["status"] == "succeeded", body
    assert body["progress"] == 100 and body["download_url"] == f"/api/v1/exports/{body['id']}/download"
    download = c.get(body["download_url"])
    assert download.status_code == 200 and "attachment" in download["Content-Disposition"]
    return body, b"".join(download.streaming_content)


BOXES = [
    {"boxes": [{"label": "cat", "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}],
     "polygons": [{"label": "dog", "points": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9]]}]},
    {"boxes": [{"label": "dog", "x": 0.0, "y": 0.0, "w": 0.5, "h": 0.25},
               {"label": "cat", "x": 0.5, "y": 0.5, "w": 0.5, "h": 0.5}], "polygons": []},
    {"boxes": [], "polygons": []},
]


@pytest.fixture
def detection(lead, digits, django_capture_on_commit_callbacks):
    contents = [png for png, _ in digits[:3]]
    return _annotated_project(lead, modality="image", task_type="detection", labels=["cat", "dog"], contents=contents,
                              results=BOXES, capture=django_capture_on_commit_callbacks)


def test_coco_reads_back_with_pycocotools(api, lead, detection, django_capture_on_commit_callbacks, tmp_path):
    from pycocotools.coco import COCO

    project, anns = detection
    body, data = _export(api, lead, project, "coco", django_capture_on_commit_callbacks)
    assert body["dataset_version"] is None and body["annotations"] == 3 and len(body["digest"]) == 64
    assert body["counts"] == {"images": 3, "annotations": 4}
    path = tmp_path / "coco.json"
    path.write_bytes(data)
    coco = COCO(str(path))
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    assert set(cats) == {"cat", "dog"}
    first = anns[0].sample
    img = coco.loadImgs([first.pk])[0]
    W, H = first.content_info["width"], first.content_info["height"]
    assert (img["width"], img["height"]) == (W, H)
    cat_ann = coco.loadAnns(coco.getAnnIds(imgIds=[first.pk], catIds=[cats["cat"]]))[0]
    assert np.allclose(cat_ann["bbox"], [0.1 * W, 0.2 * H, 0.3 * W, 0.4 * H])
    dog_ann = coco.loadAnns(coco.getAnnIds(imgIds=[first.pk], catIds=[cats["dog"]]))[0]
    mask = coco.annToMask(dog_ann)  # the polygon rasterises to about its area (a triangle of 0.08 of the image)
    assert mask.shape == (H, W) and abs(mask.sum() / (W * H) - 0.08) < 0.03
    assert len(coco.getAnnIds(imgIds=[anns[2].sample.pk])) == 0


def test_yolo_zip_reads_back(api, lead, detection, django_capture_on_commit_callbacks):
    import yaml

    project, anns = detection
    _, data = _export(api, lead, project, "yolo", django_capture_on_commit_callbacks)
    z = zipfile.ZipFile(io.BytesIO(data))
    meta = yaml.safe_load(z.read("data.yaml"))
    assert meta["names"] == {0: "cat", 1: "dog"} and meta["nc"] == 2
    sample = anns[1].sample
    names = [n for n in z.namelist() if n.startswith(f"labels/{sample.split}/{sample.pk}_")]
    rows = np.loadtxt(io.BytesIO(z.read(names[0])), ndmin=2)
    assert rows.shape == (2, 5)
    assert np.allclose(rows[0], [1, 0.25, 0.125, 0.5, 0.25]) and np.allclose(rows[1], [0, 0.75, 0.75, 0.5, 0.5])
    image = next(n for n in z.namelist() if n.startswith(f"images/{sample.split}/{sample.pk}_"))
    from PIL import Image

    assert Image.open(io.BytesIO(z.read(image))).size == (sample.content_info["width"], sample.content_info["height"])
    assert f"images/{sample.split}" in meta.values()


def test_voc_zip_reads_back_with_elementtree(api, lead, detection, django_capture_on_commit_callbacks):
    project, anns = detection
    _, data = _export(api, lead, project, "voc", django_capture_on_commit_callbacks)
    z = zipfile.ZipFile(io.BytesIO(data))
    sample = anns[0].sample
    W, H = sample.content_info["width"], sample.content_info["height"]
    root = ET.fromstring(z.read(next(n for n in z.namelist() if n.startswith(f"Annotations/{sample.pk}_"))))
    assert int(root.findtext("size/width")) == W and int(root.findtext("size/height")) == H
    objects = {o.findtext("name"): o for o in root.findall("object")}
    assert set(objects) == {"cat", "dog"}
    box = [int(objects["cat"].findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert box == [round(0.1 * W) + 1, round(0.2 * H) + 1, round(0.4 * W), round(0.6 * H)]
    dog = [int(objects["dog"].findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
    assert dog == [round(0.5 * W) + 1, round(0.5 * H) + 1, round(0.9 * W), round(0.9 * H)]  # the polygon's bounds
    split_list = z.read(f"ImageSets/Main/{sample.split}.txt").decode().split()
    assert any(s.startswith(f"{sample.pk}_") for s in split_list)


def test_wrong_format_and_roles(api, lead, annotator, outsider, detection, django_capture_on_commit_callbacks):
    from apps.projects.services import membership_set

    project, _ = detection
    r = api(lead).post(f"/api/v1/projects/{project.id}/exports/", {"format": "kitti"}, format="json")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_format"
    assert r.json()["error"]["details"]["formats"] == ["coco", "yolo", "voc"]
    membership_set(project=project, user=annotator, role="annotator")
    assert api(annotator).post(f"/api/v1/projects/{project.id}/exports/", {"format": "coco"}, format="json").status_code == 403
    assert api(outsider).post(f"/api/v1/projects/{project.id}/exports/", {"format": "coco"}, format="json").status_code == 404
    body, _ = _export(api, lead, project, "coco", django_capture_on_commit_callbacks)
    assert api(annotator).get(f"/api/v1/exports/{body['id']}/download").status_code == 403
    assert api(outsider).get(f"/api/v1/exports/{body['id']}/").status_code == 404


def test_export_uses_review_corrections_and_skips_rejected(api, lead, detection, django_capture_on_commit_callbacks, tmp_path):
    from pycocotools.coco import COCO

    from apps.labeling.review import annotation_review

    project, anns = detection
    fixed = {"boxes": [{"label": "dog", "x": 0.2, "y": 0.2, "w": 0.2, "h": 0.2}]}
    annotation_review(annotation=anns[0], user=lead, action="correct", result=fixed)
    annotation_review(annotation=anns[1], user=lead, action="reject", comment="missed one")
    body, data = _export(api, lead, project, "coco", django_capture_on_commit_callbacks)
    path = tmp_path / "coco.json"
    path.write_bytes(data)
    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == sorted([anns[0].sample.pk, anns[2].sample.pk])
    [only] = coco.loadAnns(coco.getAnnIds(imgIds=[anns[0].sample.pk]))
    assert coco.loadCats([only["category_id"]])[0]["name"] == "dog"
    reviewed, _ = _export(api, lead, project, "coco", django_capture_on_commit_callbacks, reviewed_only=True)
    assert reviewed["annotations"] == 1


def test_classification_csv_and_json_name_the_dataset_version(api, lead, project, digits, django_capture_on_commit_callbacks):
    from apps.labeling.services import round_create
    from tests.apps.helpers import label_all_open, truth_by_sample

    push_digits(project, digits, 12)
    with django_capture_on_commit_callbacks(execute=True):
        round_create(project=project, user=lead, budget=6, strategy="random")
    truth = truth_by_sample(project, digits)
    assert label_all_open(project, lead, truth) == 6
    body, data = _export(api, lead, project, "csv", django_capture_on_commit_callbacks)
    version = body["dataset_version"]
    assert version["number"] == 1 and body["digest"] == version["digest"]
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 6
    from apps.samples.models import Sample

    for row in rows:
        sample = Sample.objects.get(pk=int(row["sample_id"]))
        assert row["label"] == truth[sample.pk] == sample.label and row["split"] == sample.split
        assert row["external_id"] == sample.external_id and int(row["label_index"]) == int(row["label"])
    body2, data2 = _export(api, lead, project, "json", django_capture_on_commit_callbacks)
    assert body2["dataset_version"]["id"] == version["id"]  # nothing changed: the same frozen version
    parsed = json.loads(data2)
    assert parsed["labels"] == project.labels
    assert {(r["sample_id"], r["label"], r["split"]) for r in parsed["samples"]} == \
           {(int(r["sample_id"]), r["label"], r["split"]) for r in rows}


REGIONS = [
    {"regions": [{"label": "speech", "start": 0.1, "end": 0.6, "text": "hello, \"world\""},
                 {"label": "noise", "start": 1.0, "end": 1.5}], "label": "speech"},
    {"regions": [{"label": "speech", "start": 0.0, "end": 1.9, "text": "zwei\nzeilen"}]},
]


def test_audio_regions_csv_and_json(api, lead, django_capture_on_commit_callbacks):
    project, anns = _annotated_project(lead, modality="audio", task_type="audio_regions", labels=["speech", "noise"],
                                       contents=[_wav(2.0), _wav(2.5)], results=REGIONS,
                                       capture=django_capture_on_commit_callbacks)
    body, data = _export(api, lead, project, "regions_csv", django_capture_on_commit_callbacks)
    assert body["counts"] == {"clips": 2, "regions": 3}
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    first = [r for r in rows if int(r["sample_id"]) == anns[0].sample.pk]
    assert [(r["label"], float(r["start"]), float(r["end"]), r["text"]) for r in first] == \
           [("speech", 0.1, 0.6, 'hello, "world"'), ("noise", 1.0, 1.5, "")]
    assert first[0]["clip_label"] == "speech"
    second = [r for r in rows if int(r["sample_id"]) == anns[1].sample.pk]
    assert second[0]["text"] == "zwei\nzeilen"
    _, data = _export(api, lead, project, "regions_json", django_capture_on_commit_callbacks)
    clips = {c["sample_id"]: c for c in json.loads(data)["clips"]}
    assert clips[anns[0].sample.pk]["regions"] == REGIONS[0]["regions"] and clips[anns[0].sample.pk]["label"] == "speech"
    assert math.isclose(clips[anns[1].sample.pk]["duration_s"], 2.5, abs_tol=0.01)


CUBES = [
    {"cuboids": [{"label": "car", "center": [1.0, 2.0, 0.5], "size": [4.0, 2.0, 1.5], "yaw": 0.3},
                 {"label": "person", "center": [-1.0, 0.0, 0.9], "size": [0.5, 0.5, 1.8], "yaw": -1.2}]},
    {"cuboids": []},
]


def _clouds(n_clouds=2, n_points=300):
    from fixtures.shapes import encode_points, part_shapes

    return part_shapes(n=n_clouds, seed=3, n_points=n_points), encode_points


def test_cuboids_kitti_and_json(api, lead, django_capture_on_commit_callbacks):
    shapes, encode = _clouds()
    project, anns = _annotated_project(lead, modality="pointcloud", task_type="cuboids", labels=["car", "person"],
                                       contents=[encode(p, "ply") for p, _ in shapes], results=CUBES,
                                       capture=django_capture_on_commit_callbacks)
    _, data = _export(api, lead, project, "kitti", django_capture_on_commit_callbacks)
    z = zipfile.ZipFile(io.BytesIO(data))
    name = next(n for n in z.namelist() if n.startswith(f"label_2/{anns[0].sample.pk}_"))
    rows = [line.split() for line in z.read(name).decode().splitlines()]
    assert [r[0] for r in rows] == ["car", "person"] and all(len(r) == 15 for r in rows)
    for row, cuboid in zip(rows, CUBES[0]["cuboids"]):
        h, w, length, x, y, z_bottom, yaw = map(float, row[8:15])
        assert np.allclose([length, w, h], cuboid["size"]) and math.isclose(yaw, cuboid["yaw"], abs_tol=1e-6)
        assert np.allclose([x, y, z_bottom + h / 2], cuboid["center"], atol=1e-6)
    empty = next(n for n in z.namelist() if n.startswith(f"label_2/{anns[1].sample.pk}_"))
    assert z.read(empty) == b""
    _, data = _export(api, lead, project, "cuboids_json", django_capture_on_commit_callbacks)
    clouds = {c["sample_id"]: c["cuboids"] for c in json.loads(data)["clouds"]}
    assert clouds == {anns[0].sample.pk: CUBES[0]["cuboids"], anns[1].sample.pk: []}


def _read_ply_with_labels(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A small binary PLY reader: parses the header's vertex properties, then the little-endian body."""
    end = blob.index(b"end_header\n") + len(b"end_header\n")
    header = blob[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    types = {"float": "<f4", "double": "<f8", "int": "<i4", "uchar": "u1", "short": "<i2"}
    fields = [(line.split()[2], types[line.split()[1]]) for line in header if line.startswith("property")]
    rows = np.frombuffer(blob[end:], dtype=np.dtype(fields), count=count)
    return np.stack([rows["x"], rows["y"], rows["z"]], axis=1), rows["label"]


def test_point_labels_npy_and_ply(api, lead, django_capture_on_commit_callbacks):
    shapes, encode = _clouds()
    results = [{"point_labels": [int(v) if i % 5 else -1 for i, v in enumerate(parts)]} for _, parts in shapes]
    labels = ["base", "pole", "shade", "bulb"][: int(max(p.max() for _, p in shapes)) + 1]
    project, anns = _annotated_project(lead, modality="pointcloud", task_type="point_segmentation", labels=labels,
                                       contents=[encode(p, "ply") for p, _ in shapes], results=results,
                                       capture=django_capture_on_commit_callbacks)
    body, data = _export(api, lead, project, "npy", django_capture_on_commit_callbacks)
    assert body["counts"] == {"clouds": 2, "points": 600}
    z = zipfile.ZipFile(io.BytesIO(data))
    for i, ann in anns.items():
        name = next(n for n in z.namelist() if n.startswith(f"labels/{ann.sample.pk}_"))
        values = np.load(io.BytesIO(z.read(name)))
        assert values.dtype == np.int32 and values.tolist() == results[i]["point_labels"]
    assert json.loads(z.read("labels.json"))["labels"] == labels
    _, data = _export(api, lead, project, "ply", django_capture_on_commit_callbacks)
    z = zipfile.ZipFile(io.BytesIO(data))
    from apps.samples.points import sample_points

    for i, ann in anns.items():
        name = next(n for n in z.namelist() if n.startswith(f"clouds/{ann.sample.pk}_"))
        xyz, values = _read_ply_with_labels(z.read(name))
        assert values.tolist() == results[i]["point_labels"]
        assert np.allclose(xyz, sample_points(sample=ann.sample).data[:, :3])
        assert np.allclose(xyz, shapes[i][0], atol=1e-5)  # the fixture's own coordinates, in file order


def test_progress_and_download_before_ready(api, lead, detection):
    from apps.exports.services import export_create

    project, _ = detection
    export = export_create(project=project, user=lead, format="coco")  # not run: no on_commit here
    r = api(lead).get(f"/api/v1/exports/{export.pk}/download")
    assert r.status_code == 409 and r.json()["error"]["code"] == "export_not_ready"
    assert api(lead).get(f"/api/v1/exports/{export.pk}/").json()["download_url"] is None
