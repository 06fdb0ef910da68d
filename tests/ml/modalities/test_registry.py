"""The modality registry: one entry per modality, everything that used to switch on the name."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import modalities
from ml.errors import InvalidInput, TooLarge

ROOT = Path(__file__).resolve().parents[3]


def _png(w=40, h=30):
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _wav(seconds=0.5, sr=16000):
    sf = pytest.importorskip("soundfile")
    t = np.arange(int(seconds * sr)) / sr
    out = io.BytesIO()
    sf.write(out, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return out.getvalue()


def test_every_modality_is_registered_and_unknown_names_are_typed_errors():
    assert modalities.MODALITIES == ("image", "audio", "pointcloud")
    for name in modalities.MODALITIES:
        assert modalities.get(name).name == name
    assert [m.name for m in modalities.all_modalities()] == list(modalities.MODALITIES)
    for bad in ("video", "", None, "IMAGE"):
        with pytest.raises(modalities.UnknownModality) as ei:
            modalities.get(bad)
        assert isinstance(ei.value, InvalidInput)
        assert ei.value.code == "unsupported_modality"
        assert ei.value.details == {"modality": bad, "supported": ["image", "audio", "pointcloud"]}


def test_other_per_modality_tables_cover_the_registry():
    from ml import features, nets

    assert sorted(features._DESCRIPTORS) == sorted(modalities.MODALITIES)
    assert {(m.name, task) for m in modalities.all_modalities() for task in m.tasks} == set(nets._DEFAULT_NET)


@pytest.mark.parametrize("name, good, bad", [
    ("image", [(2, 3, 8, 8), (1, 3, 32, 40)], [(2, 1, 32, 32), (2, 3, 7, 32), (3, 32, 32), (2, 32, 3)]),
    ("audio", [(2, 1, 64, 101), (1, 1, 8, 1)], [(2, 3, 64, 101), (2, 1, 7, 10), (2, 64, 101)]),
    ("pointcloud", [(2, 1024, 3), (1, 1, 3)], [(2, 1024, 4), (2, 0, 3), (1024, 3), (2, 1, 3, 3)]),
])
def test_shape_checks(name, good, bad):
    m = modalities.get(name)
    assert all(m.check_shape(s) for s in good)
    assert not any(m.check_shape(s) for s in bad)
    assert m.check_shape((5,) + m.default_input_shape)


def test_fields_that_replace_the_old_branches():
    image, audio, cloud = (modalities.get(n) for n in ("image", "audio", "pointcloud"))
    assert [m.tasks for m in (image, audio, cloud)] == [("classification",), ("classification",),
                                                         ("classification", "segmentation")]
    assert (image.fixed_sample_shape, audio.fixed_sample_shape, cloud.fixed_sample_shape) == (True, False, False)
    assert (image.shift_augment, audio.shift_augment, cloud.shift_augment) == ((16, (1, 2)), (10, (2,)), None)
    assert (image.variable_axes, audio.variable_axes, cloud.variable_axes) == ({}, {3: "frames"}, {1: "points"})
    assert (image.point_axis, audio.point_axis, cloud.point_axis) == (None, None, 1)
    assert "waveform" in audio.views and "points" in cloud.views and not image.views


def test_limits_pass_only_what_is_set():
    limits = modalities.Limits(max_pixels=10, max_points=None, max_values=7)
    assert limits.kwargs("max_pixels", "max_points", "max_values") == {"max_pixels": 10, "max_values": 7}
    assert modalities.Limits().kwargs("max_pixels") == {}


def test_validate_and_load_batch_through_the_registry():
    from ml.modalities.pointcloud import points_to_ply

    png = _png()
    info = modalities.get("image").validate(png)
    assert info.format == "PNG" and info.meta == {"width": 40, "height": 30}
    with pytest.raises(TooLarge):
        modalities.get("image").validate(png, modalities.Limits(max_pixels=100))
    assert modalities.get("image").load_batch([png, png]).shape == (2, 3, 32, 32)

    cloud = points_to_ply(np.random.default_rng(1).normal(size=(300, 3)))
    info = modalities.get("pointcloud").validate(cloud)
    assert info.format == "PLY" and info.meta == {"n_points": 300}
    with pytest.raises(TooLarge):
        modalities.get("pointcloud").validate(cloud, modalities.Limits(max_points=100))

    wav = _wav()
    info = modalities.get("audio").validate(wav)
    assert info.format == "WAV" and info.meta["sample_rate"] == 16000 and info.meta["channels"] == 1
    assert info.meta["duration_s"] == pytest.approx(0.5)
    with pytest.raises(TooLarge):
        modalities.get("audio").validate(wav, modalities.Limits(max_duration_s=0.25))


def test_registry_import_loads_no_modality_module():
    code = (
        "import sys, ml.modalities as m\n"
        "m.get('audio'); m.get('pointcloud')\n"
        "loaded = [n for n in ('ml.modalities.image', 'ml.modalities.audio', 'ml.modalities.pointcloud',"
        " 'ml.modalities.audio_view', 'PIL', 'soundfile', 'open3d') if n in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
