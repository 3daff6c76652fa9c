"""Motor execution and safety for the JetBot, ROS-free.

An action ``(left, right, duration)`` runs exactly as the original JetBot client ran it: ramp
linearly from the current to the target speeds in :data:`RAMP_STEPS` steps
:data:`RAMP_INTERVAL_S` apart, hold for ``max(0, duration - 0.06)`` s, then ramp down to 0 the
same way. With a step every 15 ms and the wait after each ramp-up step included, the time from
the first ramp-up command to the first ramp-down command is ``max(duration, 0.06)``; the ramp
down takes 45 ms more. Steps are timed against absolute deadlines, so slow calls do not
accumulate drift. For the original system's turn action (0, 0.12, 0.2 s) the motors get
0.03, 0.06, 0.09, 0.12, (hold 0.14 s), 0.09, 0.06, 0.03, 0 on the right, 0 on the left.

Safety: :class:`MotionLimits` clamps every speed to [-max_speed, max_speed] (within [-1, 1]);
non-finite speeds and durations that are not finite, negative or above ``max_duration`` are
refused before anything moves. :meth:`MotorController.execute` stops the motors at once when it
is aborted (shutdown) or when anything fails mid-motion.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RAMP_STEPS = 4
RAMP_INTERVAL_S = 0.015
RAMP_TIME_S = RAMP_STEPS * RAMP_INTERVAL_S  # 0.06, subtracted from the duration for the hold


class MotionError(ValueError):
    """A motion request outside the safety limits (nothing was sent to the motors)."""


class Aborted(RuntimeError):
    """A motion was cut short (shutdown); the motors were stopped."""


def _finite(value, what: str) -> float:
    """``value`` as a finite float; MotionError for NaN/inf/non-numbers."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise MotionError(f'{what} must be a number, got {value!r}') from None
    if not math.isfinite(value):
        raise MotionError(f'{what} must be finite, got {value}')
    return value


@dataclass(frozen=True)
class MotionLimits:
    max_speed: float = 1.0  # |motor value| never exceeds this (and never 1)
    max_duration: float = 5.0  # longest action (s)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_speed) and 0.0 <= self.max_speed <= 1.0):
            raise ValueError(f'max_speed must be in [0, 1], got {self.max_speed}')
        if not (math.isfinite(self.max_duration) and self.max_duration > 0.0):
            raise ValueError(f'max_duration must be finite and > 0, got {self.max_duration}')

    def clamp(self, value: float) -> float:
        """A finite speed clamped to [-max_speed, max_speed].

        Raises:
            MotionError: for NaN, inf and non-numbers.
        """
        value = _finite(value, 'motor speed')
        return max(-self.max_speed, min(self.max_speed, value))

    def check_duration(self, duration: float) -> float:
        duration = _finite(duration, 'duration')
        if duration < 0.0:
            raise MotionError(f'duration must be >= 0, got {duration}')
        if duration > self.max_duration:
            raise MotionError(f'duration {duration} s exceeds max_duration {self.max_duration} s')
        return duration

    def check_action(
        self, left: float, right: float, duration: float
    ) -> tuple[float, float, float]:
        """(left, right, duration) made safe: speeds clamped, duration checked.

        Raises:
            MotionError: for a speed that is not a finite number, or a duration that is not
                finite, negative or over max_duration.
        """
        return self.clamp(left), self.clamp(right), self.check_duration(duration)


def ramp(
    start: tuple[float, float], target: tuple[float, float], steps: int = RAMP_STEPS
) -> list[tuple[float, float]]:
    """The ``steps`` linear intermediate speed pairs from ``start`` to ``target`` (target last)."""
    (l0, r0), (l1, r1) = start, target
    out = []
    for i in range(1, steps + 1):
        f = i / steps
        out.append((l0 + (l1 - l0) * f, r0 + (r1 - r0) * f))
    out[-1] = (float(l1), float(r1))  # exactly the target, no rounding residue
    return out


