import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ml.errors import CorruptData, EmptyData, InvalidInput
from ml.export import (
    cpu_has_vnni,
    OnnxClassifier,
    choose_runtime,
    compare_runtimes,
    export_onnx,
    measure_latency,
    parity_report,
    quantize_dynamic_int8,
    quantize_static_int8,
    runtime_decision,
)
from ml.training import TrainConfig, train_classifier, train_segmenter


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits_images():
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2)
    x = np.repeat(x[:, None], 3, axis=1) * 2.0 - 1.0
    return np.ascontiguousarray(x), d.target.astype(np.int64)


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    X, y = digits_images()
    model = train_classifier(
        "image", X[:600], y[:600], X[600:800], y[600:800], n_classes=10,
        config=TrainConfig(epochs=2, batch_size=32, lr=3e-3), arch={"widths": [16, 32, 64]},
    )
    path = tmp_path_factory.mktemp("onnx") / "image.onnx"
    export_onnx(model, path)
    return model, path, X[1000:1128], y[1000:1128]


def test_image_export_parity(image_export):
    model, path, X, _ = image_export
    report = parity_report(model, path, X)
    assert report.n == len(X)
    assert report.top1_agreement == 1.0
    assert report.max_abs_diff < 1e-4
    assert report.passed
    assert report.embedding_max_abs_diff < 1e-3
    assert json.loads(json.dumps(report.to_dict()))["passed"] is True


@pytest.mark.parametrize("batch", [1, 64])
def test_dynamic_batch_axis(image_export, batch):
    model, path, X, _ = image_export
    clf = OnnxClassifier(path, threads=1)
    probs = clf.predict_proba(X[:batch])
    emb = clf.embed(X[:batch])
    assert probs.shape == (batch, 10) and emb.shape == (batch, 128)
    np.testing.assert_allclose(probs, model.predict_proba(X[:batch]), atol=1e-5)
    assert clf.input_shape[0] == "batch"


def test_onnx_metadata_and_bytes_loading(image_export):
    model, path, X, _ = image_export
    clf = OnnxClassifier(path.read_bytes())
    assert clf.modality == "image" and clf.task == "classification" and clf.n_classes == 10
    assert clf.arch == model.arch
    assert clf.metadata["precision"] == "fp32"
    np.testing.assert_array_equal(clf.predict(X[:8]), model.predict(X[:8]))


