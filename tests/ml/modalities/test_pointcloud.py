import numpy as np
import pytest

from ml.errors import CorruptData, EmptyData, InvalidInput, TooLarge, UnsupportedFormat
from ml.modalities import pointcloud as mp


def _cloud(n=500, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3)) * [1.0, 2.0, 0.5] + [10.0, -3.0, 2.0]


def _xyz(P):
    return "".join(f"{a} {b} {c}\n" for a, b, c in P).encode()


def _pcd(P, *, binary=False):
    n = len(P)
    header = (
        "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {'binary' if binary else 'ascii'}\n"
    ).encode()
    if binary:
        return header + np.asarray(P, dtype="<f4").tobytes()
    return header + _xyz(P)


@pytest.mark.parametrize(
    "encode, fmt",
    [
        (lambda P: mp.points_to_ply(P), "PLY"),
        (lambda P: mp.points_to_ply(P, binary=False), "PLY"),
        (lambda P: _pcd(P), "PCD"),
        (lambda P: _pcd(P, binary=True), "PCD"),
        (_xyz, "XYZ"),
    ],
)
def test_formats_roundtrip(encode, fmt):
    P = _cloud()
    data = encode(P)
    info = mp.validate_points(data)
    assert info.format == fmt and info.n_points == 500
    raw = mp.read_points(data)
    assert np.allclose(raw, P, atol=1e-4)
    x = mp.load_points(data, n_points=256)
    assert x.shape == (256, 3) and x.dtype == np.float32
    # normalised: centroid of the source cloud at 0, farthest source point at radius 1
    assert np.linalg.norm(x, axis=1).max() <= 1.0 + 1e-5
    assert len(np.unique(x, axis=0)) == 256


def test_open3d_written_files_and_mesh_ply(tmp_path):
    import open3d as o3d

    P = _cloud(300)
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
    for name, kw in [("a.pcd", {}), ("b.pcd", {"compressed": True}), ("c.ply", {"write_ascii": True})]:
        o3d.io.write_point_cloud(str(tmp_path / name), pc, **kw)
        assert mp.validate_points((tmp_path / name).read_bytes()).n_points == 300
    mesh = o3d.geometry.TriangleMesh.create_box()
    mesh.compute_vertex_normals()
    o3d.io.write_triangle_mesh(str(tmp_path / "m.ply"), mesh)
    info = mp.validate_points((tmp_path / "m.ply").read_bytes())
    assert info.n_points == 8 and info.has_normals


@pytest.mark.parametrize("data", [b"hello world\n", b"1 2\n3 4\n", b"v 1 2 3\nf 1 2 3\n", b"\x00\x01\x02binary", b"%PDF-1.5"])
def test_not_a_point_cloud(data):
    with pytest.raises(UnsupportedFormat):
        mp.validate_points(data)


def test_disallowed_format_and_fmt_mismatch():
    data = _xyz(_cloud(20))
    with pytest.raises(UnsupportedFormat):
        mp.validate_points(data, allowed_formats=("PLY",))
    with pytest.raises(CorruptData):
        mp.validate_points(mp.points_to_ply(_cloud(20)), fmt="pcd")
    with pytest.raises(UnsupportedFormat):
        mp.validate_points(data, fmt="obj")
    assert mp.validate_points(data, fmt="xyz").format == "XYZ"


def test_empty_inputs():
    with pytest.raises(EmptyData):
        mp.validate_points(b"")
    with pytest.raises(EmptyData):
        mp.validate_points(mp.points_to_ply(np.zeros((0, 3))))
    with pytest.raises(EmptyData):
        mp.validate_points(_pcd(np.zeros((0, 3))))
    with pytest.raises(InvalidInput):
        mp.validate_points("1 2 3")  # type: ignore[arg-type]


def test_degenerate_cloud():
    with pytest.raises(EmptyData) as ei:
        mp.load_points(_xyz(np.ones((10, 3))))
    assert ei.value.details["reason"] == "degenerate"


@pytest.mark.parametrize(
    "encode",
    [lambda P: mp.points_to_ply(P), lambda P: mp.points_to_ply(P, binary=False), _xyz, lambda P: _pcd(P, binary=True)],
)
def test_nan_points_rejected(encode):
    P = _cloud(50)
    P[7, 1] = np.nan
    with pytest.raises(EmptyData) as ei:
        mp.validate_points(encode(P))
    assert ei.value.details["reason"] == "non_finite"
    P[7, 1] = np.inf
    with pytest.raises(EmptyData):
        mp.load_points(encode(P))


@pytest.mark.parametrize(
    "encode",
    [lambda P: mp.points_to_ply(P), lambda P: mp.points_to_ply(P, binary=False), _pcd, lambda P: _pcd(P, binary=True)],
)
def test_truncated(encode):
    data = encode(_cloud(500))
    with pytest.raises(CorruptData):
        mp.validate_points(data[: int(len(data) * 0.6)])


