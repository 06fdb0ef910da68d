"""The first model is never a dud: with few labels the built-in classification pipeline keeps the network or a
linear probe on the label-free embeddings, whichever validates better, and the model card says which and why."""
import base64

import pytest

LABELS = [str(i) for i in range(10)]


@pytest.fixture
def choice_on(settings):
    settings.LOOPLAB = {**settings.LOOPLAB, "FIRST_MODEL_CHOICE": True}


def _labeled_project(lead, annotator, items, capture, *, name: str):
    from apps.labeling.services import round_create
    from apps.projects.services import membership_set, project_create
    from tests.apps.helpers import label_all_open, push_digits, truth_by_sample

    project = project_create(user=lead, name=name, modality="image", labels=LABELS, auto_deploy=True,
                             split_ratios={"train": 0.6, "val": 0.1, "test": 0.3})
    membership_set(project=project, user=annotator, role="annotator")
    pairs = [item[:2] for item in items]
    with capture(execute=True):
        push_digits(project, pairs, len(items), metadata=lambda i: items[i][2] if len(items[i]) > 2 else {"n": i})
        round_create(project=project, user=lead, budget=len(items), strategy="random")
    assert label_all_open(project, annotator, truth_by_sample(project, pairs)) == len(items)
    return project


def test_probe_wins_on_nuisance_images_and_the_card_says_so(api, client, lead, annotator, choice_on,
                                                            django_capture_on_commit_callbacks):
    from fixtures.stress import stress_items

    capture = django_capture_on_commit_callbacks
    items = stress_items(7, seed=0)  # 70 images, strong nuisances: a network on ~40 labels is near chance
    project = _labeled_project(lead, annotator, items, capture, name="stress")
    api_client = api(lead)
    with capture(execute=True):
        r = api_client.post(f"/api/v1/projects/{project.id}/training-runs/", {"epochs": 8}, format="json")
    assert r.status_code == 202, r.content
    run = api_client.get(f"/api/v1/training-runs/{r.json()['id']}/").json()
    assert run["status"] == "succeeded", run
    selection = run["config"]["selection"]
    assert selection["chosen"] == "probe" and run["config"]["learner"] == "probe", selection
    assert selection["method"] == "3-fold cross-validation"  # the val split is too small to compare on
    assert selection["n_scored"] == run["dataset_version"]["counts"]["train"]
    assert selection["probe_accuracy"] >= selection["cnn_accuracy"]
    assert f"{selection['probe_accuracy']:.2f} (probe) vs {selection['cnn_accuracy']:.2f} (network)" in selection["why"]

    model = api_client.get(f"/api/v1/models/{run['model']}/").json()
    assert model["learner"] == "probe" and model["selection"] == selection
    assert model["manifest"]["preprocessing"]["features"] == "label_free" and model["manifest"]["learner"] == "probe"
    assert model["exported"] and model["parity"]["passed"]
    assert model["eval_report"]["primary"] == "accuracy" and model["eval_report"]["n"] > 0
    # deployed by the gate (the first model), served through the manifest
    r = api_client.post(f"/api/v1/projects/{project.id}/predict/",
                        {"content": base64.b64encode(items[0][0]).decode()}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["model"] == model["id"] and r.json()["label"] in LABELS

    client.force_login(lead)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert 'data-chosen="probe"' in page and "Model chosen: linear probe on label-free embeddings" in page


def test_network_kept_and_said_so(api, client, lead, annotator, choice_on, monkeypatch,
                                  django_capture_on_commit_callbacks):
    """Above the threshold the network is kept without a comparison, and the card says why (the threshold is
    lowered here so that the test stays small)."""
    import ml.learners.probe
    from fixtures.digits import digits_pngs

    monkeypatch.setattr(ml.learners.probe, "PROBE_MAX_LABELS", 20)
    capture = django_capture_on_commit_callbacks
    project = _labeled_project(lead, annotator, digits_pngs()[:60], capture, name="digits")
    api_client = api(lead)
    with capture(execute=True):
        r = api_client.post(f"/api/v1/projects/{project.id}/training-runs/", {"epochs": 3}, format="json")
    run = api_client.get(f"/api/v1/training-runs/{r.json()['id']}/").json()
    assert run["status"] == "succeeded", run
    assert "learner" not in run["config"]
    selection = run["config"]["selection"]
    n_train = run["dataset_version"]["counts"]["train"]
    assert selection == {"chosen": "cnn", "why": f"network: {n_train} training labels (>= 20)"}
    model = api_client.get(f"/api/v1/models/{run['model']}/").json()
    assert model["learner"] == "" and model["manifest"] is None and model["selection"] == selection
    client.force_login(lead)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert 'data-chosen="cnn"' in page and f"network: {n_train} training labels" in page
