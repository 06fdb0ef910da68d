"""ml.learners.upload: a real export of every built-in learner (fitted tiny on the fixtures) passes validation and
predicts like the learner's own runner; every refusal is tested on a real bad file or manifest."""
from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest

from ml.errors import CorruptData, InvalidInput, MLError, TooLarge
from ml.learners import Dataset
from ml.learners.runners import onnx_runner
from ml.learners.upload import ERROR_CODES, manifest_schema, validate_manifest, validate_upload

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MB = 1 << 20
TASKS = ("classification", "detection", "audio_regions", "point_segmentation", "cuboids")


def _ds(items, labels, target=lambda t: t) -> Dataset:
    return Dataset(contents=[c for c, _ in items], targets=[target(t) for _, t in items], labels=tuple(labels))


@pytest.fixture(scope="module")
def exports():
    """task type -> (OnnxExport, held-out contents): each built-in learner fitted tiny (seconds on 2 cores)."""
    from fixtures.classification import DIGIT_LABELS, digits_split
    from fixtures.cuboids import CUBOID_LABELS, cuboid_scenes
    from fixtures.detection import detection_scenes
    from fixtures.regions import REGION_LABELS, region_clips
    from fixtures.shapes import PART_LABELS, part_items
    from ml.learners.classification import ImageClassifier
    from ml.learners.cuboids import SegmentFitCuboidLearner
    from ml.learners.detection import CenterNetDetector
    from ml.learners.regions import FrameRegionLearner
    from ml.learners.segmentation import PointNetSegmentationLearner

    out = {}
    train, test = digits_split(2, 1, seed=0)
    data = _ds(train, DIGIT_LABELS, lambda y: {"label": DIGIT_LABELS[y]})
    clf = ImageClassifier(epochs=1, device="cpu", arch={"widths": [4, 8]}).fit(data)
    out["classification"] = (clf.export_onnx(), [c for c, _ in test[:2]])
    scenes = detection_scenes(10, seed=0, labels=("0", "1"))
    det = CenterNetDetector(image_size=32, width=8, epochs=1, batch_size=4, device="cpu").fit(
        _ds(scenes[:8], ("0", "1")))
    out["detection"] = (det.export_onnx(), [c for c, _ in scenes[8:]])
    clips = region_clips(3, seed=0, variant="quiet")
    reg = FrameRegionLearner(epochs=1, batch_size=2, width=8, dilations=(1,), tune_thresholds=False,
                             device="cpu").fit(_ds(clips[:2], REGION_LABELS))
    out["audio_regions"] = (reg.export_onnx(), [clips[2][0]])
    tiny_points = dict(epochs=1, n_points=64, draws=1, batch_size=4, arch={"global_dim": 32, "embed_dim": 16},
                       device="cpu")
    parts = part_items(6, 0)
    seg = PointNetSegmentationLearner(**tiny_points).fit(_ds(parts[:4], PART_LABELS))
    out["point_segmentation"] = (seg.export_onnx(), [c for c, _ in parts[4:]])
    cub_scenes = cuboid_scenes(4, 0, "default")
    cub = SegmentFitCuboidLearner(**tiny_points).fit(_ds(cub_scenes[:3], CUBOID_LABELS))
    out["cuboids"] = (cub.export_onnx(), [cub_scenes[3][0]])
    return out


def _code(exc_info) -> str:
    return exc_info.value.code


# ------------------------------------------------------------------------------------------- what passes


