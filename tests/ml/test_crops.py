"""ml.crops: objects of detection and point-segmentation results, cut out of their contents."""
import io

import numpy as np
import pytest
from PIL import Image

from ml.crops import cloud_objects, crop_image, crop_points, image_objects
from ml.errors import InvalidInput


def _png(w=100, h=50):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[10:20, 30:50] = 255  # a white block at x 30..50, y 10..20
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_image_objects_boxes_polygons_scores_and_labels():
    result = {"boxes": [{"label": "a", "x": 0.3, "y": 0.2, "w": 0.2, "h": 0.2, "score": 0.9},
                        {"label": "b", "x": 0.1, "y": 0.1, "w": 0.1, "h": 0.1, "score": 0.2}],
              "polygons": [{"label": "a", "points": [[0.1, 0.1], [0.5, 0.2], [0.3, 0.6]]},
                           {"label": "a", "points": [[0.1, 0.1], [0.2, 0.2]]}]}  # two points: not an object
    objs = image_objects(result)
    assert [(o["kind"], o["index"]) for o in objs] == [("boxes", 0), ("boxes", 1), ("polygons", 0)]
    assert objs[2]["box"] == pytest.approx([0.1, 0.1, 0.4, 0.5]) and "score" not in objs[2]
    assert [o["index"] for o in image_objects(result, min_score=0.5)] == [0, 0]  # unscored polygons stay
    assert [o["label"] for o in image_objects(result, labels=["b"])] == ["b"]


def test_crop_image_pads_clips_and_skips_slivers():
    png = _png()
    crop = Image.open(io.BytesIO(crop_image(png, [0.3, 0.2, 0.2, 0.2], padding=0.0)))
    assert crop.size == (20, 10) and np.asarray(crop).min() == 255  # exactly the white block
    padded = Image.open(io.BytesIO(crop_image(png, [0.3, 0.2, 0.2, 0.2], padding=0.5)))
    assert padded.size == (40, 20)
    edge = Image.open(io.BytesIO(crop_image(png, [0.9, 0.0, 0.2, 0.2], padding=0.5)))
    assert edge.size == (20, 15)  # clipped to the image
    assert crop_image(png, [0.5, 0.5, 0.01, 0.01], padding=0.0) is None  # 1 x 1 pixels: skipped
    assert crop_image(png, [0.3, 0.2, 0.2, 0.2]) == crop_image(png, [0.3, 0.2, 0.2, 0.2])  # deterministic bytes
    with pytest.raises(InvalidInput):
        crop_image(png, [0.3, 0.2, 0.2, 0.2], padding=2)


def test_cloud_objects_and_crop_points():
    from ml.modalities.pointcloud import points_to_ply, read_points

    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    y = [0] * 50 + [1] * 45 + [2] * 5
    objs = cloud_objects({"point_labels": y, "point_scores": [0.5] * 100}, ["a", "b", "c"], min_points=10)
    assert [(o["label"], o["n_points"], o["score"]) for o in objs] == [("a", 50, 0.5), ("b", 45, 0.5)]
    assert [o["label"] for o in cloud_objects({"point_labels": y}, ["a", "b", "c"], keep=["b"])] == ["b"]
    sub = read_points(crop_points(points_to_ply(pts), objs[1]["points"]))
    assert np.allclose(sub, pts[50:95], atol=1e-6)
    with pytest.raises(InvalidInput):
        crop_points(points_to_ply(pts), np.array([100]))