def test_onnx_classifier_rejects_bad_input_and_bad_models(image_export, tmp_path):
    _, path, X, _ = image_export
    clf = OnnxClassifier(path)
    with pytest.raises(InvalidInput) as err:
        clf.predict_proba(X[:2, :, :16, :16])
    assert err.value.code == "bad_shape"
    with pytest.raises(InvalidInput):
        clf.predict_proba(X[0])
    nan = X[:2].copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(EmptyData):
        clf.predict_proba(nan)
    with pytest.raises(CorruptData):
        OnnxClassifier(b"\x00garbage")
    with pytest.raises(FileNotFoundError):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_serving_never_imports_torch(image_export):
    _, path, X, _ = image_export
    code = (
        "import sys, numpy as np\n"
        "from ml.export import OnnxClassifier\n"
        f"clf = OnnxClassifier({str(path)!r}, threads=1)\n"
        "p = clf.predict_proba(np.zeros((3, 3, 32, 32), np.float32))\n"
        "assert p.shape == (3, 10), p.shape\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _clouds(n: int, n_points: int, seed: int):
    """Sphere (0) and cube (1) surfaces, unit-sphere normalised; part label = upper half (z > 0)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        if i % 2 == 0:
            p = rng.normal(size=(n_points, 3))
            p /= np.linalg.norm(p, axis=1, keepdims=True)
        else:
            p = rng.uniform(-1, 1, size=(n_points, 3))
            p[np.arange(n_points), rng.integers(0, 3, n_points)] = rng.choice([-1.0, 1.0], n_points)
            p /= np.linalg.norm(p, axis=1).max()
        X.append(p.astype(np.float32))
        y.append(i % 2)
    X = np.stack(X)
    return X, np.array(y), (X[..., 2] > 0).astype(np.int64)


def _chirps(n: int, seed: int, duration: float):
    import librosa

    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(n):
        lo, hi = rng.uniform(200, 600), rng.uniform(2000, 5000)
        up = i % 2 == 0
        sig = librosa.chirp(fmin=lo if up else hi, fmax=hi if up else lo, sr=16000, duration=duration)
        mel = librosa.feature.melspectrogram(y=sig.astype(np.float32), sr=16000, n_fft=400, hop_length=160, n_mels=64)
        X.append(((np.maximum(librosa.power_to_db(mel, top_db=None), -100) + 50) / 50)[None].astype(np.float32))
        y.append(i % 2)
    return np.stack(X), np.array(y)


def test_audio_export_parity_with_dynamic_frames(tmp_path):
    X, y = _chirps(12, seed=0, duration=0.5)
    model = train_classifier("audio", X, y, None, None, n_classes=2, config=TrainConfig(epochs=2, batch_size=4))
    path = tmp_path / "audio.onnx"
    export_onnx(model, path)
    report = parity_report(model, path, X)
    assert report.passed and report.top1_agreement == 1.0 and report.max_abs_diff < 1e-4
    clf = OnnxClassifier(path)
    assert clf.input_shape == ["batch", 1, 64, "frames"]
    longer, _ = _chirps(3, seed=1, duration=1.0)  # 101 frames instead of 51
    np.testing.assert_allclose(clf.predict_proba(longer), model.predict_proba(longer), atol=1e-4)
    assert clf.embed(longer).shape == (3, 128)


def test_pointcloud_export_parity_with_dynamic_points(tmp_path):
    X, y, _ = _clouds(12, 128, seed=0)
    model = train_classifier("pointcloud", X, y, None, None, n_classes=2, config=TrainConfig(epochs=2, batch_size=4))
    path = tmp_path / "pc.onnx"
    export_onnx(model, path)
    assert parity_report(model, path, X).passed
    clf = OnnxClassifier(path)
    assert clf.input_shape == ["batch", "points", 3]
    more, _, _ = _clouds(2, 1024, seed=1)
    np.testing.assert_allclose(clf.predict_proba(more), model.predict_proba(more), atol=1e-4)


def test_segmenter_export_parity_per_point(tmp_path):
    X, _, parts = _clouds(12, 128, seed=0)
    model = train_segmenter(X, parts, None, None, n_classes=2, config=TrainConfig(epochs=2, batch_size=4))
    path = tmp_path / "seg.onnx"
    export_onnx(model, path)
    report = parity_report(model, path, X)
    assert report.passed and report.n == 12
    clf = OnnxClassifier(path)
    assert clf.task == "segmentation"
    more, _, _ = _clouds(2, 300, seed=1)
    probs = clf.predict_proba(more)
    assert probs.shape == (2, 300, 2)
    np.testing.assert_allclose(probs, model.predict_proba(more), atol=1e-4)
    assert clf.embed(more).shape == (2, 128)


def test_int8_models_mostly_agree_with_fp32(image_export, tmp_path):
    model, path, X, y = image_export
    X_cal, _ = digits_images()
    dyn, static = tmp_path / "dyn.onnx", tmp_path / "static.onnx"
    quantize_dynamic_int8(path, dyn)
    quantize_static_int8(path, static, X_cal[:256])
    assert OnnxClassifier(static).metadata["precision"] == "int8-static"
    assert OnnxClassifier(dyn).metadata["precision"] == "int8-dynamic"
    assert OnnxClassifier(static).modality == "image"
    # 7-bit weights exactly where onnxruntime's int8 kernels can saturate (x86 without VNNI)
    expected = "true" if cpu_has_vnni() is False else "false"
    assert OnnxClassifier(static).metadata["reduce_range"] == OnnxClassifier(dyn).metadata["reduce_range"] == expected
    assert static.stat().st_size < 0.5 * path.stat().st_size  # int8 weights
    cmp = compare_runtimes(model, {"ort_fp32": path, "ort_int8_dynamic": dyn, "ort_int8_static": static}, X, y)
    runtimes = cmp.runtimes
    assert runtimes["ort_fp32"]["top1_agreement"] == 1.0 and runtimes["ort_fp32"]["max_abs_diff"] < 1e-4
    for name in ("ort_int8_dynamic", "ort_int8_static"):
        assert runtimes[name]["top1_agreement"] >= 0.95, (name, runtimes[name])
        assert runtimes[name]["accuracy"] >= cmp.reference_accuracy - 0.03
        assert 0 < runtimes[name]["max_abs_diff"] < 0.5  # really quantized, still close
    assert json.loads(json.dumps(cmp.to_dict()))["reference"] == "torch"
    with pytest.raises(InvalidInput):
        quantize_static_int8(path, tmp_path / "x.onnx", np.zeros((0, 3, 32, 32), np.float32))


def test_reduce_range_can_be_forced_either_way(image_export, tmp_path):
    _, path, _, _ = image_export
    for forced in (True, False):
        out = tmp_path / f"dyn-{forced}.onnx"
        quantize_dynamic_int8(path, out, reduce_range=forced)
        assert OnnxClassifier(out).metadata["reduce_range"] == str(forced).lower()


def _stats(**p50):
    return {bs: {"p50_ms": v, "p95_ms": v * 1.2} for bs, v in p50.items()}


@pytest.mark.parametrize(
    ("fp32", "int8", "acc32", "acc8", "expected"),
    [
        (_stats(**{"1": 1.0, "64": 20.0}), _stats(**{"1": 0.8, "64": 10.0}), 0.95, 0.945, "int8"),  # 1.25x, -0.5 pt
        (_stats(**{"1": 1.0, "64": 20.0}), _stats(**{"1": 0.8, "64": 10.0}), 0.95, 0.94, "int8"),  # exactly 1 point
        (_stats(**{"1": 1.0, "64": 20.0}), _stats(**{"1": 0.8, "64": 10.0}), 0.95, 0.935, "fp32"),  # 1.5 points lost
        (_stats(**{"1": 1.0, "64": 20.0}), _stats(**{"1": 0.9, "64": 10.0}), 0.95, 0.95, "fp32"),  # 1.11x at batch 1
        (_stats(**{"1": 1.2, "64": 20.0}), _stats(**{"1": 1.0, "64": 10.0}), 0.90, 0.91, "int8"),  # exactly 1.2x, better
        (_stats(**{"1": 1.0}), _stats(**{"1": 0.5}), 0.95, None, "fp32"),  # accuracy unknown
    ],
)
def test_choose_runtime_rule(fp32, int8, acc32, acc8, expected):
    assert choose_runtime(fp32, int8, acc32, acc8) == expected
    decision = runtime_decision(fp32, int8, acc32, acc8)
    assert decision.runtime == expected and decision.reason


def test_choose_runtime_rejects_bad_arguments():
    with pytest.raises(InvalidInput):
        choose_runtime(_stats(**{"1": 1.0}), _stats(**{"64": 1.0}), 0.9, 0.9)
    with pytest.raises(InvalidInput):
        choose_runtime(_stats(**{"1": 1.0}), _stats(**{"1": 0.5}), 95.0, 94.5)  # percentages, not fractions


def test_measure_latency_times_each_batch_size():
    import time as _time

    seen = []

    def runner(batch):
        seen.append(len(batch))
        _time.sleep(0.002 * len(batch) ** 0.5)

    X = np.zeros((100, 4), np.float32)
    stats = measure_latency(runner, X, batch_sizes=(1, 16), warmup=2, repeats=12)
    assert set(stats) == {"1", "16"}
    assert seen.count(1) == 14 and seen.count(16) == 14
    s1, s16 = stats["1"], stats["16"]
    assert s1["n_runs"] == 12 and s1["p50_ms"] >= 2.0 and s16["p50_ms"] >= 8.0
    assert s1["p95_ms"] >= s1["p50_ms"]
    assert s16["throughput_per_s"] == pytest.approx(16 / (s16["mean_ms"] / 1000))
    assert s16["throughput_per_s"] > s1["throughput_per_s"]
    assert s1["rss_mb"] > 0
