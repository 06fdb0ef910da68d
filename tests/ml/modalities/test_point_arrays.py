"""Every stored point with its optional intensity channel, and the one PLY vertex-header parser."""
import numpy as np
import pytest

from ml.errors import TooLarge
from ml.modalities import pointcloud as mp

pytest.importorskip("open3d")

_HEAD = "ply\nformat {fmt} 1.0\n{before}element vertex {n}\n{props}{after}end_header\n"


def _ply(xyz, intensity, *, fmt="binary_little_endian", before="", after="", name="intensity", itype="float"):
    n = len(xyz)
    props = f"property float x\nproperty float y\nproperty float z\nproperty {itype} {name}\n"
    head = _HEAD.format(fmt=fmt, before=before, n=n, props=props, after=after).encode()
    if fmt == "ascii":
        return head + "".join(f"{x:.6f} {y:.6f} {z:.6f} {i:.4f}\n" for (x, y, z), i in zip(xyz, intensity)).encode()
    order = "<" if fmt == "binary_little_endian" else ">"
    rows = np.zeros(n, dtype=[("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"),
                              ("i", order + ("f4" if itype == "float" else "u2"))])
    rows["x"], rows["y"], rows["z"], rows["i"] = xyz[:, 0], xyz[:, 1], xyz[:, 2], intensity
    return head + rows.tobytes()


def _cloud(n=400, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.uniform(5, 50, size=n)


def test_ply_vertex_header():
    data = _ply(*_cloud(10), after="element face 0\nproperty list uchar int vertex_indices\n")
    h = mp.ply_vertex_header(data)
    assert h.format == "binary_little_endian" and h.first
    assert h.properties == (("float", "x"), ("float", "y"), ("float", "z"), ("float", "intensity"))
    assert data[:h.body_start].endswith(b"end_header\n")
    assert mp._header_fields(data, "PLY") == 4
    later = mp.ply_vertex_header(_ply(*_cloud(10), before="element camera 1\nproperty float f\n"))
    assert not later.first and len(later.properties) == 4
    assert mp.ply_vertex_header(b"ply\nformat ascii 1.0\nelement face 2\nend_header\n") is None
    assert mp.ply_vertex_header(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n").body_start is None


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_ply_intensity_is_scaled_to_0_1(fmt):
    xyz, intensity = _cloud()
    arrays = mp.read_point_arrays(_ply(xyz, intensity, fmt=fmt))
    assert arrays.channels == "xyzi" and arrays.n_points == 400 and arrays.stride == 4
    assert arrays.data.dtype == np.float32
    expected = (intensity - intensity.min()) / (intensity.max() - intensity.min())
    np.testing.assert_allclose(arrays.data[:, 3], expected, atol=1e-4)
    np.testing.assert_allclose(arrays.data[:, :3], xyz, atol=1e-5)
    assert len(arrays.to_bytes()) == 400 * 4 * 4


def test_integer_and_other_intensity_names():
    xyz, _ = _cloud(50)
    arrays = mp.read_point_arrays(_ply(xyz, np.arange(50) * 10, itype="ushort", name="reflectance"))
    assert arrays.channels == "xyzi"
    np.testing.assert_allclose(arrays.data[:, 3], np.arange(50) / 49, atol=1e-6)


def test_without_a_readable_intensity_the_points_are_xyz():
    xyz, intensity = _cloud(60)
    assert mp.read_point_arrays(mp.points_to_ply(xyz)).channels == "xyz"
    # an element before the vertex element is not read for intensity (the points still are)
    arrays = mp.read_point_arrays(_ply(xyz, intensity, fmt="ascii", before="element camera 0\nproperty float f\n"))
    assert arrays.channels == "xyz" and arrays.n_points == 60
    assert mp.read_intensity(b"", "XYZ", 3) is None
    flat = mp.read_point_arrays(_ply(xyz, np.full(60, 7.0)))
    assert flat.channels == "xyzi" and not flat.data[:, 3].any()


def test_pcd_ascii_intensity():
    xyz, intensity = _cloud(80)
    head = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
            "WIDTH 80\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 80\nDATA ascii\n")
    rows = "".join(f"{x:.6f} {y:.6f} {z:.6f} {i:.4f}\n" for (x, y, z), i in zip(xyz, intensity))
    arrays = mp.read_point_arrays((head + rows).encode())
    assert arrays.channels == "xyzi"
    np.testing.assert_allclose(arrays.data[:, 3], (intensity - intensity.min()) / np.ptp(intensity), atol=1e-4)


def test_caps_are_those_of_the_reader():
    xyz, intensity = _cloud(400)
    data = _ply(xyz, intensity)
    with pytest.raises(TooLarge):
        mp.read_point_arrays(data, max_points=399)
    with pytest.raises(TooLarge):
        mp.read_point_arrays(data, max_values=400 * 4 - 1)
    assert mp.read_point_arrays(data, max_points=400, max_values=1600).n_points == 400
