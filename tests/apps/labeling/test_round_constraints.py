"""Batch constraints on a round's train picks: slice quotas and caps, cost, near-duplicates, class quotas."""
import io

import numpy as np
import pytest
from PIL import Image

from tests.apps.helpers import label_all_open, push_digits, train_digits, truth_by_sample


def night(i):
    return {"time_of_day": "night" if i % 10 == 0 else "day", "seconds": 1 + i % 5}


def _round(api, lead, project, capture, **body):
    with capture(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/rounds/", body, format="json")
    assert r.status_code == 202, r.content
    out = api(lead).get(f"/api/v1/rounds/{r.json()['id']}/").json()
    assert out["status"] == "succeeded", out
    return out


def _train_picks(out):
    from apps.samples.models import Sample

    ids = [item["sample"] for item in out["items"] if item["split"] == "train"]
    return list(Sample.objects.filter(pk__in=ids))


def test_slice_quota_takes_at_least_min_from_a_rare_slice(api, lead, project, digits,
                                                          django_capture_on_commit_callbacks):
    push_digits(project, digits, 300, metadata=night)
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=30, strategy="auto",
                 slices=[{"name": "night", "where": {"time_of_day": "night"}, "min": 10}])
    picks = _train_picks(out)
    n_night = sum(s.metadata["time_of_day"] == "night" for s in picks)
    assert len(picks) == 21 and n_night >= 10  # 10% of the pool: the cold start alone takes about 2
    report = out["details"]["constraints"]
    assert report["constraints"]["slice:night"] == {"count": n_night, "quota": 10, "cap": None, "shortfall": 0}
    assert report["train_budget"] == 21
    assert report["slice_pool"]["night"] == sum(1 for s in _pool(project) if s.metadata["time_of_day"] == "night")
    assert out["constraints"] == {"slices": [{"name": "night", "where": {"time_of_day": "night"}, "min": 10, "max": None}]}
    # val/test picks stay a random sample (evaluation must not be biased by the quota)
    assert out["details"]["strategies"]["val"] == out["details"]["strategies"]["test"] == "random"


def _pool(project):
    from apps.samples.models import Sample

    return Sample.objects.filter(project=project, split="train")


def test_slice_cap_and_operators(api, lead, project, digits, django_capture_on_commit_callbacks):
    push_digits(project, digits, 300, metadata=night)
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=30, strategy="random",
                 slices=[{"name": "cheap day", "where": {"time_of_day": "day", "seconds": {"lte": 2}}, "max": 0}])
    picks = _train_picks(out)
    assert len(picks) == 21
    assert not any(s.metadata["time_of_day"] == "day" and s.metadata["seconds"] <= 2 for s in picks)
    assert out["details"]["constraints"]["constraints"]["slice:cheap day"]["count"] == 0


