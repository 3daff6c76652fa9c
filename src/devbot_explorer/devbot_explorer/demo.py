"""Generated data for the session explorer, the notebooks and the tests. ROS-free.

A notebook opened on a fresh checkout has no recorded session and no trained checkpoint; these
helpers write a small sessions tree with the robots' own session writers
(:func:`toroidal_sim.session.write_dot_session`, :func:`jetbot_driver.session.write_jetbot_session`:
real rosbag2 sessions from the simulated robots' cores, without DDS and without waiting) and a
briefly trained checkpoint::

    from devbot_explorer.demo import write_demo_checkpoint, write_demo_sessions
    infos = write_demo_sessions('/tmp/demo/sessions')
    write_demo_checkpoint('/tmp/demo/checkpoints/toroidal_dot', infos[0].path)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devbot.action_space import ActionSpace, ConfigError
from devbot.bag.session import SessionInfo, read_info

STEP_NS = 100_000_000  # virtual time between two actions of a generated dot session (0.1 s)
T0_NS = 1_767_225_600_000_000_000  # 2026-01-01 00:00:00 UTC: the first frame of a generated session
SOFTWARE = 'devbot devbot_explorer.demo (generated session)'


def random_actions(
    count: int, num_actions: int, seed: int = 0, p: Sequence[float] | None = None
) -> list[int]:
    """``count`` action indices drawn at random (uniformly, or with probabilities ``p``)."""
    if count < 0 or num_actions < 1:
        raise ValueError(f'need count >= 0 and num_actions >= 1, got {count}, {num_actions}')
    rng = np.random.default_rng(seed)
    return [int(a) for a in rng.choice(num_actions, size=count, p=p)]


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
    (random actions, more moves in the first) and JetBot sessions (0 = none).

    Returns:
        the sessions' metadata, dot sessions first.
    """
    from jetbot_driver.session import write_jetbot_session
    from toroidal_sim.session import write_dot_session

    root = Path(root)
    out = []
    for k in range(sessions_per_robot):
        p_move = 0.7 if k == 0 else 0.35
        acts = random_actions(dot_steps, 2, seed=seed + k, p=[1 - p_move, p_move])
        path = root / 'toroidal_dot' / f'demo-{k:02d}'
        start = T0_NS + k * 3_600_000_000_000
        write_dot_session(path, acts, seed + k, start_ns=start, step_ns=STEP_NS, software=SOFTWARE)
        out.append(read_info(path))
    if jetbot_steps > 0:
        space = robot_action_space('jetbot')
        for k in range(sessions_per_robot):
            acts = random_actions(jetbot_steps, space.num_actions, seed=seed + 100 + k)
            path = root / 'jetbot' / f'demo-{k:02d}'
            start = T0_NS + k * 3_600_000_000_000
            write_jetbot_session(path, acts, space, t0_ns=start, software=SOFTWARE)
            out.append(read_info(path))
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
    'STEP_NS',
    'T0_NS',
    'random_actions',
    'robot_action_space',
    'write_demo_checkpoint',
    'write_demo_sessions',
]
