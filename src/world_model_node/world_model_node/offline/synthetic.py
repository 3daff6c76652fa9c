"""Recorded-looking dot sessions without ROS: for tests, benchmarks and trying ``devbot train``.

A session is written the way the recorder lays one out (``<root>/<robot>/<session>/``, an MCAP
rosbag2 bag with the robot type and action space in its custom_data): the first frame, then for
every action the executed action and the frame showing its outcome, both with the same header
stamp (the simulator's convention, so they pair exactly by stamp).

Example:
    >>> from world_model_node.offline.synthetic import write_dot_session
    >>> write_dot_session('saved/sessions/toroidal_dot/demo-00', actions=[1, 0, 1, 1], seed=3)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: gap between two steps of a synthetic session (10 ms), and the receive delays after the stamp
STEP_NS = 10_000_000
ACTION_DELAY_NS = 1_000
FRAME_DELAY_NS = 2_000
START_NS = 1_700_000_000_000_000_000


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _header(ts, stamp_ns: int, frame_id: str):
    types = ts.types
    stamp = types['builtin_interfaces/msg/Time'](
        stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
    )
    return types['std_msgs/msg/Header'](stamp, frame_id)


def image_cdr(ts, frame: np.ndarray, stamp_ns: int) -> bytes:
    """A uint8 [H, W, 3] frame as a serialized rgb8 sensor_msgs/Image."""
    msg = ts.types['sensor_msgs/msg/Image'](
        _header(ts, stamp_ns, 'camera'),
        frame.shape[0],
        frame.shape[1],
        'rgb8',
        0,
        frame.shape[1] * 3,
        np.ascontiguousarray(frame).reshape(-1),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/Image'))


def action_cdr(ts, channels: Sequence[str], values: Sequence[float], stamp_ns: int) -> bytes:
    """An executed action as a serialized sensor_msgs/JointState (velocity/effort zero-filled)."""
    n = len(values)
    msg = ts.types['sensor_msgs/msg/JointState'](
        _header(ts, stamp_ns, ''),
        list(channels),
        np.asarray(values, np.float64),
        np.zeros(n),
        np.zeros(n),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def write_dot_session(
    path: str | Path,
    actions: Sequence[int],
    seed: int = 0,
    size: int = 224,
    dot_radius: int = 5,
    move_pixels: int = 27,
    start_ns: int = START_NS,
    drop_frames: Sequence[int] = (),
    namespace: str = '/toroidal_dot',
) -> list[np.ndarray]:
    """Run the toroidal dot world with ``actions`` and record it as a session.

    Args:
        path: the new session directory (must not exist).
        actions: the executed actions (0 stay, 1 move right), in order.
        seed, size, dot_radius, move_pixels: the dot world (``ToroidalDotConfig``).
        start_ns: stamp of the first frame.
        drop_frames: step numbers (1-based) whose outcome frame is left out of the bag (a lost frame).
        namespace: the robot namespace the topics live under.
    Returns:
        Every frame of the run (including dropped ones), uint8 [size, size, 3], frame k after k actions.
    """
    from devbot.bag.metadata import KEY_ACTION_SPACE, KEY_ROBOT_TYPE, KEY_SOFTWARE, TopicSpec
    from devbot.bag.writer import BagWriter
    from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

    ts = _typestore()
    env = ToroidalDotEnv(
        ToroidalDotConfig(size=size, dot_radius=dot_radius, move_pixels=move_pixels, seed=seed)
    )
    space = DOT_ACTION_SPACE
    custom = {
        KEY_ROBOT_TYPE: space.robot_type,
        KEY_ACTION_SPACE: json.dumps(space.to_dict()),
        KEY_SOFTWARE: 'devbot synthetic session',
    }
    frames = [env.frame()]
    ns = namespace.rstrip('/') + '/'
    dropped = set(drop_frames)
    with BagWriter(Path(path), custom) as bag:
        cam = bag.add_topic(TopicSpec(ns + 'camera/image_raw', 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(TopicSpec(ns + 'motor_command/executed', 'sensor_msgs/msg/JointState'))
        bag.write(cam, start_ns + FRAME_DELAY_NS, image_cdr(ts, frames[0], start_ns))
        for k, a in enumerate(actions, start=1):
            stamp = start_ns + k * STEP_NS
            frames.append(env.step(int(a)))
            bag.write(
                exe,
                stamp + ACTION_DELAY_NS,
                action_cdr(ts, space.channel_names, space.actions[int(a)], stamp),
            )
            if k not in dropped:
                bag.write(cam, stamp + FRAME_DELAY_NS, image_cdr(ts, frames[-1], stamp))
    return frames


def write_random_dot_sessions(
    robot_dir: str | Path,
    sessions: int,
    steps: int,
    seed: int = 0,
    names: Sequence[str] | None = None,
    **world: int,
) -> list[Path]:
    """Write ``sessions`` dot sessions of ``steps`` uniformly random actions each.

    Args:
        robot_dir: the robot's sessions folder (e.g. ``saved/sessions/toroidal_dot``).
        sessions, steps: how many sessions, and actions per session.
        seed: draws the actions; session i runs the world with seed ``1000 * seed + i``.
        names: the sessions' folder names (default: fresh time-stamped names).
        world: ``write_dot_session``'s ``size``, ``dot_radius``, ``move_pixels``.
    Returns:
        the session directories.
    """
    from devbot.bag.storage import unique_session_dir

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(sessions):
        path = unique_session_dir(Path(robot_dir), None if names is None else names[i])
        write_dot_session(path, rng.integers(0, 2, steps).tolist(), seed=1000 * seed + i, **world)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Write random-action dot sessions: ``python -m world_model_node.offline.synthetic --help``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog='python -m world_model_node.offline.synthetic',
        description='Write dot-world sessions with random actions (no ROS needed), '
        'e.g. to try `devbot train`.',
    )
    p.add_argument('--root', default='saved/sessions', help='sessions root [saved/sessions]')
    p.add_argument('--robot', default='toroidal_dot', help='sessions sub-folder [toroidal_dot]')
    p.add_argument('--sessions', type=int, default=1, help='how many sessions [1]')
    p.add_argument('--steps', type=int, default=500, help='actions per session [500]')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    for path in write_random_dot_sessions(
        Path(args.root) / args.robot, args.sessions, args.steps, args.seed
    ):
        print(f'{path}: {args.steps} transitions', file=sys.stdout)
    return 0


__all__ = ['write_dot_session', 'write_random_dot_sessions', 'image_cdr', 'action_cdr', 'main']


if __name__ == '__main__':
    raise SystemExit(main())
