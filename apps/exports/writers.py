"""One writer per export format. A writer gets the project's labels and the exported items (sample and
final result), writes one file to ``out`` (a path on local disk) and returns counts.

Formats by task type:
- classification: csv / json of sample id, external id, label, split (from a frozen DatasetVersion)
- detection: COCO (json; boxes, polygons as segmentation), YOLO (zip: images/<split>/, labels/<split>/
  with "class cx cy w h" normalised, polygons as their bounding boxes, data.yaml), Pascal VOC (zip of
  Annotations/*.xml with pixel boxes, polygons as their bounding boxes, ImageSets/Main/<split>.txt)
- audio_regions: csv (one row per region) and json (one object per clip) with transcripts
- cuboids: KITTI-style label txt per sample (zip) and json. KITTI columns: type truncated occluded alpha
  bbox(4) h w l x y z rotation_y; here in the cloud's own frame (no camera): location is the bottom centre
  (z - h/2), rotation_y is the yaw about z, the 2D bbox is zeros, truncated/occluded/alpha 0.
- point_segmentation: per-point label indices as int32 .npy (zip), and binary little-endian PLY with
  x y z float and an int ``label`` property (zip); -1 = unlabeled.
"""
from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable
from xml.etree import ElementTree as ET

import numpy as np

from apps.labeling.results import shapes_as_boxes
from apps.samples.content import extension_for

FORMATS_BY_TASK_TYPE = {
    "classification": ("csv", "json"),
    "detection": ("coco", "yolo", "voc"),
    "audio_regions": ("regions_csv", "regions_json"),
    "cuboids": ("kitti", "cuboids_json"),
    "point_segmentation": ("npy", "ply"),
}
EXTENSIONS = {"csv": "csv", "json": "json", "coco": "json", "yolo": "zip", "voc": "zip", "regions_csv": "csv",
              "regions_json": "json", "kitti": "zip", "cuboids_json": "json", "npy": "zip", "ply": "zip"}


MAX_STEM_BYTES = 120  # an export's file name before its extension, in UTF-8 bytes (file systems allow 255)


def export_filename(*, project_name: str, format: str, export_id: int) -> str:
    """The export's file name: ``<project name>-<format>-export<id>.<ext>``. Letters and digits of any
    script are kept, other characters become ``_``; the project name is cut so that the stem fits
    MAX_STEM_BYTES bytes of UTF-8 (never in the middle of a character), keeping the format, the id and the
    extension. So any project name gives a name that file systems (255 bytes a name) and
    ``Export.filename`` hold."""
    import unicodedata

    def clean(text: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in unicodedata.normalize("NFC", text))

    tail = clean(f"-{format}-export{export_id}")
    budget = max(0, MAX_STEM_BYTES - len(tail.encode()))
    name = clean(project_name or "").encode()[:budget].decode("utf-8", "ignore").strip("_") or "project"
    return f"{name}{tail}.{EXTENSIONS[format]}"


@dataclass
class Item:
    sample: object  # apps.samples.models.Sample
    result: dict
    annotation_id: int | None = None
    label_index: int | None = None  # classification

    @property
    def stem(self) -> str:
        ext = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.sample.external_id or "")[:80].strip("._")
        return f"{self.sample.pk}_{ext}" if ext else str(self.sample.pk)


Progress = Callable[[int, int], None]

# A spreadsheet runs a cell that starts with one of these as a formula ("CSV injection"); OWASP's list.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell that no spreadsheet runs: a text cell starting with ``= + - @``, a tab or a carriage return
    gets a leading single quote (OWASP's advice). Numbers are written as numbers, so -1 stays -1."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeCsvWriter:
    """``csv.writer`` whose every text cell goes through :func:`csv_cell`: every CSV export writes with it."""

    def __init__(self, fh):
        self._writer = csv.writer(fh)

    def writerow(self, row) -> None:
        self._writer.writerow([csv_cell(value) for value in row])


def _size(item: Item) -> tuple[int, int]:
    info = item.sample.content_info or {}
    return int(info.get("width") or 1), int(info.get("height") or 1)


def _image_ext(item: Item) -> str:
    return extension_for(item.sample.content_format or "png")


# -- classification -------------------------------------------------------------------------------

def write_classification_csv(items, labels, out, progress: Progress) -> dict:
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = SafeCsvWriter(fh)
        w.writerow(["sample_id", "external_id", "label", "label_index", "split"])
        for i, item in enumerate(items):
            w.writerow([item.sample.pk, item.sample.external_id, labels[item.label_index], item.label_index, item.sample.split])
            progress(i + 1, len(items))
    return {"samples": len(items)}


def write_classification_json(items, labels, out, progress: Progress) -> dict:
    rows = [{"sample_id": it.sample.pk, "external_id": it.sample.external_id, "label": labels[it.label_index],
             "label_index": it.label_index, "split": it.sample.split} for it in items]
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"labels": labels, "samples": rows}, fh)
    progress(len(items), len(items))
    return {"samples": len(items)}


