"""The registry's runtime: which ONNX file serves, and predicting with the deployed model."""
import pytest

from tests.apps.helpers import train_digits


@pytest.mark.slow
def test_int8_with_full_range_weights_is_not_served_on_a_cpu_without_vnni(lead, annotator, project, digits, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    import ml.export

    from apps.registry.models import ModelVersion
    from apps.registry.runtime import serving_file

    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=60, epochs=2)
    mv = ModelVersion.objects.get(pk=run.model_id)
    mv.runtime = "int8"  # as if export had chosen int8
    for reduce_range, has_vnni, served in ((False, False, mv.onnx), (False, True, mv.onnx_int8),
                                           (True, False, mv.onnx_int8), (False, None, mv.onnx_int8)):
        mv.runtime_report["int8"]["reduce_range"] = reduce_range  # quantized on a CPU with / without VNNI
        monkeypatch.setattr(ml.export, "cpu_has_vnni", lambda v=has_vnni: v)  # the CPU serving now
        assert serving_file(model_version=mv).name == served.name, (reduce_range, has_vnni)
    mv.runtime = "fp32"
    assert serving_file(model_version=mv).name == mv.onnx.name


@pytest.mark.slow
def test_predictions_of_the_deployed_model_are_logged_by_serving(lead, annotator, project, digits,
                                                                  django_capture_on_commit_callbacks):
    """The registry runs the model; the serving app logs every prediction (the predictions_made signal)."""
    from apps.projects.services import project_update
    from apps.registry.runtime import predict_contents
    from apps.serving.models import PredictionLog

    assert predict_contents(project=project, blobs=[digits[0][0]]) is None  # nothing deployed: nothing logged
    assert not PredictionLog.objects.exists()
    project_update(project=project, auto_deploy=True)
    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=60, epochs=2)
    results = predict_contents(project=project, blobs=[digits[300][0], digits[301][0]], sample_ids=[None, None])
    assert [r["model"] for r in results] == [run.model_id] * 2
    logs = list(PredictionLog.objects.filter(project=project).order_by("id"))
    assert [(log.model_version_id, log.label, log.sample_id) for log in logs] == [(run.model_id, r["label"], None)
                                                                                  for r in results]
    assert [log.confidence for log in logs] == [r["confidence"] for r in results]
