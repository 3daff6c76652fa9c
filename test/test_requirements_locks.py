"""The two requirement sets and their locks: non-ROS (requirements*.txt without -ros) and ROS.

A machine with ROS 2 installs requirements.lock.txt only, so it must hold no ROS wheel; the two
locks together are what ``make setup`` installs, and each is what tools/freeze_lock.py computes
from its requirements file in the environment ``make setup`` made (``make lock`` writes them).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
from graphtest import REPO

# what a ROS 2 install provides: the ROS wheels and the build tools of ros-dev-tools
ROS_PREFIXES = ('ros-', 'colcon-')


def pins(name: str) -> dict[str, str]:
    """Lower-cased distribution name -> pinned version, of one requirements or lock file."""
    out = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            dist, version = line.split('==')
            out[dist.lower()] = version
    return out


def freeze(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'freeze_lock.py'), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f'{proc.stderr.strip()} (make setup installs the locks)'
    return proc.stdout


def test_ros_wheels_and_colcon_are_only_in_the_ros_set():
    main, main_lock = pins('requirements.txt'), pins('requirements.lock.txt')
    ros, ros_lock = pins('requirements-ros.txt'), pins('requirements-ros.lock.txt')
    assert not [d for d in main_lock if d.startswith(ROS_PREFIXES)], 'ROS in requirements.lock'
    assert all(d.startswith(ROS_PREFIXES) for d in ros), ros
    assert not set(main_lock) & set(ros_lock), 'a distribution pinned in both locks'
    for direct, lock in ((main, main_lock), (ros, {**main_lock, **ros_lock})):
        for dist, version in direct.items():
            assert lock.get(dist) == version, f'{dist}=={version} is not pinned so in its lock'


def test_main_lock_is_the_closure_of_requirements_txt():
    assert freeze('requirements.txt') == (REPO / 'requirements.lock.txt').read_text()


def test_ros_lock_is_the_closure_of_requirements_ros_txt_beyond_the_main_lock():
    try:
        metadata.distribution('ros-rclpy')
    except metadata.PackageNotFoundError:
        pytest.skip('ROS 2 is not installed from its wheels here (a ROS 2 install provides it)')
    assert (
        freeze('requirements-ros.txt', '--without', 'requirements.lock.txt')
        == (REPO / 'requirements-ros.lock.txt').read_text()
    )
