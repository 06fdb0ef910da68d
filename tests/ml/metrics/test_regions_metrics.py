"""ml.metrics.regions: event-based P/R/F1 with onset/offset tolerance, against hand-computed cases and two
independent implementations (a brute-force optimal matching with scipy's linear_sum_assignment, always; sed_eval,
DCASE's reference toolbox, where it is installed)."""
from __future__ import annotations

import numpy as np
import pytest

from ml.errors import InvalidInput
from ml.metrics import evaluate
from ml.metrics.regions import evaluate_regions

LABELS = ("dog", "cat", "bird")


def R(label, start, end, score=None):
    r = {"label": label, "start": start, "end": end}
    if score is not None:
        r["score"] = score
    return r


def test_hand_computed_single_clip():
    ref = {"regions": [R("dog", 1.0, 2.0), R("dog", 3.0, 3.5), R("cat", 5.0, 8.0)]}
    est = {"regions": [
        R("dog", 1.15, 2.19, 0.9),   # onset +0.15 <= 0.2, offset +0.19 <= max(0.2, 0.2 * 1.0): match
        R("dog", 3.25, 3.5, 0.8),    # onset +0.25 > 0.2: no match
        R("cat", 5.1, 7.45, 0.7),    # offset -0.55 <= max(0.2, 0.2 * 3.0 = 0.6): match
        R("bird", 9.0, 9.5, 0.6),    # a false positive of a class with no reference
    ]}
    rep = evaluate_regions([est], [ref], LABELS)
    assert rep.primary == "event_f1" and rep.task_type == "audio_regions" and rep.n == 1
    m = rep.metrics
    assert (m["tp"], m["n_ref"], m["n_sys"]) == (2, 3, 4)
    assert m["event_precision"] == pytest.approx(2 / 4)
    assert m["event_recall"] == pytest.approx(2 / 3)
    assert m["event_f1"] == pytest.approx(2 * 2 / (3 + 4))
    assert m["onset_f1"] == pytest.approx(2 * 2 / 7)  # the dog at 3.25 still fails on its onset
    # per class: dog 1/2 matched of 2 refs (F1 0.5), cat 1/1 (F1 1), bird 0 of 0 refs and 1 prediction (F1 0)
    assert rep.per_class["dog"]["f1"] == pytest.approx(0.5)
    assert rep.per_class["cat"]["f1"] == pytest.approx(1.0)
    assert rep.per_class["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0.0, "n_ref": 0.0,
                                     "n_sys": 1.0}
    assert m["event_f1_macro"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    np.testing.assert_allclose(rep.per_sample, [4 / 7])


def test_offset_tolerance_and_label_must_match():
    ref = {"regions": [R("dog", 0.0, 0.5)]}
    # offset tolerance is max(0.2, 0.1) = 0.2 for a short event
    assert evaluate_regions([{"regions": [R("dog", 0.0, 0.7)]}], [ref], LABELS).metrics["event_f1"] == 1.0
    assert evaluate_regions([{"regions": [R("dog", 0.0, 0.71)]}], [ref], LABELS).metrics["event_f1"] == 0.0
    assert evaluate_regions([{"regions": [R("dog", 0.0, 0.71)]}], [ref], LABELS).metrics["onset_f1"] == 1.0
    assert evaluate_regions([{"regions": [R("cat", 0.0, 0.5)]}], [ref], LABELS).metrics["event_f1"] == 0.0
    # the options change the tolerances
    rep = evaluate_regions([{"regions": [R("dog", 0.3, 0.5)]}], [ref], LABELS, t_collar=0.3)
    assert rep.metrics["event_f1"] == 1.0


def test_one_to_one_and_optimal_matching():
    # two predictions near one reference: one true positive, one false positive
    ref = {"regions": [R("dog", 1.0, 2.0)]}
    est = {"regions": [R("dog", 1.0, 2.0), R("dog", 1.1, 2.1)]}
    m = evaluate_regions([est], [ref], LABELS).metrics
    assert (m["tp"], m["n_sys"]) == (1, 2)
    # a greedy matching in start order would pair est A with ref 1 and leave ref 2 unmatched; optimal finds 2
    ref = {"regions": [R("dog", 1.0, 1.5), R("dog", 1.3, 1.8)]}
    est = {"regions": [R("dog", 1.15, 1.6), R("dog", 0.95, 1.45)]}  # A fits both refs, B only ref 1
    assert evaluate_regions([est], [ref], LABELS).metrics["tp"] == 2


def test_empty_cases_slices_and_dispatch():
    empty = {"regions": []}
    rep = evaluate_regions([empty, empty], [empty, {"regions": [R("cat", 0, 1)]}], LABELS,
                           {"first": np.array([True, False]), "second": np.array([False, True])})
    np.testing.assert_allclose(rep.per_sample, [1.0, 0.0])  # a silent clip predicted silent scores 1
    assert rep.metrics["event_f1"] == 0.0 and rep.metrics["event_recall"] == 0.0
    assert rep.per_slice["first"]["event_f1"] == 1.0 and rep.per_slice["first"]["n"] == 1
    assert rep.per_slice["second"]["event_f1"] == 0.0
    via = evaluate("audio_regions", [empty], [{"regions": [R("cat", 0, 1)]}], LABELS)
    assert via.metrics["event_f1"] == 0.0
    assert rep.to_dict()["per_sample"] == [1.0, 0.0]


@pytest.mark.parametrize("bad", [
    {"regions": [R("cow", 0, 1)]},
    {"regions": [R("dog", 2, 1)]},
    {"regions": [{"label": "dog", "start": 0}]},
    {"regions": "nope"},
    {"regions": [R("dog", float("nan"), 1)]},
])
def test_bad_regions_raise_typed_errors(bad):
    with pytest.raises(InvalidInput) as err:
        evaluate_regions([bad], [{"regions": []}], LABELS)
    assert err.value.code == "invalid_input" and "results[0]" in err.value.message


def _random_case(rng, n_clips):
    def events(n):
        out = []
        for _ in range(n):
            s = float(rng.uniform(0, 10))
            out.append(R(LABELS[int(rng.integers(3))], round(s, 2), round(s + float(rng.uniform(0.1, 3.0)), 2)))
        return out

    refs, ests = [], []
    for _ in range(n_clips):
        ref = events(int(rng.integers(0, 6)))
        est = []
        for r in ref:  # jittered copies (some within tolerance, some not), some dropped, some relabelled
            if rng.random() < 0.8:
                lab = r["label"] if rng.random() < 0.85 else LABELS[int(rng.integers(3))]
                s = r["start"] + float(rng.normal(0, 0.15))
                e = max(s, r["end"] + float(rng.normal(0, 0.25)))
                est.append(R(lab, round(s, 3), round(e, 3)))
        est += events(int(rng.integers(0, 3)))
        refs.append({"regions": ref})
        ests.append({"regions": [est[i] for i in rng.permutation(len(est))]})
    return ests, refs


def _reference_counts(ests, refs, t_collar=0.2, pct=0.2):
    """Independent: per clip and class, a boolean match matrix and scipy's optimal assignment."""
    from scipy.optimize import linear_sum_assignment

    counts = {c: [0, 0, 0] for c in LABELS}
    for est, ref in zip(ests, refs):
        for c in LABELS:
            r = [x for x in ref["regions"] if x["label"] == c]
            e = [x for x in est["regions"] if x["label"] == c]
            counts[c][1] += len(r)
            counts[c][2] += len(e)
            if r and e:
                ok = np.array([[abs(a["start"] - b["start"]) <= t_collar
                                and abs(a["end"] - b["end"]) <= max(t_collar, pct * (a["end"] - a["start"]))
                                for b in e] for a in r], dtype=float)
                rows, cols = linear_sum_assignment(-ok)
                counts[c][0] += int(ok[rows, cols].sum())
    return counts


def test_matches_linear_sum_assignment_reference_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(200):
        ests, refs = _random_case(rng, int(rng.integers(1, 5)))
        rep = evaluate_regions(ests, refs, LABELS)
        counts = _reference_counts(ests, refs)
        for c in LABELS:
            assert [rep.per_class[c][k] for k in ("tp", "n_ref", "n_sys")] == counts[c]
        tp, nr, ns = (sum(counts[c][i] for c in LABELS) for i in range(3))
        expected = 2 * tp / (nr + ns) if nr + ns else 1.0
        assert rep.metrics["event_f1"] == pytest.approx(expected)


def test_matches_sed_eval_on_random_cases():
    try:
        import dcase_util
        import sed_eval
    except Exception as exc:  # sed_eval needs dcase_util, which needs pkg_resources (setuptools < 81)
        pytest.skip(f"sed_eval not importable: {exc}")
    rng = np.random.default_rng(1)
    for case in range(60):
        ests, refs = _random_case(rng, int(rng.integers(1, 5)))
        rep = evaluate_regions(ests, refs, LABELS)
        metric = sed_eval.sound_event.EventBasedMetrics(event_label_list=list(LABELS), t_collar=0.2,
                                                       percentage_of_length=0.2, event_matching_type="optimal")
        for i, (est, ref) in enumerate(zip(ests, refs)):
            def container(regions):
                return dcase_util.containers.MetaDataContainer(
                    [{"filename": f"clip{i}.wav", "event_label": r["label"], "onset": r["start"],
                      "offset": r["end"]} for r in regions])
            metric.evaluate(reference_event_list=container(ref["regions"]),
                            estimated_event_list=container(est["regions"]))
        overall = metric.results_overall_metrics()["f_measure"]
        if rep.metrics["n_ref"] and rep.metrics["n_sys"]:
            assert rep.metrics["event_f1"] == pytest.approx(overall["f_measure"], abs=1e-9), case
            assert rep.metrics["event_precision"] == pytest.approx(overall["precision"], abs=1e-9), case
            assert rep.metrics["event_recall"] == pytest.approx(overall["recall"], abs=1e-9), case
        for c, figures in metric.results_class_wise_metrics().items():
            if rep.per_class[c]["n_ref"] and rep.per_class[c]["n_sys"]:
                assert rep.per_class[c]["f1"] == pytest.approx(figures["f_measure"]["f_measure"], abs=1e-9), case
