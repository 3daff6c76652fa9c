"""Generated sessions for the session explorer, the notebooks and the tests. ROS-free.

A notebook opened on a fresh checkout has no recorded session and no trained checkpoint; these
helpers write real rosbag2 sessions (the same layout, topics and metadata the recorder writes)
from the simulated robots' cores, without DDS and without waiting in real time::

    from devbot_explorer.demo import write_dot_session, write_jetbot_session, random_actions
    write_dot_session('/tmp/s/toroidal_dot/demo', random_actions(60, 2, seed=1), seed=1)
    write_jetbot_session('/tmp/s/jetbot/demo', random_actions(20, 2, seed=2))

* the dot: :class:`toroidal_sim.env.ToroidalDotEnv`; camera, executed action and ground-truth
  position, the executed action and its outcome frame sharing a stamp (as the sim does);
* the JetBot: :class:`jetbot_driver.sim_world.SimWorld` driven on a virtual clock with exactly the
  motor schedule of :class:`jetbot_driver.motion.MotorController` (ramp, hold, ramp down); frames
  are stored losslessly (a real robot's frames went through its camera's JPEG).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devbot.action_space import ActionSpace, ConfigError
from devbot.bag.metadata import (
    KEY_ACTION_SPACE,
    KEY_NAMESPACE,
    KEY_ROBOT,
    KEY_ROBOT_TYPE,
    KEY_SOFTWARE,
    TopicSpec,
)
from devbot.bag.session import SessionInfo, read_info
from devbot.bag.writer import BagWriter

STEP_NS = 100_000_000  # virtual time between two actions of a generated session (0.1 s)
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC: the first frame of a generated session
SOFTWARE = 'devbot devbot_explorer.demo (generated session)'

_TYPESTORE = None


def _types():
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def _header(ns: int, frame_id: str = ''):
    t = _types().types
    return t['std_msgs/msg/Header'](
        t['builtin_interfaces/msg/Time'](ns // 1_000_000_000, ns % 1_000_000_000), frame_id
    )


def image_cdr(frame: np.ndarray, stamp_ns: int) -> bytes:
    """A sensor_msgs/Image (rgb8) of ``frame`` [H, W, 3] uint8, serialized CDR."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'frame must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}')
    ts = _types()
    msg = ts.types['sensor_msgs/msg/Image'](
        _header(stamp_ns, 'camera'),
        frame.shape[0],
        frame.shape[1],
        'rgb8',
        0,
        frame.shape[1] * 3,
        np.ascontiguousarray(frame).reshape(-1),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/Image'))


def action_cdr(space: ActionSpace, index: int, stamp_ns: int) -> bytes:
    """A sensor_msgs/JointState naming discrete action ``index`` of ``space``, serialized CDR."""
    ts = _types()
    values = space.values(index)
    n = len(values)
    msg = ts.types['sensor_msgs/msg/JointState'](
        _header(stamp_ns),
        list(values),
        np.array([float(v) for v in values.values()]),
        np.zeros(n),
        np.zeros(n),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def point_cdr(x: float, y: float, stamp_ns: int) -> bytes:
    """A geometry_msgs/PointStamped (x, y, 0), serialized CDR."""
    ts = _types()
    t = ts.types
    msg = t['geometry_msgs/msg/PointStamped'](
        _header(stamp_ns, 'image'), t['geometry_msgs/msg/Point'](float(x), float(y), 0.0)
    )
    return bytes(ts.serialize_cdr(msg, 'geometry_msgs/msg/PointStamped'))


def custom_data(space: ActionSpace, namespace: str, robot: str) -> dict[str, str]:
    """The bag custom_data the recorder writes: robot type, action space, software, namespace."""
    return {
        KEY_ROBOT_TYPE: space.robot_type,
        KEY_ACTION_SPACE: json.dumps(space.to_dict()),
        KEY_SOFTWARE: SOFTWARE,
        KEY_NAMESPACE: namespace,
        KEY_ROBOT: robot,
    }


def random_actions(
    count: int, num_actions: int, seed: int = 0, p: Sequence[float] | None = None
) -> list[int]:
    """``count`` action indices drawn at random (uniformly, or with probabilities ``p``)."""
    if count < 0 or num_actions < 1:
        raise ValueError(f'need count >= 0 and num_actions >= 1, got {count}, {num_actions}')
    rng = np.random.default_rng(seed)
    return [int(a) for a in rng.choice(num_actions, size=count, p=p)]


def _check_actions(actions: Sequence[int], space: ActionSpace) -> list[int]:
    out = []
    for a in actions:
        if (
            isinstance(a, bool)
            or not isinstance(a, (int, np.integer))
            or not 0 <= a < space.num_actions
        ):
            raise ValueError(f'actions must be integers in [0, {space.num_actions}), got {a!r}')
        out.append(int(a))
    return out


def write_dot_session(
    path: str | Path,
    actions: Sequence[int],
    seed: int = 0,
    config=None,
    t0_ns: int = T0_NS,
    step_ns: int = STEP_NS,
) -> SessionInfo:
    """Record a toroidal-dot session: first frame, then per action its executed message, the
    outcome frame and the ground-truth position (all with the same stamp).

    Args:
        path: the new bag directory (``<root>/toroidal_dot/<name>``); must not exist.
        actions: the action indices (0 stay, 1 move right) in order.
        seed: the env's seed (start position).
        config: a :class:`toroidal_sim.env.ToroidalDotConfig` (its seed wins over ``seed``).
        t0_ns, step_ns: stamp of the first frame and virtual time between actions.
    Returns:
        the session's metadata.
    """
    from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

    actions = _check_actions(actions, DOT_ACTION_SPACE)
    env = ToroidalDotEnv(config or ToroidalDotConfig(seed=seed))
    ns = '/toroidal_dot/'
    with BagWriter(path, custom_data(DOT_ACTION_SPACE, ns.rstrip('/'), 'toroidal_dot')) as bag:
        img = bag.add_topic(TopicSpec(ns + 'camera/image_raw', 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(TopicSpec(ns + 'motor_command/executed', 'sensor_msgs/msg/JointState'))
        pos = bag.add_topic(
            TopicSpec(ns + 'ground_truth/dot_position', 'geometry_msgs/msg/PointStamped')
        )
        bag.write(img, t0_ns, image_cdr(env.frame(), t0_ns))
        bag.write(pos, t0_ns, point_cdr(*env.position, t0_ns))
        for k, a in enumerate(actions, start=1):
            stamp = t0_ns + k * step_ns
            frame = env.step(a)
            bag.write(exe, stamp + 1_000, action_cdr(DOT_ACTION_SPACE, a, stamp))
            bag.write(img, stamp + 2_000, image_cdr(frame, stamp))
            bag.write(pos, stamp + 3_000, point_cdr(*env.position, stamp))
    return read_info(path)


def motor_schedule(
    start_s: float, left: float, right: float, duration: float
) -> list[tuple[float, float, float]]:
    """(time, left, right) of every motor command of one action, as MotorController sends them:
    ramp up in RAMP_STEPS steps RAMP_INTERVAL_S apart, the first ramp-down command at
    ``start + max(duration, RAMP_TIME_S)``, ramp down the same way (last command 0, 0)."""
    from jetbot_driver.motion import RAMP_INTERVAL_S, RAMP_TIME_S, ramp

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
    space: ActionSpace | None = None,
    sim_config=None,
    t0_ns: int = T0_NS,
    step_ns: int = 500_000_000,
) -> SessionInfo:
    """Record a simulated JetBot session (no server, no real time): the virtual robot executes each
    action with the driver's motor schedule; the frame after it carries the action's stamp.

    Args:
        path: the new bag directory (``<root>/jetbot/<name>``); must not exist.
        actions: action indices of ``space``.
        space: the JetBot action space (default: ``config/jetbot.yaml`` of this checkout).
        sim_config: a :class:`jetbot_driver.sim_world.SimConfig` (start pose, image size).
        t0_ns, step_ns: stamp of the first frame and time from one action's start to the next's
            (must exceed the longest action).
    """
    from jetbot_driver.sim_world import SimConfig, SimWorld

    space = space or robot_action_space('jetbot')
    names = space.channel_names
    if not {'motor_left', 'motor_right', 'duration'} <= set(names):
        raise ConfigError(
            f'a JetBot action space needs motor_left, motor_right and duration, got {names}'
        )
    actions = _check_actions(actions, space)
    world = SimWorld(sim_config or SimConfig(), t0=t0_ns / 1e9)
    ns = '/jetbot/'
    with BagWriter(path, custom_data(space, ns.rstrip('/'), 'jetbot')) as bag:
        img = bag.add_topic(TopicSpec(ns + 'camera/image_raw', 'sensor_msgs/msg/Image'))
        exe = bag.add_topic(TopicSpec(ns + 'motor_command/executed', 'sensor_msgs/msg/JointState'))
        bag.write(
            img,
            t0_ns,
            image_cdr(np.ascontiguousarray(world.render(t0_ns / 1e9)[:, :, ::-1]), t0_ns),
        )
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
            frame = np.ascontiguousarray(world.render(done_ns / 1e9)[:, :, ::-1])  # BGR -> RGB
            bag.write(exe, done_ns + 1_000, action_cdr(space, a, done_ns))
            bag.write(img, done_ns + 2_000, image_cdr(frame, done_ns))
            start += step_ns
    return read_info(path)


def robot_action_space(robot_type: str, search_from: str | Path | None = None) -> ActionSpace:
    """The action space of ``config/<robot_type>.yaml`` of this checkout.

    Looked up in ``search_from`` (default: the working directory) and its parents, then next to
    this package's source tree.

    Raises:
        ConfigError: no such robot file was found.
    """
    if robot_type == 'toroidal_dot':
        from toroidal_sim.env import DOT_ACTION_SPACE

        return DOT_ACTION_SPACE
    starts = [Path(search_from or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / 'config' / f'{robot_type}.yaml'
            if candidate.is_file():
                return ActionSpace.from_yaml(candidate)
    raise ConfigError(
        f'no config/{robot_type}.yaml found in {starts[0]} or its parents, nor near the installed '
        f'package; pass the action space explicitly'
    )


def write_demo_sessions(
    root: str | Path,
    dot_steps: int = 60,
    jetbot_steps: int = 12,
    seed: int = 0,
    sessions_per_robot: int = 2,
) -> list[SessionInfo]:
    """A small sessions tree ``<root>/<robot>/<session>``: ``sessions_per_robot`` dot sessions
    (random actions, more moves in the first) and JetBot sessions (0 = none). Returns their metadata."""
    root = Path(root)
    out = []
    for k in range(sessions_per_robot):
        p_move = 0.7 if k == 0 else 0.35
        acts = random_actions(dot_steps, 2, seed=seed + k, p=[1 - p_move, p_move])
        out.append(
            write_dot_session(
                root / 'toroidal_dot' / f'demo-{k:02d}',
                acts,
                seed=seed + k,
                t0_ns=T0_NS + k * 3_600_000_000_000,
            )
        )
    if jetbot_steps > 0:
        space = robot_action_space('jetbot')
        for k in range(sessions_per_robot):
            acts = random_actions(jetbot_steps, space.num_actions, seed=seed + 100 + k)
            out.append(
                write_jetbot_session(
                    root / 'jetbot' / f'demo-{k:02d}',
                    acts,
                    space,
                    t0_ns=T0_NS + k * 3_600_000_000_000,
                )
            )
    return out


def write_demo_checkpoint(
    directory: str | Path,
    session: str | Path,
    config=None,
    autoencoder_steps: int = 30,
    predictor_steps: int = 20,
    max_frames: int = 200,
) -> int:
    """Train a small world model briefly on a session's frames and save it in the checkpoint format.

    For notebooks and tests that need *a* checkpoint (not a good one): the model is
    ``WorldModelConfig.tiny()`` unless ``config`` is given, trained with the session explorer's
    workbench for a fixed number of autoencoder and predictor steps.

    Args:
        directory: the new checkpoint directory (must not hold a checkpoint yet).
        session: the session to train on (its action space is the model's).
        config: a ``WorldModelConfig``.
        autoencoder_steps, predictor_steps: optimizer steps of each.
        max_frames: use at most this many frames from the session's start.
    Returns:
        the checkpoint generation written.
    """
    from devbot.bag.session import Session
    from world_model_node.config import WorldModelConfig

    from .workbench import ModelWorkbench

    with Session(session) as s:
        space = s.action_space
        n = min(s.num_frames, max_frames)
        frames = np.stack([f.image for f in s.frames(0, n)])
        actions = np.full(n, -1, np.int64)
        for t in s.transition_list():
            if t.next_frame_index < n and t.next_frame_index == t.frame_index + 1:
                actions[t.frame_index] = t.action
    wb = ModelWorkbench.fresh(config or WorldModelConfig.tiny(), space.normalized())
    if autoencoder_steps:
        wb.train_autoencoder(frames, steps=autoencoder_steps)
    if predictor_steps and (actions >= 0).any():
        wb.train_predictor(frames, actions, steps=predictor_steps)
    return wb.save(directory)


__all__ = [
    'write_dot_session',
    'write_demo_checkpoint',
    'write_jetbot_session',
    'write_demo_sessions',
    'random_actions',
    'motor_schedule',
    'robot_action_space',
    'image_cdr',
    'action_cdr',
    'point_cdr',
    'custom_data',
]
