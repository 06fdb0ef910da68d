"""Training-time weights ("night × 3", "upsample class 7"): checked when the run is created, applied to the
samples the run trains on, recorded on the run and shown on the model card."""
import numpy as np


def test_weights_are_applied_recorded_and_shown(api, client, lead, annotator, project, digits,
                                                django_capture_on_commit_callbacks):
    from apps.labeling.services import round_create
    from apps.samples.models import Sample
    from apps.training.learning import sample_weights
    from apps.training.models import TrainingRun
    from tests.apps.helpers import label_all_open, push_digits, truth_by_sample

    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        push_digits(project, digits, 60, metadata=lambda i: {"light": "night" if i % 4 == 0 else "day"})
        round_create(project=project, user=lead, budget=60, strategy="random")
    label_all_open(project, annotator, truth_by_sample(project, digits))
    weights = {"classes": {"7": 2}, "slices": [{"where": {"light": "night"}, "weight": 3}]}
    with capture(execute=True):
        r = api(lead).post(f"/api/v1/projects/{project.id}/training-runs/", {"epochs": 2, "weights": weights},
                           format="json")
    assert r.status_code == 202, r.content
    run = TrainingRun.objects.get(pk=r.json()["id"])
    assert run.status == "succeeded", run.error
    assert run.config["weights"] == {"classes": {"7": 2.0}, "slices": [{"where": {"light": "night"}, "weight": 3.0}]}
    assert r.json()["config"]["weights"] == run.config["weights"]

    train = [(pk, run.dataset_version.labels[i]) for pk, i, split in run.dataset_version.items if split == "train"]
    metas = dict(Sample.objects.filter(pk__in=[pk for pk, _ in train]).values_list("id", "metadata"))
    w = sample_weights(run=run, targets=[{"label": label} for _, label in train], metas=[metas[pk] for pk, _ in train])
    want = np.array([(2.0 if label == "7" else 1.0) * (3.0 if metas[pk]["light"] == "night" else 1.0)
                     for pk, label in train])
    assert np.array_equal(w, want) and (want > 1).sum() >= 10  # night and class-7 samples weigh more

    client.force_login(lead)
    page = client.get(f"/projects/{project.id}/").content.decode()
    assert "Trained with weights: class 7 ×2; light=night ×3" in page
