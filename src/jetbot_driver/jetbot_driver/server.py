"""The JetBot-side RPyC server (run on the robot): ``jetbot_server``.

It wraps the ``jetbot`` library's ``Robot`` and ``Camera`` in a restricted :class:`rpyc.Service`
that exposes only ``get_camera_frame()`` and ``set_motors(left, right)`` (see
:mod:`jetbot_driver.protocol`). Classic mode is never used: a client cannot import modules,
evaluate code or reach any attribute that is not an ``exposed_`` method.

Safety: speeds are clamped to [-1, 1]; a non-numeric or non-finite speed is refused and stops
the motors; when a client that drove the motors disconnects (crash, network loss, battery) the
motors stop; the camera stops when the last client is gone and restarts on the next request.

Binding: the default address is loopback (127.0.0.1), reachable only from the robot itself.
To drive the robot from another machine bind to the robot's address on a *trusted* network
(``--host 192.168.1.42``; ``0.0.0.0`` exposes it on every interface). The service has no
authentication of its own; on a shared network enable TLS with rpyc's SSL authenticator:
``--ssl-keyfile robot.key --ssl-certfile robot.crt [--ssl-ca-certs clients_ca.crt]`` (with a
CA file, clients must present a certificate signed by it), and give the driver the matching
``ssl_*`` parameters.

Usage (on the JetBot):
    jetbot_server --host 192.168.1.42 [--port 18861]
"""

from __future__ import annotations

import abc
import argparse
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import rpyc
from rpyc.lib import spawn
from rpyc.utils.helpers import classpartial
from rpyc.utils.server import ThreadedServer

from jetbot_driver import protocol

log = logging.getLogger('jetbot_server')
# rpyc's own per-connection chatter (and the tracebacks it logs when a client vanishes) stays
# out of the output unless -v asks for it
rpyc_log = logging.getLogger('jetbot_server.rpyc')
rpyc_log.setLevel(logging.CRITICAL)

CLIENT_JOIN_TIMEOUT_S = 5.0  # a stopping server waits this long for its clients' threads


class HardwareError(RuntimeError):
    """The robot hardware (or its library) is not available."""


class Hardware(abc.ABC):
    """What a JetBot service needs from a robot: motors and a BGR camera. Thread-safe."""

    @abc.abstractmethod
    def set_motors(self, left: float, right: float) -> None:
        """Set the motor speeds (already clamped to [-1, 1])."""

    @abc.abstractmethod
    def camera_bgr(self) -> np.ndarray | None:
        """The latest camera image as [H, W, 3] uint8 BGR, or None when there is none."""

    def stop_motors(self) -> None:
        self.set_motors(0.0, 0.0)

    def stop_camera(self) -> None:
        """Release the camera (it restarts on the next :meth:`camera_bgr`)."""

    def close(self) -> None:
        self.stop_motors()
        self.stop_camera()


class JetbotLibraryHardware(Hardware):
    """The real robot through the ``jetbot`` library (``Robot``, ``Camera``) on the JetBot."""

    def __init__(self, size: int = protocol.FRAME_SIZE) -> None:
        try:
            from jetbot import Camera, Robot
        except ImportError as exc:
            raise HardwareError(
                f'the jetbot library is not importable ({exc}). jetbot_server runs on the JetBot '
                'itself (NVIDIA-AI-IOT/jetbot installed); for a simulated robot use '
                'jetbot_sim_server'
            ) from exc
        self._camera_cls = Camera
        self._robot = Robot()
        self._camera = None
        self._size = int(size)
        self._lock = threading.Lock()

    def set_motors(self, left: float, right: float) -> None:
        with self._lock:
            self._robot.set_motors(left, right)

    def stop_motors(self) -> None:
        with self._lock:
            self._robot.stop()

    def camera_bgr(self) -> np.ndarray | None:
        with self._lock:
            if self._camera is None:
                self._camera = self._camera_cls.instance(width=self._size, height=self._size)
            value = self._camera.value
        return None if value is None else np.asarray(value)

    def stop_camera(self) -> None:
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            camera.stop()


