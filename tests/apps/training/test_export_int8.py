"""Export makes an int8 model beside the fp32 one and serves it only when the rule says so (ml.serving:
>= 1.2x faster at batch 1 and 64, <= 1 accuracy point lost)."""
import pytest

from tests.apps.helpers import train_digits


@pytest.mark.slow
def test_export_decides_between_fp32_and_int8_and_serving_follows(api, lead, annotator, project, digits,
                                                                 django_capture_on_commit_callbacks):
    from ml.serving import runtime_decision

    from apps.registry.models import ModelVersion
    from apps.registry.runtime import _CACHE, model_runner

    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=200, epochs=3)
    body = api(lead).get(f"/api/v1/models/{run.model_id}/").json()
    report = body["runtime_report"]
    assert report["eval_split"] == "test" and report["n_eval"] == body["eval_report"]["n"]
    fp32, int8 = report["fp32"], report["int8"]
    assert fp32["top1_agreement"] == 1.0 and fp32["accuracy"] == pytest.approx(body["eval_report"]["accuracy"])
    assert int8["precision"] == "int8-static" and int8["top1_agreement"] >= 0.9 and 0 < int8["max_abs_diff"] < 0.5
    # the stored decision is the rule applied to the stored measurements
    again = runtime_decision(fp32["latency"], int8["latency"], fp32["accuracy"], int8["accuracy"])
    assert body["runtime"] == report["decision"]["runtime"] == again.runtime
    assert report["decision"]["speedup"] == pytest.approx(again.speedup)

    # serving runs the file the decision names
    mv = ModelVersion.objects.get(pk=run.model_id)
    assert mv.onnx and mv.onnx_int8
    expected = "int8-static" if mv.runtime == "int8" else "fp32"
    assert model_runner(model_version=mv).session.metadata["precision"] == expected
    other = "fp32" if mv.runtime == "int8" else "int8"
    ModelVersion.objects.filter(pk=mv.pk).update(runtime=other)
    _CACHE.clear()
    mv.refresh_from_db()
    assert model_runner(model_version=mv).session.metadata["precision"] == ("int8-static" if other == "int8" else "fp32")
    _CACHE.clear()


@pytest.mark.slow
def test_int8_export_can_be_turned_off(lead, annotator, project, digits, settings, django_capture_on_commit_callbacks):
    from apps.registry.models import ModelVersion

    settings.LOOPLAB = {**settings.LOOPLAB, "EXPORT_INT8": False}
    run = train_digits(project, lead, annotator, digits, django_capture_on_commit_callbacks, n=60, epochs=3)
    mv = ModelVersion.objects.get(pk=run.model_id)
    assert mv.runtime == "fp32" and not mv.onnx_int8
    assert mv.runtime_report["decision"]["reason"] == "int8 export is off (LOOPLAB_EXPORT_INT8)"
