"""Toroidal-dot sessions written without ROS and without waiting in real time. ROS-free.

A session is laid out as the recorder lays one out (``<root>/<robot>/<session>/``, an MCAP
rosbag2 bag with the robot type and action space in its custom_data), with the topics the sim
node publishes: the first frame, then for every action the executed action, the frame showing
its outcome and the ground-truth dot position, all with the same header stamp (the sim's
convention, so they pair exactly by stamp). Used for demo data, the offline trainer's synthetic
sessions, benchmarks and tests.

Example:
    >>> from toroidal_sim.session import write_dot_session
    >>> frames = write_dot_session('saved/sessions/toroidal_dot/demo-00', [1, 0, 1, 1], seed=3)
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from devbot import topics
from devbot.bag.metadata import TopicSpec, custom_data
from devbot.bag.writer import BagWriter, WriterOptions
from devbot.cdr import action_cdr, image_cdr, messages_lost_cdr, point_cdr
from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

#: stamp of a session's first frame, and the virtual time between two actions (10 ms)
START_NS = 1_700_000_000_000_000_000
STEP_NS = 10_000_000
#: receive time after the stamp of an executed action, a frame and a dot position
ACTION_DELAY_NS = 1_000
FRAME_DELAY_NS = 2_000
POSITION_DELAY_NS = 3_000
SOFTWARE = 'devbot toroidal_sim.session (generated session)'


def write_dot_session(
    path: str | Path,
    actions: Sequence[int],
    seed: int | None = 0,
    config: ToroidalDotConfig | None = None,
    start_ns: int = START_NS,
    step_ns: int = STEP_NS,
    drop_frames: Collection[int] = (),
    drop_actions: Collection[int] = (),
    record_losses: bool = True,
    namespace: str = '/toroidal_dot',
    ground_truth: bool = True,
    options: WriterOptions | None = None,
    software: str = SOFTWARE,
) -> list[np.ndarray]:
    """Run the toroidal dot world with ``actions`` and record it as a session.

    The first frame (and dot position) is stamped and received at ``start_ns``; action k
    (1-based) is stamped ``start_ns + k * step_ns``, its executed action, outcome frame and dot
    position received ``ACTION_DELAY_NS``, ``FRAME_DELAY_NS``, ``POSITION_DELAY_NS`` later.

    Args:
        path: the new session directory (``<root>/<robot>/<name>``; must not exist).
        actions: the executed actions (0 stay, 1 move right), in order.
        seed: the world's seed (start position), used when ``config`` is None.
        config: the dot world (size, radius, move, seed).
        start_ns, step_ns: stamp of the first frame and virtual time between actions.
        drop_frames: step numbers (1-based) whose outcome frame is left out (a lost frame).
        drop_actions: step numbers (1-based) whose executed action is left out.
        record_losses: write a ``recorder/messages_lost`` record at the next message after each
            left-out one, as the recorder does when DDS reports a loss; False: a loss nobody
            reported.
        namespace: the robot namespace the topics live under.
        ground_truth: also record the dot position (as the recorder does by default).
        options: the bag writer's options (splitting, compression).
        software: the custom_data software entry.
    Returns:
        every frame of the run (dropped ones included), uint8 [size, size, 3]; frame k shows the
        world after k actions.
    Raises:
        devbot.action_space.ActionError: an action that is not 0 or 1.
        devbot.bag.BagWriteError: the session cannot be written (e.g. it exists).
    """
    space = DOT_ACTION_SPACE
    actions = [space.check_index(a) for a in actions]
    env = ToroidalDotEnv(config or ToroidalDotConfig(seed=seed))
    ns = namespace.rstrip('/') + '/'
    custom = custom_data(space, software, namespace=ns.rstrip('/'), robot=Path(path).parent.name)
    dropped = {'frame': set(drop_frames), 'action': set(drop_actions)}
    frames = [env.frame()]
    with BagWriter(Path(path), custom, options) as bag:
        cam = bag.add_topic(TopicSpec(ns + topics.CAMERA_IMAGE, 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(TopicSpec(ns + topics.MOTOR_EXECUTED, 'sensor_msgs/msg/JointState'))
        lost_topic = ns + topics.RECORDER_MESSAGES_LOST
        lost_id = None
        last_kept = {'frame': start_ns, 'action': None}  # stamp of the last message written
        pending = {'frame': 0, 'action': 0}  # left out since then

        def write(kind: str, topic_id: int, receive_ns: int, stamp: int, data: bytes) -> None:
            nonlocal lost_id
            if pending[kind] and record_losses:
                if lost_id is None:
                    lost_id = bag.add_topic(
                        TopicSpec(lost_topic, 'diagnostic_msgs/msg/DiagnosticArray')
                    )
                name = ns + (topics.CAMERA_IMAGE if kind == 'frame' else topics.MOTOR_EXECUTED)
                after = last_kept[kind] if last_kept[kind] is not None else 0
                bag.write(
                    lost_id, receive_ns, messages_lost_cdr(name, pending[kind], after, receive_ns)
                )
            pending[kind] = 0
            last_kept[kind] = stamp
            bag.write(topic_id, receive_ns, data)

        pos = None
        if ground_truth:
            pos = bag.add_topic(
                TopicSpec(ns + topics.DOT_POSITION, 'geometry_msgs/msg/PointStamped')
            )
        bag.write(cam, start_ns, image_cdr(frames[0], start_ns))
        if pos is not None:
            bag.write(pos, start_ns, point_cdr(*env.position, start_ns))
        for k, a in enumerate(actions, start=1):
            stamp = start_ns + k * step_ns
            frames.append(env.step(a))
            if k in dropped['action']:
                pending['action'] += 1
            else:
                write('action', exe, stamp + ACTION_DELAY_NS, stamp, action_cdr(space, a, stamp))
            if k in dropped['frame']:
                pending['frame'] += 1
            else:
                write('frame', cam, stamp + FRAME_DELAY_NS, stamp, image_cdr(frames[-1], stamp))
            if pos is not None:
                bag.write(pos, stamp + POSITION_DELAY_NS, point_cdr(*env.position, stamp))
    return frames


__all__ = ['START_NS', 'STEP_NS', 'write_dot_session']