# -- detection ------------------------------------------------------------------------------------

def write_coco(items, labels, out, progress: Progress) -> dict:
    images, annotations = [], []
    for i, item in enumerate(items):
        width, height = _size(item)
        images.append({"id": item.sample.pk, "file_name": f"{item.stem}.{_image_ext(item)}", "width": width,
                       "height": height, "split": item.sample.split, "external_id": item.sample.external_id})
        for box in item.result.get("boxes", []):
            x, y, w, h = box["x"] * width, box["y"] * height, box["w"] * width, box["h"] * height
            annotations.append({"id": len(annotations) + 1, "image_id": item.sample.pk,
                                "category_id": labels.index(box["label"]) + 1, "bbox": [x, y, w, h], "area": w * h,
                                "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        for poly in item.result.get("polygons", []):
            pts = np.array(poly["points"], dtype=float) * [width, height]
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
            area = 0.5 * abs(float(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1))))
            annotations.append({"id": len(annotations) + 1, "image_id": item.sample.pk,
                                "category_id": labels.index(poly["label"]) + 1,
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "area": area,
                                "iscrowd": 0, "segmentation": [pts.ravel().tolist()]})
        progress(i + 1, len(items))
    coco = {"info": {"description": "Looplab export"}, "licenses": [], "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(labels)]}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(coco, fh)
    return {"images": len(images), "annotations": len(annotations)}


def write_yolo(items, labels, out, progress: Progress, read_content) -> dict:
    import yaml

    n_boxes = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(items):
            split = item.sample.split
            z.writestr(f"images/{split}/{item.stem}.{_image_ext(item)}", read_content(item.sample))
            lines = []
            for box in shapes_as_boxes(item.result):
                lines.append(f"{labels.index(box['label'])} {box['x'] + box['w'] / 2:.6f} {box['y'] + box['h'] / 2:.6f} "
                             f"{box['w']:.6f} {box['h']:.6f}")
            n_boxes += len(lines)
            z.writestr(f"labels/{split}/{item.stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
            progress(i + 1, len(items))
        splits = sorted({it.sample.split for it in items})
        data = {"path": ".", **{s: f"images/{s}" for s in splits}, "nc": len(labels), "names": dict(enumerate(labels))}
        z.writestr("data.yaml", yaml.safe_dump(data, sort_keys=False))
    return {"images": len(items), "boxes": n_boxes}


def write_voc(items, labels, out, progress: Progress) -> dict:
    n_objects = 0
    by_split: dict[str, list[str]] = {}
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(items):
            width, height = _size(item)
            root = ET.Element("annotation")
            ET.SubElement(root, "folder").text = "JPEGImages"
            ET.SubElement(root, "filename").text = f"{item.stem}.{_image_ext(item)}"
            size = ET.SubElement(root, "size")
            for tag, value in (("width", width), ("height", height), ("depth", 3)):
                ET.SubElement(size, tag).text = str(value)
            ET.SubElement(root, "segmented").text = "0"
            for box in shapes_as_boxes(item.result):
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = box["label"]
                ET.SubElement(obj, "pose").text = "Unspecified"
                ET.SubElement(obj, "truncated").text = "0"
                ET.SubElement(obj, "difficult").text = "0"
                bnd = ET.SubElement(obj, "bndbox")
                # VOC pixel coordinates are 1-based and inclusive.
                xmin, ymin = round(box["x"] * width) + 1, round(box["y"] * height) + 1
                xmax, ymax = round((box["x"] + box["w"]) * width), round((box["y"] + box["h"]) * height)
                for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", max(xmin, xmax)), ("ymax", max(ymin, ymax))):
                    ET.SubElement(bnd, tag).text = str(value)
                n_objects += 1
            z.writestr(f"Annotations/{item.stem}.xml", ET.tostring(root, encoding="unicode"))
            by_split.setdefault(item.sample.split, []).append(item.stem)
            progress(i + 1, len(items))
        for split, stems in by_split.items():
            z.writestr(f"ImageSets/Main/{split}.txt", "\n".join(stems) + "\n")
        z.writestr("labels.txt", "\n".join(labels) + "\n")
    return {"images": len(items), "objects": n_objects}


# -- audio regions --------------------------------------------------------------------------------

def write_regions_csv(items, labels, out, progress: Progress) -> dict:
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = SafeCsvWriter(fh)
        w.writerow(["sample_id", "external_id", "split", "clip_label", "region", "label", "start", "end", "text"])
        for i, item in enumerate(items):
            for k, region in enumerate(item.result.get("regions", [])):
                # times as numbers (Decimal keeps the 6 places): a number is never mistaken for a formula
                w.writerow([item.sample.pk, item.sample.external_id, item.sample.split, item.result.get("label", ""), k,
                            region["label"], Decimal(f"{region['start']:.6f}"), Decimal(f"{region['end']:.6f}"),
                            region.get("text", "")])
                n += 1
            progress(i + 1, len(items))
    return {"clips": len(items), "regions": n}


def write_regions_json(items, labels, out, progress: Progress) -> dict:
    clips = []
    for item in items:
        clips.append({"sample_id": item.sample.pk, "external_id": item.sample.external_id, "split": item.sample.split,
                      "duration_s": (item.sample.content_info or {}).get("duration_s"),
                      "label": item.result.get("label"), "regions": item.result.get("regions", [])})
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"labels": labels, "clips": clips}, fh, ensure_ascii=False)
    progress(len(items), len(items))
    return {"clips": len(clips), "regions": sum(len(c["regions"]) for c in clips)}