def test_cost_budget_bounds_the_sum_and_missing_costs_get_the_median(api, lead, project, digits,
                                                                     django_capture_on_commit_callbacks):
    # a quarter have no usable cost: missing, 0, or too small for float32 (1e-50)
    unusable = ({}, {"seconds": 0}, {"seconds": 1e-50}, {"seconds": "long"})
    push_digits(project, digits, 200, metadata=lambda i: {"seconds": 1 + i % 5} if i % 4 else unusable[i // 4 % 4])
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=30, strategy="random",
                 cost={"metadata_key": "seconds", "max_total": 12})
    picks = _train_picks(out)
    report = out["details"]["constraints"]

    def usable(s):
        return isinstance(s.metadata.get("seconds"), int) and s.metadata["seconds"] >= 1

    median = float(np.median([s.metadata["seconds"] for s in _pool(project) if usable(s)]))
    spent = sum(s.metadata["seconds"] if usable(s) else median for s in picks)
    assert 0 < len(picks) < 21 and spent <= 12 and report["total_cost"] == pytest.approx(spent)
    assert report["cost_imputed"] == sum(1 for s in _pool(project) if not usable(s)) > 0


def _altered(png: bytes) -> bytes:
    """The same digit with one pixel changed: a new file (new content hash), a near-duplicate to the eye."""
    im = Image.open(io.BytesIO(png)).convert("RGB")
    x, y = im.width // 2, im.height // 2
    r, g, b = im.getpixel((x, y))
    im.putpixel((x, y), (255 - r, g, b))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_near_duplicates_of_labeled_samples_are_never_picked(api, lead, annotator, project, digits,
                                                             django_capture_on_commit_callbacks):
    from apps.labeling.services import round_create
    from apps.samples.models import Sample
    from apps.samples.services import IngestItem, samples_ingest

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 100)
        round_create(project=project, user=lead, budget=100, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    # copies of the labeled digits, one pixel off, and 40 new digits
    with django_capture_on_commit_callbacks(execute=True):
        samples_ingest(project=project, items=[IngestItem(external_id=f"copy{i}", content=_altered(png), metadata={})
                                               for i, (png, _) in enumerate(digits[:100])])
        push_digits(project, digits, 40, start=100)
    copies = set(Sample.objects.filter(project=project, external_id__startswith="copy", split="train")
                 .values_list("id", flat=True))
    assert len(copies) > 40
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=50, strategy="random",
                 exclude_near_duplicates=0.99)
    picked = {item["sample"] for item in out["items"] if item["split"] == "train"}
    assert picked and not picked & copies
    assert out["details"]["constraints"]["excluded_near_duplicates"] >= len(copies)


def test_bad_constraints_are_4xx_and_create_nothing(api, lead, project, digits, django_capture_on_commit_callbacks):
    from apps.labeling.models import Round

    push_digits(project, digits, 50, metadata=night)
    url = f"/api/v1/projects/{project.id}/rounds/"
    cases = [
        ({"slices": [{"name": "n", "where": {"speed": {"above": 3}}, "min": 1}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {}, "min": 1}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"a": 1}, "min": 5, "max": 2}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"a": 1}}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"a": 1}, "min": 1}, {"name": "n", "where": {"b": 1}, "min": 1}]},
         422, "invalid_constraints"),
        ({"classes": [{"label": "eleven", "min": 1}]}, 422, "invalid_constraints"),
        ({"classes": [{"label": "3", "min": 1}]}, 422, "model_required"),  # no model deployed yet
        ({"cost": {"metadata_key": "seconds", "max_total": 0}}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"time_of_day": "nig\u0000ht"}, "min": 1}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"time_of_day": {"in": "nightly"}}, "min": 1}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"time_of_day": []}, "min": 1}]}, 422, "invalid_constraints"),
        ({"slices": [{"name": "n", "where": {"time_of_day": {"eq": {"a": 1}}}, "min": 1}]}, 422, "invalid_constraints"),
        ({"exclude_near_duplicates": 1.5}, 400, None),
        ({"slices": [{"name": "n", "where": "night", "min": 1}]}, 400, None),
    ]
    for extra, status, code in cases:
        r = api(lead).post(url, {"budget": 10, "strategy": "auto", **extra}, format="json")
        assert r.status_code == status, (extra, r.content)
        err = r.json()["error"]
        assert err["message"] and (code is None or err["code"] == code), (extra, err)
    # numbers json reads as infinity cannot be stored (the database's JSON has no inf): a 4xx, not a 500
    for where in ('{"speed": {"gte": 1e999}}', '{"speed": 1e999}', '{"speed": [1, -1e999]}'):
        body = '{"budget": 10, "slices": [{"name": "n", "where": %s, "min": 1}]}' % where
        r = api(lead).post(url, data=body, content_type="application/json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_constraints", (where, r.content)
        assert "finite" in r.json()["error"]["message"]
    assert Round.objects.filter(project=project).count() == 0


def test_the_report_says_why_a_quota_fell_short(api, lead, project, digits, django_capture_on_commit_callbacks):
    from apps.labeling.models import Round
    from apps.labeling.selectors import round_constraints_summary

    push_digits(project, digits, 300, metadata=night)
    # budget 10 -> 7 train picks: a quota of 9 cannot be met, though the pool has 20-odd night samples
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=10, strategy="random",
                 slices=[{"name": "night", "where": {"time_of_day": "night"}, "min": 9}])
    got = out["details"]["constraints"]["constraints"]["slice:night"]
    assert got["count"] == 7 and got["shortfall"] == 2
    (line,) = round_constraints_summary(rnd=Round.objects.get(pk=out["id"]))
    assert line == "night: at least 9 → 7 (2 short: the quotas ask for 9, the train share of the budget is 7)"
    # a slice the pool barely has
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=30, strategy="random",
                 slices=[{"name": "n5", "where": {"n": {"in": [5, 15]}}, "min": 3}])
    pool = out["details"]["constraints"]["slice_pool"]["n5"]
    (line,) = round_constraints_summary(rnd=Round.objects.get(pk=out["id"]))
    assert pool < 3 and line.endswith(f"short: only {pool} in the train pool)"), line


