import pytest

from ml.errors import InvalidInput
from ml.selection import InvalidConstraints, RoundConstraints

LABELS = ["cat", "dog"]


def test_parse_normalises():
    rc = RoundConstraints.parse(
        {"slices": [{"name": " night ", "where": {"time_of_day": "night"}, "min": 3}],
         "classes": [{"label": "dog", "max": 2}],
         "cost": {"metadata_key": "seconds"},
         "exclude_near_duplicates": 1},
        labels=LABELS,
    )
    assert rc.to_dict() == {
        "slices": [{"name": "night", "where": {"time_of_day": "night"}, "min": 3, "max": None}],
        "classes": [{"label": "dog", "min": 0, "max": 2}],
        "cost": {"metadata_key": "seconds", "max_total": None},
        "exclude_near_duplicates": 1.0,
    }
    assert RoundConstraints.parse(None, labels=LABELS).to_dict() == {}
    assert RoundConstraints.parse({}, labels=LABELS) == RoundConstraints()


@pytest.mark.parametrize("raw, field", [
    ({"budget": 3}, None),
    ({"slices": [{"name": "n", "where": {"speed": {"above": 3}}, "min": 1}]}, "slices[0].where"),
    ({"slices": [{"name": "n", "where": {}, "min": 1}]}, "slices[0].where"),
    ({"slices": [{"name": "n", "where": "night", "min": 1}]}, "slices[0].where"),
    ({"slices": [{"name": "n", "where": {"a": 1}, "min": 5, "max": 2}]}, "slices[0]"),
    ({"slices": [{"name": "n", "where": {"a": 1}}]}, "slices[0]"),
    ({"slices": [{"name": "n", "where": {"a": 1}, "min": -1}]}, "slices[0].min"),
    ({"slices": [{"name": "n", "where": {"a": 1}, "min": 1}, {"name": "n", "where": {"b": 1}, "min": 1}]},
     "slices[1].name"),
    ({"slices": ["n"]}, "slices"),
    ({"classes": [{"label": "eleven", "min": 1}]}, "classes[0].label"),
    ({"classes": [{"label": "dog", "min": 1}, {"label": "dog", "max": 1}]}, "classes[1].label"),
    ({"cost": {"max_total": 3}}, "cost.metadata_key"),
    ({"cost": {"metadata_key": "seconds", "max_total": 0}}, "cost.max_total"),
    ({"exclude_near_duplicates": 1.5}, "exclude_near_duplicates"),
    ({"exclude_near_duplicates": True}, "exclude_near_duplicates"),
])
def test_one_typed_error(raw, field):
    with pytest.raises(InvalidConstraints) as exc:
        RoundConstraints.parse(raw, labels=LABELS)
    err = exc.value
    assert isinstance(err, InvalidInput) and err.code == "invalid_constraints" and err.message
    assert err.details.get("field") == field


def test_non_finite_numbers_are_refused_with_a_reason():
    with pytest.raises(InvalidConstraints) as exc:
        RoundConstraints.parse({"slices": [{"name": "n", "where": {"speed": {"gte": float("inf")}}, "min": 1}]},
                               labels=LABELS)
    assert "finite" in exc.value.message
