"""Print a lock file: a requirements file's distributions and all they need, pinned as installed.

The closure is read from the running environment's metadata (each distribution's
``Requires-Dist``, markers evaluated for this interpreter, extras followed), so the lock holds
exactly what ``pip install -r`` of the requirements file installs, and nothing else the
environment happens to hold (tools, the workspace's editable packages). Only ``*.dist-info``
installs count: the ROS 2 wheels carry nested ``*.egg-info`` folders for their Python packages
(``rclpy``, ``action_msgs``, ...) that no index serves.

``--without LOCK`` leaves out what another lock already pins: the ROS lock is the ROS
requirements' closure less the main lock, and the two together are what ``make setup`` installs.

Usage (see the Makefile's ``lock`` target):
    .venv/bin/python tools/freeze_lock.py requirements.txt > requirements.lock.txt
    .venv/bin/python tools/freeze_lock.py requirements-ros.txt --without requirements.lock.txt \\
        > requirements-ros.lock.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

# never pinned (the venv's own tools): pip resolves them within what the pinned
# distributions require (colcon-core wants setuptools<80, torch >=77.0.3)
EXCLUDE = {'pip', 'setuptools', 'wheel'}


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-``, ``_``, ``.`` as one ``-``."""
    return re.sub(r'[-_.]+', '-', name).lower()


def installed() -> dict[str, metadata.Distribution]:
    """Normalized name -> the distribution imports would use (first on sys.path), dist-info only."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        if str(getattr(dist, '_path', '')).endswith('.dist-info'):
            found.setdefault(normalize(dist.metadata['Name']), dist)
    return found


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements file (comments and blank lines skipped)."""
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            reqs.append(Requirement(line))
    return reqs


def closure(
    roots: list[Requirement], dists: dict[str, metadata.Distribution]
) -> dict[str, metadata.Distribution]:
    """Every distribution ``roots`` need, transitively, as installed.

    Raises:
        SystemExit: a needed distribution is not installed (the lock would be incomplete).
    """
    needed: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(req, '') for req in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({'extra': extra}):
            continue
        name = normalize(req.name)
        if name in EXCLUDE:
            continue
        dist = dists.get(name)
        if dist is None:
            raise SystemExit(f'freeze_lock: {req} is needed but not installed')
        if not req.specifier.contains(dist.version, prereleases=True):
            raise SystemExit(f'freeze_lock: {req} is needed but {dist.version} is installed')
        needed[name] = dist
        for wanted in [''] + sorted(req.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo.extend((Requirement(r), wanted) for r in dist.requires or [])
    return needed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('requirements', type=Path, help='requirements file (the lock roots)')
    parser.add_argument(
        '--without', type=Path, action='append', default=[], help='a lock whose pins to leave out'
    )
    args = parser.parse_args()
    needed = closure(read_requirements(args.requirements), installed())
    skip = set()
    for lock in args.without:
        skip.update(normalize(r.name) for r in read_requirements(lock))
    pins = {
        name: f'{dist.metadata["Name"]}=={dist.version}'
        for name, dist in needed.items()
        if name not in skip
    }
    sys.stdout.write(''.join(pins[k] + '\n' for k in sorted(pins)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
