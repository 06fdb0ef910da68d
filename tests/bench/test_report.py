"""bench.report: percentiles, tables and the JSON envelope every benchmark writes (pure, no Django)."""
import json
import math

import pytest

from bench import report


def test_percentile_interpolates_linearly_between_order_statistics():
    xs = [10, 1, 4, 7]  # sorted: 1 4 7 10
    assert report.percentile(xs, 0) == 1.0
    assert report.percentile(xs, 100) == 10.0
    assert report.percentile(xs, 50) == 5.5
    assert math.isclose(report.percentile(xs, 95), 7 + 3 * 0.85)
    assert report.percentile(range(101), 99) == 99.0


def test_percentile_of_one_value_none_and_out_of_range():
    assert report.percentile([3], 99) == 3.0
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError):
        report.percentile([1, 2], 101)


def test_median_accepts_a_generator():
    assert report.median(x for x in (5, 1, 3)) == 3.0
    assert report.median([1, 2, 3, 4]) == 2.5


def test_latency_summary_in_milliseconds():
    s = report.latency_summary([0.001, 0.002, 0.003])
    assert s["n"] == 3 and s["p50_ms"] == pytest.approx(2.0) and s["max_ms"] == pytest.approx(3.0)
    assert s["mean_ms"] == pytest.approx(2.0) and s["p99_ms"] == pytest.approx(2.98)
    empty = report.latency_summary([])
    assert empty["n"] == 0 and empty["p50_ms"] is None and empty["max_ms"] is None and empty["mean_ms"] is None


def test_spread_skips_missing_runs():
    assert report.spread([100.0, None, 110.0]) == {"min": 100.0, "max": 110.0, "spread_pct": pytest.approx(10.0)}
    assert report.spread([None]) == {"min": None, "max": None, "spread_pct": None}


def test_table_aligns_columns_and_formats_numbers():
    text = report.format_table(["name", "value"], [["a", 1234], ["bb", 2.25], ["c", None]], title="T")
    lines = text.splitlines()
    assert lines[0] == "" and lines[1] == "T"
    assert lines[2] == "name  value" and lines[3] == "----  -----"
    assert lines[4:] == ["a     1,234", "bb      2.2", "c         -"]


def test_envelope_fields(monkeypatch):
    monkeypatch.setenv("BENCH_GIT_REV", "abc1234")
    env = report.envelope("demo", machine={"threads": 2})
    assert list(env) == list(report.ENVELOPE_KEYS)
    assert env["benchmark"] == "demo" and env["git"] == "abc1234" and env["finished_at"]
    assert {"cpu_model", "cpus", "mem_gib", "platform", "python"} <= set(env["machine"])
    assert env["machine"]["threads"] == 2
    assert set(env["load"]) == {"at_start", "at_end"}


def test_write_report_wraps_the_payload(tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    monkeypatch.setenv("BENCH_GIT_REV", "abc1234")
    path = report.write_report("demo", {"rows": [1, 2], "value": np.float32(0.5), "array": np.arange(3)},
                               path=tmp_path / "sub" / "demo.json")
    doc = json.loads(path.read_text())
    assert list(doc)[:5] == list(report.ENVELOPE_KEYS)
    assert doc["benchmark"] == "demo" and doc["git"] == "abc1234"
    assert doc["rows"] == [1, 2] and doc["value"] == 0.5 and doc["array"] == [0, 1, 2]


def test_write_report_default_path_is_stamped(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "OUT_DIR", tmp_path)
    path = report.write_report("demo", {})
    assert path.parent == tmp_path and path.name.startswith("demo-") and path.suffix == ".json"


def test_payload_may_not_override_the_envelope(tmp_path):
    with pytest.raises(ValueError, match="machine"):
        report.write_report("demo", {"machine": {}}, path=tmp_path / "x.json")


def test_table_column_alignment():
    text = report.format_table(["a", "b", "c"], [["x", "yy", 3], ["xx", "y", 10]], align="llr")
    assert text.splitlines()[2:] == ["x   yy   3", "xx  y   10"]
    with pytest.raises(ValueError):
        report.format_table(["a", "b"], [], align="l")