class _Clients:
    """Counts connected clients so the camera stops when the last one leaves."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()


class JetBotService(rpyc.Service):
    """One instance per connection, sharing the hardware. Only ``exposed_`` names are reachable."""

    def __init__(
        self,
        hardware: Hardware,
        clients: _Clients,
        size=protocol.FRAME_SIZE,
        quality: int = protocol.JPEG_QUALITY,
    ) -> None:
        self._hardware = hardware
        self._clients = clients
        # frame size sent: N (square) or (width, height)
        self._width, self._height = (
            (int(size[0]), int(size[1]))
            if isinstance(size, (tuple, list))
            else (int(size), int(size))
        )
        self._quality = int(quality)
        self._drove_motors = False

    def on_connect(self, conn) -> None:
        with self._clients.lock:
            self._clients.count += 1

    def on_disconnect(self, conn) -> None:
        with self._clients.lock:
            self._clients.count -= 1
            last = self._clients.count <= 0
        try:
            if self._drove_motors:
                self._hardware.stop_motors()
                log.info('client disconnected: motors stopped')
            if last:
                self._hardware.stop_camera()
        except Exception:  # noqa: BLE001 - never let cleanup kill the server thread
            log.exception('stopping the robot after a disconnect failed')

    def exposed_get_camera_frame(self) -> str | None:
        """base64 text of a JPEG (BGR, the configured size) of the current image, or None."""
        try:
            img = self._hardware.camera_bgr()
            if img is None:
                return None
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                log.warning('camera gave an unusable image %s %s', img.dtype, img.shape)
                return None
            if img.shape[0] != self._height or img.shape[1] != self._width:
                import cv2

                img = cv2.resize(img, (self._width, self._height), interpolation=cv2.INTER_AREA)
            return protocol.encode_frame(img, self._quality)
        except Exception:  # noqa: BLE001 - the contract is "empty/None on failure"
            log.exception('camera frame failed')
            return None

    def exposed_set_motors(self, left, right) -> None:
        """Set both motor speeds, each clamped to [-1, 1]."""
        try:
            lv, rv = protocol.clamp_motor(left), protocol.clamp_motor(right)
        except ValueError:
            self._hardware.stop_motors()
            raise
        self._drove_motors = True
        self._hardware.set_motors(lv, rv)


class _ThreadedServer(ThreadedServer):
    """rpyc's ThreadedServer with TCP_NODELAY, and client threads that can be waited for.

    It is quiet about the clients it cuts off when it closes.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._client_threads: list[threading.Thread] = []

    def _accept_method(self, sock) -> None:
        self._client_threads = [t for t in self._client_threads if t.is_alive()]
        self._client_threads.append(spawn(self._authenticate_and_serve_client, sock))

    def join_clients(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s in all) for every client thread to end.

        A daemon thread still inside OpenCV's JPEG encoder when the interpreter exits is
        unwound through C++ frames that cannot be unwound: the process aborts (SIGABRT).
        """
        deadline = time.monotonic() + timeout
        for thread in list(self._client_threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _authenticate_and_serve_client(self, sock):
        try:
            # small requests and replies: never hold one back for Nagle (40 ms delayed-ACK stalls)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        try:
            super()._authenticate_and_serve_client(sock)
        except Exception:  # noqa: BLE001
            if self.active:
                raise  # a real failure while serving, not our own close()


class JetBotServer:
    """A threaded RPyC server for a service class (one service instance per connection)."""

    def __init__(
        self,
        hardware: Hardware,
        host: str = protocol.DEFAULT_HOST,
        port: int = protocol.DEFAULT_PORT,
        service_cls: type[JetBotService] = JetBotService,
        authenticator=None,
        size=protocol.FRAME_SIZE,
        quality: int = protocol.JPEG_QUALITY,
        **service_kwargs,
    ) -> None:
        self.hardware = hardware
        self._clients = _Clients()
        service = classpartial(
            service_cls, hardware, self._clients, size, quality, **service_kwargs
        )
        self._server = _ThreadedServer(
            service,
            hostname=host,
            port=int(port),
            authenticator=authenticator,
            protocol_config=dict(protocol.SERVER_CONFIG),
            reuse_addr=True,
            listener_timeout=0.2,
            logger=rpyc_log,
        )
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def clients(self) -> int:
        return self._clients.count

    def serve_forever(self) -> None:
        """Serve until :meth:`close` (from another thread or a signal handler)."""
        try:
            self._server.start()
        finally:
            self._server.join_clients(CLIENT_JOIN_TIMEOUT_S)
            self._finish()

    def start_in_thread(self) -> 'JetBotServer':
        """Listen now, serve in a daemon thread (tests, the feed's self-check)."""
        self._server._listen()
        self._thread = threading.Thread(
            target=self.serve_forever, name='jetbot-server', daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening, drop every client (they see the connection end), stop the robot."""
        self._server.close()
        self._finish()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    def _finish(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.hardware.close()
        except Exception:  # noqa: BLE001
            log.exception('stopping the robot failed')


# -------------------------------------------------------------------------------------------------
# command line (shared by the sim server)


def strip_ros_args(argv: list[str]) -> list[str]:
    """Drop ``--ros-args ... [--]`` (added when a launch file starts the server as a node)."""
    out, skipping = [], False
    for arg in argv:
        if arg == '--ros-args':
            skipping = True
        elif skipping and arg == '--':
            skipping = False
        elif not skipping:
            out.append(arg)
    return out


def add_server_arguments(
    parser: argparse.ArgumentParser,
    size_type=int,
    size_default=protocol.FRAME_SIZE,
    size_help: str = 'frame width and height sent (default 224)',
) -> None:
    parser.add_argument(
        '--host',
        default=protocol.DEFAULT_HOST,
        help='address to bind (default 127.0.0.1; use the robot\'s address on a trusted network, '
        '0.0.0.0 = every interface)',
    )
    parser.add_argument(
        '--port', type=int, default=protocol.DEFAULT_PORT, help='TCP port (default 18861)'
    )
    parser.add_argument('--size', type=size_type, default=size_default, help=size_help)
    parser.add_argument(
        '--jpeg-quality', type=int, default=protocol.JPEG_QUALITY, help='JPEG quality 1-100'
    )
    parser.add_argument('--ssl-keyfile', default='', help='enable TLS: the server key (PEM)')
    parser.add_argument(
        '--ssl-certfile', default='', help='enable TLS: the server certificate (PEM)'
    )
    parser.add_argument(
        '--ssl-ca-certs', default='', help='with TLS: require client certificates signed by this CA'
    )
    parser.add_argument('-v', '--verbose', action='store_true', help='log every connection')


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format='[%(name)s] %(levelname)s %(message)s',
    )
    rpyc_log.setLevel(logging.INFO if verbose else logging.CRITICAL)


def authenticator_from(options: argparse.Namespace):
    if bool(options.ssl_keyfile) != bool(options.ssl_certfile):
        raise SystemExit('--ssl-keyfile and --ssl-certfile go together')
    if options.ssl_ca_certs and not options.ssl_keyfile:
        raise SystemExit('--ssl-ca-certs needs --ssl-keyfile and --ssl-certfile')
    if options.ssl_keyfile:
        return protocol.ssl_authenticator(
            options.ssl_keyfile, options.ssl_certfile, options.ssl_ca_certs
        )
    return None


def run_server(server: JetBotServer, what: str, ready: Callable[[], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM or :meth:`JetBotServer.close`; exit status 0."""

    def on_signal(signum, frame):
        threading.Thread(target=server.close, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server._server._listen()
    print(f'{what} listening on {server.host}:{server.port}', flush=True)
    if ready is not None:
        ready()
    server.serve_forever()
    print(f'{what} stopped', flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='jetbot_server',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_server_arguments(parser)
    options = parser.parse_args(strip_ros_args(sys.argv[1:] if argv is None else list(argv)))
    configure_logging(options.verbose)
    authenticator = authenticator_from(options)
    try:
        hardware = JetbotLibraryHardware(options.size)
    except HardwareError as exc:
        print(f'jetbot_server: {exc}', file=sys.stderr)
        return 2
    server = JetBotServer(
        hardware,
        options.host,
        options.port,
        authenticator=authenticator,
        size=options.size,
        quality=options.jpeg_quality,
    )
    if options.host not in ('127.0.0.1', 'localhost', '::1') and authenticator is None:
        print(
            f'jetbot_server: WARNING: serving without authentication on {options.host}; '
            'use a trusted network or --ssl-keyfile/--ssl-certfile',
            file=sys.stderr,
            flush=True,
        )
    return run_server(server, 'jetbot_server')


if __name__ == '__main__':
    sys.exit(main())
