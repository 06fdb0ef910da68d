import math

import numpy as np
import pytest

from ml.geometry import cuboid_iou, fit_cuboid, points_in_cuboid, polygon_area

UNIT = {"center": [0, 0, 0], "size": [2, 1, 1], "yaw": 0.0}


def test_iou_hand_computed_cases():
    assert cuboid_iou(UNIT, UNIT) == pytest.approx(1.0)
    # shifted by half its length along x: overlap 1x1x1 of volumes 2 and 2 -> 1 / 3
    assert cuboid_iou(UNIT, dict(UNIT, center=[1, 0, 0])) == pytest.approx(1 / 3)
    # shifted up by half its height: 2 x 1 x 0.5 = 1 of union 3
    assert cuboid_iou(UNIT, dict(UNIT, center=[0, 0, 0.5])) == pytest.approx(1 / 3)
    # a rotation by pi is the same box
    assert cuboid_iou(UNIT, dict(UNIT, yaw=math.pi)) == pytest.approx(1.0)
    # a unit cube against itself turned by 45 degrees: the regular octagon of area 2 (sqrt 2 - 1)
    cube = {"center": [0, 0, 0], "size": [1, 1, 1], "yaw": 0.0}
    octagon = 2 * (math.sqrt(2) - 1)  # intersection of a unit square with itself rotated by 45 degrees
    assert cuboid_iou(cube, dict(cube, yaw=math.pi / 4)) == pytest.approx(octagon / (2 - octagon))
    # the 2x1 box against itself turned by 90 degrees: the 1x1 square in the middle -> 1 / 3
    assert cuboid_iou(UNIT, dict(UNIT, yaw=math.pi / 2)) == pytest.approx(1 / 3)
    assert cuboid_iou(UNIT, dict(UNIT, center=[5, 0, 0])) == 0.0
    assert cuboid_iou(UNIT, dict(UNIT, size=[0, 0, 0], center=[5, 5, 5])) == 0.0


def test_iou_matches_monte_carlo():
    rng = np.random.default_rng(0)
    a = {"center": [0.2, -0.1, 0.3], "size": [2.0, 1.2, 0.8], "yaw": 0.4}
    b = {"center": [0.6, 0.3, 0.5], "size": [1.5, 1.0, 1.0], "yaw": -0.7}
    pts = rng.uniform(-2.5, 2.5, size=(400_000, 3))
    ina, inb = points_in_cuboid(pts, a), points_in_cuboid(pts, b)
    mc = (ina & inb).sum() / (ina | inb).sum()
    assert cuboid_iou(a, b) == pytest.approx(mc, abs=0.01)
    assert cuboid_iou(a, b) == pytest.approx(cuboid_iou(b, a))


def test_polygon_area():
    assert polygon_area(np.array([[0, 0], [2, 0], [2, 3], [0, 3]], float)) == pytest.approx(6.0)
    assert polygon_area(np.zeros((2, 2))) == 0.0


@pytest.mark.parametrize("yaw", [0.0, 0.3, 1.2, 2.9])
def test_fit_cuboid_recovers_a_sampled_box(yaw):
    rng = np.random.default_rng(1)
    box = {"center": [1.0, -2.0, 0.5], "size": [2.0, 0.8, 1.0], "yaw": yaw}
    pts = rng.uniform(-0.5, 0.5, size=(3000, 3)) * box["size"]
    c, s = math.cos(yaw), math.sin(yaw)
    pts = pts @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + box["center"]
    fit = fit_cuboid(pts)
    assert cuboid_iou(fit, box) > 0.9
    assert 0 <= fit["yaw"] < math.pi and fit["size"][0] >= fit["size"][1]
    assert abs(math.remainder(fit["yaw"] - yaw, math.pi)) < 0.05


def test_fit_cuboid_degenerate():
    fit = fit_cuboid(np.array([[0, 0, 0], [1, 1, 1]], float))
    assert fit["size"] == [1.0, 1.0, 1.0] and fit["yaw"] == 0.0
    assert points_in_cuboid(np.array([[0.5, 0.5, 0.5]]), fit).all()
