"""Reading fields straight from serialized (CDR) messages, without deserializing them."""

from __future__ import annotations

import struct

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