def test_constraints_on_a_round_without_train_picks_say_so(api, lead, project, digits,
                                                           django_capture_on_commit_callbacks):
    from apps.labeling.models import Round
    from apps.labeling.selectors import round_constraints_summary
    from apps.projects.services import project_create
    from apps.samples.models import Sample
    from apps.samples.services import IngestItem, samples_ingest

    # the split follows the content hash: find digits that land in val/test, and push only those
    scratch = project_create(user=lead, name="scratch", modality="image", labels=project.labels)
    push_digits(scratch, digits, 100)
    held_out = [int(ext[1:]) for ext in
                Sample.objects.filter(project=scratch).exclude(split="train").values_list("external_id", flat=True)]
    samples_ingest(project=project, items=[IngestItem(external_id=f"d{i}", content=digits[i][0], metadata={"n": i})
                                           for i in held_out])
    assert held_out and not Sample.objects.filter(project=project, split="train").exists()
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=10, strategy="random",
                 slices=[{"name": "any", "where": {"n": {"gte": 0}}, "min": 2}])
    assert "no train picks" in out["details"]["constraints"]["not_applied"]
    assert round_constraints_summary(rnd=Round.objects.get(pk=out["id"]))[-1].startswith("not applied: ")


@pytest.mark.slow
def test_class_quota_by_the_deployed_models_prediction(api, lead, annotator, project, digits,
                                                       django_capture_on_commit_callbacks):
    from apps.projects.services import project_update

    from apps.labeling.models import Task
    from apps.projects.services import membership_set, project_create

    # labels in another order than the digits' values, so a label/index mix-up shows
    project = project_create(user=lead, name="reversed", modality="image", labels=[str(9 - i) for i in range(10)],
                             label_budget=500, auto_deploy=True)
    membership_set(project=project, user=annotator, role="annotator")
    train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=150, epochs=3)
    push_digits(project, digits, 300, start=150)
    out = _round(api, lead, project, django_capture_on_commit_callbacks, budget=20, strategy="margin",
                 classes=[{"label": "3", "min": 6}, {"label": "8", "max": 1}])
    train = [item["sample"] for item in out["items"] if item["split"] == "train"]
    predicted = [t.prediction["label"] for t in Task.objects.filter(sample_id__in=train)]
    assert len(predicted) == 14 and predicted.count("3") >= 6 and predicted.count("8") <= 1
    report = out["details"]["constraints"]
    assert report["constraints"]["class:3"]["count"] == predicted.count("3") and report["constraints"]["class:8"]["cap"] == 1
    assert report["class_pool"]["3"] >= 6


def test_class_quotas_without_a_model_are_refused_before_the_rest_of_the_grammar(api, lead, project, digits):
    """The order of the checks is part of the answer: class quotas with no deployed model are model_required
    even when the cost limit after them is also wrong."""
    push_digits(project, digits, 20, metadata=night)
    url = f"/api/v1/projects/{project.id}/rounds/"
    for extra in ({"cost": {"metadata_key": "seconds", "max_total": 0}},):
        body = {"budget": 10, "strategy": "auto", "classes": [{"label": "3", "min": 1}], **extra}
        r = api(lead).post(url, body, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_required", (extra, r.content)
        body.pop("classes")
        r = api(lead).post(url, body, format="json")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_constraints", (extra, r.content)
