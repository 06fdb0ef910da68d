"""Metadata filters are data: the key is a JSON key, the operator one of ours (apps.samples.selectors).

The same cases run on PostgreSQL (the suite's database) and, in a subprocess, on SQLite (the embedded default).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.apps.helpers import push_digits

METADATA = [
    {"speed": 10, "camera": "front", "regex": "(.*.*)*$", "has_key": "x"},
    {"speed": 50, "camera": "rear", "contains": "a"},
    {"speed": 50.5, "camera": "side", "in": "b", "range": "1,2"},
    {"speed": "70", "camera": "front"},  # numeric text
    {"speed": "fast", "flag": True},
    {"speed": True, "a:b": "c"},
    {"speed": None, "contained_by": [1, 2]},
    {"speed": {"x": 1}, "n": 3},
]

# (query parameters, the external ids that match)
CASES = [
    ({"metadata.camera": "front"}, ["d0", "d3"]),
    ({"metadata.speed": "50"}, ["d1"]),
    ({"metadata.speed": "70"}, []),  # the number 70; "70" is text
    ({"metadata.speed": "fast"}, ["d4"]),
    ({"metadata.speed": "true"}, ["d5"]),
    ({"metadata.speed": "null"}, ["d6"]),
    ({"metadata.speed:eq": "50"}, ["d1"]),
    ({"metadata.speed:gte": "50"}, ["d1", "d2", "d3"]),
    ({"metadata.speed:gt": "50"}, ["d2", "d3"]),
    ({"metadata.speed:lt": "50"}, ["d0"]),
    ({"metadata.speed:lte": "50.5"}, ["d0", "d1", "d2"]),
    ({"metadata.speed:gte": "20", "metadata.speed:lt": "60"}, ["d1", "d2"]),
    ({"metadata.speed:gte": "1e3"}, []),
    ({"metadata.camera:in": "rear,side"}, ["d1", "d2"]),
    ({"metadata.speed:in": "10,fast,true"}, ["d0", "d4", "d5"]),
    ({"metadata.camera": "front", "metadata.speed:lt": "100"}, ["d0", "d3"]),
    # What used to reach the ORM as lookups is now the key of that name, compared by equality.
    ({"metadata.regex": "(.*.*)*$"}, ["d0"]),
    ({"metadata.has_key": "x"}, ["d0"]),
    ({"metadata.has_key": "speed"}, []),
    ({"metadata.contains": "a"}, ["d1"]),
    ({"metadata.in": "b"}, ["d2"]),
    ({"metadata.range": "1,2"}, ["d2"]),
    ({"metadata.contained_by": "[1, 2]"}, []),  # a list is never equal to a filter value
    ({"metadata.speed__regex": "."}, []),
    ({"metadata.a:b:eq": "c"}, ["d5"]),
    ({"metadata.missing": "x"}, []),
    ({"metadata.missing:gt": "0"}, []),
]

# (query parameters, status, error code)
ERRORS = [
    ({"metadata.speed:regex": "(.*.*)*$"}, 400, "unknown_filter_operator"),
    ({"metadata.speed:contains": "1"}, 400, "unknown_filter_operator"),
    ({"metadata.a:b": "c"}, 400, "unknown_filter_operator"),
    ({"metadata.speed:": "1"}, 400, "unknown_filter_operator"),
    ({"metadata.speed:gte": "fast"}, 422, "invalid_filter"),
    ({"metadata.speed:gte": "nan"}, 422, "invalid_filter"),
    ({"metadata.speed:lt": "inf"}, 422, "invalid_filter"),
    ({"metadata.speed": "a\x00b"}, 422, "invalid_filter"),
    ({"metadata.sp\x00eed": "1"}, 422, "invalid_filter"),
    ({"metadata.": "1"}, 422, "invalid_filter"),
    ({"metadata.0": "1"}, 422, "invalid_filter"),  # a number reads as an array index in Django's key paths
    ({"metadata." + "k" * 201: "1"}, 422, "invalid_filter"),
    ({"metadata.speed:in": ",".join(["1"] * 101)}, 422, "invalid_filter"),
    ({f"metadata.k{i}": "1" for i in range(21)}, 422, "invalid_filter"),
]


@pytest.fixture
def filtered(api, annotator, project, digits):
    push_digits(project, digits, len(METADATA), metadata=lambda i: METADATA[i])

    def get(params):
        return api(annotator).get(f"/api/v1/projects/{project.id}/samples/?{urlencode(params)}")

    return get


@pytest.mark.parametrize("params,expected", CASES, ids=[urlencode(p) for p, _ in CASES])
def test_filter_matches(filtered, params, expected):
    r = filtered(params)
    assert r.status_code == 200, r.content
    assert sorted(s["external_id"] for s in r.json()["results"]) == expected


@pytest.mark.parametrize("params,status,code", ERRORS, ids=[urlencode(p)[:60] for p, _, _ in ERRORS])
def test_bad_filters_are_4xx_in_the_error_shape(filtered, params, status, code):
    r = filtered(params)
    assert r.status_code == status, r.content
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body


_SQLITE_SCRIPT = """
import json, os, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from apps.accounts.services import user_create
from apps.projects.services import project_create
from apps.samples.selectors import samples_filter
from fixtures.digits import digits_pngs
from tests.apps.helpers import push_digits
from tests.apps.samples.test_metadata_filters import CASES, METADATA

lead = user_create(username="lead", password="pw-lead", role="lead")
project = project_create(user=lead, name="digits", modality="image", labels=[str(i) for i in range(10)],
                         label_budget=500, confidence_threshold=0.7)
push_digits(project, digits_pngs(), len(METADATA), metadata=lambda i: METADATA[i])
out = []
for params, _ in CASES:
    metadata = {k[len("metadata."):]: v for k, v in params.items()}
    out.append(sorted(samples_filter(project=project, metadata=metadata).values_list("external_id", flat=True)))
print(json.dumps(out))
"""


def test_the_same_filters_on_sqlite(tmp_path):
    """The embedded default runs SQLite: every case above gives the same samples there."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apps.looplab.settings", "LOOPLAB_ENV": "embedded",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'filters.sqlite3'}", "LOOPLAB_DATA_DIR": str(tmp_path / "data"),
           "CELERY_BROKER_URL": "memory://", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", _SQLITE_SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == [expected for _, expected in CASES]
