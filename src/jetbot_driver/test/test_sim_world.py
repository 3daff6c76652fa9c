"""The virtual JetBot: differential-drive kinematics and a camera that shows them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jetbot_driver.sim_world import SimConfig, SimWorld


def test_straight_drive_and_spin_in_place():
    w = SimWorld(SimConfig(max_wheel_speed=0.5))
    w.set_motors(0.4, 0.4, t=0.0)
    w.advance(1.0)
    x, y, h = w.pose
    assert x == pytest.approx(0.2) and y == pytest.approx(0.0) and h == pytest.approx(0.0)
    w.set_motors(-0.3, 0.3, t=1.0)  # left wheel back, right forward: turn left on the spot
    w.advance(1.5)
    x2, y2, h2 = w.pose
    assert (x2, y2) == pytest.approx((0.2, 0.0))
    assert h2 == pytest.approx(2 * 0.3 * 0.5 / 0.12 * 0.5)


def test_a_robot_with_stopped_motors_keeps_its_pose_bit_for_bit():
    # a heading that came out of a turn (not a round number) must not drift by an ulp per step
    w = SimWorld(SimConfig(heading=0.12021951915012319, x=0.0072, y=0.0004))
    before = w.pose
    for k in range(1, 200):
        w.advance(k * 0.05)
    assert w.pose == before
    w.set_motors(0.0, 0.5, t=10.0)
    w.advance(100.0)  # many turns: the heading stays wrapped into (-pi, pi]
    assert -math.pi < w.pose[2] <= math.pi


def test_arc_matches_the_exact_solution_and_walls_stop_the_robot():
    c = SimConfig()
    w = SimWorld(c)
    w.set_motors(0.0, 0.12, t=0.0)
    w.advance(0.2)
    vr = 0.12 * c.max_wheel_speed
    omega, v = vr / c.wheel_separation, vr / 2
    x, y, h = w.pose
    assert h == pytest.approx(omega * 0.2)
    assert x == pytest.approx(v / omega * math.sin(omega * 0.2))
    assert y == pytest.approx(v / omega * (1 - math.cos(omega * 0.2)))
    w.set_motors(1.0, 1.0, t=0.2)
    w.advance(100.0)
    x, y, _ = w.pose
    limit = c.room_size / 2 - c.margin
    assert max(abs(x), abs(y)) == pytest.approx(limit)


def test_camera_view_follows_the_motion():
    w = SimWorld()
    a = w.render()
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8
    assert np.array_equal(a, w.render()), 'same pose, same image'
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 8, 'walls, panels, floor and ceiling'
    # turn left by ~8 degrees: the scene slides to the right by roughly 8/60 of the width
    w.set_motors(-0.1, 0.1, t=0.0)
    w.advance(math.radians(8) / (2 * 0.1 * 0.6 / 0.12))
    b = w.render()
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5
    shift = int(round(224 * 8 / 60))
    aligned = np.abs(a[:, :-shift].astype(int) - b[:, shift:].astype(int)).mean()
    assert aligned < np.abs(a.astype(int) - b.astype(int)).mean() / 2

    # driving forward makes the wall ahead bigger
    def ceiling_rows(img):
        return int((img[:, 112] == (70, 70, 70)).all(axis=1).sum())

    w2 = SimWorld()
    far = ceiling_rows(w2.render())
    w2.set_motors(1, 1, 0.0)
    w2.advance(1.0)
    assert 0 <= ceiling_rows(w2.render()) < far - 10


def test_other_frame_sizes_and_bad_configs():
    assert SimWorld(SimConfig(width=320, height=240)).render().shape == (240, 320, 3)
    for bad in (dict(width=4), dict(fov_deg=0), dict(room_size=-1), dict(margin=5.0)):
        with pytest.raises(ValueError):
            SimConfig(**bad)
