"""Where sessions live and how much room they may take. ROS-free.

Layout: ``<root>/<robot>/<session>/`` with ``root`` = ``saved/sessions`` by default; a session
is one rosbag2 bag directory, named by its start time to the microsecond
(``20261125-185501-123456``), so names are unique and sort in time order.

The disk limit is per robot: :func:`enforce_disk_limit` deletes the oldest sessions of that robot
(by their last write) until the robot's sessions fit, never the one being recorded and never
anything that is not a bag.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path('saved/sessions')
GB = 1024**3


def new_session_name(now: float | None = None) -> str:
    """A session name from the local time, unique to the microsecond: ``YYYYmmdd-HHMMSS-ffffff``."""
    t = _dt.datetime.fromtimestamp(time.time() if now is None else now)
    return t.strftime('%Y%m%d-%H%M%S-%f')


def unique_session_dir(robot_dir: Path, name: str | None = None) -> Path:
    """A session directory path under ``robot_dir`` that does not exist yet."""
    if name:
        path = robot_dir / name
        if path.exists():
            raise FileExistsError(f'session {path} exists already')
        return path
    while True:
        path = robot_dir / new_session_name()
        if not path.exists():
            return path
        time.sleep(1e-6)


def is_bag_dir(path: Path) -> bool:
    """A directory holding a rosbag2 bag (metadata.yaml or MCAP files)."""
    try:
        return path.is_dir() and ((path / 'metadata.yaml').is_file() or any(path.glob('*.mcap')))
    except OSError:
        return False


def dir_size(path: Path) -> int:
    """Bytes of the files below ``path`` (0 when it vanished meanwhile)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def last_write(path: Path) -> float:
    """The newest modification time of the files in a session (its end)."""
    times = [path.stat().st_mtime]
    for child in path.iterdir():
        try:
            times.append(child.stat().st_mtime)
        except OSError:
            pass
    return max(times)


@dataclass(frozen=True)
class Deleted:
    path: Path
    size: int


def sessions_of(robot_dir: Path) -> list[Path]:
    """The bag directories of one robot, oldest (by last write) first."""
    if not robot_dir.is_dir():
        return []
    bags = [p for p in robot_dir.iterdir() if is_bag_dir(p)]
    return sorted(bags, key=lambda p: (last_write(p), p.name))


def enforce_disk_limit(
    robot_dir: Path, limit_bytes: int, keep: Path | None = None, current_bytes: int | None = None
) -> tuple[int, list[Deleted]]:
    """Delete the oldest sessions of ``robot_dir`` until they take at most ``limit_bytes``.

    Args:
        robot_dir: ``<root>/<robot>``.
        limit_bytes: the robot's budget.
        keep: the session being recorded (never deleted).
        current_bytes: its size if known (saves a walk over it).

    Returns:
        (bytes used after deleting, the sessions deleted).
    """
    keep = keep.resolve() if keep is not None else None
    others = [p for p in sessions_of(robot_dir) if keep is None or p.resolve() != keep]
    sizes = {p: dir_size(p) for p in others}
    used = sum(sizes.values())
    if keep is not None:
        used += current_bytes if current_bytes is not None else dir_size(keep)
    deleted = []
    for path in others:
        if used <= limit_bytes:
            break
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            used -= sizes[path]
            deleted.append(Deleted(path, sizes[path]))
    return used, deleted


def resolve_session_path(text: str | Path, root: Path = DEFAULT_ROOT) -> Path:
    """A session directory given as a path or as ``<robot>/<session>`` under the sessions root."""
    path = Path(text)
    if path.exists() or path.is_absolute():
        return path
    return root / text if (root / text).exists() else path