def twist_to_wheels(
    linear: float, angular: float, wheel_separation: float, full_speed: float, limits: MotionLimits
) -> tuple[float, float]:
    """Differential drive: body (m/s, rad/s) -> motor values (clamped).

    ``full_speed`` is the wheel speed (m/s) at motor value 1.
    """
    linear, angular = float(linear), float(angular)
    if not (math.isfinite(linear) and math.isfinite(angular)):
        raise MotionError(f'cmd_vel must be finite, got linear {linear}, angular {angular}')
    left = (linear - angular * wheel_separation / 2.0) / full_speed
    right = (linear + angular * wheel_separation / 2.0) / full_speed
    return limits.clamp(left), limits.clamp(right)


class MotorController:
    """Runs motions on a motor sink (e.g. :meth:`JetBotClient.set_motors`). One thread at a time.

    Args:
        set_motors: ``(left, right) -> anything``; called with values already clamped.
        limits: the safety limits.
        abort: when set, a running motion stops the motors and raises :class:`Aborted`; waits
            between steps are waits on this event, so an abort interrupts a hold at once.
        clock: the monotonic clock the step deadlines are measured on.
    """

    def __init__(
        self,
        set_motors: Callable[[float, float], object],
        limits: MotionLimits = MotionLimits(),
        abort: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._set = set_motors
        self.limits = limits
        self.abort = abort or threading.Event()
        self._clock = clock
        self.current = (0.0, 0.0)  # the last speeds sent
        self.drive_target: tuple[float, float] | None = None  # set while holding a cmd_vel speed

    @property
    def moving(self) -> bool:
        return self.current != (0.0, 0.0)

    def send(self, left: float, right: float) -> None:
        """One clamped motor command (the only path to the motors)."""
        lv, rv = self.limits.clamp(left), self.limits.clamp(right)
        self._set(lv, rv)
        self.current = (lv, rv)

    def execute(self, left: float, right: float, duration: float) -> None:
        """Ramp to (left, right), hold, ramp down to 0 (see the module docstring).

        Raises:
            MotionError: unsafe request (nothing sent).
            Aborted: ``abort`` was set; the motors were stopped.
            Exception: whatever the motor sink raised (the motors are stopped when possible).
        """
        left, right, duration = self.limits.check_action(left, right, duration)
        self.drive_target = None
        try:
            t = self._clock()
            for pair in ramp(self.current, (left, right)):
                self._check_abort()
                self.send(*pair)
                t += RAMP_INTERVAL_S
                self._wait_until(t)
            self._wait_until(t + max(0.0, duration - RAMP_TIME_S))
            self.ramp_to_stop()
        except Aborted:
            raise
        except BaseException:
            self.emergency_stop()
            raise

    def drive(self, left: float, right: float) -> None:
        """Ramp to a speed and keep it (cmd_vel); the caller's watchdog must stop it."""
        left, right = self.limits.clamp(left), self.limits.clamp(right)
        try:
            self._ramp_to((left, right))
        except Aborted:
            raise
        except BaseException:
            self.emergency_stop()
            raise
        self.drive_target = (left, right) if (left, right) != (0.0, 0.0) else None

    def ramp_to_stop(self) -> None:
        """Ramp down to 0 in RAMP_STEPS steps, RAMP_INTERVAL_S apart (last command: 0, 0)."""
        self.drive_target = None
        self._ramp_to((0.0, 0.0))

    def _ramp_to(self, target: tuple[float, float]) -> None:
        """Send the ramp from the current speeds to ``target``, RAMP_INTERVAL_S apart.

        No wait after the last step: the caller decides what follows it.
        """
        t = self._clock()
        steps = ramp(self.current, target)
        for i, pair in enumerate(steps):
            self._check_abort()
            self.send(*pair)
            if i < len(steps) - 1:
                t += RAMP_INTERVAL_S
                self._wait_until(t)

    def emergency_stop(self) -> bool:
        """Motors to 0 at once, swallowing errors (the link may be gone); True when it was sent."""
        self.drive_target = None
        try:
            self._set(0.0, 0.0)
        except Exception:  # noqa: BLE001 - best effort: the connection may be the problem
            return False
        self.current = (0.0, 0.0)
        return True

    def _check_abort(self) -> None:
        if self.abort.is_set():
            self.emergency_stop()
            raise Aborted('motion aborted, motors stopped')

    def _wait_until(self, deadline: float) -> None:
        remaining = deadline - self._clock()
        if remaining > 0 and self.abort.wait(remaining):
            self.emergency_stop()
            raise Aborted('motion aborted, motors stopped')
