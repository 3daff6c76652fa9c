"""The robot worker: one thread that owns the JetBot connection. ROS-free.

Why a thread (and not timers on the ROS executor): every RPyC call blocks (up to the 30 s
request timeout when the link hangs) and an action blocks for its whole ramp + hold + ramp
(~0.25 s for the original system's actions) with 15 ms step deadlines. On the node's single-threaded
executor that would freeze every callback (commands, cmd_vel, parameter services) and a timer
state machine would still block in each RPyC call. So all robot I/O happens on this worker, in
order, and the executor thread does only ROS work:

    executor thread                      worker thread (owns the connection)
    ---------------                      ------------------------------------
    validate command --submit_action-->  ramp / hold / ramp down   (motors)
    validate cmd_vel --submit_drive--->  ramp to speed, watchdog   (motors)
                                         stream frames at camera_rate, heartbeat
    publish  <--events + notify()------  Frame / Executed / Notice / Fatal

The two threads share only a condition-protected "pending" slot (one action, or the latest
drive target) and an event list; ``notify`` is expected to wake the executor (the node
triggers a guard condition), so publishing stays on the executor thread. While an action is
queued or running, further commands are refused (the caller logs it): one command -> one
executed action -> one fresh frame, which keeps the learning loop in lockstep.

Safety: the motors stop (1) after every action (ramp down), (2) when a cmd_vel drive gets no
new command for ``watchdog_timeout`` s (ramp down + a notice), (3) on :meth:`close`
(immediately, aborting any motion), (4) on any error in the worker (then a :class:`Fatal`
event; the node exits non-zero). A lost connection is reported once as Fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from jetbot_driver.client import ConnectionLost, JetBotClient
from jetbot_driver.motion import Aborted, MotionLimits, MotorController
from jetbot_driver.protocol import FrameError


@dataclass
class Frame:
    rgb: np.ndarray  # [S, S, 3] uint8 RGB
    stamp_ns: int  # capture time (time of the request)
    after_action: bool  # the fresh frame that follows an executed action


@dataclass
class Executed:
    index: int  # the action's index in the action space
    stamp_ns: int  # completion time (right after the last ramp-down command)


@dataclass
class Notice:
    text: str  # a warning worth logging (watchdog stop, camera hiccup)


@dataclass
class Fatal:
    text: str  # the worker stopped: connection lost or unexpected error
    connection_lost: bool = False  # the JetBot went away (not an error of the worker itself)


@dataclass(frozen=True)
class WorkerConfig:
    camera_period: float = 0.1  # stream a frame this often while idle (0 = only after actions)
    watchdog_timeout: float = 0.5  # stop a cmd_vel drive after this long without cmd_vel (s)
    heartbeat_period: float = 1.0  # with no stream, check the link this often (s)
    frame_retries: int = 3  # attempts at the post-action frame
    post_action_delay: float = 0.0  # wait after the ramp-down before the post-action frame (s)


class RobotWorker:
    """Runs motions and the camera stream on its own thread (see the module docstring).

    Args:
        client: a connected :class:`JetBotClient`; the worker owns it from :meth:`start` on.
        limits: motion safety limits.
        config: stream / watchdog settings.
        now_ns: the clock for stamps (the node passes its ROS clock).
        notify: called (from the worker thread) after new events were queued.
    """

    def __init__(
        self,
        client: JetBotClient,
        limits: MotionLimits = MotionLimits(),
        config: WorkerConfig = WorkerConfig(),
        now_ns: Callable[[], int] = time.time_ns,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.config = config
        self._now_ns = now_ns
        self._notify = notify
        self._stop = threading.Event()
        self.controller = MotorController(client.set_motors, limits, abort=self._stop)
        self._cond = threading.Condition()
        self._pending_action: tuple[int, float, float, float] | None = None
        self._pending_drive: tuple[float, float] | None = None
        self._busy = False
        self._events: list = []
        self._events_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name='jetbot-worker', daemon=True)
        self.failed: str | None = None
        self.actions_executed = 0
        self.frames_captured = 0
        self.watchdog_stops = 0

    # ------------------------------------------------------------------ executor side

    def start(self) -> 'RobotWorker':
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit_action(self, index: int, left: float, right: float, duration: float) -> str | None:
        """Queue an action (already validated); returns why it was refused, or None."""
        with self._cond:
            if self.failed or self._stop.is_set():
                return 'the driver is shutting down'
            if self._busy:
                return 'the previous action is still being executed'
            self._busy = True
            self._pending_action = (int(index), float(left), float(right), float(duration))
            self._pending_drive = None
            self._cond.notify()
        return None

    def submit_drive(self, left: float, right: float) -> str | None:
        """Set a cmd_vel drive target (latest wins); returns why it was refused, or None."""
        with self._cond:
            if self.failed or self._stop.is_set():
                return 'the driver is shutting down'
            if self._busy:
                return 'an action is being executed'
            self._pending_drive = (float(left), float(right))
            self._cond.notify()
        return None

    def events(self) -> list:
        """Take the queued events (oldest first)."""
        with self._events_lock:
            out, self._events = self._events, []
        return out

    def close(self, timeout: float = 5.0) -> None:
        """Abort any motion, stop the motors, end the thread and close the connection."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread.is_alive() and not self.client.closed:
            # the worker is stuck in a call (it stops the motors itself on its way out
            # otherwise): rpyc connections take requests from several threads, so stop here
            self.controller.emergency_stop()
        self.client.close()

    # ------------------------------------------------------------------ worker thread

    def _emit(self, *events) -> None:
        with self._events_lock:
            self._events.extend(events)
        self._notify()

    def _run(self) -> None:
        clock = time.monotonic
        cfg = self.config
        next_frame = clock()  # a first frame at once, stream or not
        last_io = clock()
        last_drive = clock()
        try:
            while not self._stop.is_set():
                action = drive = None
                with self._cond:
                    if self._pending_action is None and self._pending_drive is None:
                        now = clock()
                        wake = [last_io + cfg.heartbeat_period]
                        if next_frame is not None:
                            wake.append(next_frame)
                        if self.controller.drive_target is not None:
                            wake.append(last_drive + cfg.watchdog_timeout)
                        self._cond.wait(max(0.0, min(wake) - now))
                    action, self._pending_action = self._pending_action, None
                    drive, self._pending_drive = self._pending_drive, None
                if self._stop.is_set():
                    break
                if action is not None:
                    self._execute(*action)
                    last_io = clock()
                    next_frame = last_io + cfg.camera_period if cfg.camera_period > 0 else None
                    continue
                if drive is not None:
                    last_drive = clock()
                    if drive != self.controller.current:
                        self.controller.drive(*drive)
                    last_io = clock()
                now = clock()
                if (
                    self.controller.drive_target is not None
                    and now - last_drive > cfg.watchdog_timeout
                ):
                    self.controller.ramp_to_stop()
                    self.watchdog_stops += 1
                    last_io = clock()
                    self._emit(
                        Notice(
                            f'watchdog: no cmd_vel for {now - last_drive:.2f} s while moving '
                            f'(timeout {cfg.watchdog_timeout:g} s), motors stopped'
                        )
                    )
                if next_frame is not None and now >= next_frame:
                    frame = self._capture(after_action=False)
                    if frame is not None:
                        self._emit(frame)
                    last_io = clock()
                    next_frame = last_io + cfg.camera_period if cfg.camera_period > 0 else None
                elif clock() - last_io >= cfg.heartbeat_period:
                    self.client.ping()
                    last_io = clock()
        except Aborted:
            pass  # close(): the controller already stopped the motors
        except ConnectionLost as exc:
            self._fail(str(exc), connection_lost=True)
        except Exception as exc:  # noqa: BLE001 - any error stops the robot and the driver
            self.controller.emergency_stop()
            self._fail(f'unexpected error in the JetBot worker: {type(exc).__name__}: {exc}')
        else:
            if not self.client.closed:
                self.controller.emergency_stop()
        finally:
            with self._cond:
                self._busy = False

    def _execute(self, index: int, left: float, right: float, duration: float) -> None:
        try:
            self.controller.execute(left, right, duration)
            stamp = self._now_ns()
            self.actions_executed += 1
            self._emit(Executed(index, stamp))
            if self.config.post_action_delay > 0 and self._stop.wait(self.config.post_action_delay):
                return
            frame = None
            for _ in range(max(1, self.config.frame_retries)):
                frame = self._capture(after_action=True, min_stamp=stamp)
                if frame is not None or self._stop.wait(0.02):
                    break
            # ready for the next command before the frame that triggers it goes out
            with self._cond:
                self._busy = False
            if frame is not None:
                self._emit(frame)
            elif not self._stop.is_set():
                self._emit(
                    Notice(
                        f'no camera frame after action {index} '
                        f'({self.config.frame_retries} attempts)'
                    )
                )
        finally:
            with self._cond:
                self._busy = False

    def _capture(self, after_action: bool, min_stamp: int = 0) -> Frame | None:
        stamp = max(self._now_ns(), min_stamp)
        try:
            rgb = self.client.get_frame()
        except FrameError as exc:
            self._emit(Notice(f'bad camera frame: {exc}'))
            return None
        if rgb is None:
            self._emit(Notice('the JetBot sent no camera frame'))
            return None
        self.frames_captured += 1
        return Frame(rgb, stamp, after_action)

    def _fail(self, text: str, connection_lost: bool = False) -> None:
        with self._cond:
            self.failed = text
        self._emit(Fatal(text, connection_lost))
