"""`manage.py load_demo`: the detection, audio-regions, point-segmentation and cuboids demo projects come with their
first round labeled (the fixture's ground truth), a deployed model of the task type's default learner, and a second
round whose tasks carry the model's predictions in the task type's shape; re-running leaves them as they are."""
import io

import pytest
from django.core.management import call_command

SHAPES = {"detection": "boxes", "audio_regions": "regions", "point_segmentation": "point_labels",
          "cuboids": "cuboids"}
LEARNERS = {"detection": "centernet", "audio_regions": "frames", "point_segmentation": "pointnet",
            "cuboids": "segment-fit"}


def _load(*args) -> str:
    out = io.StringIO()
    call_command("load_demo", *args, stdout=out)
    return out.getvalue()


# transaction=True: the command's jobs are queued on commit and run (eagerly) before it goes on, as in `make demo`.
# Slow (48-72 s on 2 shared cores at load 6-8): four projects each train, export and deploy a real model, at
# --small sizes.
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_load_demo_trains_deploys_and_preannotates_every_shape_task_type():
    from apps.labeling.models import Annotation, Round, Task
    from apps.projects.models import Project
    from apps.registry.selectors import current_deployment
    from apps.training.models import TrainingRun

    out = _load("--task-types", ",".join(SHAPES), "--small")
    projects = {p.task_type: p for p in Project.objects.exclude(task_type="classification")}
    assert set(projects) == set(SHAPES), out
    # the detection project's labeled digits, cropped, feed a classification project with a first round
    from apps.samples.models import Sample

    crops = Project.objects.get(task_type="classification", name="Digit crops (demo)")
    derived = Sample.objects.filter(project=crops).select_related("parent")
    assert derived.count() >= 20 and all(s.parent.project_id == projects["detection"].pk and s.split == s.parent.split
                                         for s in derived)
    assert Task.objects.filter(project=crops).count() == 20
    assert out.count("labeled from the fixture's ground truth as annotator") == 4, out
    for task_type, project in projects.items():
        key = SHAPES[task_type]
        run = TrainingRun.objects.get(project=project)
        assert run.status == "succeeded", (task_type, run.error)
        assert run.config["learner"] == LEARNERS[task_type] and run.config["params"], run.config
        deployment = current_deployment(project=project)
        assert deployment is not None and deployment.model_version_id == run.model_id, (task_type, out)
        mv = deployment.model_version
        assert mv.task_type == task_type and mv.onnx and mv.eval_report["primary"] in mv.eval_report["metrics"]
        # round 1: every task done, labeled by the demo annotator in the task type's shape
        first, second = Round.objects.filter(project=project).order_by("number")
        done = Annotation.objects.filter(task__round=first)
        assert done.count() == first.tasks.count() > 0
        assert all(a.annotator.username == "annotator" and key in a.result for a in done)
        # round 2: selected by the deployed model, pending, every task pre-annotated by it
        assert second.status == "succeeded" and second.model_version_id == mv.pk
        assert second.strategy_used == "auto/margin_diverse"
        tasks = list(Task.objects.filter(round=second).select_related("sample"))
        assert tasks and all(t.state == "pending" for t in tasks)
        assert all(t.prediction["model"] == mv.pk and isinstance(t.prediction[key], list) for t in tasks), task_type
        assert any(t.prediction[key] for t in tasks), task_type
        if task_type == "point_segmentation":  # one label per point of the cloud
            from apps.samples import content as content_io
            from ml.modalities.pointcloud import read_points

            t = tasks[0]
            assert len(t.prediction[key]) == len(read_points(content_io.read_content(t.sample)))
        else:
            assert all(s["label"] in project.labels and 0 <= s["score"] <= 1 for t in tasks for s in t.prediction[key])

    # re-running leaves the projects as they are
    again = _load("--task-types", ",".join(SHAPES), "--small")
    assert again.count("exists; left as it is") == 4, again
    assert TrainingRun.objects.count() == 4 and Round.objects.count() == 9


@pytest.mark.django_db(transaction=True)
def test_load_demo_no_train_queues_a_first_round_only():
    from apps.labeling.models import Task
    from apps.projects.models import Project
    from apps.registry.selectors import current_deployment

    out = _load("--task-types", "detection", "--small", "--no-train")
    project = Project.objects.get(task_type="detection")
    assert "ground truth" not in out and current_deployment(project=project) is None
    tasks = Task.objects.filter(project=project)
    assert tasks.count() == 24 and not tasks.filter(prediction__isnull=False).exists()
    with pytest.raises(Exception, match="unknown task types"):
        _load("--task-types", "nope")