@pytest.mark.parametrize("task", TASKS)
def test_a_builtin_export_passes_and_predicts_like_its_own_runner(exports, task):
    export, contents = exports[task]
    v = validate_upload(export.model, export.manifest, max_bytes=8 * MB, sample_contents=contents,
                        labels=list(reversed(export.manifest["labels"])))  # the project's set, in any order
    assert v.task_type == task and not v.synthetic and v.n_samples == len(contents)
    assert v.sha256 == hashlib.sha256(export.model).hexdigest() and v.size_bytes == len(export.model)
    assert v.opset == 17 and v.opset_imports[""] == 17 and v.parameters > 100
    assert v.load_seconds > 0 and v.inference_seconds > 0
    assert v.summary["n"] == len(contents) and v.summary["embedding_dim"] >= 1
    assert 0 <= v.summary["uncertainty"]["min"] <= v.summary["uncertainty"]["max"] <= 1
    assert v.manifest["labels"] == list(export.manifest["labels"])
    assert [i.name for i in v.inputs] == ["input"] and {o.name for o in v.outputs} & {"embedding", "features"}
    assert v.to_dict()["manifest"]["task_type"] == task  # JSON-ready
    # the normalised manifest runs exactly like the learner's own export
    ours = onnx_runner(export.model, v.manifest).predict(contents)
    theirs = export.runner.predict(contents)
    assert ours.results == theirs.results
    np.testing.assert_allclose(ours.uncertainty, theirs.uncertainty, rtol=0, atol=1e-12)
    # and made-up samples do as well
    s = validate_upload(export.model, export.manifest, max_bytes=8 * MB)
    assert s.synthetic and s.n_samples == 2 and s.summary["n"] == 2


def test_the_sklearn_probe_with_label_free_features_passes():
    probe_mod = pytest.importorskip("looplab_sklearn_probe")
    from fixtures.classification import DIGIT_LABELS, digits_split

    train, test = digits_split(3, 1, seed=0)
    probe = probe_mod.SklearnProbe().fit(_ds(train, DIGIT_LABELS, lambda y: {"label": DIGIT_LABELS[y]}))
    export = probe.export_onnx()
    v = validate_upload(export.model, export.manifest, max_bytes=MB, sample_contents=[c for c, _ in test[:3]])
    assert v.manifest["preprocessing"]["features"] == "label_free"
    assert v.inputs[0].shape == ("batch", 128) and v.summary["labels"] == \
        [r["label"] for r in probe.predict([c for c, _ in test[:3]]).results]


# --------------------------------------------------------------------------------------- hand-made graphs


