"""A BALD round: MC-dropout passes of the deployed model's torch network score the pool (ONNX has no dropout)."""
import numpy as np
import pytest

from tests.apps.helpers import train_digits


@pytest.mark.slow
def test_bald_round_ranks_the_train_pool_by_mc_dropout_disagreement(lead, annotator, project, digits,
                                                                    django_capture_on_commit_callbacks):
    from ml.selection import bald

    from apps.labeling.models import Task
    from apps.labeling.services import MC_SAMPLES, round_create
    from apps.projects.services import project_update
    from apps.registry.runtime import load_batch
    from apps.registry.selectors import current_deployment, model_checkpoint_load
    from apps.samples import content as content_io
    from apps.samples.models import Sample

    project_update(project=project, auto_deploy=True)
    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=200, labeled=60, epochs=3)
    deployment = current_deployment(project=project)
    assert deployment is not None and deployment.model_version_id == run.model_id

    with django_capture_on_commit_callbacks(execute=True):
        rnd = round_create(project=project, user=lead, budget=20, strategy="bald")
    rnd.refresh_from_db()
    assert rnd.status == "succeeded", rnd.error
    assert rnd.strategy_used == "bald" and rnd.details["strategies"]["train"] == "bald"
    assert rnd.details["strategies"].get("val", "random") == "random"  # evaluation splits stay random

    # the same MC-dropout scores, computed here from the checkpoint, rank the train pool the same way
    chosen = list(Task.objects.filter(round=rnd, sample__split="train").order_by("rank"))
    assert len(chosen) >= 10
    unlabeled = list(Sample.objects.filter(project=project, split="train", label__isnull=True).order_by("id"))
    model = model_checkpoint_load(model_version=deployment.model_version)
    X = load_batch("image", [content_io.read_content(s) for s in unlabeled])
    scores = bald(model.predict_proba_mc(X, n_samples=MC_SAMPLES, random_state=rnd.pk))
    by_sample = dict(zip((s.pk for s in unlabeled), scores))
    got = np.array([by_sample[t.sample_id] for t in chosen])
    assert np.allclose([t.score for t in chosen], got, atol=1e-5)
    assert got.min() > 0  # dropout makes the passes disagree
    rest = [v for pk, v in by_sample.items() if pk not in {t.sample_id for t in chosen}]
    assert got.min() >= max(rest) - 1e-6  # the top of the ranking, not a random draw
