"""Helpers shared by the graph tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its parent's wait is missing
    try:
        return Path(f'/proc/{pid}/status').read_text().split('State:')[1].split()[0] != 'Z'
    except (FileNotFoundError, IndexError):
        return False


# a protobuf wire-format reader, independent of the foxglove SDK (for the bridge tests)
def read_fields(buf: bytes) -> dict[int, list]:
    """Protobuf wire format -> field number -> raw values (varints and fixed ints as int)."""
    fields: dict[int, list] = {}
    pos = 0

    def varint():
        nonlocal pos
        shift = value = 0
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value = buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = int.from_bytes(buf[pos : pos + size], 'little')
            pos += size
        else:
            raise ValueError(f'wire type {wire}')
        fields.setdefault(number, []).append(value)
    return fields


def wait_for(condition, timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
