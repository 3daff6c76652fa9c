"""Helpers shared by the graph tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import sys
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
