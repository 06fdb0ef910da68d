"""Schemathesis against the API's own OpenAPI schema (/api/schema/): no response is a 5xx.

Every operation of the schema is called with a lead's token and with an annotator's token (the same generated
case twice), on a project that holds real samples (scikit-learn digits), labeling rounds, tasks, annotations
and a trained, deployed model, so that generated ids sometimes name real objects: each path id is either
generated or one of the real ids. Cases come in schemathesis' positive mode (valid per the schema) and
negative mode (violating it); the samples list's ``metadata`` parameter is an exploded object whose property names are
``metadata.<key>[:<op>]`` query parameters (examples listed: OpenAPI 3.0 cannot pattern property names), and
this test adds filters with any key, operator and value, so the metadata filters are fuzzed too (the test
asserts they were reached: answered with samples, and refused by our parser).

Excluded, because each call starts heavy work (a training run, a selection round, an export, a label check,
a drift check):
- POST /api/v1/projects/{project_id}/training-runs/
- POST /api/v1/projects/{project_id}/rounds/
- POST /api/v1/projects/{project_id}/exports/
- POST /api/v1/projects/{project_id}/label-checks/
- POST /api/v1/projects/{project_id}/drift-checks/
Everything else is fuzzed, predict (on the deployed model) and deploy included.

Bounded: ``MAX_EXAMPLES`` cases per operation and mode (5 times as many for the metadata filters),
derandomized (the same cases on every run), no shrinking; a 5xx is collected with its request and reported
at the end. The figures ("0 5xx in M calls") are printed and written to test-artifacts/api-fuzz.json when that
folder exists.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

EXCLUDED = [
    ("POST", "/api/v1/projects/{project_id}/training-runs/"),
    ("POST", "/api/v1/projects/{project_id}/rounds/"),
    ("POST", "/api/v1/projects/{project_id}/exports/"),
    ("POST", "/api/v1/projects/{project_id}/label-checks/"),
    ("POST", "/api/v1/projects/{project_id}/drift-checks/"),
]
# Cases per operation and mode; LOOPLAB_FUZZ_EXAMPLES raises it for a longer search, LOOPLAB_FUZZ_SEED draws other cases.
MAX_EXAMPLES = int(os.environ.get("LOOPLAB_FUZZ_EXAMPLES", "20"))
FILTER_EXAMPLES = 5 * MAX_EXAMPLES
SEED = os.environ.get("LOOPLAB_FUZZ_SEED")

pytestmark = pytest.mark.slow


@pytest.fixture
def fuzz_state(transactional_db, django_capture_on_commit_callbacks, lead, annotator, project, digits):
    """Real objects to aim at, built through services and committed (the app runs in autocommit here): 30
    samples with metadata, a round, annotations, a trained and deployed model, an open task."""
    from apps.accounts.services import token_get_or_create
    from apps.labeling.models import Annotation, Task
    from apps.labeling.services import round_create
    from apps.samples.models import Sample
    from apps.registry.models import ModelVersion
    from apps.registry.services import deployment_create
    from tests.apps.helpers import train_digits

    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=30, epochs=2,
                       labeled=24, metadata=lambda i: {"n": i, "speed": 10 * i, "camera": ["front", "rear"][i % 2]})
    model = ModelVersion.objects.get(training_run=run)
    deployment_create(project=project, model_version=model, user=lead)
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, strategy="random", budget=2)
    ids = {
        "project_id": [project.id],
        "sample_id": list(Sample.objects.filter(project=project).values_list("id", flat=True)[:4]),
        "round_id": [rnd.id],
        "task_id": list(Task.objects.filter(project=project).values_list("id", flat=True)[:3]),
        "annotation_id": list(Annotation.objects.filter(task__project=project).values_list("id", flat=True)[:3]),
        "model_id": [model.id],
        "run_id": [run.id],
    }
    assert all(ids.values()), ids
    tokens = {"lead": token_get_or_create(user=lead), "annotator": token_get_or_create(user=annotator)}
    return project, ids, tokens


def test_no_5xx_in_schemathesis_calls(fuzz_state, capsys):
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    from apps.looplab.wsgi import application

    project, ids, tokens = fuzz_state
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    for method, path in EXCLUDED:
        assert method.lower() in schema.raw_schema["paths"].get(path, {}), f"{method} {path} left the schema"
        schema = schema.exclude(method=method, path=path)

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """Each path id: the generated value or one of the real ids of that kind."""
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries({
            name: st.one_of(st.just(value), st.sampled_from(ids[name])) if ids.get(name) else st.just(value)
            for name, value in path_parameters.items()})

    filter_params = st.dictionaries(
        st.builds(lambda key, op: f"metadata.{key}" + ("" if op is None else f":{op}"), st.text(max_size=24),
                  st.one_of(st.none(), st.sampled_from(["eq", "gt", "gte", "lt", "lte", "in", "regex", "contains",
                                                        "has_key", "range", ""]), st.text(max_size=8))),
        st.one_of(st.text(max_size=24), st.integers().map(str), st.floats().map(str),
                  st.sampled_from(["(.*.*)*$", "(", "1,2", "[1, 2]", "null", "true", "1e400", "-0"])),
        max_size=4)

    @schema.hook
    def flatmap_query(context, query):
        """The schema (OpenAPI 3.0) lists example filters only: add filters with any key and operator."""
        if context.operation is None or context.operation.label != "GET /api/v1/projects/{project_id}/samples/":
            return st.just(query)
        return filter_params.map(lambda extra: {**(query or {}), **extra})

    calls, failures, no_negative, filter_outcomes = 0, [], [], Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30, [op.label for op in operations]
    samples_list = f"/api/v1/projects/{project.id}/samples/"
    runs = [(operation, mode, MAX_EXAMPLES, {}) for operation in operations
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    # More cases for the metadata filters, all on the real project.
    filters = schema["/api/v1/projects/{project_id}/samples/"]["GET"]
    runs += [(filters, mode, FILTER_EXAMPLES, {"project_id": project.id})
             for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    for operation, mode, max_examples, fixed in runs:
        @(hypothesis.seed(int(SEED)) if SEED else (lambda f: f))
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=SEED is None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal calls
            for role, token in tokens.items():
                response = case.call(headers={"Authorization": f"Token {token}"})
                calls += 1
                if response.status_code >= 500:
                    failures.append(f"{role} {case.method} {case.formatted_path} query={case.query!r} "
                                    f"body={case.body!r:.300} -> {response.status_code} {response.text[:300]}")
                if (case.method == "GET" and case.formatted_path == samples_list
                        and any(str(k).startswith("metadata.") for k in (case.query or {}))):
                    code = response.json()["error"]["code"] if response.status_code >= 400 else "ok"
                    filter_outcomes[(response.status_code, code)] += 1

        try:
            run()
        except Unsatisfiable:  # nothing to violate (an operation without parameters or body)
            assert mode == GenerationMode.NEGATIVE, operation.label
            no_negative.append(operation.label)
    with capsys.disabled():
        print(f"\nschemathesis: {len(failures)} 5xx in {calls} calls over {len(operations)} operations; "
              f"no negative cases for {no_negative}; metadata filters on the real project: {dict(filter_outcomes)}")
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    if artifacts.is_dir():
        (artifacts / "api-fuzz.json").write_text(json.dumps({
            "calls": calls, "5xx": len(failures), "operations": len(operations), "max_examples": MAX_EXAMPLES,
            "seed": SEED, "excluded": [" ".join(e) for e in EXCLUDED],
            "metadata_filter_outcomes": {f"{status} {code}": n for (status, code), n in filter_outcomes.items()},
            "failures": failures[:100]}, indent=1))
    assert not failures, "\n".join(failures[:40])
    # The filters were reached: some answered with samples, some were refused by our parser.
    assert filter_outcomes[(200, "ok")] >= 5, filter_outcomes
    assert filter_outcomes[(400, "unknown_filter_operator")] + filter_outcomes[(422, "invalid_filter")] >= 5
