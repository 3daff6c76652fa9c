"""The JetBot RPyC protocol, in one place for the driver, the JetBot-side server and the sim.

The JetBot runs an RPyC *service* (never classic mode) that exposes exactly two methods:

    get_camera_frame() -> str | None
        base64 text of a JPEG of the current camera image (224x224, BGR channel order as
        OpenCV writes it), or empty/None when no frame is available.
    set_motors(left, right) -> None
        motor speeds in [-1, 1] (clamped by the server).

It listens on TCP :data:`DEFAULT_PORT` (18861); clients use a synchronous request timeout of
:data:`SYNC_REQUEST_TIMEOUT_S` (30 s). Existing JetBot servers speak exactly this, so the
driver works with them unchanged. The service stops the motors (and the camera, when the last
client leaves) on disconnect.

Security: an RPyC service answers only its ``exposed_`` methods; it refuses ``conn.modules``,
``eval``/``execute`` and every other attribute (see :data:`SERVER_CONFIG`). It has no
authentication of its own: bind it to a trusted interface (loopback, or the robot's address
on a private network) or enable the SSL authenticator (:func:`ssl_authenticator` on the
server, certificate files on the client).

A JPEG frame is 5-15 KB of base64 text and crosses loopback in about a millisecond; a raw
150 KB array costs ~46 ms, so the JPEG contract is kept.
"""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np

DEFAULT_PORT = 18861
DEFAULT_HOST = '127.0.0.1'  # the server binds to loopback unless told otherwise
SYNC_REQUEST_TIMEOUT_S = 30.0
FRAME_SIZE = 224  # width and height of the frames the JetBot sends (and the model uses)
JPEG_QUALITY = 90

# the exposed method names (the server defines them with rpyc's ``exposed_`` prefix)
GET_CAMERA_FRAME = 'get_camera_frame'
SET_MOTORS = 'set_motors'
# sim-only extras: never part of a real JetBot server
SIM_GET_MOTOR_LOG = 'get_motor_log'
SIM_CLEAR_MOTOR_LOG = 'clear_motor_log'
SIM_GET_POSE = 'get_pose'
SIM_DIE = 'die'

MOTOR_LIMIT = 1.0  # |speed| the JetBot accepts

# Server side: only exposed_ names are reachable; no pickling, no setattr/delattr, no custom
# exception classes, and no server tracebacks sent to the client.
SERVER_CONFIG = {
    'allow_safe_attrs': True,
    'allow_exposed_attrs': True,
    'allow_public_attrs': False,
    'allow_all_attrs': False,
    'allow_getattr': True,
    'allow_setattr': False,
    'allow_delattr': False,
    'allow_pickle': False,
    'import_custom_exceptions': False,
    'instantiate_custom_exceptions': False,
    'instantiate_oldstyle_exceptions': False,
    'include_local_traceback': False,
    'include_local_version': False,
    'propagate_SystemExit_locally': True,
    'log_exceptions': False,
}


class FrameError(ValueError):
    """A frame that cannot be encoded or decoded."""


def client_config(sync_request_timeout: float = SYNC_REQUEST_TIMEOUT_S) -> dict:
    """The RPyC configuration of a client connection (nothing of the client is exposed)."""
    return {
        'sync_request_timeout': float(sync_request_timeout),
        'allow_public_attrs': False,
        'allow_all_attrs': False,
        'allow_pickle': False,
        'allow_setattr': False,
        'allow_delattr': False,
        'import_custom_exceptions': False,
        'instantiate_custom_exceptions': False,
    }


def clamp_motor(value, limit: float = MOTOR_LIMIT) -> float:
    """``value`` as a float clamped to [-limit, limit].

    Raises:
        ValueError: not a real number (bool, str, netref, ...) or not finite.
    """
    if type(value) not in (int, float) and not isinstance(value, (np.integer, np.floating)):
        raise ValueError(f'motor speed must be a number, got {type(value).__name__}')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'motor speed must be finite, got {value}')
    limit = min(abs(float(limit)), MOTOR_LIMIT)
    return max(-limit, min(limit, value))


def encode_frame(bgr: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """A BGR uint8 image as base64 JPEG text (what ``get_camera_frame`` returns)."""
    import cv2

    if (
        not isinstance(bgr, np.ndarray)
        or bgr.dtype != np.uint8
        or bgr.ndim != 3
        or bgr.shape[2] != 3
    ):
        raise FrameError(
            f'need an [H, W, 3] uint8 BGR image, got {getattr(bgr, "shape", type(bgr).__name__)}'
        )
    ok, jpeg = cv2.imencode('.jpg', bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise FrameError('JPEG encoding failed')
    return base64.b64encode(jpeg.tobytes()).decode('ascii')


def decode_frame(text) -> np.ndarray:
    """base64 JPEG text -> [H, W, 3] uint8 BGR image.

    Raises:
        FrameError: empty, not base64, not a decodable colour JPEG.
    """
    import cv2

    if not text:
        raise FrameError('empty frame')
    if isinstance(text, bytes):
        text = text.decode('ascii', errors='strict')
    if not isinstance(text, str):
        raise FrameError(f'frame must be base64 text, got {type(text).__name__}')
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FrameError(f'frame is not valid base64: {exc}') from exc
    img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise FrameError(f'frame is not a decodable JPEG ({len(raw)} bytes)')
    return img


def ssl_authenticator(keyfile: str, certfile: str, ca_certs: str | None = None):
    """rpyc's SSL authenticator for the server (client certificates required when ca_certs)."""
    from rpyc.utils.authenticators import SSLAuthenticator

    return SSLAuthenticator(keyfile, certfile, ca_certs=ca_certs or None)


def connect(
    host: str,
    port: int = DEFAULT_PORT,
    sync_request_timeout: float = SYNC_REQUEST_TIMEOUT_S,
    connect_timeout: float = 3.0,
    ssl_keyfile: str = '',
    ssl_certfile: str = '',
    ssl_ca_certs: str = '',
):
    """Open an RPyC connection to a JetBot service (plain TCP, or SSL when any ssl_* is set).

    TCP_NODELAY is set: requests are small and latency matters more than throughput.
    """
    import rpyc
    from rpyc.core.stream import SocketStream

    config = client_config(sync_request_timeout)
    if ssl_keyfile or ssl_certfile or ssl_ca_certs:
        import ssl

        # the robot's certificate is pinned through ca_certs (a self-signed robot has no DNS name)
        kwargs = {'server_side': False, 'cert_reqs': ssl.CERT_NONE, 'check_hostname': False}
        if ssl_keyfile:
            kwargs['keyfile'] = ssl_keyfile
        if ssl_certfile:
            kwargs['certfile'] = ssl_certfile
        if ssl_ca_certs:
            kwargs['ca_certs'] = ssl_ca_certs
            kwargs['cert_reqs'] = ssl.CERT_REQUIRED
        stream = SocketStream.ssl_connect(
            host, int(port), kwargs, timeout=connect_timeout, nodelay=True, attempts=1
        )
    else:
        stream = SocketStream.connect(
            host, int(port), timeout=connect_timeout, nodelay=True, attempts=1
        )
    return rpyc.connect_stream(stream, rpyc.VoidService, config)
