"""Action tests of the robots, for the action-test notebooks. ROS-free.

Execute the discrete actions of a robot one by one and look at what they do: the frame before
and after, the difference, the pose (ground truth where the robot is simulated), trajectories,
the wrap-around of the dot world and the randomised resets.

* :class:`DotActionCheck` drives :class:`toroidal_sim.env.ToroidalDotEnv` directly.
* :class:`JetBotActionCheck` drives a JetBot over RPyC exactly as the driver does
  (:class:`jetbot_driver.motion.MotorController`: ramp, hold, ramp down, clamped to the limits).
  Without an address it starts the simulated JetBot server on loopback and talks to it over
  real RPyC; the simulated one also reports its pose and can be reset to a random pose.

Example:
    >>> check = DotActionCheck(seed=0)
    >>> step = check.act(1)              # ActionStep: before/after frames and positions
    >>> step.pose_after[0] - step.pose_before[0]   # 27 (mod 224)
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from devbot.action_space import ActionSpace


@dataclass(frozen=True)
class ActionStep:
    """One executed action.

    Attributes:
        action: its index in the action space. label: a short description.
        before, after: uint8 [H, W, 3] RGB frames before and after it.
        pose_before, pose_after: the robot's ground-truth pose ((x, y) of the dot; (x, y, heading)
            of the simulated JetBot), None where the robot cannot report it.
        seconds: wall time of the action (for the JetBot: ramp + hold + ramp down).
    """

    action: int
    label: str
    before: np.ndarray
    after: np.ndarray
    pose_before: tuple[float, ...] | None
    pose_after: tuple[float, ...] | None
    seconds: float

    @property
    def difference(self) -> np.ndarray:
        """|after - before| per pixel and channel, uint8 [H, W, 3]."""
        return np.abs(self.after.astype(np.int16) - self.before.astype(np.int16)).astype(np.uint8)

    @property
    def changed_pixels(self) -> int:
        """Pixels where any channel differs."""
        return int(np.any(self.before != self.after, axis=2).sum())


class _Check(ABC):
    """What both robots share: the action space, acting, sequences."""

    action_space: ActionSpace

    @abstractmethod
    def frame(self) -> np.ndarray:
        """The current camera frame, uint8 [H, W, 3]."""

    @abstractmethod
    def pose(self) -> tuple[float, ...] | None:
        """The robot's ground-truth pose, or None where there is none (a real JetBot)."""

    @abstractmethod
    def _execute(self, index: int) -> np.ndarray:
        """Execute action ``index``; returns the frame after it."""

    def labels(self) -> list[str]:
        space = self.action_space
        return [space.label(i, varying_only=True, indexed=True) for i in range(space.num_actions)]

    def act(self, index: int) -> ActionStep:
        """Execute one action; returns the frames and poses before and after it.

        Raises:
            ValueError: ``index`` is not an action of the space.
        """
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < self.action_space.num_actions
        ):
            raise ValueError(
                f'action must be an integer in [0, {self.action_space.num_actions}), got {index!r}'
            )
        before, pose_before = self.frame(), self.pose()
        t0 = time.perf_counter()
        after = self._execute(int(index))
        seconds = time.perf_counter() - t0
        return ActionStep(
            int(index),
            self.action_space.label(int(index), varying_only=True, indexed=True),
            before,
            after,
            pose_before,
            self.pose(),
            seconds,
        )

    def run(self, actions: Sequence[int]) -> list[ActionStep]:
        """Execute a sequence of actions in order."""
        return [self.act(a) for a in actions]


class DotActionCheck(_Check):
    """The toroidal dot world, stepped directly.

    Args:
        seed: the env's RNG seed (start and reset positions).
        config: a full :class:`toroidal_sim.env.ToroidalDotConfig` instead (its seed wins).
    """

    def __init__(self, seed: int | None = 0, config=None) -> None:
        from toroidal_sim.env import DOT_ACTION_SPACE, ToroidalDotConfig, ToroidalDotEnv

        self.config = config or ToroidalDotConfig(seed=seed)
        self.env = ToroidalDotEnv(self.config)
        self.action_space = DOT_ACTION_SPACE

    def frame(self) -> np.ndarray:
        return self.env.frame()

    def pose(self) -> tuple[int, int]:
        return self.env.position

    def _execute(self, index: int) -> np.ndarray:
        return self.env.step(index)

    def place(self, x: int, y: int) -> np.ndarray:
        """Put the dot at (x, y) (taken modulo the image size); returns the frame. For demos."""
        size = self.config.size
        self.env.x, self.env.y = int(x) % size, int(y) % size
        return self.env.frame()

    def reset(self) -> tuple[int, int]:
        """A random new position from the env's seeded RNG (the sim's reset service)."""
        self.env.reset()
        return self.env.position

    def reset_positions(self, count: int) -> np.ndarray:
        """``count`` successive resets: int [count, 2] positions (x, y)."""
        return np.array([self.reset() for _ in range(count)], dtype=np.int64).reshape(-1, 2)

    def moves_to_return(self) -> int:
        """Moves until the dot is back at its start: size / gcd(size, move)."""
        return self.config.size // math.gcd(self.config.size, self.config.move_pixels)


