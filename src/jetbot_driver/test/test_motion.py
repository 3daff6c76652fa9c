"""Ramps, holds, safety limits and the robot worker, against the simulated JetBot over real RPyC."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from graphtest import wait_for

from jetbot_driver.client import JetBotClient
from jetbot_driver.motion import (
    Aborted,
    MotionError,
    MotionLimits,
    MotorController,
    ramp,
    twist_to_wheels,
)
from jetbot_driver.sim_server import SimServer
from jetbot_driver.worker import Executed, Fatal, Frame, Notice, RobotWorker, WorkerConfig

# the moving action of config/jetbot.yaml (motor_left, motor_right, duration): right wheel only,
# 0.12 for 0.2 s
TURN_ACTION = (0.0, 0.12, 0.2)
EXPECTED_TURN = [
    (0.0, 0.03),
    (0.0, 0.06),
    (0.0, 0.09),
    (0.0, 0.12),
    (0.0, 0.09),
    (0.0, 0.06),
    (0.0, 0.03),
    (0.0, 0.0),
]


def motor_log(inspector):
    return [(t, left, right) for t, left, right in inspector.call_extra('get_motor_log')]


def flat(pairs):
    return [v for pair in pairs for v in pair]


def same_pairs(got, expected, tol=1e-9):
    return len(got) == len(expected) and flat(got) == pytest.approx(flat(expected), abs=tol)


def collect(worker, kinds, timeout=5.0):
    """Events of the worker until one of each type in ``kinds`` arrived."""
    got = []
    wait_for(
        lambda: (
            got.extend(worker.events()) or all(any(isinstance(e, k) for e in got) for k in kinds)
        ),
        timeout,
    )
    return got


def test_ramp_values():
    assert same_pairs(ramp((0.0, 0.0), (0.0, 0.12)), [(0, 0.03), (0, 0.06), (0, 0.09), (0, 0.12)])
    assert ramp((0.4, -0.4), (0.0, 0.0))[-1] == (0.0, 0.0)
    assert same_pairs(
        ramp((0.2, 0.2), (0.6, 0.2)), [(0.3, 0.2), (0.4, 0.2), (0.5, 0.2), (0.6, 0.2)]
    )


def test_forward_action_sends_the_exact_ramp_and_holds_for_duration(client, inspector):
    controller = MotorController(client.set_motors)
    start = time.monotonic()
    controller.execute(*TURN_ACTION)
    elapsed = time.monotonic() - start
    log = motor_log(inspector)
    values = [(left, right) for _, left, right in log]
    assert len(values) == 8
    assert same_pairs(values, EXPECTED_TURN, tol=1e-12)
    times = [t for t, _, _ in log]
    # ramp-up steps 15 ms apart, then the hold of duration - 0.06 s: from the first ramp-up
    # command to the first ramp-down command = duration (0.2 s); generous tolerance for load
    # steps go out on absolute 15 ms deadlines (never early; a late one does not delay the rest)
    assert 0.035 <= times[3] - times[0] <= 0.2
    assert 0.035 <= times[7] - times[4] <= 0.2
    assert 0.19 <= times[4] - times[0] <= 0.30
    assert 0.13 <= times[4] - times[3] <= 0.26  # the hold at full speed: 15 ms + 0.14 s
    assert 0.2 <= elapsed < 0.5
    assert controller.current == (0.0, 0.0) and not controller.moving


def test_short_durations_hold_for_zero_and_ramps_start_from_the_current_speed(client, inspector):
    controller = MotorController(client.set_motors)
    controller.drive(0.2, 0.2)
    inspector.call_extra('clear_motor_log')
    start = time.monotonic()
    controller.execute(0.6, 0.2, 0.0)  # hold max(0, 0 - 0.06) = 0
    assert time.monotonic() - start < 0.25
    values = [(left, right) for _, left, right in motor_log(inspector)]
    assert same_pairs(
        values,
        [
            (0.3, 0.2),
            (0.4, 0.2),
            (0.5, 0.2),
            (0.6, 0.2),
            (0.45, 0.15),
            (0.3, 0.1),
            (0.15, 0.05),
            (0.0, 0.0),
        ],
    )


@pytest.mark.parametrize(
    'action',
    [
        (math.nan, 0.1, 0.2),
        (0.1, math.inf, 0.2),
        (0.0, 0.1, -0.1),
        (0.0, 0.1, 1e9),
        (0.0, 0.1, math.nan),
        (0.0, 0.1, math.inf),
        ('x', 0.1, 0.2),
    ],
)
def test_unsafe_actions_are_refused_before_anything_moves(client, inspector, action):
    controller = MotorController(client.set_motors, MotionLimits(max_speed=1.0, max_duration=5.0))
    with pytest.raises(MotionError):
        controller.execute(*action)
    assert motor_log(inspector) == []


def test_speeds_are_clamped_to_the_limits(client, inspector):
    controller = MotorController(client.set_motors, MotionLimits(max_speed=0.3))
    controller.execute(0.9, -5.0, 0.06)
    values = [(left, right) for _, left, right in motor_log(inspector)]
    assert max(abs(v) for pair in values for v in pair) == pytest.approx(0.3)
    assert values[3] == (0.3, -0.3) and values[-1] == (0.0, 0.0)
    with pytest.raises(ValueError):
        client.set_motors(math.nan, 0.0)  # the client refuses NaN on its own too


def test_twist_to_wheels():
    limits = MotionLimits()
    assert twist_to_wheels(0.3, 0.0, 0.12, 0.6, limits) == pytest.approx((0.5, 0.5))
    left, right = twist_to_wheels(0.0, 1.0, 0.12, 0.6, limits)
    assert left == pytest.approx(-0.1) and right == pytest.approx(0.1)
    assert twist_to_wheels(5.0, 0.0, 0.12, 0.6, MotionLimits(max_speed=0.4)) == (0.4, 0.4)
    with pytest.raises(MotionError):
        twist_to_wheels(math.nan, 0.0, 0.12, 0.6, limits)


def test_abort_mid_hold_stops_the_motors_at_once(client, inspector):
    abort = threading.Event()
    controller = MotorController(client.set_motors, abort=abort)
    threading.Timer(0.15, abort.set).start()
    start = time.monotonic()
    with pytest.raises(Aborted):
        controller.execute(0.0, 0.12, 2.0)
    assert time.monotonic() - start < 0.6
    values = [(left, right) for _, left, right in motor_log(inspector)]
    assert values[-1] == (0.0, 0.0) and (0.0, 0.09) not in values[4:], values


# ------------------------------------------------------------------------------------------- worker


def test_worker_executes_then_publishes_a_fresh_frame_and_refuses_while_busy(client, inspector):
    stamps = iter(range(1_000, 10**9, 1_000))
    worker = RobotWorker(
        client, config=WorkerConfig(camera_period=0.0), now_ns=lambda: next(stamps)
    ).start()
    try:
        first = collect(worker, [Frame])
        assert [type(e) for e in first] == [Frame] and not first[0].after_action  # a start frame
        assert worker.submit_action(1, *TURN_ACTION) is None
        assert 'still being executed' in worker.submit_action(1, *TURN_ACTION)
        assert 'being executed' in worker.submit_drive(0.1, 0.1)
        events = collect(worker, [Executed, Frame])
        executed = [e for e in events if isinstance(e, Executed)]
        frames = [e for e in events if isinstance(e, Frame)]
        assert len(executed) == 1 and executed[0].index == 1
        assert frames[0].after_action and frames[0].stamp_ns >= executed[0].stamp_ns
        assert frames[0].rgb.shape == (224, 224, 3)
        assert worker.submit_action(0, 0.0, 0.0, 0.2) is None  # free again
        collect(worker, [Executed, Frame])
    finally:
        worker.close()
    values = [(left, right) for _, left, right in motor_log(inspector)]
    assert same_pairs(values[:8], EXPECTED_TURN)
    assert values[8:16] == [(0.0, 0.0)] * 8  # the stay action ramps 0 -> 0 the same way


def test_worker_streams_frames_at_the_camera_rate(client):
    worker = RobotWorker(client, config=WorkerConfig(camera_period=0.05)).start()
    try:
        time.sleep(1.0)
        frames = [e for e in worker.events() if isinstance(e, Frame)]
    finally:
        worker.close()
    assert 8 <= len(frames) <= 22, len(frames)
    stamps = [f.stamp_ns for f in frames]
    assert stamps == sorted(stamps)


def test_watchdog_stops_a_cmd_vel_drive_when_commands_stop(client, inspector, sim):
    worker = RobotWorker(
        client, config=WorkerConfig(camera_period=0.0, watchdog_timeout=0.3)
    ).start()
    try:
        for _ in range(5):  # a teleop tool sending at 10 Hz
            assert worker.submit_drive(0.4, 0.2) is None
            time.sleep(0.1)
        assert sim.hardware.world.motors == (0.4, 0.2), 'kept moving while commands came'
        stopped_at = time.monotonic()
        assert wait_for(lambda: sim.hardware.world.motors == (0.0, 0.0), timeout=3.0)
        assert 0.2 <= time.monotonic() - stopped_at <= 2.0
        notices = [e for e in collect(worker, [Notice]) if isinstance(e, Notice)]
        assert any('watchdog' in n.text for n in notices)
        assert worker.watchdog_stops == 1
    finally:
        worker.close()
    values = [(left, right) for _, left, right in motor_log(inspector)]
    assert same_pairs(values[:4], [(0.1, 0.05), (0.2, 0.1), (0.3, 0.15), (0.4, 0.2)])
    assert values[-1] == (0.0, 0.0)


def test_close_during_an_action_stops_the_motors(client, inspector, sim):
    worker = RobotWorker(client, config=WorkerConfig(camera_period=0.0)).start()
    worker.submit_action(1, 0.0, 0.5, 3.0)
    assert wait_for(lambda: sim.hardware.world.motors == (0.0, 0.5))
    start = time.monotonic()
    worker.close()
    assert time.monotonic() - start < 1.0
    assert sim.hardware.world.motors == (0.0, 0.0)
    assert not any(isinstance(e, Executed) for e in worker.events())


def test_a_lost_connection_is_one_fatal_event_and_ends_the_worker():
    server = SimServer(port=0).start_in_thread()
    client = JetBotClient.connect('127.0.0.1', server.port)
    notified = threading.Event()
    worker = RobotWorker(
        client, config=WorkerConfig(camera_period=0.05), notify=notified.set
    ).start()
    try:
        assert wait_for(lambda: worker.frames_captured >= 2)
        server.close()  # the robot goes away (battery, network)
        assert wait_for(lambda: not worker.alive, timeout=10)
        fatal = [e for e in worker.events() if isinstance(e, Fatal)]
        assert len(fatal) == 1 and 'lost the connection' in fatal[0].text
        assert notified.is_set() and worker.failed
        assert worker.submit_action(1, *TURN_ACTION) == 'the driver is shutting down'
    finally:
        worker.close()


def test_frames_of_another_size_are_resized_to_the_model_size():
    server = SimServer(port=0, size=(320, 240)).start_in_thread()
    try:
        client = JetBotClient.connect('127.0.0.1', server.port, image_size=224)
        raw = client.get_frame_bgr()
        assert raw.shape == (240, 320, 3)
        rgb = client.get_frame()
        assert rgb.shape == (224, 224, 3) and client.frames_resized == 1
        # RGB order: the same picture as the renderer's BGR, channels swapped
        import cv2

        truth = cv2.resize(
            server.hardware.world.render()[:, :, ::-1], (224, 224), interpolation=cv2.INTER_AREA
        )
        assert np.abs(rgb.astype(int) - truth.astype(int)).mean() < 6
        assert np.abs(rgb.astype(int) - truth[:, :, ::-1].astype(int)).mean() > 10
        client.close()
    finally:
        server.close()
