import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ml.errors import CorruptData, InvalidInput
from ml.export import OnnxClassifier, export_onnx, parity_report
from ml.training import TrainConfig, train_classifier


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
