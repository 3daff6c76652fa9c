"""The toroidal dot world, ROS-free.

A black ``size x size`` RGB image with one white filled disc. Action 0 keeps the disc where it
is; action 1 moves it ``move_pixels`` to the right. Both axes wrap (drawing and motion), so the
world is a torus. Used by the simulator node, the world-model benchmarks and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STAY = 0
MOVE_RIGHT = 1
NUM_ACTIONS = 2


@dataclass(frozen=True)
class ToroidalDotConfig:
    size: int = 224  # image width and height in pixels
    dot_radius: int = 5  # disc radius; r=5 paints 81 pixels
    move_pixels: int = 27  # x displacement of action 1
    seed: int | None = None  # RNG seed for start/reset positions (None: OS entropy)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f'size must be >= 1, got {self.size}')
        if self.dot_radius < 0:
            raise ValueError(f'dot_radius must be >= 0, got {self.dot_radius}')
        if 2 * self.dot_radius + 1 > self.size:
            raise ValueError(
                f'dot diameter {2 * self.dot_radius + 1} exceeds image size {self.size}'
            )


def disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets (dy, dx) with dx^2 + dy^2 <= radius^2, row-major."""
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing='ij')
    inside = dx * dx + dy * dy <= radius * radius
    return dy[inside], dx[inside]


class ToroidalDotEnv:
    """The dot world. ``frame()`` renders the current state as a uint8 [size, size, 3] array.

    Example:
        >>> env = ToroidalDotEnv(ToroidalDotConfig(seed=0))
        >>> frame = env.step(MOVE_RIGHT)   # [224, 224, 3] uint8
    """

    def __init__(self, config: ToroidalDotConfig | None = None) -> None:
        self.config = config or ToroidalDotConfig()
        self._rng = np.random.default_rng(self.config.seed)
        self._dy, self._dx = disc_offsets(self.config.dot_radius)
        self.x = 0
        self.y = 0
        self.reset()

    @property
    def position(self) -> tuple[int, int]:
        """Integer centre (x, y) of the disc."""
        return self.x, self.y

    def reset(self) -> np.ndarray:
        """Put the disc at a uniformly random integer position; return the new frame."""
        size = self.config.size
        self.x = int(self._rng.integers(0, size))
        self.y = int(self._rng.integers(0, size))
        return self.frame()

    def step(self, action: int) -> np.ndarray:
        """Execute one discrete action (0 stay, 1 move right); return the new frame.

        Raises:
            ValueError: for anything but the integers 0 and 1 (the node turns this into a
                logged rejection; it is never silently treated as "stay").
        """
        if isinstance(action, bool) or not isinstance(action, (int, np.integer)):
            raise ValueError(f'action must be the integer 0 or 1, got {action!r}')
        if action == MOVE_RIGHT:
            self.x = (self.x + self.config.move_pixels) % self.config.size
        elif action != STAY:
            raise ValueError(f'unknown action {action!r}: expected 0 (stay) or 1 (move right)')
        return self.frame()

    def frame(self) -> np.ndarray:
        """Render: black [size, size, 3] uint8 with a white disc, wrapped on both axes."""
        size = self.config.size
        img = np.zeros((size, size, 3), dtype=np.uint8)
        img[(self.y + self._dy) % size, (self.x + self._dx) % size] = 255
        return img


def random_run(config: ToroidalDotConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A run of uniformly random stay/move actions from the world's start position.

    Args:
        config: the world; its ``seed`` seeds both the start position and the actions.
        n: how many frames (>= 1).
    Returns:
        frames uint8 [n, size, size, 3] and the n-1 actions int64 [n-1] between them.
    """
    env = ToroidalDotEnv(config)
    rng = np.random.default_rng(config.seed)
    frames, actions = [env.frame()], []
    for _ in range(n - 1):
        a = int(rng.integers(NUM_ACTIONS))
        actions.append(a)
        frames.append(env.step(a))
    return np.stack(frames), np.array(actions, dtype=np.int64)


def _dot_action_space():
    from devbot.action_space import ActionSpace

    return ActionSpace.from_dict(
        {
            'channels': [{'name': 'action', 'min': 0.0, 'max': 1.0}],
            'actions': [{'action': float(STAY)}, {'action': float(MOVE_RIGHT)}],
        },
        robot_type='toroidal_dot',
    )


# The dot's action space as config/toroidal_dot.yaml declares it (a test keeps them equal).
DOT_ACTION_SPACE = _dot_action_space()
