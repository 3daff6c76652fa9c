"""A simulated JetBot server: ``jetbot_sim_server``.

The same RPyC protocol as the real robot (:mod:`jetbot_driver.protocol`): ``get_camera_frame``
returns a base64 JPEG rendered by :class:`jetbot_driver.sim_world.SimWorld` (a robot in a room
with coloured walls and landmarks), and ``set_motors`` drives that virtual robot, so the view
changes with the integrated motor commands.

For tests only, the SIM also exposes:
    get_motor_log() -> tuple of (monotonic time, left, right), every set_motors call in order
    clear_motor_log()
    get_pose() -> (x, y, heading) of the virtual robot
    die() -> closes the server at once, dropping every client (the process then exits 0)

Usage:
    jetbot_sim_server [--host 127.0.0.1] [--port 18861] [--size 224 | --size 320x240]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

from jetbot_driver import protocol
from jetbot_driver.server import (
    Hardware,
    JetBotServer,
    JetBotService,
    add_server_arguments,
    authenticator_from,
    configure_logging,
    run_server,
    strip_ros_args,
)
from jetbot_driver.sim_world import SimConfig, SimWorld

MAX_LOG = 100_000  # motor log entries kept (oldest dropped)


class SimHardware(Hardware):
    """A virtual robot: motors drive :class:`SimWorld`, the camera renders it; every call logged."""

    def __init__(self, config: SimConfig = SimConfig(), clock=time.monotonic) -> None:
        self._clock = clock
        self.world = SimWorld(config, t0=clock())
        self._log: list[tuple[float, float, float]] = []
        self._lock = threading.Lock()
        self.camera_running = False
        self.frames_served = 0

    def set_motors(self, left: float, right: float) -> None:
        with self._lock:
            t = self._clock()
            self.world.set_motors(left, right, t)
            self._log.append((t, float(left), float(right)))
            if len(self._log) > MAX_LOG:
                del self._log[: len(self._log) - MAX_LOG]

    def camera_bgr(self) -> np.ndarray | None:
        with self._lock:
            self.camera_running = True
            self.frames_served += 1
            t = self._clock()
        return self.world.render(t)

    def stop_camera(self) -> None:
        with self._lock:
            self.camera_running = False

    def motor_log(self) -> tuple[tuple[float, float, float], ...]:
        with self._lock:
            return tuple(self._log)

    def clear_motor_log(self) -> None:
        with self._lock:
            self._log.clear()


class SimJetBotService(JetBotService):
    """The JetBot protocol plus the sim's test hooks (never present on a real robot)."""

    def __init__(self, hardware: SimHardware, clients, size, quality, die=None) -> None:
        super().__init__(hardware, clients, size, quality)
        self._die = die

    def exposed_get_motor_log(self) -> tuple:
        return self._hardware.motor_log()

    def exposed_clear_motor_log(self) -> None:
        self._hardware.clear_motor_log()

    def exposed_get_pose(self) -> tuple[float, float, float]:
        return self._hardware.world.pose

    def exposed_die(self) -> None:
        # close from another thread: this one is still answering the request
        if self._die is not None:
            threading.Thread(target=self._die, daemon=True).start()


class SimServer(JetBotServer):
    """A simulated JetBot served over RPyC; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(
        self,
        host: str = protocol.DEFAULT_HOST,
        port: int = 0,
        config: SimConfig | None = None,
        size=protocol.FRAME_SIZE,
        quality: int = protocol.JPEG_QUALITY,
        authenticator=None,
        die_delay: float = 0.05,
    ) -> None:
        width, height = _size_pair(size)
        config = config or SimConfig(width=width, height=height)
        self._die_delay = die_delay
        super().__init__(
            SimHardware(config),
            host,
            port,
            service_cls=SimJetBotService,
            authenticator=authenticator,
            size=(width, height),
            quality=quality,
            die=self._die,
        )

    def _die(self) -> None:
        time.sleep(self._die_delay)  # let the die() reply go out
        self.close()


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def parse_size(text: str) -> tuple[int, int]:
    """``224`` or ``320x240`` (width x height)."""
    try:
        if 'x' in text.lower():
            w, h = text.lower().split('x')
            width, height = int(w), int(h)
        else:
            width = height = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be N or WxH, got {text!r}') from None
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise argparse.ArgumentTypeError(f'size must be within 8..4096, got {text!r}')
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='jetbot_sim_server',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(
        parser,
        size_type=parse_size,
        size_default=(protocol.FRAME_SIZE, protocol.FRAME_SIZE),
        size_help=(
            'frame size sent: N or WxH (default 224; other sizes exercise the driver\'s resize)'
        ),
    )
    parser.add_argument(
        '--fov', type=float, default=60.0, help='horizontal field of view (degrees)'
    )
    parser.add_argument('--room-size', type=float, default=2.0, help='side of the square room (m)')
    parser.add_argument(
        '--max-wheel-speed', type=float, default=0.6, help='wheel speed at motor value 1 (m/s)'
    )
    parser.add_argument('--heading', type=float, default=0.0, help='start heading (degrees)')
    options = parser.parse_args(strip_ros_args(sys.argv[1:] if argv is None else list(argv)))
    configure_logging(options.verbose)
    authenticator = authenticator_from(options)
    width, height = options.size
    try:
        config = SimConfig(
            width=width,
            height=height,
            fov_deg=options.fov,
            room_size=options.room_size,
            max_wheel_speed=options.max_wheel_speed,
            heading=float(np.radians(options.heading)),
        )
    except ValueError as exc:
        parser.error(str(exc))
    server = SimServer(
        options.host,
        options.port,
        config,
        size=(width, height),
        quality=options.jpeg_quality,
        authenticator=authenticator,
    )
    status = run_server(server, f'jetbot_sim_server ({width}x{height} frames)')
    log = server.hardware.motor_log()
    print(f'served {server.hardware.frames_served} frames, {len(log)} motor commands', flush=True)
    return status


if __name__ == '__main__':
    sys.exit(main())