class JetBotActionCheck(_Check):
    """A JetBot over RPyC (or the simulated one on loopback when ``host`` is None).

    Args:
        host, port: the robot's RPyC service; ``host=None`` starts the simulated JetBot server
            in this process on 127.0.0.1 (a free port) and connects to it over real RPyC.
        action_space: the JetBot's (default: ``config/jetbot.yaml`` of this checkout).
        sim_config: the simulated robot's :class:`jetbot_driver.sim_world.SimConfig`.
        max_speed, max_duration: the driver's safety limits.
        connect_timeout: seconds to keep trying to connect.

    Use as a context manager (or call :meth:`close`): the motors are stopped and the simulated
    server shut down at the end.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = 18861,
        action_space: ActionSpace | None = None,
        sim_config=None,
        max_speed: float = 1.0,
        max_duration: float = 5.0,
        connect_timeout: float = 10.0,
    ) -> None:
        from devbot_explorer.demo import robot_action_space
        from jetbot_driver.motion import MotionLimits

        self.action_space = action_space or robot_action_space('jetbot')
        missing = {'motor_left', 'motor_right', 'duration'} - set(self.action_space.channel_names)
        if missing:
            raise ValueError(
                f'a JetBot action space needs the channels motor_left, motor_right, duration; '
                f'missing {sorted(missing)}'
            )
        self.limits = MotionLimits(max_speed, max_duration)
        self.simulated = host is None
        self._connect_timeout = connect_timeout
        self.server = None
        self.client = None
        self.controller = None
        self._connect(host, port, sim_config)

    def _connect(self, host: str | None, port: int, sim_config) -> None:
        from jetbot_driver.client import JetBotClient
        from jetbot_driver.motion import MotorController

        if host is None:
            from jetbot_driver.sim_server import SimServer

            self.server = SimServer('127.0.0.1', 0, sim_config).start_in_thread()
            host, port = '127.0.0.1', self.server.port
        self.address = f'{host}:{port}'
        self.client = JetBotClient.connect(host, port, connect_timeout=self._connect_timeout)
        self.controller = MotorController(self.client.set_motors, self.limits)

    def frame(self) -> np.ndarray:
        """The current camera frame, uint8 [224, 224, 3] RGB.

        Raises:
            RuntimeError: the robot has no camera frame.
        """
        frame = self.client.get_frame()
        if frame is None:
            raise RuntimeError(f'the JetBot at {self.address} sent no camera frame')
        return frame

    def pose(self) -> tuple[float, float, float] | None:
        """(x m, y m, heading rad) of the simulated robot; None for a real one."""
        if not self.simulated:
            return None
        return tuple(float(v) for v in self.client.call_extra('get_pose'))

    def _execute(self, index: int) -> np.ndarray:
        v = self.action_space.values(index)
        self.controller.execute(v['motor_left'], v['motor_right'], v['duration'])
        return self.frame()

    def reset(
        self, seed: int | None = None, room_margin: float = 0.3
    ) -> tuple[float, float, float]:
        """Simulated robot only: restart it at a random pose (x, y in the room, any heading).

        Raises:
            RuntimeError: a real JetBot cannot be put somewhere else by software.
        """
        if not self.simulated:
            raise RuntimeError('a real JetBot cannot be reset to a random pose; move it by hand')
        from jetbot_driver.sim_world import SimConfig

        rng = np.random.default_rng(seed)
        old = self.server.hardware.world.config
        half = old.room_size / 2 - room_margin
        config = SimConfig(
            **{
                **old.__dict__,
                'x': float(rng.uniform(-half, half)),
                'y': float(rng.uniform(-half, half)),
                'heading': float(rng.uniform(-math.pi, math.pi)),
            }
        )
        self._shutdown()
        self._connect(None, 0, config)
        return self.pose()

    def _shutdown(self) -> None:
        if self.controller is not None and not self.client.closed:
            self.controller.emergency_stop()
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.close()
            self.server = None

    def close(self) -> None:
        """Stop the motors, disconnect, stop the simulated server."""
        self._shutdown()

    def __enter__(self) -> 'JetBotActionCheck':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# figures (matplotlib; the caller shows or saves them)
# ---------------------------------------------------------------------------------------------


def step_figure(step: ActionStep, title: str | None = None):
    """Before | after | difference (amplified so that small changes show) of one action."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    diff = step.difference.max(axis=2)
    panels = [
        (step.before, f'before {_pose_text(step.pose_before)}'),
        (step.after, f'after {_pose_text(step.pose_after)}'),
        (diff, f'|difference|: {step.changed_pixels} px changed'),
    ]
    for ax, (img, text) in zip(axes, panels):
        ax.imshow(
            img,
            cmap='magma' if img.ndim == 2 else None,
            vmin=0,
            vmax=max(1, int(img.max())) if img.ndim == 2 else None,
        )
        ax.set_title(text, fontsize=8)
        ax.axis('off')
    fig.suptitle(title or f'action {step.label} ({step.seconds * 1000:.0f} ms)', fontsize=10)
    fig.tight_layout()
    return fig


