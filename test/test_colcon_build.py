"""The workspace builds with colcon the way a ROS 2 machine builds it, and installs what ROS needs.

``colcon build --base-paths src`` into a temporary workspace, with the interpreter that runs the
tests (its colcon: ``make setup`` installs it from requirements-ros.txt; on a ROS 2 machine it
is the system's). Checked per package: every console script in ``install/<pkg>/lib/<pkg>/``
(where ``ros2 run`` and launch files find executables), ``share/<pkg>/package.xml`` and the
ament index marker (``ros2 pkg list``); the installed modules are the ones imported after
sourcing ``install/setup.sh``; and the repository's ``launch/`` and ``config/`` files are in
devbot_bringup's share, where ``ros2 launch devbot_bringup FILE`` reads them.
"""

from __future__ import annotations

import ast
import filecmp
import importlib.util
import os
import random
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from graphtest import REPO

SRC = REPO / 'src'
BRINGUP = 'devbot_bringup'
BUILD_LIMIT_S = 120  # measured about 10 s on two shared cores


def package_dirs() -> dict[str, Path]:
    return {
        ET.parse(p).getroot().findtext('name'): p.parent for p in sorted(SRC.glob('*/package.xml'))
    }


def console_scripts(setup_py: Path) -> list[str]:
    """Console script names declared in a setup.py's ``entry_points``."""
    scripts = []
    for node in ast.walk(ast.parse(setup_py.read_text(), str(setup_py))):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                for item in ast.literal_eval(value):
                    scripts.append(item.split('=')[0].strip())
    return scripts


def sourced_env(install: Path) -> dict[str, str]:
    """The environment after ``. install/setup.sh`` (POSIX sh, as a ROS user's shell does)."""
    out = subprocess.run(
        ['sh', '-c', f'. {shlex.quote(str(install / "setup.sh"))} && env -0'],
        capture_output=True,
        env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'},
        check=True,
    ).stdout.decode()
    return dict(item.split('=', 1) for item in out.split('\0') if '=' in item)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A colcon build of src/ into a temporary workspace: its root (build/, install/, log/)."""
    if importlib.util.find_spec('colcon_core') is None:
        pytest.skip(f'colcon is not installed for {sys.executable} (make setup installs it)')
    root = tmp_path_factory.mktemp('colcon')
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            '-c',
            'import sys; from colcon_core.command import main; sys.exit(main())',
            '--log-base',
            str(root / 'log'),
            'build',
            '--base-paths',
            str(SRC),
            '--build-base',
            str(root / 'build'),
            '--install-base',
            str(root / 'install'),
            '--event-handlers',
            'console_direct-',
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=BUILD_LIMIT_S * 2,
    )
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert took < BUILD_LIMIT_S, f'colcon build took {took:.0f} s'
    return root


def test_every_package_is_built_with_its_manifest_index_marker_and_console_scripts(workspace):
    install = workspace / 'install'
    packages = package_dirs()
    assert {'devbot', 'toroidal_sim', 'jetbot_driver', 'action_selectors'} <= set(packages)
    for name, src in packages.items():
        share = install / name / 'share'
        assert (share / name / 'package.xml').read_text() == (src / 'package.xml').read_text()
        assert (share / 'ament_index' / 'resource_index' / 'packages' / name).is_file(), name
        for script in console_scripts(src / 'setup.py'):
            exe = install / name / 'lib' / name / script
            assert exe.is_file() and os.access(exe, os.X_OK), f'{name}: {exe} missing'
            assert exe.read_text().startswith(f'#!{sys.executable}'), exe.read_text()[:200]


def test_sourcing_the_install_imports_the_installed_packages(workspace):
    install = workspace / 'install'
    env = sourced_env(install)
    packages = [name for name, src in package_dirs().items() if (src / name).is_dir()]
    proc = subprocess.run(
        [
            sys.executable,
            '-c',
            'import importlib, sys\n'
            'for name in sys.argv[1:]:\n'
            '    print(importlib.import_module(name).__file__)',
            *packages,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    files = proc.stdout.split()
    assert len(files) == len(packages), proc.stdout
    for name, file in zip(packages, files):
        assert Path(file).is_relative_to(install / name), f'{name} imported from {file}'
    prefixes = env.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
    assert {str(install / name) for name in package_dirs()} <= set(prefixes), prefixes


def test_an_installed_console_script_runs(workspace):
    install = workspace / 'install'
    proc = subprocess.run(
        [str(install / 'devbot' / 'lib' / 'devbot' / 'devbot'), '--help'],
        env=sourced_env(install),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'launch' in proc.stdout, proc.stdout


def bringup_share(workspace: Path) -> Path:
    if BRINGUP not in package_dirs():
        pytest.skip(f'no {BRINGUP} package under src/ (it installs launch/ and config/)')
    return workspace / 'install' / BRINGUP / 'share' / BRINGUP


@pytest.mark.parametrize('folder', ['launch', 'config'])
def test_launch_and_config_files_are_installed_in_devbot_bringup_share(workspace, folder):
    share = bringup_share(workspace)
    files = sorted(p for p in (REPO / folder).rglob('*') if p.is_file())
    assert files, f'{folder}/ is empty'
    for path in files:
        installed = share / path.relative_to(REPO)
        assert installed.is_file(), f'{path.relative_to(REPO)} not installed in {share}'
        assert filecmp.cmp(path, installed, shallow=False), f'{installed} differs from {path}'


def test_a_launch_file_runs_from_the_installed_share_with_recording(workspace, tmp_path):
    """``devbot launch devbot_bringup FILE`` after sourcing: the file, its config and every
    executable come from the colcon install (run outside the repository), and the bag is written."""
    share = bringup_share(workspace)
    install = workspace / 'install'
    env = sourced_env(install)
    env.update(
        ROS_DOMAIN_ID=str(random.Random().randint(100, 230)),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        PYTHONUNBUFFERED='1',
    )
    sessions = tmp_path / 'sessions'
    proc = subprocess.run(
        [
            str(install / 'devbot' / 'lib' / 'devbot' / 'devbot'),
            'launch',
            BRINGUP,
            'toroidal_dot_runner.launch.yaml',
            'max_steps:=5',
            'record:=true',
            f'sessions_dir:={sessions}',
            'report_dir:=',
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout
    assert (share / 'launch' / 'toroidal_dot_runner.launch.yaml').is_file()
    bags = sorted(sessions.glob('toroidal_dot/*/*.mcap'))
    assert bags, (sorted(sessions.rglob('*')), proc.stdout)
    assert '/toroidal_dot/motor_command/executed: 5' in proc.stdout, proc.stdout
