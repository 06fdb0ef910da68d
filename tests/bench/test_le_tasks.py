"""bench.label_efficiency --task: the smallest end-to-end run of one task type (seconds) and the figures."""
import json
from dataclasses import replace

import pytest

from bench import _le_tasks, label_efficiency


def _unit(seed, auto, rand, ns=(4, 8, 12)):
    return {"seed": seed, "primary": "miou", "strategies": {
        "auto": {"ns": list(ns), "values": auto, "fit_seconds": [1.0] * len(ns), "select_seconds": [0.1] * (len(ns) - 1)},
        "random": {"ns": list(ns), "values": rand, "fit_seconds": [1.0] * len(ns), "select_seconds": [0.0] * (len(ns) - 1)}}}


def test_figures_by_hand():
    cfg = _le_tasks.QUICK["segmentation"]
    res = _le_tasks.aggregate(cfg, [_unit(0, [0.5, 0.7, 0.8], [0.5, 0.6, 0.7]), _unit(1, [0.5, 0.7, 0.8], [0.5, 0.6, 0.7])])
    f = res["figures"]
    # random's final mean 0.7 is reached by auto's mean curve at 8 labels: 100 * (1 - 8 / 12) = 33.3% fewer
    assert f["random_final"] == pytest.approx(0.7) and f["labels_auto_needs_for_random_final"] == pytest.approx(8.0)
    assert f["pct_fewer_labels"] == pytest.approx(100 / 3)
    assert f["auto_ge_random_minus_1pt_every_round"] is True
    assert f["final_diff_points_per_seed"] == pytest.approx([10.0, 10.0])
    worse = _le_tasks.aggregate(cfg, [_unit(0, [0.5, 0.58, 0.65], [0.5, 0.6, 0.7])])["figures"]
    assert worse["auto_ge_random_minus_1pt_every_round"] is False and worse["pct_fewer_labels"] is None


def test_smallest_run_end_to_end(tmp_path, monkeypatch):
    tiny = replace(_le_tasks.QUICK["segmentation"], pool=8, test=4, initial=3, batch=2, rounds=2, seeds=(0,),
                   learner={**_le_tasks.QUICK["segmentation"].learner, "epochs": 1, "device": "cpu"})
    monkeypatch.setitem(_le_tasks.QUICK, "segmentation", tiny)
    assert label_efficiency.main(["--task", "segmentation", "--quick", "--jobs", "1", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "label_efficiency_segmentation_quick.json").read_text())
    assert (tmp_path / "label_efficiency_segmentation_quick.png").stat().st_size > 0
    assert doc["benchmark"] == "label_efficiency" and {"git", "machine", "load"} <= set(doc)
    assert doc["task"] == "segmentation" and doc["task_type"] == "point_segmentation"
    assert doc["config"]["learner_class"] == "PointNetSegmentationLearner"
    res = doc["results"]
    assert res["primary"] == "miou" and set(res["strategies"]) == {"auto", "random"}
    for st in res["strategies"].values():
        assert st["ns"] == [3, 5, 7] and len(st["mean"]) == 3 and all(0 <= v <= 1 for v in st["mean"])
    # paired: both strategies start from the same labels and the same first model
    assert res["strategies"]["auto"]["mean"][0] == res["strategies"]["random"]["mean"][0]
    assert {"pct_fewer_labels", "auto_ge_random_minus_1pt_every_round", "random_final"} <= set(res["figures"])
    assert len(doc["per_seed"]) == 1


def test_unknown_task_is_refused():
    with pytest.raises(SystemExit):
        label_efficiency.main(["--task", "classification"])