def _pose_text(pose) -> str:
    if pose is None:
        return ''
    if len(pose) == 2:
        return f'({pose[0]}, {pose[1]})'
    return f'({pose[0]:.2f} m, {pose[1]:.2f} m, {math.degrees(pose[2]):.0f} deg)'


def frames_figure(
    images: Sequence[np.ndarray], titles: Sequence[str], columns: int = 8, title: str = ''
):
    """A grid of frames with a title each."""
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError('frames_figure needs at least one image')
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis('off')
        if k < n:
            ax.imshow(images[k])
            ax.set_title(titles[k], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def dot_trajectory_figure(steps: Sequence[ActionStep], size: int = 224):
    """The dot's path over a sequence.

    Positions on the torus (a wrap breaks the line) and x per step.
    """
    import matplotlib.pyplot as plt

    if not steps:
        raise ValueError('dot_trajectory_figure needs at least one step')
    pos = np.array([steps[0].pose_before] + [s.pose_after for s in steps], dtype=float)  # [N+1, 2]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4))
    jumps = np.abs(np.diff(pos, axis=0)).max(axis=1) > size / 2
    path = pos.copy()
    path_x, path_y = [], []
    for k in range(len(path)):
        if k > 0 and jumps[k - 1]:
            path_x.append(np.nan)
            path_y.append(np.nan)
        path_x.append(path[k, 0])
        path_y.append(path[k, 1])
    ax0.plot(path_x, path_y, '-', color='0.6', lw=1)
    ax0.scatter(pos[:, 0], pos[:, 1], c=np.arange(len(pos)), cmap='viridis', s=18, zorder=3)
    ax0.scatter(
        pos[:1, 0], pos[:1, 1], marker='s', s=60, facecolor='none', edgecolor='k', label='start'
    )
    ax0.set_xlim(0, size)
    ax0.set_ylim(size, 0)
    ax0.set_aspect('equal')
    ax0.set_xlabel('x (px)')
    ax0.set_ylabel('y (px)')
    ax0.legend(loc='upper right', fontsize=8)
    ax0.set_title('dot centre on the torus (line breaks at a wrap)', fontsize=9)
    ax1.step(np.arange(len(pos)), pos[:, 0], where='post', label='x')
    ax1.step(np.arange(len(pos)), pos[:, 1], where='post', label='y')
    for k, s in enumerate(steps):
        ax1.annotate(str(s.action), (k + 0.5, pos[k + 1, 0]), fontsize=6, ha='center', va='bottom')
    ax1.set_xlabel('step (label: action)')
    ax1.set_ylabel('px')
    ax1.set_ylim(0, size)
    ax1.legend(fontsize=8)
    ax1.set_title('position per step', fontsize=9)
    fig.tight_layout()
    return fig


def jetbot_trajectory_figure(steps: Sequence[ActionStep], room_size: float = 2.0):
    """The simulated JetBot's path in its room (arrows: heading).

    Also its heading per step (unwrapped).
    """
    import matplotlib.pyplot as plt

    if not steps or steps[0].pose_before is None:
        raise ValueError('jetbot_trajectory_figure needs steps with poses (the simulated JetBot)')
    pose = np.array([steps[0].pose_before] + [s.pose_after for s in steps], dtype=float)  # [N+1, 3]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4))
    half = room_size / 2
    ax0.plot([-half, half, half, -half, -half], [-half, -half, half, half, -half], 'k-', lw=1)
    ax0.plot(pose[:, 0], pose[:, 1], '.-', color='tab:blue')
    arrow = max(room_size / 200, float(np.ptp(pose[:, :2], axis=0).max()) / 8, 0.01)
    ax0.quiver(
        pose[:, 0],
        pose[:, 1],
        arrow * np.cos(pose[:, 2]),
        arrow * np.sin(pose[:, 2]),
        np.arange(len(pose)),
        cmap='viridis',
        angles='xy',
        scale_units='xy',
        scale=1,
        width=0.006,
    )
    ax0.set_aspect('equal')
    # the room, or the part of it around the path (padded) when the path is small
    pad = max(room_size / 10, float(np.ptp(pose[:, :2], axis=0).max()) / 2)
    lo, hi = (
        np.maximum(pose[:, :2].min(axis=0) - pad, -half * 1.05),
        np.minimum(pose[:, :2].max(axis=0) + pad, half * 1.05),
    )
    ax0.set_xlim(lo[0], hi[0])
    ax0.set_ylim(lo[1], hi[1])
    ax0.set_xlabel('x (m)')
    ax0.set_ylabel('y (m)')
    ax0.set_title('pose in the room (arrows: heading)', fontsize=9)
    heading = np.degrees(np.unwrap(pose[:, 2]))
    ax1.plot(np.arange(len(pose)), heading, '.-')
    ax1.set_xlabel('step')
    ax1.set_ylabel('heading (deg, unwrapped)')
    ax1.set_title('heading per step', fontsize=9)
    fig.tight_layout()
    return fig


def reset_figure(positions: np.ndarray, size: int = 224, bins: int = 8):
    """Reset randomisation: where the resets put the dot, and how evenly over the image."""
    import matplotlib.pyplot as plt

    positions = np.asarray(positions)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4))
    ax0.scatter(positions[:, 0], positions[:, 1], s=6)
    ax0.set_xlim(0, size)
    ax0.set_ylim(size, 0)
    ax0.set_aspect('equal')
    ax0.set_title(f'{len(positions)} reset positions', fontsize=9)
    hist, _, _ = np.histogram2d(
        positions[:, 1], positions[:, 0], bins=bins, range=[[0, size], [0, size]]
    )
    im = ax1.imshow(hist, cmap='viridis', extent=(0, size, size, 0))
    fig.colorbar(im, ax=ax1, fraction=0.046)
    ax1.set_title(
        f'counts per {size // bins} px cell (uniform: {len(positions) / bins**2:.1f})', fontsize=9
    )
    fig.tight_layout()
    return fig