def test_damaged_headers():
    with pytest.raises(CorruptData):
        mp.validate_points(b"ply\nhello\n")
    garbage = b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n" + b"\x00" * 5
    with pytest.raises(CorruptData):
        mp.validate_points(garbage)
    with pytest.raises(CorruptData):
        mp.validate_points(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty quux y\nend_header\n1 2\n3 4\n")


def test_too_many_points_from_header():
    # header claims 10 million points; rejected before open3d parses anything
    fake = b"ply\nformat binary_little_endian 1.0\nelement vertex 10000000\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    with pytest.raises(TooLarge) as ei:
        mp.validate_points(fake)
    assert ei.value.details["n_points"] == 10_000_000
    with pytest.raises(TooLarge):
        mp.validate_points(_xyz(_cloud(50)), max_points=49)
    assert mp.validate_points(_xyz(_cloud(50)), max_points=50).n_points == 50


def test_normalize_points():
    P = _cloud(200)
    x = mp.normalize_points(P)
    assert np.allclose(x.mean(axis=0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(x, axis=1).max(), 1.0, atol=1e-5)
    with pytest.raises(InvalidInput):
        mp.normalize_points(np.zeros((5, 2)))
    with pytest.raises(EmptyData):
        mp.normalize_points(np.zeros((5, 3)))


def test_farthest_point_sampling_spreads_points():
    rng = np.random.default_rng(0)
    # a dense blob plus 4 far-away corner points: FPS must pick the corners early
    blob = rng.normal(0, 0.01, size=(1000, 3))
    corners = np.array([[5, 0, 0], [-5, 0, 0], [0, 5, 0], [0, -5, 0]], dtype=float)
    P = np.concatenate([blob, corners])
    idx = mp.farthest_point_sampling(P, 6)
    assert set(range(1000, 1004)) <= set(idx[:5].tolist())
    assert len(set(idx.tolist())) == 6
    with pytest.raises(InvalidInput):
        mp.farthest_point_sampling(P, 2000)


def test_resample_down_up_and_indices():
    P = _cloud(300)
    out, idx = mp.resample_points(P, 100)
    assert out.shape == (100, 3) and np.array_equal(out, P[idx]) and len(set(idx.tolist())) == 100
    out2, idx2 = mp.resample_points(P, 100)
    assert np.array_equal(idx, idx2)  # deterministic
    up, uidx = mp.resample_points(P, 500)
    assert up.shape == (500, 3) and set(uidx.tolist()) == set(range(300))
    r, ridx = mp.resample_points(P, 100, method="random", random_state=1)
    assert len(set(ridx.tolist())) == 100
    same, sidx = mp.resample_points(P, 300)
    assert np.array_equal(sidx, np.arange(300))
    with pytest.raises(InvalidInput):
        mp.resample_points(P, 10, method="bogus")


def test_small_cloud_is_padded():
    x = mp.load_points(_xyz(_cloud(10)), n_points=64)
    assert x.shape == (64, 3)
    assert len(np.unique(x, axis=0)) == 10


def test_batch_and_error_index():
    good = mp.points_to_ply(_cloud(100))
    X = mp.load_points_batch([good, good], n_points=32)
    assert X.shape == (2, 32, 3) and np.array_equal(X[0], X[1])
    assert mp.load_points_batch([], n_points=32).shape == (0, 32, 3)
    with pytest.raises(UnsupportedFormat) as ei:
        mp.load_points_batch([good, b"nope"], n_points=32)
    assert ei.value.details["index"] == 1


def test_augment_points():
    X = np.stack([mp.normalize_points(_cloud(128, s)) for s in range(3)])
    a = mp.augment_points(X, random_state=0)
    assert a.shape == X.shape and np.array_equal(a, mp.augment_points(X, random_state=0))
    assert not np.array_equal(a, mp.augment_points(X, random_state=1))
    rot = mp.augment_points(X, random_state=0, scale=None, jitter_std=0.0, shuffle=False)
    # a pure rotation keeps every point's distance to the origin
    assert np.allclose(np.linalg.norm(rot, axis=2), np.linalg.norm(X, axis=2), atol=1e-5)
    z = mp.augment_points(X, random_state=0, rotate="z", scale=None, jitter_std=0.0, shuffle=False)
    assert np.allclose(z[..., 2], X[..., 2], atol=1e-6)
    R = mp.random_rotation_matrix(np.random.default_rng(0))
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-10) and np.isclose(np.linalg.det(R), 1.0)
    with pytest.raises(InvalidInput):
        mp.augment_points(X[0], random_state=0)


def test_points_to_ply_deterministic():
    P = _cloud(10)
    assert mp.points_to_ply(P) == mp.points_to_ply(P.copy())
    assert mp.points_to_ply(P).startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n")


@pytest.mark.parametrize("fmt", ["ply", "pcd", "xyz"])
@pytest.mark.parametrize("token, error", [("nan", EmptyData), ("-inf", EmptyData), ("abc", CorruptData)])
def test_bad_token_in_text_formats(fmt, token, error):
    # open3d's text readers turn junk into 0 or zero-fill the rest; we must not
    P = _cloud(40)
    rows = [f"{a} {b} {c}" for a, b, c in P]
    rows[30] = f"{P[30, 0]} {token} {P[30, 2]}"
    body = ("\n".join(rows) + "\n").encode()
    if fmt == "ply":
        data = b"ply\nformat ascii 1.0\nelement vertex 40\nproperty float x\nproperty float y\nproperty float z\nend_header\n" + body
    elif fmt == "pcd":
        data = _pcd(P)
        data = data[: data.index(b"DATA ascii\n") + 11] + body
    else:
        data = body
    with pytest.raises(error):
        mp.validate_points(data)
