"""Random-action dot sessions without ROS: for trying ``devbot train``, benchmarks and tests.

Each session is written by :func:`toroidal_sim.session.write_dot_session` (laid out as the
recorder lays one out: ``<root>/<robot>/<session>/``, the robot type and action space in its
custom_data).

Example:
    >>> from world_model_node.offline.synthetic import write_random_dot_sessions
    >>> write_random_dot_sessions('saved/sessions/toroidal_dot', sessions=2, steps=500)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
        world: the dot world's ``size``, ``dot_radius``, ``move_pixels``
            (:class:`toroidal_sim.env.ToroidalDotConfig`).
    Returns:
        the session directories.
    """
    from devbot.bag.storage import unique_session_dir
    from toroidal_sim.env import ToroidalDotConfig
    from toroidal_sim.session import write_dot_session

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(sessions):
        path = unique_session_dir(Path(robot_dir), None if names is None else names[i])
        config = ToroidalDotConfig(seed=1000 * seed + i, **world)
        write_dot_session(path, rng.integers(0, 2, steps).tolist(), config=config)
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


__all__ = ['write_random_dot_sessions', 'main']


if __name__ == '__main__':
    raise SystemExit(main())