def _graph_model(*, n_classes=2, opset=17, batch="batch", extra_opsets=(), middle=None, probs_from="probs"):
    """A small image classifier built with onnx.helper: (N, 3, 8, 8) -> Flatten -> Gemm -> Softmax. ``middle``:
    nodes inserted after Flatten (they must produce "flat2" from "flat")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.standard_normal((n_classes, 192)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(n_classes, np.float32), "b")
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1)]
    if middle:
        nodes += middle
    else:
        nodes.append(helper.make_node("Identity", ["flat"], ["flat2"]))
    nodes += [helper.make_node("Gemm", ["flat2", "W", "b"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs_sm"], axis=1),
              helper.make_node("Identity", ["probs_sm" if probs_from == "probs" else "logits"], ["probs"]),
              helper.make_node("Identity", ["flat2"], ["embedding"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, n_classes]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 192])],
                              initializer=[W, b])
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    model = helper.make_model(graph, opset_imports=imports, producer_name="test")
    model.ir_version = 8
    return model


TINY_MANIFEST = {"task_type": "classification", "labels": ["a", "b"],
                 "preprocessing": {"modality": "image", "loader": {"size": 8}, "features": None}}


def test_a_hand_made_graph_passes_with_a_minimal_manifest():
    v = validate_upload(_graph_model().SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert v.parameters == 2 * 192 + 2 and v.inputs[0].shape == ("batch", 3, 8, 8)
    assert v.manifest["decoding"] == "argmax" and v.manifest["learner"] == "onnx-upload"
    assert v.manifest["opset"] == 17 and len(v.summary["labels"]) == 2


# ------------------------------------------------------------------------------------------- file refusals


def test_too_large(exports):
    export, _ = exports["classification"]
    with pytest.raises(TooLarge) as e:
        validate_upload(export.model, export.manifest, max_bytes=len(export.model) - 1)
    assert _code(e) == "onnx_too_large" and e.value.details["size_bytes"] == len(export.model)


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_truncated_bytes_are_corrupt(exports, cut):
    export, _ = exports["classification"]
    with pytest.raises(CorruptData) as e:
        validate_upload(export.model[:int(len(export.model) * cut)], export.manifest, max_bytes=MB)
    assert _code(e) == "onnx_invalid"


def test_another_format_is_corrupt(exports):
    _, contents = exports["classification"]
    with pytest.raises(CorruptData) as e:
        validate_upload(contents[0], TINY_MANIFEST, max_bytes=MB)  # a PNG
    assert _code(e) == "onnx_invalid"


def test_external_data_is_refused_and_never_read(tmp_path):
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save_model(_graph_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size > 0
    proto = onnx.load(str(path), load_external_data=False)  # the reference stays in the proto
    with pytest.raises(InvalidInput) as e:
        validate_upload(proto.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_external_data"
    assert e.value.details["location"] == "weights.bin" and "graph.initializer['W']" in e.value.message


def test_custom_domain_and_out_of_range_opsets_are_refused():
    from onnx import helper

    custom = _graph_model(extra_opsets=[("com.example", 1)],
                          middle=[helper.make_node("Frobnicate", ["flat"], ["flat2"], domain="com.example")])
    with pytest.raises(InvalidInput) as e:
        validate_upload(custom.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_opset" and "com.example" in e.value.message
    ml_domain = _graph_model(extra_opsets=[("ai.onnx.ml", 3)])  # the standard ML domain is allowed
    assert validate_upload(ml_domain.SerializeToString(), TINY_MANIFEST, max_bytes=MB).opset_imports == \
        {"": 17, "ai.onnx.ml": 3}
    with pytest.raises(InvalidInput) as e:
        validate_upload(_graph_model(opset=6).SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_opset" and e.value.details["version"] == 6 and "7..21" in e.value.message
    with pytest.raises(InvalidInput) as e:
        validate_upload(_graph_model(opset=22).SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_opset"


def test_the_onnx_checker_failing_is_invalid():
    model = _graph_model()
    model.graph.node[1].input[0] = "nowhere"  # an input no node produces
    with pytest.raises(CorruptData) as e:
        validate_upload(model.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_invalid" and "checker" in e.value.message


# ------------------------------------------------------------------------------------ graph vs runner refusals


def test_wrong_class_count_vs_labels(exports):
    for task, where in (("classification", "outputs['probs'] dim 1"), ("detection", "outputs['heatmap'] dim 1"),
                        ("cuboids", "outputs['probs'] dim 2")):
        export, _ = exports[task]
        manifest = copy.deepcopy(dict(export.manifest))
        manifest["labels"] = manifest["labels"][:-1] if task != "detection" else ["0", "1", "2"]
        if task == "cuboids":
            manifest["params"]["classifier"] = None
        with pytest.raises(InvalidInput) as e:
            validate_upload(export.model, manifest, max_bytes=8 * MB)
        assert _code(e) == "onnx_io_mismatch" and e.value.message.startswith(where), (task, e.value.message)


def test_names_rank_and_fixed_batch_are_checked(exports):
    export, _ = exports["detection"]
    bad = copy.deepcopy(dict(export.manifest))
    bad["task_type"] = "classification"
    for key in ("input", "decoding", "stride", "outputs"):
        bad.pop(key)
    bad["preprocessing"] = {"modality": "image", "loader": {"size": 32}}
    with pytest.raises(InvalidInput) as e:  # a detector uploaded as a classifier: no 'probs'
        validate_upload(export.model, bad, max_bytes=8 * MB)
    assert _code(e) == "onnx_io_mismatch" and "outputs['probs']" in e.value.message
    with pytest.raises(InvalidInput) as e:
        validate_upload(_graph_model(batch=1).SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_io_mismatch" and "dynamic" in e.value.message
    wrong_size = {**TINY_MANIFEST, "preprocessing": {"modality": "image", "loader": {"size": 16}}}
    with pytest.raises(InvalidInput) as e:
        validate_upload(_graph_model().SerializeToString(), wrong_size, max_bytes=MB)
    assert _code(e) == "onnx_io_mismatch" and e.value.message.startswith("inputs['input'] dim 2: is 8")


# ------------------------------------------------------------------------------------------ test inference


def test_a_reshape_to_an_impossible_shape_fails_the_inference():
    from onnx import helper, numpy_helper

    # (N, 192) -> (-1, 7) -> (-1, 192): shape inference passes (N is unknown), the run cannot (2 * 192 % 7 != 0)
    model = _graph_model(middle=[helper.make_node("Reshape", ["flat", "by7"], ["r"]),
                                 helper.make_node("Reshape", ["r", "back"], ["flat2"])])
    model.graph.initializer.extend([numpy_helper.from_array(np.array([-1, 7], np.int64), "by7"),
                                    numpy_helper.from_array(np.array([-1, 192], np.int64), "back")])
    with pytest.raises(InvalidInput) as e:
        validate_upload(model.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_inference_failed" and e.value.details["stage"] == "predict"
    assert "reshape" in e.value.message.lower() and e.value.details["error"]


def test_a_graph_onnxruntime_cannot_load_fails_the_inference():
    from onnx import TensorProto, helper, numpy_helper

    # Gemm's weights want 192 features, the Reshape gives 191: onnx.checker passes, onnxruntime's shape
    # inference does not
    model = _graph_model(middle=[helper.make_node("Reshape", ["flat", "to191"], ["flat2"])])
    model.graph.initializer.append(numpy_helper.from_array(np.array([0, 191], np.int64), "to191"))
    del model.graph.output[1]
    model.graph.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 191]))
    with pytest.raises(InvalidInput) as e:
        validate_upload(model.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_inference_failed" and e.value.details["stage"] == "load"
    assert "191" in e.value.message


def test_nan_outputs_and_non_probabilities_fail_the_inference():
    from onnx import helper

    nan = _graph_model(middle=[helper.make_node("Neg", ["flat"], ["neg"]),
                               helper.make_node("Log", ["neg"], ["flat2"])])  # log of negative pixels: NaN
    with pytest.raises(InvalidInput) as e:
        validate_upload(nan.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_inference_failed" and "non-finite" in e.value.message
    logits = _graph_model(probs_from="logits")  # no softmax at the end
    with pytest.raises(InvalidInput) as e:
        validate_upload(logits.SerializeToString(), TINY_MANIFEST, max_bytes=MB)
    assert _code(e) == "onnx_inference_failed" and "Softmax" in e.value.message


def test_a_bad_sample_keeps_its_own_typed_error():
    with pytest.raises(MLError) as e:
        validate_upload(_graph_model().SerializeToString(), TINY_MANIFEST, max_bytes=MB,
                        sample_contents=[b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
    assert e.value.code not in ERROR_CODES and e.value.details["index"] == 0


# ---------------------------------------------------------------------------------------- manifest refusals


def _manifest_fails(manifest, path: str, **kw) -> InvalidInput:
    with pytest.raises(InvalidInput) as e:
        validate_manifest(manifest, **kw)
    assert _code(e) == "onnx_manifest" and e.value.details["path"] == path, e.value.message
    assert e.value.message.startswith(path)
    return e.value


def test_manifest_refusals(exports):
    det = dict(exports["detection"][0].manifest)
    reg = dict(exports["audio_regions"][0].manifest)
    cub = dict(exports["cuboids"][0].manifest)
    _manifest_fails({k: v for k, v in det.items() if k != "decoding"}, "manifest.decoding")
    _manifest_fails({**det, "decoding": {**det["decoding"], "nms_iou": "0.5"}}, "manifest.decoding.nms_iou")
    _manifest_fails({**det, "decoding": {**det["decoding"], "score_threshold": 1.5}},
                    "manifest.decoding.score_threshold")
    _manifest_fails({**det, "decoding": {**det["decoding"], "top_k": 3}}, "manifest.decoding.top_k")
    _manifest_fails({**det, "labels": "0,1"}, "manifest.labels")
    _manifest_fails({**det, "labels": []}, "manifest.labels")
    err = _manifest_fails({**det, "labels": ["0", "1", "cat", "dog", "1"]}, "manifest.labels[4]")
    assert "repeats manifest.labels[1]" in err.message
    _manifest_fails({**det, "labels": ["0", " "]}, "manifest.labels[1]")
    _manifest_fails({**det, "labels": ["0", 1]}, "manifest.labels[1]")
    err = _manifest_fails(det, "manifest.labels", labels=["0", "2"])
    assert err.details["missing"] == ["2"] and err.details["extra"] == ["1"]
    _manifest_fails({**det, "task_type": "segmentation"}, "manifest.task_type")
    _manifest_fails({**det, "lables": det["labels"]}, "manifest.lables")  # a typo is not silently ignored
    _manifest_fails({**reg, "decoding": {**reg["decoding"], "onset": [0.5, 0.5]}}, "manifest.decoding.onset")
    _manifest_fails({**reg, "decoding": {**reg["decoding"], "offset": [0.3, 0.9, 0.3]}},
                    "manifest.decoding.offset[1]")
    _manifest_fails({**reg, "preprocessing": {**reg["preprocessing"], "n_mels": 40}},
                    "manifest.preprocessing.n_mels")
    _manifest_fails({**reg, "preprocessing": {**reg["preprocessing"], "max_duration_s": 3600}},
                    "manifest.preprocessing.max_duration_s")
    _manifest_fails({**cub, "params": {**cub["params"], "normalize": "cube"}}, "manifest.params.normalize")
    _manifest_fails({**cub, "params": {k: v for k, v in cub["params"].items() if k != "cluster_eps"}},
                    "manifest.params.cluster_eps")
    clf = dict(cub["params"]["classifier"])
    _manifest_fails({**cub, "params": {**cub["params"], "classifier": {**clf, "mean": clf["mean"][:-1]}}},
                    "manifest.params.classifier.mean")
    cls = {**TINY_MANIFEST, "preprocessing": {"modality": "image", "loader": {"size": 8, "max_pixels": 10 ** 12}}}
    _manifest_fails(cls, "manifest.preprocessing.loader.max_pixels")  # server limits are not the model's
    _manifest_fails({**TINY_MANIFEST, "preprocessing": {"modality": "video"}}, "manifest.preprocessing.modality")
    _manifest_fails({**TINY_MANIFEST, "labels": ["only"]}, "manifest.labels")
    _manifest_fails({**TINY_MANIFEST, "labels": ["a", float("nan")]}, "manifest")
    # validate_upload raises the same, with the file otherwise fine
    with pytest.raises(InvalidInput) as e:
        validate_upload(_graph_model().SerializeToString(), {**TINY_MANIFEST, "labels": ["a", "a"]}, max_bytes=MB)
    assert _code(e) == "onnx_manifest" and e.value.details["path"] == "manifest.labels[1]"


def test_manifest_schema_examples_and_exports_agree_with_the_validator(exports):
    jsonschema = pytest.importorskip("jsonschema")
    for task in TASKS:
        schema = manifest_schema(task)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        example = schema["examples"][0]
        validator.validate(example)
        assert validate_manifest(example)["task_type"] == task
        validator.validate(json_roundtrip(exports[task][0].manifest))
        dup = {**example, "labels": ["x", "x"]}
        assert not validator.is_valid(dup)
        with pytest.raises(InvalidInput):
            validate_manifest(dup)
        missing = {k: v for k, v in example.items() if k != schema["required"][-1]}
        assert not validator.is_valid(missing)
        with pytest.raises(InvalidInput):
            validate_manifest(missing)
    with pytest.raises(InvalidInput) as e:
        manifest_schema("video")
    assert _code(e) == "unsupported_task_type"


def json_roundtrip(m):
    import json

    return json.loads(json.dumps(m))