def uniformity(positions: np.ndarray, size: int = 224, bins: int = 4) -> dict[str, float]:
    """Chi-square test of reset positions against a uniform distribution over ``bins x bins`` cells.

    Returns {'chi2', 'dof', 'p_value', 'unique_fraction'} (p_value from the chi-square survival
    function; a uniform RNG gives p well above 0.001).
    """
    positions = np.asarray(positions)
    hist, _, _ = np.histogram2d(
        positions[:, 0], positions[:, 1], bins=bins, range=[[0, size], [0, size]]
    )
    expected = len(positions) / bins**2
    chi2 = float(((hist - expected) ** 2 / expected).sum())
    dof = bins * bins - 1
    p = _chi2_sf(chi2, dof)
    unique = len({tuple(p_) for p_ in positions.tolist()}) / max(1, len(positions))
    return {'chi2': chi2, 'dof': float(dof), 'p_value': p, 'unique_fraction': unique}


def _chi2_sf(x: float, k: int) -> float:
    """P(X > x) for X ~ chi-square with k degrees of freedom.

    Computed as the regularised upper gamma function (series or continued fraction).
    """
    a, z = k / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:  # lower series, then complement
        term = total = 1.0 / a
        n = a
        for _ in range(500):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-12:
                break
        return max(0.0, 1.0 - math.exp(log_prefix) * total)
    # continued fraction for the upper incomplete gamma (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return min(1.0, math.exp(log_prefix) * h)


__all__ = [
    'ActionStep',
    'DotActionCheck',
    'JetBotActionCheck',
    'step_figure',
    'frames_figure',
    'dot_trajectory_figure',
    'jetbot_trajectory_figure',
    'reset_figure',
    'uniformity',
]
