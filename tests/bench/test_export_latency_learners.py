"""bench.export_latency's learner section on tiny sizes: a row per non-classification learner of ml.learners, with
parity passed and both speed-ups (end to end, network only) at both batch sizes.

About 20 s of CPU (four learners fitted, exported, checked and timed, one epoch on 4 items each): one test, so the
four fixtures and torch/onnxruntime start-up are paid once."""
import json

from bench import export_latency
from ml.learners import get


def test_learner_rows_tiny(tmp_path):
    out = tmp_path / "export_latency.json"
    # in-process timing (fresh processes would import torch 12 times), 1 round, 2 timed calls per batch size
    assert export_latency.main(["--models", "", "--quick", "--inprocess", "--rounds", "1", "--seconds", "0",
                                "--learner-repeats", "2", "--learner-batches", "1,2", "--learner-fit", "4",
                                "--learner-bench", "2", "--learner-epochs", "1", "--threads", "1",
                                "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "export_latency" and doc["results"] == []
    rows = {r["task"]: r for r in doc["learners"]}
    assert list(rows) == list(export_latency.LEARNER_TASKS)
    for task, r in rows.items():
        assert r["learner"] == get(r["modality"], r["task_type"]).__name__
        assert r["parity"]["passed"] is True and r["parity"]["n"] == 2, (task, r["parity"])
        assert r["batch_sizes"] == [1, 2] and r["timing_processes"] == "same process"
        for part in ("end_to_end", "network_only"):
            for runtime in ("torch_eager", "torch_eager_1t", "ort_fp32"):
                for b in ("1", "2"):
                    assert r["latency"][part][runtime][b]["p50_ms"] > 0
            assert set(r["speedup_vs_torch"][part]) == {"1", "2"}
            assert all(v > 0 for v in r["speedup_vs_torch"][part].values())
        assert r["ort_fp32_speedup_vs_torch_batch1"] == r["speedup_vs_torch"]["end_to_end"]["1"]
        assert r["target_met"] == (r["ort_fp32_speedup_vs_torch_batch1"] >= 1.5)
        assert 0 < r["network_share_of_end_to_end"]["ort_fp32"]["1"] <= 1
        assert r["serving_process_memory"]["ort_fp32"]["peak_rss_mb"] > 0


def test_unknown_learner_task_is_refused():
    import pytest

    with pytest.raises(SystemExit):
        export_latency.main(["--models", "", "--learners", "classification"])
