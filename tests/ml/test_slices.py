import numpy as np

from ml.slices import PREDICATE_OPERATORS, condition_problem, predicate_problem, slice_mask, value_slices


def test_operators_are_the_documented_ones():
    assert PREDICATE_OPERATORS == ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte")


def test_missing_key_matches_only_negative_operators():
    meta = [{"a": 1}, {}, None]
    assert slice_mask(meta, {"b": {"ne": 2}}).tolist() == [True, True, True]
    assert slice_mask(meta, {"b": {"not_in": [2]}}).tolist() == [True, True, True]
    assert slice_mask(meta, {"b": {"ne": 2, "gt": 0}}).tolist() == [False, False, False]
    assert slice_mask(meta, {"a": {"in": [1, 2]}}).tolist() == [True, False, False]


def test_condition_problems():
    assert condition_problem("night") is None
    assert condition_problem([1, "a", True, None]) is None
    assert condition_problem({"gte": 1, "lt": 2.5}) is None
    assert "non-empty list" in condition_problem([])
    assert "non-empty list" in condition_problem({"in": "abc"})
    assert "at least one operator" in condition_problem({})
    assert "unknown operator(s) about" in condition_problem({"about": 3})
    assert "finite" in condition_problem({"gte": float("inf")})
    assert "NUL" in condition_problem("a\x00b")
    assert "dict is not a value" in condition_problem({"eq": {"a": 1}})


def test_predicate_problem_names_the_key():
    assert predicate_problem({"time_of_day": "night", "speed": {"gte": 50}}) is None
    assert predicate_problem({})[0] is None
    assert predicate_problem("night")[0] is None
    assert predicate_problem({"speed": {"above": 3}})[0] == "speed"
    key, reason = predicate_problem({"a\x00": 1})
    assert key == "a\x00" and "NUL" in reason


def test_value_slices_one_mask_per_window():
    ref = [{"cam": "a", "n": 1}, {"cam": "b", "n": 2}, {"cam": "a"}, None]
    prod = [{"cam": "c"}, {"x": [1]}]
    slices = value_slices(ref, prod)
    assert sorted(slices) == ["cam=a", "cam=b", "cam=c", "n=1", "n=2"]
    assert slices["cam=a"][0].tolist() == [True, False, True, False]
    assert slices["cam=c"][1].tolist() == [True, False]
    # the same samples as the predicate {key: value}
    for name, masks in slices.items():
        key, _, _ = name.partition("=")
        value = next(m[key] for w in (ref, prod) for m in w if m and key in m and f"{key}={m[key]}" == name)
        assert np.array_equal(masks[0], slice_mask(ref, {key: value}))
    assert value_slices([{"k": i} for i in range(11)]) == {}  # more than 10 values: not a slice
