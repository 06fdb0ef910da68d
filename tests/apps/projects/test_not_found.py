"""One 404 for "not yours" and "does not exist": an outsider cannot tell whether an id exists in another
project, for every kind of object the API reaches by id."""
import pytest

from tests.apps.helpers import push_digits, train_digits

MISSING = 987_654_321  # an id no table reaches in a test run


@pytest.fixture
def one_of_each(lead, annotator, project, digits, django_capture_on_commit_callbacks):
    """A project holding one object of every kind the API reaches by id, all made through the services:
    a trained and deployed model (round, tasks, annotations, training run), production samples, and a
    queued export, label check and drift check."""
    from apps.exports.services import export_create
    from apps.labeling.models import Annotation, Round, Task
    from apps.projects.services import project_update
    from apps.registry.models import ModelVersion
    from apps.samples.models import Sample
    from apps.labeling.quality import label_check_create
    from apps.monitoring.drift import drift_check_create

    project_update(project=project, auto_deploy=True)
    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=40, epochs=1)
    with django_capture_on_commit_callbacks(execute=True):  # production: pushed after training, embedded
        push_digits(project, digits, 20, start=40)
    # the jobs stay queued (their on-commit messages are not run): only their ids matter here
    export = export_create(project=project, user=lead, format="csv")
    label_check = label_check_create(project=project, user=lead)
    drift_check = drift_check_create(project=project, user=lead, window_hours=1)
    annotation = Annotation.objects.filter(task__project=project).first()
    return {
        "project": ("get", "/api/v1/projects/{}/", project.pk),
        "sample": ("get", "/api/v1/samples/{}/", Sample.objects.filter(project=project).first().pk),
        "task": ("post", "/api/v1/tasks/{}/skip/", Task.objects.filter(project=project).first().pk),
        "annotation": ("post", "/api/v1/annotations/{}/review/", annotation.pk),
        "round": ("get", "/api/v1/rounds/{}/", Round.objects.filter(project=project).first().pk),
        "training run": ("get", "/api/v1/training-runs/{}/", run.pk),
        "model": ("get", "/api/v1/models/{}/", ModelVersion.objects.filter(project=project).first().pk),
        "export": ("get", "/api/v1/exports/{}/", export.pk),
        "label check": ("get", "/api/v1/label-checks/{}/", label_check.pk),
        "drift check": ("get", "/api/v1/drift-checks/{}/", drift_check.pk),
    }


@pytest.mark.slow
def test_an_outsider_gets_the_same_404_for_a_real_id_and_a_missing_one(api, outsider, lead, one_of_each):
    outside, member = api(outsider), api(lead)
    body = {"action": "accept"}
    for kind, (method, path, real_id) in one_of_each.items():
        assert real_id is not None, kind
        # the id is real: a member of the project reaches it
        seen = getattr(member, method)(path.format(real_id), body, format="json") if method == "get" else None
        if seen is not None:
            assert seen.status_code == 200, (kind, seen.content)
        hidden = getattr(outside, method)(path.format(real_id), body, format="json")
        missing = getattr(outside, method)(path.format(MISSING), body, format="json")
        assert hidden.status_code == missing.status_code == 404, (kind, hidden.content, missing.content)
        assert hidden.json() == missing.json(), (kind, hidden.json(), missing.json())
        error = hidden.json()["error"]
        assert error["code"] == "not_found" and error["message"] == f"{kind.capitalize()} not found.", (kind, error)
        # and a member asking for a missing id gets that body too
        assert getattr(member, method)(path.format(MISSING), body, format="json").json() == hidden.json(), kind
    # the other routes of those objects answer the same (nothing is cancelled, flagged or stored by an outsider)
    ids = {kind: real_id for kind, (_, _, real_id) in one_of_each.items()}
    more = [("Task", "post", "/api/v1/tasks/{}/annotations/", ids["task"]),
            ("Model", "get", "/api/v1/models/{}/confusion.png", ids["model"]),
            ("Export", "get", "/api/v1/exports/{}/download", ids["export"]),
            ("Drift check", "post", "/api/v1/drift-checks/{}/flag/", ids["drift check"])]
    for kind, prefix in (("Round", "rounds"), ("Training run", "training-runs"), ("Export", "exports"),
                         ("Label check", "label-checks"), ("Drift check", "drift-checks")):
        more.append((kind, "post", f"/api/v1/{prefix}/{{}}/cancel/", ids[kind.lower()]))
    for kind, method, path, real_id in more:
        hidden = getattr(outside, method)(path.format(real_id), {"result": {"label": "1"}}, format="json")
        missing = getattr(outside, method)(path.format(MISSING), {"result": {"label": "1"}}, format="json")
        assert hidden.status_code == missing.status_code == 404, (path, hidden.content, missing.content)
        assert hidden.json() == missing.json() == {"error": {"code": "not_found", "message": f"{kind} not found.",
                                                             "details": {}}}, path


@pytest.mark.parametrize("path", ["/api/v1/samples/{}/content/", "/api/v1/samples/{}/similar/",
                                  "/api/v1/samples/{}/peaks/", "/api/v1/samples/{}/points.bin"])
def test_every_sample_route_answers_an_outsider_like_a_missing_sample(api, outsider, project, digits, path):
    from apps.samples.models import Sample

    push_digits(project, digits, 1)
    real = Sample.objects.get(project=project).pk
    hidden, missing = api(outsider).get(path.format(real)), api(outsider).get(path.format(MISSING))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json() == {"error": {"code": "not_found", "message": "Sample not found.",
                                                         "details": {}}}


def test_the_project_loaded_with_an_object_answers_as_that_object(outsider, lead, project, digits):
    # a view that checks access with ``sample.project`` instead of ``sample`` still gives the sample's 404
    from apps.core.errors import NotFound
    from apps.projects.selectors import project_get_for_user, require_object_role
    from apps.samples.selectors import sample_get

    (pushed,) = push_digits(project, digits, 1)
    sample = sample_get(sample_id=pushed["id"])
    for obj in (sample, sample.project):
        with pytest.raises(NotFound) as refused:
            require_object_role(obj=obj, user=outsider, min_role="annotator")
        assert refused.value.message == "Sample not found."
    assert require_object_role(obj=sample.project, user=lead, min_role="lead") == "admin"
    with pytest.raises(NotFound) as refused:  # a project asked for as a project is a project
        require_object_role(obj=project_get_for_user(user=lead, project_id=project.pk), user=outsider,
                            min_role="annotator")
    assert refused.value.message == "Project not found."
