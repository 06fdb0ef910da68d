"""The classification learners learn on the real fixtures, each on two variants (slow: ~4 minutes on 2 cores).

Figures measured on the 2-core CI machine are in the assertion messages; chance is 1/10 for digits and spoken
digits, 1/8 for shapes."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures.classification import DIGIT_LABELS, digits_split, nuisance_digits
from ml.learners import Dataset
from ml.learners.classification import AudioClassifier, ImageClassifier, PointCloudClassifier

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def dataset(pairs, labels) -> Dataset:
    return Dataset(contents=[c for c, _ in pairs], targets=[{"label": labels[y]} for _, y in pairs],
                   labels=tuple(labels))


@pytest.mark.parametrize("seed", [0, 1])
def test_audio_cnn_learns_spoken_digits(seed):
    from fixtures.speech import SPOKEN_LABELS, spoken_digits

    clips = spoken_digits(20, seed=seed)  # other voices, speeds, pitches, noise per seed
    train, test = clips[:100], clips[100:]
    m = AudioClassifier(epochs=30, random_state=seed).fit(dataset(train, SPOKEN_LABELS))
    acc = m.evaluate(dataset(test, SPOKEN_LABELS)).metrics["accuracy"]
    print(f"spoken digits seed {seed}: accuracy {acc:.3f}, fit {m.fit_seconds_:.1f} s")
    assert acc > 0.6, f"spoken digits, seed {seed}: accuracy {acc:.3f} with 100 labels (chance 0.10)"


@pytest.mark.parametrize("seed", [0, 1])
def test_pointnet_learns_shapes(seed):
    from fixtures.shapes import SHAPE_LABELS, shapes

    clouds = shapes(20, seed=seed, n_points=1024)
    train, test = clouds[:80], clouds[80:]
    m = PointCloudClassifier(epochs=20, random_state=seed).fit(dataset(train, SHAPE_LABELS))
    acc = m.evaluate(dataset(test, SHAPE_LABELS)).metrics["accuracy"]
    print(f"shapes seed {seed}: accuracy {acc:.3f}, fit {m.fit_seconds_:.1f} s")
    assert acc > 0.3, f"shapes, seed {seed}: accuracy {acc:.3f} with 80 labels (chance 0.125)"


def test_cnn_vs_label_free_probe_on_digits():
    """A preview of issue 13 item 9: with 20 labels the probe on label-free embeddings beats the CNN."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "plugins" / "looplab-sklearn-probe"))
    from looplab_sklearn_probe import SklearnProbe

    figures = {}
    for per_class in (2, 10):
        for variant in ("clean", "nuisance"):
            accs = {"cnn": [], "probe": []}
            for seed in (0, 1):
                train, test = digits_split(per_class, 30, seed=seed)
                if variant == "nuisance":
                    train, test = nuisance_digits(train, seed=seed + 1), nuisance_digits(test, seed=seed + 101)
                for name, m in (("cnn", ImageClassifier(epochs=30, arch={"widths": [16, 32, 64]}, random_state=seed)),
                                ("probe", SklearnProbe(random_state=seed))):
                    m.fit(dataset(train, DIGIT_LABELS))
                    accs[name].append(m.evaluate(dataset(test, DIGIT_LABELS)).metrics["accuracy"])
            figures[(per_class * 10, variant)] = {k: float(np.mean(v)) for k, v in accs.items()}
    text = "; ".join(f"{n} labels {v}: cnn {f['cnn']:.3f} probe {f['probe']:.3f}" for (n, v), f in figures.items())
    assert figures[(20, "clean")]["probe"] > figures[(20, "clean")]["cnn"], text
    assert figures[(20, "nuisance")]["probe"] > figures[(20, "nuisance")]["cnn"], text
    assert figures[(100, "clean")]["cnn"] > 0.75, text
    print(text)