# -- cuboids --------------------------------------------------------------------------------------

def write_kitti(items, labels, out, progress: Progress) -> dict:
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(items):
            lines = []
            for c in item.result.get("cuboids", []):
                (x, y, zc), (length, width, height), yaw = c["center"], c["size"], c["yaw"]
                label = re.sub(r"\s+", "_", c["label"])
                lines.append(f"{label} 0.00 0 0.00 0.00 0.00 0.00 0.00 {height:.6f} {width:.6f} {length:.6f} "
                             f"{x:.6f} {y:.6f} {zc - height / 2:.6f} {yaw:.6f}")
            n += len(lines)
            z.writestr(f"label_2/{item.stem}.txt", "\n".join(lines) + ("\n" if lines else ""))
            progress(i + 1, len(items))
        z.writestr("README.txt", "KITTI-style labels in the point cloud's own frame (no camera transform).\n"
                                 "Columns: type truncated occluded alpha bbox_left bbox_top bbox_right bbox_bottom "
                                 "height width length x y z rotation_y\n(x, y, z) is the bottom centre; rotation_y is "
                                 "the yaw about the z axis in radians; the 2D bbox is not defined (zeros).\n")
    return {"clouds": len(items), "cuboids": n}


def write_cuboids_json(items, labels, out, progress: Progress) -> dict:
    clouds = [{"sample_id": it.sample.pk, "external_id": it.sample.external_id, "split": it.sample.split,
               "cuboids": it.result.get("cuboids", [])} for it in items]
    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"labels": labels, "convention": "center [x,y,z], size [length,width,height], yaw about z (rad)",
                   "clouds": clouds}, fh)
    progress(len(items), len(items))
    return {"clouds": len(clouds), "cuboids": sum(len(c["cuboids"]) for c in clouds)}


# -- point segmentation ---------------------------------------------------------------------------

def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def write_npy(items, labels, out, progress: Progress) -> dict:
    n_points = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(items):
            values = np.asarray(item.result["point_labels"], dtype=np.int32)
            n_points += int(values.size)
            z.writestr(f"labels/{item.stem}.npy", _npy_bytes(values))
            progress(i + 1, len(items))
        z.writestr("labels.json", json.dumps({"labels": labels, "unlabeled": -1,
                                              "order": "one int32 label index per stored point, in file order"}))
    return {"clouds": len(items), "points": n_points}


def ply_with_labels(points: np.ndarray, values: np.ndarray) -> bytes:
    n = int(points.shape[0])
    header = ("ply\nformat binary_little_endian 1.0\ncomment Looplab export: label = index into labels.json, -1 unlabeled\n"
              f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\nproperty int label\nend_header\n")
    rows = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<i4")])
    rows["x"], rows["y"], rows["z"] = points[:, 0], points[:, 1], points[:, 2]
    rows["label"] = values
    return header.encode("ascii") + rows.tobytes()


def write_ply(items, labels, out, progress: Progress, read_points) -> dict:
    n_points = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i, item in enumerate(items):
            points = read_points(item.sample)
            values = np.asarray(item.result["point_labels"], dtype=np.int32)
            if values.size != points.shape[0]:
                raise ValueError(f"sample {item.sample.pk}: {values.size} labels for {points.shape[0]} points")
            z.writestr(f"clouds/{item.stem}.ply", ply_with_labels(points, values))
            n_points += int(values.size)
            progress(i + 1, len(items))
        z.writestr("labels.json", json.dumps({"labels": labels, "unlabeled": -1}))
    return {"clouds": len(items), "points": n_points}


WRITERS = {
    "csv": write_classification_csv, "json": write_classification_json, "coco": write_coco, "yolo": write_yolo,
    "voc": write_voc, "regions_csv": write_regions_csv, "regions_json": write_regions_json, "kitti": write_kitti,
    "cuboids_json": write_cuboids_json, "npy": write_npy, "ply": write_ply,
}
