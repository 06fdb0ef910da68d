"""The server-rendered pages: login required, members only (404 otherwise), lead controls for leads only."""
import pytest

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample


def _client(client, user):
    client.force_login(user)
    return client


def _round_label_train(project, lead, annotator, truth, capture, **round_kw):
    """A round (``round_kw``: its budget, strategy), every open task labeled, then a 3-epoch training run:
    the run, succeeded. ``capture`` is pytest-django's django_capture_on_commit_callbacks."""
    from apps.labeling.services import round_create
    from apps.training.services import training_run_create

    with capture(execute=True):
        round_create(project=project, user=lead, **round_kw)
    label_all_open(project, annotator, truth)
    with capture(execute=True):
        run = training_run_create(project=project, user=lead, epochs=3)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


@pytest.mark.parametrize("path", ["/", "/projects/{id}/", "/projects/{id}/annotate/"])
def test_anonymous_is_sent_to_login(client, project, path):
    url = path.format(id=project.id)
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/login/?next=")


def test_login_page_and_login_flow(client, annotator):
    r = client.get("/login/")
    assert r.status_code == 200
    assert b'name="username"' in r.content and b"csrfmiddlewaretoken" in r.content
    r = client.post("/login/", {"username": "annotator", "password": "pw-annotator"})
    assert r.status_code == 302 and r["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_shows_an_error(client, annotator):
    r = client.post("/login/", {"username": "annotator", "password": "nope"})
    assert r.status_code == 200
    assert b"alert-error" in r.content


def test_logout_is_a_post(client, annotator):
    _client(client, annotator)
    r = client.post("/logout/")
    assert r.status_code == 302 and r["Location"] == "/login/"
    assert client.get("/").status_code == 302


def test_projects_list_shows_member_projects_only(client, lead, annotator, outsider, project):
    from apps.projects.services import project_create

    project_create(user=outsider, name="someone else's", modality="audio", labels=["yes", "no"])
    push_digits(project, __import__("fixtures.digits", fromlist=["x"]).digits_pngs(), 6)
    r = _client(client, annotator).get("/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "digits" in html and "someone else" not in html
    assert f'href="/projects/{project.id}/"' in html and f'href="/projects/{project.id}/annotate/"' in html
    assert "6 / 500" not in html  # nothing selected yet: budget shows 0 / 500
    assert "0 / 500" in html


@pytest.mark.parametrize("path", ["/projects/{id}/", "/projects/{id}/annotate/"])
def test_non_member_gets_404_html(client, outsider, project, path):
    r = _client(client, outsider).get(path.format(id=project.id))
    assert r.status_code == 404
    assert r["Content-Type"].startswith("text/html")
    assert b"Not found" in r.content


@pytest.mark.parametrize("pid", ["999999", "99999999999999999999999"])
def test_missing_project_is_404(client, annotator, project, pid):
    assert _client(client, annotator).get(f"/projects/{pid}/").status_code == 404


def test_project_page_for_annotator_has_no_lead_controls(client, annotator, project, digits):
    push_digits(project, digits, 10)
    r = _client(client, annotator).get(f"/projects/{project.id}/")
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="counts"' in html and 'id="budget"' in html
    assert f'href="/projects/{project.id}/annotate/"' in html
    assert 'id="round-form"' not in html and 'id="train-form"' not in html and "data-deploy=" not in html
    assert "csrftoken" in r.cookies


def test_project_page_for_lead_has_controls_and_strategies(client, lead, project):
    from ml.selection import STRATEGIES

    r = _client(client, lead).get(f"/projects/{project.id}/")
    assert r.status_code == 200
    html = r.content.decode()
    assert 'id="round-form"' in html and 'id="train-form"' in html
    for strategy in STRATEGIES:
        assert f'<option value="{strategy}"' in html


def test_project_page_shows_rounds_with_progress(client, lead, annotator, project, digits, django_capture_on_commit_callbacks):
    from apps.labeling.services import round_create

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 30)
    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, budget=12, strategy="auto")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    label_all_open(project, annotator, truth_by_sample(project, digits))
    r = _client(client, lead).get(f"/projects/{project.id}/")
    html = r.content.decode()
    assert f'data-job="round" data-id="{rnd.pk}" data-status="succeeded"' in html
    assert 'role="progressbar"' in html and 'aria-valuenow="100"' in html
    assert rnd.strategy_used in html
    assert '"active": false' in html  # nothing running: the page does not poll


