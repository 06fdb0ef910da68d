"""Smoke test of the label-efficiency benchmark machinery (bench/label_efficiency.py) on a small digits subset."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("cleanlab")

from bench import label_efficiency as le  # noqa: E402
from bench._le_metrics import labels_to_reach, mean_std, normalised_auc, pct_fewer, precision_recall  # noqa: E402


def test_labels_to_reach_interpolates_the_first_crossing():
    ns = [20, 30, 40, 50]
    accs = [0.5, 0.7, 0.9, 0.8]
    assert labels_to_reach(ns, accs, 0.8) == pytest.approx(35.0)
    assert labels_to_reach(ns, accs, 0.4) == 20.0
    assert labels_to_reach(ns, accs, 0.9) == pytest.approx(40.0)
    assert labels_to_reach(ns, accs, 0.95) is None
    assert pct_fewer(35.0, 50) == pytest.approx(30.0)
    assert pct_fewer(None, 50) is None


def test_auc_mean_std_precision_recall():
    assert normalised_auc([20, 30, 40], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert normalised_auc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    s = mean_std([1.0, None, 3.0])
    assert (s["mean"], s["n"], s["missing"], s["min"]) == (2.0, 2, 1, 1.0)
    assert mean_std([None])["mean"] is None
    assert precision_recall([1, 2, 3, 4], [2, 4, 6]) == (pytest.approx(0.5), pytest.approx(2 / 3))
    assert precision_recall([], [1]) == (0.0, 0.0)


def test_check_targets_not_reached_fails_and_is_not_a_number():
    res = {"digits": {"seeds": [0, 1], "strategies": {"auto": {"reached": 1, "pct_fewer": mean_std([70.0, None])}},
                      "cold_start": {}}}
    rows = le.check_targets(res)
    assert {r["target"] for r in rows} == {"auto % fewer labels than random (mean)",
                                           "auto % fewer labels than random (every seed)"}
    assert all(r["value"] is None and r["passed"] is False for r in rows)


def test_split_and_initial_labels_are_stratified_and_seeded():
    y = np.repeat(np.arange(5), 30)
    pool, test = le.split(y, 0)
    assert len(test) == 50 and len(np.intersect1d(pool, test)) == 0
    assert np.all(np.bincount(y[test]) == 10)
    assert np.array_equal(le.initial_labels(100, 3), le.initial_labels(100, 3))
    assert not np.array_equal(le.initial_labels(100, 3), le.initial_labels(100, 4))


def test_small_run_end_to_end(tmp_path):
    cfg = le.Config(
        datasets=(le.DatasetConfig("digits", None, 60),),
        seeds=(0, 1),
        strategies=("auto", "random", "margin"),
        cold_strategies=("auto", "random", "proto:cold_oracle"),
        label_issue_seeds=(0,),
        limit=360,
        random_draws=3,
    )
    report = le.run(cfg, jobs=1, out_dir=tmp_path, cache_dir=None, tag="le_test", log=lambda m: None)
    data = json.loads((tmp_path / "le_test.json").read_text())
    png = (tmp_path / "le_test_digits.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    res = data["results"]["digits"]
    assert res["pool_size"] == 240 and res["test_size"] == 120 and res["budget"] == 60
    for s in cfg.strategies:
        st = res["strategies"][s]
        assert st["ns"] == [20, 30, 40, 50, 60]
        assert len(st["per_seed"]) == 2 and all(0.0 <= a <= 1.0 for a in st["mean_accuracy"])
    rnd = res["strategies"]["random"]
    # the target of every seed is the mean of random's 3 draws at the budget, its own curve's final point among them
    assert res["random_draws"] == 3
    for row in rnd["per_seed"]:
        draws = res["random_final_draws"][str(row["seed"])]
        assert len(draws) == 3 and draws[0] == row["accs"][-1] == row["target_accuracy_single_draw"]
        assert row["target_accuracy"] == pytest.approx(np.mean(draws))
    single = res["random_final_single_draw"]["mean"]
    assert single == pytest.approx(np.mean([r["accs"][-1] for r in rnd["per_seed"]]))
    # random reaches its own single-draw final accuracy by the full budget, on every seed
    assert rnd["pct_fewer_single_draw"]["n"] == 2 and rnd["pct_fewer_single_draw"]["min"] >= 0.0
    auto = res["strategies"]["auto"]["per_seed"][0]
    assert sum(auto["used"].values()) == 4 and all(k.startswith("auto/") for k in auto["used"])
    cs = res["cold_start"]
    assert set(cs) == {"auto", "random", "proto:cold_oracle"}
    for row in cs["random"]["per_seed"]:  # draw 0 is the single draw; the baseline is the mean of all 3
        assert len(row["accuracy_draws"]) == 3 and row["accuracy_draws"][0] == row["accuracy"]
        assert row["expected_accuracy"] == pytest.approx(np.mean(row["accuracy_draws"]))
    cold = next(t for t in data["targets"] if "cold start" in t["target"])
    assert cold["value"] == pytest.approx(
        100 * (cs["auto"]["accuracy"]["mean"] - cs["random"]["expected_accuracy"]["mean"]))
    assert cs["proto:cold_oracle"]["classes_covered"]["mean"] == 10.0  # the oracle takes 2 per class
    li = res["label_issues"]
    assert len(li["per_seed"]) == 1 and li["per_seed"][0]["n_noisy"] == 24
    assert 0.0 <= li["precision"]["mean"] <= 1.0 and 0.0 <= li["recall"]["mean"] <= 1.0
    assert {t["dataset"] for t in data["targets"]} == {"digits"}
    table = le.format_table(report["results"], report["targets"])
    assert "auto" in table and "label issues" in table and ("PASS" in table or "FAIL" in table)


def test_curves_are_deterministic():
    from bench._le_data import load_dataset

    ds = load_dataset("digits", limit=240)
    pool, test = le.split(ds.y, 5)
    cfg = le.Config(datasets=(), seeds=(5,), strategies=("auto",))
    args = (ds.embeddings[pool], ds.y[pool], ds.embeddings[test], ds.y[test], 10, 50, 5, cfg)
    a = le.run_curve("auto", *args)
    b = le.run_curve("auto", *args)
    assert a["accs"] == b["accs"] and a["used"] == b["used"]


def test_labels_to_stay_is_stricter_than_reach():
    from bench._le_metrics import labels_to_stay

    ns = [20, 30, 40, 50, 60]
    accs = [0.5, 0.9, 0.7, 0.85, 0.95]
    assert labels_to_reach(ns, accs, 0.8) == pytest.approx(27.5)
    assert labels_to_stay(ns, accs, 0.8) == pytest.approx(40 + 10 * 0.1 / 0.15)
    assert labels_to_stay(ns, accs, 0.4) == 20.0
    assert labels_to_stay([20, 30], [0.9, 0.7], 0.8) is None


def test_probe_budgets_applies_the_one_point_rule():
    cfg = le.Config(datasets=(le.DatasetConfig("digits", None, 60),), seeds=(0,), strategies=("random",), limit=360)
    out = le.probe_budgets(cfg, cache_dir=None, step=50, cap=200, log=lambda m: None)["digits"]
    at, full = out["random"], out["full_pool"]
    assert sorted(at) == [50, 100, 150, 200]
    if out["budget"] is None:  # random never came within a point of the whole pool by the cap
        assert all(a < full - 0.01 for a in at.values())
    else:  # the smallest multiple of 50 within one point, and nothing smaller was
        assert at[out["budget"]] >= full - 0.01
        assert all(a < full - 0.01 for n, a in at.items() if n < out["budget"])


def test_not_reached_note_names_the_seed_and_what_it_reached():
    row = {"seed": 4, "labels_needed": None, "pct_fewer": None, "target_accuracy": 0.9883, "max_accuracy": 0.985,
           "full_pool_accuracy": 0.9833}
    ok = {"seed": 5, "labels_needed": 100.0, "pct_fewer": 75.0, "target_accuracy": 0.98, "max_accuracy": 0.99,
          "full_pool_accuracy": 0.99}
    res = {"digits": {"seeds": [4, 5], "budget": 450, "cold_start": {},
                      "strategies": {"auto": {"reached": 1, "pct_fewer": mean_std([None, 75.0]),
                                              "per_seed": [row, ok]}}}}
    rows = le.check_targets(res)
    mean_row = next(r for r in rows if r["target"].endswith("(mean)"))
    assert mean_row["passed"] is False and mean_row["value"] is None
    assert "seed 4: random at 450 98.83%" in mean_row["note"] and "whole pool 98.33%" in mean_row["note"]
    assert "the 1 seeds that reached it: mean 75.0" in mean_row["note"]


def test_fixture_seed_draws_another_dataset():
    from bench._le_data import load_dataset

    a = load_dataset("3d", n_per_class=2, limit=16)
    b = load_dataset("3d", n_per_class=2, limit=16, fixture_seed=1)
    assert a.embeddings.shape == b.embeddings.shape == (16, 128)
    assert np.array_equal(a.y, b.y)  # same classes in the same order ...
    assert not np.allclose(a.embeddings, b.embeddings)  # ... but other clouds
    assert "seed=1" in b.source


def test_random_at_budget_keeps_the_first_labels_and_is_seeded(monkeypatch):
    from bench._le_data import load_dataset

    ds = load_dataset("digits", limit=240)
    pool, test = le.split(ds.y, 2)
    E, y = ds.embeddings[pool], ds.y[pool]
    fits = []
    real_fit = le.Learner.fit

    def spy(self, X, y_, sample_weight=None):
        fits.append(X)
        return real_fit(self, X, y_, sample_weight)

    monkeypatch.setattr(le.Learner, "fit", spy)
    cfg = le.Config(datasets=(), seeds=(2,), strategies=("random",))
    a = le.random_at_budget(E, y, ds.embeddings[test], ds.y[test], 10, 60, 2, 4, cfg)
    assert len(a) == 4 and all(0.0 <= v <= 1.0 for v in a)
    init = E[le.initial_labels(len(y), 2)]
    for X in fits:  # every draw: 60 distinct labels that start with the seed's first 20
        assert X.shape == (60, E.shape[1]) and np.array_equal(X[:20], init)
        assert len(np.unique(X, axis=0)) == len(np.unique(np.concatenate([X, init]), axis=0))
    assert len({X[20:].tobytes() for X in fits}) == 4  # four different draws
    monkeypatch.undo()
    assert le.random_at_budget(E, y, ds.embeddings[test], ds.y[test], 10, 60, 2, 4, cfg) == a


def test_cold_start_target_uses_randoms_mean_and_says_when_out_of_reach():
    def cold(auto, single, expected):
        return {"auto": {"accuracy": mean_std([auto])},
                "random": {"accuracy": mean_std([single]), "expected_accuracy": mean_std([expected]),
                           "per_seed": [{"accuracy_draws": [single] * 20}]}}

    rows = le.check_targets({"3d": {"seeds": [0], "strategies": {}, "cold_start": cold(0.99, 0.78, 0.83)}})
    (row,) = rows
    assert row["value"] == pytest.approx(16.0) and row["passed"] is False
    assert "one draw per seed: 78.0%, +21.0 points" in row["note"] and "out of reach" in row["note"]
    (row,) = le.check_targets({"audio": {"seeds": [0], "strategies": {}, "cold_start": cold(0.95, 0.72, 0.74)}})
    assert row["value"] == pytest.approx(21.0) and row["passed"] is True and "out of reach" not in row["note"]


def test_random_coverage_accuracy_is_exact():
    from bench._le_metrics import random_coverage_accuracy

    # pool [0, 1, 1, 1], 2 labels: class 0 is drawn in 3 of the 6 pairs, class 1 in all of them
    assert random_coverage_accuracy([0, 1, 1, 1], [0, 1], 2) == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert random_coverage_accuracy([0, 1, 2], [0, 1, 2], 3) == pytest.approx(1.0)
    # against simulation: 10 balanced classes, 20 labels from 660 -> about 1 - 0.9**20
    rng = np.random.default_rng(0)
    pool = np.repeat(np.arange(10), 66)
    test = np.repeat(np.arange(10), 33)
    sim = np.mean([len(np.unique(pool[rng.choice(660, 20, replace=False)])) / 10 for _ in range(20000)])
    exact = random_coverage_accuracy(pool, test, 20)
    assert exact == pytest.approx(sim, abs=0.003)
    assert 0.875 < exact < 0.885  # without replacement a little above 1 - 0.9**20 = 0.878
    with pytest.raises(ValueError):
        random_coverage_accuracy(pool, test, 0)


def test_cold_start_row_reports_error_removed_and_the_perfect_feature_gap():
    cold = {"auto": {"accuracy": mean_std([0.93])},
            "random": {"accuracy": mean_std([0.74]), "expected_accuracy": mean_std([0.74]),
                       "per_seed": [{"accuracy_draws": [0.74] * 20}]}}
    (row,) = le.check_targets({"audio": {"seeds": [0], "strategies": {}, "cold_start": cold,
                                         "random_coverage_accuracy": mean_std([0.88])}})
    assert row["value"] == pytest.approx(19.0) and row["passed"] is False
    assert row["error_removed"] == pytest.approx(19.0 / 26.0)
    assert row["gap_with_perfect_features"] == pytest.approx(12.0)
    assert "removes 73% of random's error" in row["note"]
    assert "a gap of 12.0 points, below the target" in row["note"]
