"""The annotator page and the project page in headless Chromium, against a live server.

State is built through services; the browser only does what a person would: sign in, press keys,
click buttons. Tool state is read from window.__looplab.state.
"""
from __future__ import annotations

import pytest

from tests.apps.helpers import label_all_open, push_digits, truth_by_sample
from tests.e2e.conftest import login, open_as

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEXT_TASK = """prev => {
  const s = window.__looplab?.state;
  return s && (s.status === 'empty' || (s.status === 'ready' && s.task && s.task.id !== prev));
}"""


def key_for(label: str, labels: list[str]) -> str:
    """The hotkey of a label on this digit-named project: its own digit (hotkeys.js)."""
    assert label in labels and len(label) == 1 and label.isdigit()
    return label


def label_for(key: str, labels: list[str]) -> str:
    assert key in labels
    return key


def _project(people, **kwargs):
    from apps.projects.services import membership_set, project_create

    project = project_create(user=people["lead"], name="Handwritten digits", modality="image",
                             labels=[str(i) for i in range(10)], label_budget=500, **kwargs)
    membership_set(project=project, user=people["annotator"], role="annotator")
    return project


def _round(project, user, budget: int, strategy: str = "auto"):
    from apps.labeling.services import round_create

    rnd = round_create(project=project, user=user, budget=budget, strategy=strategy)  # on_commit → eager task
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", (rnd.status, rnd.error)
    assert rnd.selected == budget
    return rnd


def test_annotate_with_the_keyboard(live_server, people, digits, new_page, artifacts):
    from apps.labeling.models import Annotation, Task, TaskSkip

    project = _project(people)
    push_digits(project, digits, 40)
    _round(project, people["lead"], budget=20)
    truth = truth_by_sample(project, digits)
    labels = project.labels

    page = new_page()
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")  # anonymous: sent to the login form
    assert "/login/?next=" in page.url
    page.screenshot(path=str(artifacts / "login.png"))
    login(page, live_server, "annotator", "pw-annotator")
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")
    page.wait_for_function("() => window.__looplab?.state && window.__looplab.state.status === 'ready'")
    page.evaluate("() => { window.__noReload = true; }")

    # The hotkey is shown on each label button: a digit-named label answers to its digit.
    assert page.inner_text(".label-btn[data-index='0'] kbd") == "0"
    assert page.inner_text(".label-btn[data-index='9'] kbd") == "9"

    # "?" toggles the help overlay.
    page.keyboard.press("?")
    assert page.is_visible("#help")
    assert "Enter" in page.inner_text("#help")
    page.keyboard.press("?")
    assert page.is_hidden("#help")

    pressed: dict[int, str] = {}  # task id -> key pressed
    skipped: int | None = None
    for step in range(7):
        task = page.evaluate("() => window.__looplab.state.task")
        page.wait_for_timeout(400)  # look at the image: active time accrues
        page.mouse.move(200 + step, 300)
        if step == 3:
            page.keyboard.press("s")
            skipped = task["id"]
        else:
            key = key_for(truth[task["sample"]["id"]], labels)
            page.keyboard.press(key)
            assert page.evaluate("() => window.__looplab.state.selected") == label_for(key, labels)
            assert page.get_attribute(f".label-btn[data-index='{labels.index(label_for(key, labels))}']", "aria-pressed") == "true"
            if step == 1:
                page.screenshot(path=str(artifacts / "annotate.png"))
            page.keyboard.press("Enter")
            pressed[task["id"]] = key
        page.wait_for_function(NEXT_TASK, arg=task["id"])
    assert len(pressed) == 6

    state = page.evaluate("() => window.__looplab.state")
    assert state["submitted"] == 6 and state["skipped"] == 1
    assert page.evaluate("() => window.__noReload") is True  # every task came without a page load
    assert page.inner_text("#count-submitted") == "6"

    rows = {a.task_id: a for a in Annotation.objects.filter(task__project=project)}
    assert set(rows) == set(pressed)
    for task_id, key in pressed.items():
        annotation = rows[task_id]
        assert annotation.result == {"label": label_for(key, labels)}
        assert annotation.annotator.username == "annotator"
        assert annotation.active_seconds is not None and 0.2 <= annotation.active_seconds < 30, annotation.active_seconds
        assert annotation.sample.label == label_for(key, labels)
    assert TaskSkip.objects.filter(task_id=skipped, user__username="annotator").exists()
    assert not Annotation.objects.filter(task_id=skipped).exists()

    # Label the rest as fast as the keyboard goes, until the queue is empty for this annotator.
    for _ in range(30):
        task = page.evaluate("() => window.__looplab.state.task")
        if page.evaluate("() => window.__looplab.state.status") == "empty":
            break
        page.keyboard.press(key_for(truth[task["sample"]["id"]], labels))
        page.keyboard.press("Enter")
        page.wait_for_function(NEXT_TASK, arg=task["id"])
    assert page.evaluate("() => window.__looplab.state.status") == "empty"
    assert page.is_visible("text=Nothing left to label")
    assert Annotation.objects.filter(task__project=project).count() == 19  # 20 selected, 1 skipped by this annotator
    assert Task.objects.filter(project=project, state="done").count() == 19
    assert page.evaluate("() => window.__looplab.state.submitted") == 19
    assert not new_page.errors, new_page.errors


