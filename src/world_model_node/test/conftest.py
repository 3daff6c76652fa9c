"""Fixtures of the world_model_node unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from world_model_node.offline.synthetic import write_random_dot_sessions


def _small_dot_sessions(root: Path, n: int = 2, steps: int = 60, seed: int = 0) -> list[Path]:
    return write_random_dot_sessions(
        root / 'sessions' / 'toroidal_dot',
        n,
        steps,
        seed,
        [f's{i}' for i in range(n)],
        size=32,
        dot_radius=2,
        move_pixels=5,
    )


@pytest.fixture
def dot_sessions() -> Callable[..., list[Path]]:
    """Writes ``n`` sessions ``s0 .. s{n-1}`` of ``steps`` random actions in a 32 px dot world.

    Call it as ``dot_sessions(root, n=2, steps=60, seed=0)``: the sessions go to
    ``root/sessions/toroidal_dot``; it returns their folders.
    """
    return _small_dot_sessions
