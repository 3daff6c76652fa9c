"""Serialized (CDR) messages: fields read straight from them without deserializing, and the
messages of a session (image, executed action, dot position) written without ROS."""

from __future__ import annotations

import struct

import numpy as np

from devbot.action_space import ActionSpace

_STAMP_LE = struct.Struct('<iI')
_STAMP_BE = struct.Struct('>iI')


def header_stamp(serialized: bytes) -> tuple[int, int]:
    """(sec, nanosec) of the ``std_msgs/Header`` that starts a serialized message.

    Every message whose first field is a Header (Image, JointState, PointStamped, ...) starts
    with the 4-byte CDR encapsulation (byte 1: 0 big-endian, 1 little-endian), then the stamp's
    int32 sec and uint32 nanosec.
    """
    if len(serialized) < 12:
        raise ValueError(
            f'a serialized message with a header has at least 12 bytes, got {len(serialized)}'
        )
    kind = serialized[1]
    if kind not in (0, 1):
        raise ValueError(f'unsupported CDR encapsulation {serialized[:2].hex()}')
    return (_STAMP_LE if kind == 1 else _STAMP_BE).unpack_from(serialized, 4)


# Writing: the messages a session holds, serialized as the recorder stores them (rosbags'
# Kilted typestore, little-endian CDR), for sessions generated without ROS.

_TYPESTORE = None


def _typestore():
    global _TYPESTORE
    if _TYPESTORE is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPESTORE = get_typestore(Stores.ROS2_KILTED)
    return _TYPESTORE


def _header(stamp_ns: int, frame_id: str):
    types = _typestore().types
    stamp = types['builtin_interfaces/msg/Time'](
        stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000
    )
    return types['std_msgs/msg/Header'](stamp, frame_id)


def image_cdr(frame: np.ndarray, stamp_ns: int, frame_id: str = 'camera') -> bytes:
    """A serialized rgb8 ``sensor_msgs/Image``.

    Args:
        frame: uint8 [H, W, 3], RGB.
        stamp_ns: header stamp.
        frame_id: header frame.
    Raises:
        ValueError: ``frame`` is not uint8 [H, W, 3].
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f'frame must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}')
    ts = _typestore()
    msg = ts.types['sensor_msgs/msg/Image'](
        _header(stamp_ns, frame_id),
        frame.shape[0],
        frame.shape[1],
        'rgb8',
        0,
        frame.shape[1] * 3,
        np.ascontiguousarray(frame).reshape(-1),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/Image'))


def action_cdr(space: ActionSpace, index: int, stamp_ns: int) -> bytes:
    """Discrete action ``index`` of ``space`` as a serialized ``sensor_msgs/JointState``, laid out
    as :func:`devbot.messages.action_to_joint_state` lays it out (velocity and effort zeros)."""
    ts = _typestore()
    values = space.values(index)
    n = len(values)
    msg = ts.types['sensor_msgs/msg/JointState'](
        _header(stamp_ns, ''),
        list(values),
        np.array([float(v) for v in values.values()]),
        np.zeros(n),
        np.zeros(n),
    )
    return bytes(ts.serialize_cdr(msg, 'sensor_msgs/msg/JointState'))


def point_cdr(x: float, y: float, stamp_ns: int, frame_id: str = 'image') -> bytes:
    """A serialized ``geometry_msgs/PointStamped`` (x, y, 0)."""
    ts = _typestore()
    types = ts.types
    msg = types['geometry_msgs/msg/PointStamped'](
        _header(stamp_ns, frame_id), types['geometry_msgs/msg/Point'](float(x), float(y), 0.0)
    )
    return bytes(ts.serialize_cdr(msg, 'geometry_msgs/msg/PointStamped'))


def messages_lost_cdr(topic: str, count: int, after_stamp_ns: int | None, stamp_ns: int) -> bytes:
    """A serialized ``diagnostic_msgs/DiagnosticArray`` saying that ``count`` messages of
    ``topic`` were lost on their way to the recorder.

    The lost messages' header stamps lie in (``after_stamp_ns``, ``stamp_ns``]: they were sent
    after the message stamped ``after_stamp_ns`` (None: unknown, e.g. a topic without header) and
    before the loss was detected at ``stamp_ns`` (the array's header stamp).
    """
    ts = _typestore()
    types = ts.types
    values = [types['diagnostic_msgs/msg/KeyValue']('count', str(int(count)))]
    if after_stamp_ns is not None:
        values.append(types['diagnostic_msgs/msg/KeyValue']('after_stamp_ns', str(after_stamp_ns)))
    status = types['diagnostic_msgs/msg/DiagnosticStatus'](
        types['diagnostic_msgs/msg/DiagnosticStatus'].WARN,
        topic,
        f'{count} messages lost',
        '',
        values,
    )
    msg = types['diagnostic_msgs/msg/DiagnosticArray'](_header(stamp_ns, ''), [status])
    return bytes(ts.serialize_cdr(msg, 'diagnostic_msgs/msg/DiagnosticArray'))