def test_project_page_live_progress_deploy_and_prediction(live_server, people, digits, new_page, artifacts,
                                                          background_jobs):
    from apps.labeling.models import Annotation
    from apps.projects.services import project_update
    from apps.training.models import TrainingRun
    from apps.training.services import training_run_create

    project = _project(people, auto_deploy=True)
    push_digits(project, digits, 240)
    truth = truth_by_sample(project, digits)
    _round(project, people["lead"], budget=120)
    assert label_all_open(project, people["annotator"], truth) == 120
    first = training_run_create(project=project, user=people["lead"])
    first.refresh_from_db()
    assert first.status == "succeeded", first.error  # deployed by the gate: no model served before
    project_update(project=project, auto_deploy=False)  # from now on the lead deploys by hand
    _round(project, people["lead"], budget=20, strategy="margin")  # tasks now carry the model's prediction

    # From here on, jobs started from the page run in the background, as on a worker.
    from apps.labeling.tasks import run_round
    from apps.training.tasks import train

    background_jobs(train)
    background_jobs(run_round)

    page = new_page()
    login(page, live_server, "lead", "pw-lead")
    assert page.is_visible(f"a[href='/projects/{project.id}/']")
    page.screenshot(path=str(artifacts / "projects.png"))
    page.goto(f"{live_server.url}/projects/{project.id}/")
    page.evaluate("() => { window.__noReload = true; }")
    assert page.inner_text("#my-role") == "admin"
    assert page.is_visible("#deployment >> text=Label → serving")
    assert page.inner_text("#label-to-serving") not in ("", "—")
    page.wait_for_selector(f"[data-model-id] img[src='/api/v1/models/{first.model_id}/confusion.png']")

    # Start a training run from the form; its progress bar moves without a reload.
    page.fill("#train-form input[name=epochs]", "40")
    page.click("#train-form button[type=submit]")
    page.wait_for_selector("#action-status.alert-ok")
    run = TrainingRun.objects.exclude(pk=first.pk).get(project=project)
    row = f"tr[data-job='run'][data-id='{run.pk}']"
    page.wait_for_selector(row)
    page.wait_for_function(f"""() => {{
        const bar = document.querySelector("{row} .progress");
        return bar && Number(bar.getAttribute('aria-valuenow')) > 3
            && document.querySelector("{row}").dataset.status === 'running'; }}""", timeout=60_000)
    seen = page.get_attribute(f"{row} .progress", "aria-valuenow")
    page.screenshot(path=str(artifacts / "project-training-live.png"), full_page=True)
    page.wait_for_function(f"() => document.querySelector(\"{row}\").dataset.status === 'succeeded'", timeout=240_000)
    assert float(page.get_attribute(f"{row} .progress", "aria-valuenow")) >= float(seen)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    # The finished run brought its model onto the page, compared with the deployed one.
    page.wait_for_selector(f"[data-model-id='{run.model_id}'] .comparison")
    assert page.evaluate("() => window.__noReload") is True

    # The gate is off: the lead deploys the new model with its button.
    from apps.registry.selectors import current_deployment

    assert current_deployment(project=project).model_version_id == first.model_id
    page.click(f"button[data-deploy='{run.model_id}']")
    page.wait_for_selector("#action-status.alert-ok >> text=is now serving")
    deployment = current_deployment(project=project)
    assert deployment.model_version_id == run.model_id and deployment.deployed_by.username == "lead"
    page.wait_for_selector(f"[data-model-id='{run.model_id}'].is-deployed")
    page.wait_for_selector(f"#deployment >> text=Model v{run.model.version}")

    # A failing action shows the API's error message.
    page.fill("#round-form input[name=budget]", "100000")
    page.click("#round-form button[type=submit]")
    page.wait_for_selector("#action-status.alert-error >> text=labels of budget left")

    # A round started from the page runs in the background and its row appears without a reload.
    page.fill("#round-form input[name=budget]", "10")
    page.select_option("#round-form select[name=strategy]", "entropy")
    page.click("#round-form button[type=submit]")
    page.wait_for_selector("tr[data-job='round'][data-status='succeeded'] >> text=entropy", timeout=60_000)
    assert page.evaluate("() => window.__noReload") is True
    page.screenshot(path=str(artifacts / "project-lead.png"), full_page=True)

    # The annotator page pre-selects the deployed model's prediction; Enter accepts it.
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")
    page.wait_for_function("() => window.__looplab?.state && window.__looplab.state.status === 'ready'")
    task = page.evaluate("() => window.__looplab.state.task")
    assert task["prediction"] and task["prediction"]["label"] in project.labels
    assert page.evaluate("() => window.__looplab.state.selected") == task["prediction"]["label"]
    assert page.is_visible("#prediction")
    page.screenshot(path=str(artifacts / "annotate-prediction.png"))
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.wait_for_function(NEXT_TASK, arg=task["id"])
    assert Annotation.objects.get(task_id=task["id"]).result == {"label": task["prediction"]["label"]}

    # Annotators see the page but none of the lead's controls.
    other_page = open_as(new_page, live_server, "annotator", f"/projects/{project.id}/")
    assert other_page.is_visible("#label-link")
    assert other_page.locator("#round-form, #train-form, button[data-deploy]").count() == 0
    other_page.screenshot(path=str(artifacts / "project-annotator.png"), full_page=True)
    assert not new_page.errors, new_page.errors
