"""A virtual JetBot in a room, for the simulated server. ROS-free, numpy only.

The robot is a differential drive (two wheels ``wheel_separation`` apart; a motor value of 1
drives its wheel at ``max_wheel_speed`` m/s) in a square room whose four walls have different
colours, each carrying three coloured landmark panels and thin tile lines. Its camera renders
the room by casting one ray per image column (a pinhole camera with ``fov_deg`` horizontal field
of view), so turning shifts the view sideways and driving makes walls grow or shrink: a world
model has real, learnable dynamics. Wheel speeds are integrated exactly (constant speeds
between motor commands give an arc), and the robot stops at the walls.

With the original system's JetBot actions (right motor 0.12 for 0.2 s, ramped) the robot turns
left by about 8 degrees per action, some 30 pixels of a 224-wide view.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

# BGR colours of the walls at x = +half, y = +half, x = -half, y = -half
WALL_COLOURS = np.array(
    [[60, 60, 200], [60, 170, 60], [200, 90, 40], [40, 190, 210]], dtype=np.float32
)
# three landmark panels per wall: (start, end) along the wall as fractions, and their colours
PANELS = ((0.12, 0.28), (0.42, 0.55), (0.70, 0.90))
PANEL_COLOURS = np.array(
    [
        [[255, 255, 255], [20, 20, 20], [200, 0, 200]],
        [[0, 0, 0], [0, 140, 255], [255, 255, 0]],
        [[255, 255, 255], [0, 0, 160], [90, 90, 90]],
        [[120, 0, 120], [255, 255, 255], [0, 90, 0]],
    ],
    dtype=np.float32,
)
CEILING = np.array([70, 70, 70], dtype=np.float32)
FLOOR_NEAR = np.array([60, 105, 140], dtype=np.float32)
FLOOR_FAR = np.array([35, 60, 80], dtype=np.float32)


@dataclass(frozen=True)
class SimConfig:
    width: int = 224  # rendered image width (pixels)
    height: int = 224  # rendered image height (pixels)
    room_size: float = 2.0  # side of the square room (m)
    wall_height: float = 0.5  # (m); the camera is at half of it
    fov_deg: float = 60.0  # horizontal field of view
    wheel_separation: float = 0.12  # (m)
    max_wheel_speed: float = 0.6  # wheel speed at motor value 1 (m/s)
    margin: float = 0.08  # closest approach to a wall (m)
    x: float = 0.0  # start pose: position (m, room centre = 0) and heading (rad)
    y: float = 0.0
    heading: float = 0.0

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f'image must be at least 8x8, got {self.width}x{self.height}')
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ValueError(f'fov_deg must be in [1, 170], got {self.fov_deg}')
        for name in ('room_size', 'wall_height', 'wheel_separation', 'max_wheel_speed'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{name} must be > 0')
        if not 0 <= self.margin < self.room_size / 2:
            raise ValueError('margin must be in [0, room_size / 2)')


class SimWorld:
    """Pose integration and rendering. Thread-safe; times are seconds on any monotonic clock."""

    def __init__(self, config: SimConfig = SimConfig(), t0: float = 0.0) -> None:
        self.config = config
        self._x, self._y, self._heading = float(config.x), float(config.y), float(config.heading)
        self._left = self._right = 0.0
        self._t = float(t0)
        self._lock = threading.Lock()
        half_w = config.width / 2.0
        focal = half_w / math.tan(math.radians(config.fov_deg) / 2.0)
        # per column: angle of its ray relative to the heading
        self._col_angles = np.arctan((np.arange(config.width) + 0.5 - half_w) / focal)
        # image x grows to the right = clockwise; world angles grow anticlockwise
        self._col_angles = -self._col_angles
        self._focal = focal
        self._rows = np.arange(config.height, dtype=np.float32)[:, None]
        self._floor = self._floor_image()

    # ------------------------------------------------------------------ dynamics

    @property
    def pose(self) -> tuple[float, float, float]:
        """(x, y, heading) with heading in (-pi, pi]."""
        with self._lock:
            return self._x, self._y, _wrap(self._heading)

    @property
    def motors(self) -> tuple[float, float]:
        with self._lock:
            return self._left, self._right

    def set_motors(self, left: float, right: float, t: float) -> None:
        """Integrate up to ``t`` with the old speeds, then switch to the new ones."""
        with self._lock:
            self._advance(t)
            self._left, self._right = float(left), float(right)

    def advance(self, t: float) -> None:
        with self._lock:
            self._advance(t)

    def _advance(self, t: float) -> None:
        dt = t - self._t
        if dt <= 0:
            return
        self._t = t
        c = self.config
        vl, vr = self._left * c.max_wheel_speed, self._right * c.max_wheel_speed
        v, w = (vl + vr) / 2.0, (vr - vl) / c.wheel_separation
        th = self._heading
        if abs(w) < 1e-9:
            x, y = self._x + v * dt * math.cos(th), self._y + v * dt * math.sin(th)
        else:
            x = self._x + v / w * (math.sin(th + w * dt) - math.sin(th))
            y = self._y - v / w * (math.cos(th + w * dt) - math.cos(th))
        limit = c.room_size / 2.0 - c.margin
        self._x, self._y = min(limit, max(-limit, x)), min(limit, max(-limit, y))
        self._heading = _wrap(th + w * dt)

    # ------------------------------------------------------------------ camera

    def render(self, t: float | None = None) -> np.ndarray:
        """The camera image at time ``t`` (default: the last integrated time).

        Returns:
            [H, W, 3] uint8 BGR.
        """
        with self._lock:
            if t is not None:
                self._advance(t)
            x, y, heading = self._x, self._y, self._heading
        c = self.config
        half = c.room_size / 2.0
        angles = heading + self._col_angles
        dx, dy = np.cos(angles), np.sin(angles)
        with np.errstate(divide='ignore', invalid='ignore'):
            # distance along each ray to the four wall planes (inf where parallel or behind)
            dists = np.stack([(half - x) / dx, (half - y) / dy, (-half - x) / dx, (-half - y) / dy])
        dists = np.where(np.isfinite(dists) & (dists > 1e-9), dists, np.inf)
        wall = np.argmin(dists, axis=0)
        dist = dists[wall, np.arange(c.width)]
        hx, hy = x + dist * dx, y + dist * dy
        # position along the wall, 0..1, walking anticlockwise round the room
        along = np.select(
            [wall == 0, wall == 1, wall == 2], [hy + half, half - hx, half - hy], hx + half
        )
        along = np.clip(along / c.room_size, 0.0, 1.0)
        perp = np.maximum(dist * np.cos(self._col_angles), 1e-3)  # no fish-eye
        wall_px = self._focal * c.wall_height / perp  # wall height on screen
        centre = c.height / 2.0
        top, bottom = centre - wall_px / 2.0, centre + wall_px / 2.0

        colour = WALL_COLOURS[wall].copy()  # [W, 3]
        panel_rows = np.zeros(c.width, dtype=bool)
        for k, (a, b) in enumerate(PANELS):
            on = (along >= a) & (along < b)
            colour[on] = PANEL_COLOURS[wall[on], k]
            panel_rows |= on
        tiles = np.abs(along * c.room_size * 4.0 - np.rint(along * c.room_size * 4.0)) < 0.03
        colour[tiles & ~panel_rows] *= 0.45
        shade = np.clip(1.25 - 0.18 * perp, 0.35, 1.0)[:, None]
        colour = colour * shade

        rows = self._rows
        in_wall = (rows >= top[None, :]) & (rows < bottom[None, :])
        # panels cover the middle 40% of the wall's height; the rest of a panel column is plain wall
        rel = (rows - top[None, :]) / np.maximum(wall_px[None, :], 1e-6)
        panel_band = panel_rows[None, :] & (rel >= 0.3) & (rel < 0.7)
        plain = WALL_COLOURS[wall] * shade
        img = np.where((rows < centre)[:, :, None], CEILING[None, None, :], self._floor)
        img = np.where(
            in_wall[:, :, None], np.where(panel_band[:, :, None], colour[None], plain[None]), img
        )
        # tile lines run through the panel-free columns
        img = np.where((in_wall & (tiles & ~panel_rows)[None, :])[:, :, None], colour[None], img)
        return np.clip(img, 0, 255).astype(np.uint8)

    def _floor_image(self) -> np.ndarray:
        c = self.config
        rows = np.arange(c.height, dtype=np.float32)
        frac = np.clip((rows - c.height / 2.0) / max(c.height / 2.0, 1.0), 0.0, 1.0)[:, None]
        colours = FLOOR_FAR[None, :] * (1 - frac) + FLOOR_NEAR[None, :] * frac  # [H, 3]
        return np.broadcast_to(colours[:, None, :], (c.height, c.width, 3))


def _wrap(angle: float) -> float:
    """Angle in (-pi, pi]; an angle already in range comes back unchanged (bit for bit), so a
    robot that does not turn keeps exactly the same heading (atan2(sin, cos) moved it by an ulp)."""
    if -math.pi < angle <= math.pi:
        return angle
    wrapped = math.remainder(angle, 2.0 * math.pi)
    return math.pi if wrapped <= -math.pi else wrapped
