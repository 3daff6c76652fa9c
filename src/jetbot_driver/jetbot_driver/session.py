"""Simulated JetBot sessions written without ROS, without a server and without waiting. ROS-free.

:class:`jetbot_driver.sim_world.SimWorld` is driven on a virtual clock with exactly the motor
schedule of :class:`jetbot_driver.motion.MotorController` (ramp up, hold, ramp down), and the
session is laid out as the recorder lays one out (``<root>/<robot>/<session>/``, the robot type
and action space in its custom_data). Frames are stored losslessly (a real robot's frames went
through its camera's JPEG).

Example:
    >>> from jetbot_driver.session import write_jetbot_session
    >>> space = ActionSpace.from_yaml('config/jetbot.yaml')
    >>> write_jetbot_session('saved/sessions/jetbot/demo-00', [1, 2, 0], space)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devbot import topics
from devbot.action_space import ActionSpace, ConfigError
from devbot.bag.metadata import TopicSpec, custom_data
from devbot.bag.writer import BagWriter
from devbot.cdr import action_cdr, image_cdr
from jetbot_driver.motion import RAMP_INTERVAL_S, RAMP_TIME_S, ramp
from jetbot_driver.sim_world import SimConfig, SimWorld

#: stamp of a session's first frame (2026-01-01 00:00:00 UTC), and the time from one action's
#: start to the next's
START_NS = 1_767_225_600_000_000_000
STEP_NS = 500_000_000
#: receive time after the stamp of an executed action and of a frame
ACTION_DELAY_NS = 1_000
FRAME_DELAY_NS = 2_000
SOFTWARE = 'devbot jetbot_driver.session (generated session)'


def motor_schedule(
    start_s: float, left: float, right: float, duration: float
) -> list[tuple[float, float, float]]:
    """(time, left, right) of every motor command of one action, as MotorController sends them:
    ramp up in RAMP_STEPS steps RAMP_INTERVAL_S apart, the first ramp-down command at
    ``start + max(duration, RAMP_TIME_S)``, ramp down the same way (last command 0, 0)."""
    out = [
        (start_s + i * RAMP_INTERVAL_S, lv, rv)
        for i, (lv, rv) in enumerate(ramp((0.0, 0.0), (left, right)))
    ]
    down = start_s + max(duration, RAMP_TIME_S)
    out += [
        (down + i * RAMP_INTERVAL_S, lv, rv)
        for i, (lv, rv) in enumerate(ramp((left, right), (0.0, 0.0)))
    ]
    return out


def write_jetbot_session(
    path: str | Path,
    actions: Sequence[int],
    space: ActionSpace,
    sim_config: SimConfig | None = None,
    t0_ns: int = START_NS,
    step_ns: int = STEP_NS,
    namespace: str = '/jetbot',
    software: str = SOFTWARE,
) -> list[np.ndarray]:
    """Record a simulated JetBot session: the virtual robot executes each action with the
    driver's motor schedule; the frame after it carries the action's stamp (its completion).

    Args:
        path: the new session directory (``<root>/jetbot/<name>``; must not exist).
        actions: action indices of ``space``.
        space: the JetBot action space (channels motor_left, motor_right, duration).
        sim_config: the simulated room and camera (start pose, image size).
        t0_ns, step_ns: stamp of the first frame, and time from one action's start to the
            next's (must exceed the longest action).
        namespace: the robot namespace the topics live under.
        software: the custom_data software entry.
    Returns:
        every frame of the run, uint8 [H, W, 3] RGB; frame k shows the room after k actions.
    Raises:
        ConfigError: ``space`` lacks one of the JetBot channels.
        devbot.action_space.ActionError: an action that is not an index of ``space``.
        ValueError: ``step_ns`` is shorter than an action.
    """
    names = space.channel_names
    if not {'motor_left', 'motor_right', 'duration'} <= set(names):
        raise ConfigError(
            f'a JetBot action space needs motor_left, motor_right and duration, got {names}'
        )
    actions = [space.check_index(a) for a in actions]
    world = SimWorld(sim_config or SimConfig(), t0=t0_ns / 1e9)
    ns = namespace.rstrip('/') + '/'
    custom = custom_data(space, software, namespace=ns.rstrip('/'), robot=Path(path).parent.name)
    frames = [np.ascontiguousarray(world.render(t0_ns / 1e9)[:, :, ::-1])]  # BGR -> RGB
    with BagWriter(Path(path), custom) as bag:
        img = bag.add_topic(TopicSpec(ns + topics.CAMERA_IMAGE, 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(TopicSpec(ns + topics.MOTOR_EXECUTED, 'sensor_msgs/msg/JointState'))
        bag.write(img, t0_ns, image_cdr(frames[0], t0_ns))
        start = t0_ns
        for a in actions:
            v = space.values(a)
            schedule = motor_schedule(start / 1e9, v['motor_left'], v['motor_right'], v['duration'])
            for t, lv, rv in schedule:
                world.set_motors(lv, rv, t)
            done_ns = int(round(schedule[-1][0] * 1e9))
            if done_ns - start >= step_ns:
                raise ValueError(
                    f'step_ns {step_ns} is shorter than action {a} ({done_ns - start} ns)'
                )
            frames.append(np.ascontiguousarray(world.render(done_ns / 1e9)[:, :, ::-1]))
            bag.write(exe, done_ns + ACTION_DELAY_NS, action_cdr(space, a, done_ns))
            bag.write(img, done_ns + FRAME_DELAY_NS, image_cdr(frames[-1], done_ns))
            start += step_ns
    return frames


__all__ = ['START_NS', 'STEP_NS', 'motor_schedule', 'write_jetbot_session']