@pytest.mark.slow
def test_project_page_shows_model_comparison_and_deployment(client, lead, annotator, project, digits,
                                                           django_capture_on_commit_callbacks):
    from apps.projects.services import project_update

    project_update(project=project, auto_deploy=True)
    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 200)
    truth = truth_by_sample(project, digits)
    run = _round_label_train(project, lead, annotator, truth, django_capture_on_commit_callbacks, budget=100)
    html = _client(client, lead).get(f"/projects/{project.id}/").content.decode()
    assert f"/api/v1/models/{run.model_id}/confusion.png" in html
    assert "Label → serving" in html and "serving" in html
    assert 'data-job="run"' in html


def test_learning_curve_svg_draws_each_model_in_label_order():
    import xml.etree.ElementTree as ET

    from apps.web.charts import CurvePoint, learning_curve_svg

    assert learning_curve_svg([]) == ""
    pts = [CurvePoint(labels=300, accuracy=0.95, macro_f1=0.94, version=3, deployed=True),
           CurvePoint(labels=100, accuracy=0.80, macro_f1=0.78, version=1),
           CurvePoint(labels=200, accuracy=0.90, macro_f1=0.89, version=2)]
    root = ET.fromstring(learning_curve_svg(pts))
    ns = {"s": "http://www.w3.org/2000/svg"}
    lines = {el.get("class"): el.get("points") for el in root.findall("s:polyline", ns)}
    assert set(lines) == {"line accuracy", "line macro-f1"}
    acc = [tuple(map(float, xy.split(","))) for xy in lines["line accuracy"].split()]
    assert [x for x, _ in acc] == sorted(x for x, _ in acc)  # by labels
    assert acc[0][1] > acc[1][1] > acc[2][1]  # higher accuracy is drawn higher up (smaller y)
    dots = [c for c in root.findall("s:circle", ns) if c.get("data-version")]
    assert len(dots) == 6
    deployed = [c for c in dots if "deployed" in c.get("class")]
    assert {c.get("data-version") for c in deployed} == {"3"} and all(c.get("r") == "6" for c in deployed)
    titles = [c.find("s:title", ns).text for c in dots]
    assert "v3: 95.0% accuracy with 300 labels (serving)" in titles


@pytest.mark.slow
def test_project_page_learning_curve_and_slice_metrics(client, lead, annotator, project, digits,
                                                       django_capture_on_commit_callbacks):
    import re

    with django_capture_on_commit_callbacks(execute=True):
        push_digits(project, digits, 240, metadata=lambda i: {"time_of_day": "night" if i % 3 == 0 else "day"})
    truth = truth_by_sample(project, digits)
    for budget in (80, 80):
        _round_label_train(project, lead, annotator, truth, django_capture_on_commit_callbacks, budget=budget,
                           strategy="random")
    html = _client(client, lead).get(f"/projects/{project.id}/").content.decode()
    svg = html[html.index('<svg class="curve"'):html.index("</svg>")]
    assert len(re.findall(r'<circle class="dot accuracy[^"]*" cx="[\d.]+" cy="[\d.]+" r="\d" data-version', svg)) == 2
    assert re.search(r"v1: [\d.]+% accuracy with 80 labels", svg) and re.search(r"v2: [\d.]+% accuracy with 160 labels", svg)
    # both points are on v2's test split: v1 was re-scored there when v2 was evaluated
    from apps.registry.models import ModelVersion

    v1, v2 = ModelVersion.objects.filter(project=project).order_by("version")
    points = {p["version"]: p for p in v2.curve["points"]}
    assert set(points) == {1, 2} and v2.curve["n_test"] == v2.eval_report["n"]
    assert points[2]["accuracy"] == v2.eval_report["accuracy"]
    assert points[1]["labels"] == 80 and points[2]["labels"] == 160
    assert v1.eval_report["n"] < v2.eval_report["n"]  # v1's own figure was on a smaller test split...
    assert f"v1: {100 * points[1]['accuracy']:.1f}% accuracy" in svg  # ...the curve shows its score on v2's
    assert f"all scored on the test split of v2 ({v2.curve['n_test']} samples)" in html
    assert "time_of_day=night" in html and "time_of_day=day" in html  # the slice table of each model card
    assert 'class="table compact per-class"' in html
