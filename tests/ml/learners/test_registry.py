"""The learner registry: every built-in (modality, task type) resolves to a class that states the contract, and
an unknown pair is a typed error."""
import pytest

import ml.learners as learners
from ml.learners.base import TASK_TYPES, Learner

BUILT_IN = [("image", "classification"), ("audio", "classification"), ("pointcloud", "classification"),
            ("image", "detection"), ("audio", "audio_regions"), ("pointcloud", "point_segmentation"),
            ("pointcloud", "cuboids")]


@pytest.mark.parametrize("modality,task_type", BUILT_IN)
def test_every_built_in_pair_has_a_default_learner_that_states_the_contract(modality, task_type):
    cls = learners.get(modality, task_type)
    assert (cls.modality, cls.task_type) == (modality, task_type)
    assert cls.name in learners.available(modality, task_type)
    assert learners.get(modality, task_type, cls.name) is cls
    for method in ("fit", "predict", "evaluate", "export_onnx", "parity", "to_bytes", "from_bytes"):
        assert callable(getattr(cls, method, None)), f"{cls.__name__} lacks {method}"
    assert isinstance(cls(), Learner)  # the runtime-checkable Protocol: every member is there


def test_every_task_type_has_a_built_in_learner():
    assert {task for _, task in BUILT_IN} == set(TASK_TYPES)


def test_an_unknown_pair_or_name_is_a_typed_error():
    with pytest.raises(learners.UnknownLearner) as exc:
        learners.get("audio", "cuboids")
    assert exc.value.code == "unsupported_task_type" and exc.value.details["available"] == []
    with pytest.raises(learners.UnknownLearner):
        learners.get("image", "detection", "no-such-learner")
    with pytest.raises(Exception) as exc:
        learners.register("image", "no_such_task", "x", "m:C")
    assert exc.value.code == "invalid_task_type"
